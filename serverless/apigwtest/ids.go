package apigwtest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"
)

// newConnectionID returns an identifier shaped like API Gateway's
// connection, request and message IDs: 11 random bytes in base64, 16
// characters ending in "=" (for example "L0SM9cOFvHcCIhw="). The URL-safe
// alphabet keeps "/" out of @connections paths; "=" stays, so a client
// that builds the path by hand without escaping is tested like on AWS,
// where the SDKs send it as %3D.
func newConnectionID() string {
	var b [11]byte
	rand.Read(b[:])
	return base64.URLEncoding.EncodeToString(b[:])
}

// newUUID returns a random (version 4) UUID, the shape of a Lambda
// invocation's request ID.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0F | 0x40
	b[8] = b[8]&0x3F | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// newTraceID returns an X-Ray trace header value like the one API Gateway
// adds to requests: Root=1-<epoch seconds hex>-<96 random bits hex>.
func newTraceID(now time.Time) string {
	var b [12]byte
	rand.Read(b[:])
	return fmt.Sprintf("Root=1-%08x-%s", now.Unix(), hex.EncodeToString(b[:]))
}

// newSpanID returns an X-Ray segment ID: 16 hex digits.
func newSpanID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// requestTime formats t like requestContext.requestTime and time:
// "09/Apr/2015:12:34:56 +0000".
func requestTime(t time.Time) string { return t.UTC().Format("02/Jan/2006:15:04:05 -0700") }

// isoTime formats t like the Management API's timestamps.
func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
