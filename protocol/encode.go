package protocol

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Marshal encodes m as one JSON object whose first member is "type", the
// shape of the original's tagged messages: {"type":"ping"}.
//
// Members are written in a fixed order, header names sorted, so equal
// messages encode to equal bytes. Members the original decoders require are
// written even when empty: "body" always; "method", "uri", "headers" and
// "timestamp" of an [HTTPRequest], and "status_code" and "headers" of an
// [HTTPResponse], on every message except chunk continuations (ChunkIndex >
// 0); "connection_id", "tunnel_id" and "public_url" of a
// [ConnectionEstablished]; "code" and "message" of an [Error]. Other members
// are omitted when zero, except that "chunk_index" is written on the first
// message of a chunked body (ChunkCount > 1). Header names with no values are
// omitted.
//
// The output never contains a newline byte, so it can be framed by newlines
// as on mux-mode control streams. Marshal does not enforce a size cap: the
// caller compares the length against the limit that applies.
//
// Marshal returns an error wrapping [ErrMalformed] for a nil message or one
// that breaks the rules [Unmarshal] enforces (such as an [HTTPRequest]
// without RequestID), and [ErrUnknownType] for a Message implementation from
// another package.
func Marshal(m Message) ([]byte, error) {
	if m == nil || isNilPointer(m) {
		return nil, fmt.Errorf("%w: nil %T", ErrMalformed, m)
	}
	if err := validate(m); err != nil {
		return nil, err
	}
	var b []byte
	switch m := m.(type) {
	case *Ping, *Pong, *Drain:
		b = appendType(make([]byte, 0, 32), m.Type())
	case *Ready:
		b = appendReady(make([]byte, 0, 64+len(m.Name)+len(m.TunnelID)+len(m.ResumeToken)), m)
	case *ConnectionEstablished:
		b = appendConnectionEstablished(make([]byte, 0, connectionEstablishedSize(m)), m)
	case *HTTPRequest:
		n := fixedSize + len(m.RequestID) + len(m.Method) + len(m.URI) + len(m.Body) + headersSize(m.Headers)
		b = appendHTTPRequest(make([]byte, 0, n), m)
	case *HTTPResponse:
		n := fixedSize + len(m.RequestID) + len(m.Body) + headersSize(m.Headers)
		b = appendHTTPResponse(make([]byte, 0, n), m)
	case *Error:
		b = appendError(make([]byte, 0, 48+len(m.RequestID)+len(m.Code)+len(m.Message)), m)
	}
	return append(b, '}'), nil
}

// fixedSize bounds the member names and numbers of an http_request or
// http_response, so that the buffer is allocated once unless strings need
// escaping: the message may be 128 KiB, and regrowing copies it.
const fixedSize = 256

// isNilPointer reports a typed nil, which would otherwise panic in the
// encoder. The message types are all pointers, so this is the one nil case
// besides a nil interface.
func isNilPointer(m Message) bool {
	v := reflect.ValueOf(m)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

// The append functions write everything but the closing brace. Every member
// after "type" starts with a comma, which is why "type" comes first.

func appendType(b []byte, typ string) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	return append(b, '"')
}

func appendReady(b []byte, m *Ready) []byte {
	b = appendType(b, TypeReady)
	b = appendIntOmitZero(b, "version", int64(m.Version))
	b = appendStringOmitEmpty(b, "name", m.Name)
	b = appendStringOmitEmpty(b, "tunnel_id", m.TunnelID)
	b = appendStringOmitEmpty(b, "resume_token", m.ResumeToken)
	if m.Access != nil {
		// Rare and small: encoding/json is simplest here.
		a, _ := json.Marshal(m.Access)
		b = append(appendKey(b, "access"), a...)
	}
	return appendTrue(b, "pool", m.Pool)
}

func connectionEstablishedSize(m *ConnectionEstablished) int {
	return 256 + len(m.ConnectionID) + len(m.TunnelID) + len(m.PublicURL) +
		len(m.SubdomainURL) + len(m.PathBasedURL) + len(m.ResumeToken)
}

func appendConnectionEstablished(b []byte, m *ConnectionEstablished) []byte {
	b = appendType(b, TypeConnectionEstablished)
	b = appendIntOmitZero(b, "version", int64(m.Version))
	b = appendString(appendKey(b, "connection_id"), m.ConnectionID)
	b = appendString(appendKey(b, "tunnel_id"), m.TunnelID)
	b = appendString(appendKey(b, "public_url"), m.PublicURL)
	b = appendStringOmitEmpty(b, "subdomain_url", m.SubdomainURL)
	b = appendStringOmitEmpty(b, "path_based_url", m.PathBasedURL)
	b = appendStringOmitEmpty(b, "resume_token", m.ResumeToken)
	if l := m.Limits; l != nil {
		// The members of limits are written comma-first like all others;
		// the first comma then becomes the opening brace.
		b = appendKey(b, "limits")
		start := len(b)
		b = appendIntOmitZero(b, "max_body_bytes", l.MaxBodyBytes)
		b = appendIntOmitZero(b, "max_message_bytes", int64(l.MaxMessageBytes))
		b = appendIntOmitZero(b, "max_frame_bytes", int64(l.MaxFrameBytes))
		b = appendIntOmitZero(b, "heartbeat_interval_ms", l.HeartbeatMillis)
		b = appendIntOmitZero(b, "request_timeout_ms", l.RequestTimeoutMillis)
		if len(b) == start {
			b = append(b, '{', '}')
		} else {
			b[start] = '{'
			b = append(b, '}')
		}
	}
	return appendTrue(b, "pool", m.Pool)
}

func appendHTTPRequest(b []byte, m *HTTPRequest) []byte {
	b = appendType(b, TypeHTTPRequest)
	b = appendString(appendKey(b, "request_id"), m.RequestID)
	first := m.ChunkIndex == 0
	if first {
		b = appendString(appendKey(b, "method"), m.Method)
		b = appendString(appendKey(b, "uri"), m.URI)
		b = appendHeaders(appendKey(b, "headers"), m.Headers)
	} else {
		b = appendStringOmitEmpty(b, "method", m.Method)
		b = appendStringOmitEmpty(b, "uri", m.URI)
		if headersSize(m.Headers) > 0 {
			b = appendHeaders(appendKey(b, "headers"), m.Headers)
		}
	}
	b = appendString(appendKey(b, "body"), m.Body)
	if first {
		b = strconv.AppendInt(appendKey(b, "timestamp"), m.Timestamp, 10)
	} else {
		b = appendIntOmitZero(b, "timestamp", m.Timestamp)
	}
	b = appendStringOmitEmpty(b, "remote_addr", m.RemoteAddr)
	return appendChunk(b, m.ChunkIndex, m.ChunkCount, m.BodySize)
}

func appendHTTPResponse(b []byte, m *HTTPResponse) []byte {
	b = appendType(b, TypeHTTPResponse)
	b = appendString(appendKey(b, "request_id"), m.RequestID)
	if m.ChunkIndex == 0 {
		b = strconv.AppendInt(appendKey(b, "status_code"), int64(m.StatusCode), 10)
		b = appendHeaders(appendKey(b, "headers"), m.Headers)
	} else {
		b = appendIntOmitZero(b, "status_code", int64(m.StatusCode))
		if headersSize(m.Headers) > 0 {
			b = appendHeaders(appendKey(b, "headers"), m.Headers)
		}
	}
	b = appendString(appendKey(b, "body"), m.Body)
	b = appendIntOmitZero(b, "processing_time_ms", m.ProcessingTimeMillis)
	return appendChunk(b, m.ChunkIndex, m.ChunkCount, m.BodySize)
}

// appendChunk writes the chunking extension. chunk_index 0 is written on the
// first message of a chunked body, so that a receiver sees the whole
// extension on every chunk.
func appendChunk(b []byte, index, count int, size int64) []byte {
	if index != 0 || count > 1 {
		b = strconv.AppendInt(appendKey(b, "chunk_index"), int64(index), 10)
	}
	b = appendIntOmitZero(b, "chunk_count", int64(count))
	return appendIntOmitZero(b, "body_size", size)
}

func appendError(b []byte, m *Error) []byte {
	b = appendType(b, TypeError)
	b = appendStringOmitEmpty(b, "request_id", m.RequestID)
	b = appendString(appendKey(b, "code"), m.Code)
	return appendString(appendKey(b, "message"), m.Message)
}

// appendKey writes `,"key":`. Keys are literals of this package and need no
// escaping.
func appendKey(b []byte, key string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

// appendTrue writes key: true when v is, nothing otherwise.
func appendTrue(b []byte, key string, v bool) []byte {
	if !v {
		return b
	}
	return append(appendKey(b, key), "true"...)
}

func appendStringOmitEmpty(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(appendKey(b, key), s)
}

func appendIntOmitZero(b []byte, key string, n int64) []byte {
	if n == 0 {
		return b
	}
	return strconv.AppendInt(appendKey(b, key), n, 10)
}

// headersSize estimates the encoded size of h; it is zero exactly when h has
// no name with a value, which is when Marshal treats it as empty.
func headersSize(h map[string][]string) int {
	n := 0
	for k, vs := range h {
		if len(vs) == 0 {
			continue
		}
		n += len(k) + 6
		for _, v := range vs {
			n += len(v) + 3
		}
	}
	return n
}

// appendHeaders writes h as an object of arrays with its names sorted, so
// the encoding is deterministic. Names without values are skipped: they
// carry nothing, and Unmarshal drops them too.
func appendHeaders(b []byte, h map[string][]string) []byte {
	// Sixteen names cover most requests without a heap allocation.
	keys := make([]string, 0, 16)
	for k, vs := range h {
		if len(vs) > 0 {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(appendString(b, k), ':', '[')
		for j, v := range h[k] {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendString(b, v)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string. It escapes what JSON requires (the
// quote, the backslash, control characters) and replaces invalid UTF-8 with
// U+FFFD, as encoding/json does when decoding, so that a value survives a
// round trip. Unlike encoding/json it leaves <, > and & alone: the output is
// never embedded in HTML, and base64 bodies and URIs stay readable.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
