package backendtest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"time"
)

// sigV4 holds what AWS Signature Version 4 needs besides the request: the
// credentials and the credential scope's region and service.
type sigV4 struct {
	accessKey, secretKey string
	region, service      string
}

// sign sets req's X-Amz-Date to now and its Authorization to a Signature
// Version 4 over the method, path, query, body and every header req has
// (Host included), as AWS specifies for the header form of signing. body
// must be the request body's exact bytes. The probe signs with dummy
// credentials: emulators check the header's form, not the signature, but
// a correct signature keeps the probe honest towards any that do.
func (s sigV4) sign(req *http.Request, body []byte, now time.Time) {
	amzDate := now.UTC().Format("20060102T150405Z")
	date := amzDate[:8]
	req.Header.Set("X-Amz-Date", amzDate)

	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	headers := map[string]string{"host": host}
	for name, values := range req.Header {
		headers[strings.ToLower(name)] = strings.Join(values, ",")
	}
	names := make([]string, 0, len(headers))
	for name := range headers {
		if name != "authorization" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var canonicalHeaders strings.Builder
	for _, name := range names {
		canonicalHeaders.WriteString(name + ":" + strings.TrimSpace(headers[name]) + "\n")
	}
	signedHeaders := strings.Join(names, ";")

	path := req.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	canonicalRequest := strings.Join([]string{
		req.Method,
		path,
		req.URL.Query().Encode(), // sorted by key, as the canonical query must be
		canonicalHeaders.String(),
		signedHeaders,
		hexSHA256(body),
	}, "\n")

	scope := date + "/" + s.region + "/" + s.service + "/aws4_request"
	stringToSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hexSHA256([]byte(canonicalRequest))
	key := []byte("AWS4" + s.secretKey)
	for _, part := range []string{date, s.region, s.service, "aws4_request"} {
		key = hmacSHA256(key, part)
	}
	signature := hex.EncodeToString(hmacSHA256(key, stringToSign))
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+s.accessKey+"/"+scope+
		", SignedHeaders="+signedHeaders+", Signature="+signature)
}

func hexSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}
