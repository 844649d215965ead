package tunnel

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/http-tunnel/tunnel/protocol"
)

// serializeRequest writes req as an HTTP/1.1 request with "Connection:
// close", so that the server closes the conn after one response. The URI is
// written exactly as received. It leaves out the hop-by-hop headers
// (protocol.RemoveHopByHop), host and content-length, which it writes
// itself, and expect, which means nothing for a body that has already
// arrived. Header names and values that could split the request are
// refused.
func serializeRequest(req *protocol.HTTPRequest, body []byte, publicURL string) ([]byte, error) {
	if !protocol.ValidHeaderName(req.Method) {
		return nil, fmt.Errorf("invalid method %q", req.Method)
	}
	if !validURI(req.URI) {
		return nil, errors.New("invalid uri")
	}
	var b bytes.Buffer
	b.Grow(256 + len(req.URI) + len(body))
	b.WriteString(req.Method + " " + req.URI + " HTTP/1.1\r\n")
	host := ""
	if hs := req.Headers["host"]; len(hs) > 0 {
		host = hs[0]
	} else if u, err := url.Parse(publicURL); err == nil {
		host = u.Host
	}
	if !protocol.ValidHeaderValue(host) {
		return nil, errors.New("invalid host")
	}
	b.WriteString("Host: " + host + "\r\n")
	protocol.RemoveHopByHop(req.Headers)
	for name, values := range req.Headers {
		if name == "host" || name == "content-length" || name == "expect" {
			continue
		}
		if !protocol.ValidHeaderName(name) {
			return nil, fmt.Errorf("invalid header name %q", name)
		}
		for _, v := range values {
			if !protocol.ValidHeaderValue(v) {
				return nil, fmt.Errorf("invalid value of header %q", name)
			}
			b.WriteString(name + ": " + v + "\r\n")
		}
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n")
	b.Write(body)
	return b.Bytes(), nil
}

// responseHeaders converts resp's headers to json mode's: lower-case
// names, every value, no hop-by-hop headers, and content-length set to the
// body's size where the status allows a body.
func responseHeaders(resp *http.Response, method string, n int) map[string][]string {
	h := make(map[string][]string, len(resp.Header)+1)
	for name, values := range resp.Header {
		name = strings.ToLower(name)
		h[name] = append(h[name], values...)
	}
	protocol.RemoveHopByHop(h)
	if method != http.MethodHead && resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusNotModified {
		h["content-length"] = []string{strconv.Itoa(n)}
	}
	return h
}

// validURI reports a request target that cannot break the request line:
// it starts with "/" (or is "*") and has no spaces or control bytes.
func validURI(s string) bool {
	if s != "*" && !strings.HasPrefix(s, "/") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}
