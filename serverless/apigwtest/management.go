package apigwtest

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// The @connections API (the Management API of apigatewaymanagementapi):
//
//	POST   /{stage}/@connections/{id}  body = data  -> 200, or 410, 413, 429
//	GET    /{stage}/@connections/{id}               -> 200 JSON, or 410
//	DELETE /{stage}/@connections/{id}               -> 204, or 410
//
// Errors carry the restJson1 shape the AWS SDKs decode: the type in the
// x-amzn-ErrorType header and {"message": ...} in the body, so
// apigatewaymanagementapi returns *types.GoneException and friends.

// serveManagement serves one @connections request; rest is the escaped
// path after ".../@connections".
func (e *Emulator) serveManagement(w http.ResponseWriter, r *http.Request, rest string) {
	// Requests must be signed; the signature itself is not checked.
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		writeAWSError(w, http.StatusForbidden, "ForbiddenException", "Missing Authentication Token")
		return
	}
	escaped, ok := strings.CutPrefix(rest, "/")
	id, err := url.PathUnescape(escaped)
	if !ok || escaped == "" || strings.Contains(escaped, "/") || err != nil {
		writeAWSError(w, http.StatusForbidden, "ForbiddenException", "Forbidden")
		return
	}

	switch r.Method {
	case http.MethodPost:
		e.postToConnection(w, r, id)
	case http.MethodGet:
		e.stats.add(func(s *Stats) { s.ConnectionGets++ })
		c := e.lookup(id)
		if c == nil || c.currentState() != stateOpen {
			writeGone(w)
			return
		}
		writeJSON(w, http.StatusOK, struct {
			ConnectedAt  string `json:"connectedAt"`
			Identity     any    `json:"identity"`
			LastActiveAt string `json:"lastActiveAt"`
		}{
			ConnectedAt: isoTime(c.connectedAt),
			Identity: struct {
				SourceIP  string `json:"sourceIp"`
				UserAgent string `json:"userAgent"`
			}{c.sourceIP, c.userAgent},
			LastActiveAt: isoTime(c.lastActiveAt()),
		})
	case http.MethodDelete:
		c := e.lookup(id)
		if c == nil || c.currentState() != stateOpen {
			writeGone(w)
			return
		}
		c.closeWith(statusNormalClosure, "")
		w.WriteHeader(http.StatusNoContent)
	default:
		writeAWSError(w, http.StatusForbidden, "ForbiddenException", "Forbidden")
	}
}

func (e *Emulator) postToConnection(w http.ResponseWriter, r *http.Request, id string) {
	data, err := io.ReadAll(io.LimitReader(r.Body, int64(e.limits.MaxMessageBytes)+1))
	if err != nil {
		writeAWSError(w, http.StatusBadRequest, "BadRequestException", "Could not read the request body")
		return
	}
	if len(data) > e.limits.MaxMessageBytes {
		writeAWSError(w, http.StatusRequestEntityTooLarge, "PayloadTooLargeException", "Message too long")
		return
	}
	c := e.lookup(id)
	err = errGone
	if c != nil {
		err = c.send(opText, data)
	}
	switch {
	case errors.Is(err, errBufferFull):
		e.stats.add(func(s *Stats) { s.ThrottledPosts++ })
		writeAWSError(w, http.StatusTooManyRequests, "LimitExceededException", "Limit exceeded")
		return
	case err != nil:
		e.stats.add(func(s *Stats) { s.GonePosts++ })
		writeGone(w)
		return
	}
	e.stats.add(func(s *Stats) { s.Posts++ })
	w.WriteHeader(http.StatusOK)
}

func writeGone(w http.ResponseWriter) {
	writeAWSError(w, http.StatusGone, "GoneException", "The connection with the provided id no longer exists.")
}

func writeAWSError(w http.ResponseWriter, status int, errorType, message string) {
	w.Header().Set("x-amzn-ErrorType", errorType)
	w.Header().Set("x-amzn-RequestId", newUUID())
	writeJSON(w, status, struct {
		Message string `json:"message"`
	}{message})
}
