package apigwtest

import (
	"encoding/base64"
	"encoding/json"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// Request parameters as API Gateway presents them to a handler, the parts
// of a handler's response it reads back, and its own JSON answers.

// queryParam is one key=value pair of a query string, decoded.
type queryParam struct{ key, value string }

// parseQuery splits a raw query string into decoded pairs, in order.
// Unlike url.ParseQuery it keeps pairs with semicolons or bad escapes
// (taking such a part literally), as API Gateway passes them on.
func parseQuery(raw string) []queryParam {
	var out []queryParam
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		out = append(out, queryParam{queryUnescape(k), queryUnescape(v)})
	}
	return out
}

func queryUnescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// queryMaps builds the format 1.0 (and WebSocket) query maps: the last
// value of each key, and every value in order. Both are nil without a
// query, as API Gateway sends null.
func queryMaps(raw string) (map[string]string, map[string][]string) {
	params := parseQuery(raw)
	if len(params) == 0 {
		return nil, nil
	}
	single := make(map[string]string, len(params))
	multi := make(map[string][]string, len(params))
	for _, p := range params {
		single[p.key] = p.value
		multi[p.key] = append(multi[p.key], p.value)
	}
	return single, multi
}

// headerMaps builds the format 1.0 (and WebSocket) header maps: the last
// value of each header, and every value in order. Names keep the case
// Go's server gives them (canonical, "Content-Type"), or are lower-cased.
func headerMaps(h http.Header, lower bool) (map[string]string, map[string][]string) {
	single := make(map[string]string, len(h))
	multi := make(map[string][]string, len(h))
	for name, values := range h {
		if len(values) == 0 {
			continue
		}
		if lower {
			name = strings.ToLower(name)
		}
		single[name] = values[len(values)-1]
		multi[name] = append(multi[name], values...)
	}
	return single, multi
}

// addForwardingHeaders adds the headers API Gateway adds to every request
// it passes on: X-Forwarded-For (the client's list, then the source IP),
// X-Forwarded-Port, X-Forwarded-Proto ("http": the emulator serves plain
// HTTP where AWS serves HTTPS) and an X-Ray X-Amzn-Trace-Id.
func addForwardingHeaders(h http.Header, sourceIP, domain string, now time.Time) {
	if xff := h.Get("X-Forwarded-For"); xff != "" {
		h.Set("X-Forwarded-For", xff+", "+sourceIP)
	} else {
		h.Set("X-Forwarded-For", sourceIP)
	}
	if _, port, err := net.SplitHostPort(domain); err == nil {
		h.Set("X-Forwarded-Port", port)
	}
	h.Set("X-Forwarded-Proto", "http")
	if h.Get("X-Amzn-Trace-Id") == "" {
		h.Set("X-Amzn-Trace-Id", newTraceID(now))
	}
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// encodeBody returns a request body as an event carries it: as text when
// the content type is textual and the bytes are UTF-8, else in base64
// with isBase64Encoded (an absent content type and form posts included,
// as on AWS). An empty body is "" either way.
func encodeBody(body []byte, contentType string) (string, bool) {
	if len(body) == 0 {
		return "", false
	}
	if isTextual(contentType) && utf8.Valid(body) {
		return string(body), false
	}
	return base64.StdEncoding.EncodeToString(body), true
}

// isTextual reports whether a content type is one API Gateway passes as
// text.
func isTextual(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch {
	case strings.HasPrefix(mt, "text/"),
		strings.HasSuffix(mt, "+json"), strings.HasSuffix(mt, "+xml"):
		return true
	}
	switch mt {
	case "application/json", "application/javascript", "application/xml", "application/yaml", "application/graphql":
		return true
	}
	return false
}

// responseHeader looks name up case-insensitively in a Lambda response's
// headers, multiValueHeaders first.
func responseHeader(single map[string]string, multi map[string][]string, name string) string {
	for k, vs := range multi {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return vs[0]
		}
	}
	for k, v := range single {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// responseBody decodes a Lambda response body.
func responseBody(body string, isBase64 bool) ([]byte, error) {
	if !isBase64 {
		return []byte(body), nil
	}
	return base64.StdEncoding.DecodeString(body)
}

// writeJSONMessage writes API Gateway's own error shape,
// {"message":"..."}.
func writeJSONMessage(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, struct {
		Message string `json:"message"`
	}{message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
