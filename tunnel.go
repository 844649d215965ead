package tunnel

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
)

// Code is a stable, machine-readable error code. Codes appear in public
// error responses ({"error": code, ...}), in protocol error messages and in
// logs; they never change meaning. See docs/errors.md.
type Code string

// The error codes. Each maps to one HTTP status (Code.HTTPStatus).
const (
	CodeTunnelNotFound          Code = "tunnel_not_found"          // 404: no tunnel has this ID
	CodeUnauthorized            Code = "unauthorized"              // 401: missing or bad agent token
	CodeForbidden               Code = "forbidden"                 // 403: authenticated, but not allowed
	CodeRateLimited             Code = "rate_limited"              // 429: too many requests or connections
	CodePayloadTooLarge         Code = "payload_too_large"         // 413: body over the limit
	CodeHeadersTooLarge         Code = "headers_too_large"         // 431: header block over the limit
	CodeURITooLong              Code = "uri_too_long"              // 414: request target over the limit
	CodeInvalidRequest          Code = "invalid_request"           // 400: malformed request or message
	CodeGatewayTimeout          Code = "gateway_timeout"           // 504: the agent did not answer in time
	CodeAgentUnavailable        Code = "agent_unavailable"         // 502: the tunnel exists but its agent is gone
	CodeLocalServiceUnavailable Code = "local_service_unavailable" // 502: the agent could not reach its local service
	CodeNameInUse               Code = "name_in_use"               // 409: another agent holds the requested name
	CodeInternal                Code = "internal"                  // 500: a bug or backend failure; details are logged, not returned
	CodeUnavailable             Code = "unavailable"               // 503: the gateway is shutting down
)

// HTTPStatus returns the HTTP status code for c; 500 for an unknown code.
func (c Code) HTTPStatus() int {
	switch c {
	case CodeTunnelNotFound:
		return http.StatusNotFound
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeForbidden:
		return http.StatusForbidden
	case CodeRateLimited:
		return http.StatusTooManyRequests
	case CodePayloadTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeHeadersTooLarge:
		return http.StatusRequestHeaderFieldsTooLarge
	case CodeURITooLong:
		return http.StatusRequestURITooLong
	case CodeInvalidRequest:
		return http.StatusBadRequest
	case CodeGatewayTimeout:
		return http.StatusGatewayTimeout
	case CodeAgentUnavailable, CodeLocalServiceUnavailable:
		return http.StatusBadGateway
	case CodeNameInUse:
		return http.StatusConflict
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// Error is the error type of the tunnel system: a stable Code, a message
// safe to show to the public, the id of the log line that has the details,
// and the underlying cause.
//
// errors.Is(err, ErrX) matches any *Error with ErrX's Code, so callers
// branch on the sentinels below whatever message or cause an error carries.
// An *Error with CodeGatewayTimeout reports Timeout() == true, as a
// net.Error does.
type Error struct {
	// Code is the stable error code.
	Code Code
	// Message is a human-readable explanation, safe for public responses.
	Message string
	// ID identifies this occurrence; it appears in the public response,
	// its X-Tunnel-Error-Id header and the gateway's log line. Empty for
	// sentinels and for errors that never reached a response.
	ID string
	// Err is the cause, if any. It is logged, never sent to the public.
	Err error
}

// Error returns "<code>: <message>", followed by the cause if there is one.
func (e *Error) Error() string {
	s := string(e.Code)
	if e.Message != "" && e.Message != s {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is an *Error with the same Code, which makes
// every sentinel below match errors of its code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// HTTPStatus returns the HTTP status for the error's code.
func (e *Error) HTTPStatus() int { return e.Code.HTTPStatus() }

// Timeout reports whether the error is a timeout (CodeGatewayTimeout).
func (e *Error) Timeout() bool { return e.Code == CodeGatewayTimeout }

// Temporary reports false; it exists to satisfy net.Error.
//
// Deprecated: see net.Error.
func (e *Error) Temporary() bool { return false }

var _ net.Error = (*Error)(nil)

// Sentinels, one per code. Compare with errors.Is; they match any *Error of
// the same code.
var (
	ErrTunnelNotFound          = &Error{Code: CodeTunnelNotFound, Message: "tunnel not found"}
	ErrUnauthorized            = &Error{Code: CodeUnauthorized, Message: "unauthorized"}
	ErrForbidden               = &Error{Code: CodeForbidden, Message: "forbidden"}
	ErrRateLimited             = &Error{Code: CodeRateLimited, Message: "rate limited"}
	ErrPayloadTooLarge         = &Error{Code: CodePayloadTooLarge, Message: "payload too large"}
	ErrHeadersTooLarge         = &Error{Code: CodeHeadersTooLarge, Message: "request headers too large"}
	ErrURITooLong              = &Error{Code: CodeURITooLong, Message: "request URI too long"}
	ErrInvalidRequest          = &Error{Code: CodeInvalidRequest, Message: "invalid request"}
	ErrGatewayTimeout          = &Error{Code: CodeGatewayTimeout, Message: "the tunnel's agent did not respond in time"}
	ErrAgentUnavailable        = &Error{Code: CodeAgentUnavailable, Message: "the tunnel's agent is not connected"}
	ErrLocalServiceUnavailable = &Error{Code: CodeLocalServiceUnavailable, Message: "the tunnel's local service is unavailable"}
	ErrNameInUse               = &Error{Code: CodeNameInUse, Message: "tunnel name in use"}
	ErrInternal                = &Error{Code: CodeInternal, Message: "internal error"}
	ErrUnavailable             = &Error{Code: CodeUnavailable, Message: "the gateway is shutting down"}
)

// ErrClosed is returned by a Listener's Accept after Close. It wraps
// net.ErrClosed, so errors.Is(err, net.ErrClosed) holds too, as net/http
// expects of a closed listener.
var ErrClosed = fmt.Errorf("tunnel: listener closed: %w", net.ErrClosed)

// ErrorIDHeader is the response header that carries a public error's id.
const ErrorIDHeader = "X-Tunnel-Error-Id"

// asError returns err as an *Error: itself if it is one (anywhere in its
// chain), else an internal error wrapping it.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: ErrInternal.Message, Err: err}
}

// Token is an agent's secret. Its String, GoString and LogValue redact it,
// so a Token printed or logged by mistake shows no secret.
type Token string

// String returns a redacted form.
func (t Token) String() string {
	if t == "" {
		return ""
	}
	return "[REDACTED]"
}

// GoString returns a redacted form, for %#v.
func (t Token) GoString() string { return `tunnel.Token("[REDACTED]")` }

// LogValue returns a redacted form, for log/slog.
func (t Token) LogValue() slog.Value { return slog.StringValue(t.String()) }

// MarshalText returns the redacted form, so that encoding/json,
// encoding/xml and the other encoders that honour encoding.TextMarshaler
// (a configuration dumped for debugging, say) show no secret either. A
// Token is still decoded from text as the plain string it is.
func (t Token) MarshalText() ([]byte, error) { return []byte(t.String()), nil }
