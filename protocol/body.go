package protocol

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// EncodeBody encodes a body, or one chunk of it, for the "body" member of
// [HTTPRequest] and [HTTPResponse]: standard base64 with padding, as the
// original encodes it. An empty body encodes to "".
func EncodeBody(b []byte) string {
	return base64.StdEncoding.EncodeToString(b)
}

// DecodeBody decodes the "body" member of [HTTPRequest] or [HTTPResponse]. It
// accepts standard base64 with or without padding; anything else, including
// the URL alphabet, partial padding and line breaks, is an error wrapping
// [ErrMalformed]. "" decodes to an empty, non-nil slice.
func DecodeBody(s string) ([]byte, error) {
	enc := base64.StdEncoding
	if len(s)%4 != 0 {
		// Only an unpadded encoding can have a length that is not a
		// multiple of four; a padded one that lost its padding is the
		// same thing.
		enc = base64.RawStdEncoding
	}
	// encoding/base64 skips CR and LF, which standard base64 as the
	// protocol uses it never contains; rejecting them keeps one body one
	// encoding.
	if strings.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("%w: body: line break in base64", ErrMalformed)
	}
	b, err := enc.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: body: %w", ErrMalformed, err)
	}
	return b, nil
}
