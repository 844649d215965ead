package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Unmarshal decodes one message of at most limit bytes; limit <= 0 means
// [MaxMessageBytes]. The caller picks the limit for where the message was
// read: [MaxHandshakeBytes] during the handshake, [MaxControlBytes] on a
// control stream, the announced message limit in json mode.
//
// The returned message is one of this package's pointer types, owned by the
// caller. It never aliases data. Headers is nil rather than empty, and
// header names without values are dropped, so decoding is canonical:
// encoding the result with [Marshal] and decoding again yields an equal
// value.
//
// Errors wrap one sentinel:
//   - [ErrTooLarge] when len(data) > limit, checked before any parsing;
//   - [ErrUnknownType] for a well-formed object whose "type" is a string
//     this package does not know — receivers ignore such messages, since
//     new types are additive;
//   - [ErrMalformed] for everything else: not JSON, not an object, no
//     "type" or an empty one, a member of the wrong JSON type, trailing
//     data, conflicting "type" members, a negative number, or a missing
//     required member (see the message types, and spec.md).
//
// Unknown members are ignored. Member names are matched as encoding/json
// matches them, so a differently cased name is accepted; senders use the
// exact names. Unmarshal never panics.
func Unmarshal(data []byte, limit int) (Message, error) {
	if limit <= 0 {
		limit = MaxMessageBytes
	}
	if len(data) > limit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), limit)
	}
	typ, rest, ok := peekType(data)
	if ok && isBare(data[rest:]) {
		// {"type":"ping"} and its kin are most of the traffic on an idle
		// json-mode connection; they need no parser.
		switch typ {
		case TypePing:
			return new(Ping), nil
		case TypePong:
			return new(Pong), nil
		case TypeDrain:
			return new(Drain), nil
		}
	}
	if !ok {
		var head struct {
			Type *string `json:"type"`
		}
		if err := json.Unmarshal(data, &head); err != nil {
			return nil, malformed(err)
		}
		if head.Type == nil || *head.Type == "" {
			return nil, fmt.Errorf("%w: no type", ErrMalformed)
		}
		typ = *head.Type
	}

	var (
		m       Message
		wireTyp *string
		target  any
	)
	switch typ {
	case TypePing, TypePong, TypeDrain:
		w := new(wireEmpty)
		wireTyp, target = &w.Type, w
		switch typ {
		case TypePing:
			m = new(Ping)
		case TypePong:
			m = new(Pong)
		default:
			m = new(Drain)
		}
	case TypeReady:
		w := new(wireReady)
		m, wireTyp, target = &w.Ready, &w.Type, w
	case TypeConnectionEstablished:
		w := new(wireConnectionEstablished)
		m, wireTyp, target = &w.ConnectionEstablished, &w.Type, w
	case TypeHTTPRequest:
		w := new(wireHTTPRequest)
		m, wireTyp, target = &w.HTTPRequest, &w.Type, w
	case TypeHTTPResponse:
		w := new(wireHTTPResponse)
		m, wireTyp, target = &w.HTTPResponse, &w.Type, w
	case TypeError:
		w := new(wireError)
		m, wireTyp, target = &w.Error, &w.Type, w
	default:
		// peekType only succeeds for known types, so data has been parsed
		// by the head decode above and is a well-formed object.
		return nil, fmt.Errorf("%w %q", ErrUnknownType, typ)
	}

	if err := json.Unmarshal(data, target); err != nil {
		return nil, malformed(err)
	}
	// encoding/json keeps the last of repeated members (matched without
	// regard to case), while peekType read the first: a message whose type
	// members disagree has no single meaning.
	if *wireTyp != typ {
		return nil, fmt.Errorf("%w: conflicting type members %q and %q", ErrMalformed, typ, *wireTyp)
	}
	switch m := m.(type) {
	case *HTTPRequest:
		m.Headers = canonicalHeaders(m.Headers)
	case *HTTPResponse:
		m.Headers = canonicalHeaders(m.Headers)
	}
	if err := validate(m); err != nil {
		return nil, err
	}
	return m, nil
}

// The wire structs add the "type" member to a message type for decoding. The
// message is embedded by value so that one allocation holds both; Unmarshal
// returns a pointer to the embedded message.
type (
	wireEmpty struct {
		Type string `json:"type"`
	}
	wireReady struct {
		Type string `json:"type"`
		Ready
	}
	wireConnectionEstablished struct {
		Type string `json:"type"`
		ConnectionEstablished
	}
	wireHTTPRequest struct {
		Type string `json:"type"`
		HTTPRequest
	}
	wireHTTPResponse struct {
		Type string `json:"type"`
		HTTPResponse
	}
	wireError struct {
		Type string `json:"type"`
		Error
	}
)

// malformed wraps an encoding/json error, keeping it reachable with
// errors.As for callers that want the offset of a syntax error.
func malformed(err error) error {
	return fmt.Errorf("%w: %w", ErrMalformed, err)
}

// canonicalHeaders drops names without values and turns an empty map into
// nil, the forms Marshal cannot tell apart from absence.
func canonicalHeaders(h map[string][]string) map[string][]string {
	for k, vs := range h {
		if len(vs) == 0 {
			delete(h, k)
		}
	}
	if len(h) == 0 {
		return nil
	}
	return h
}

// peekType reads the type of a message that starts with a "type" member, as
// every message Marshal writes does, without parsing the rest: one parse of
// the whole message instead of two. It succeeds only for a known type
// spelled without escapes, and returns the offset just past the type's
// closing quote; anything else takes the general path.
func peekType(data []byte) (typ string, rest int, ok bool) {
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '{' {
		return "", 0, false
	}
	i = skipSpace(data, i+1)
	const key = `"type"`
	if !bytes.HasPrefix(data[i:], []byte(key)) {
		return "", 0, false
	}
	i = skipSpace(data, i+len(key))
	if i == len(data) || data[i] != ':' {
		return "", 0, false
	}
	i = skipSpace(data, i+1)
	if i == len(data) || data[i] != '"' {
		return "", 0, false
	}
	i++
	n := bytes.IndexByte(data[i:], '"')
	if n < 0 {
		return "", 0, false
	}
	rest = i + n + 1
	// The switch converts without allocating and returns the constant, so
	// the fast path allocates nothing for the type name.
	switch string(data[i : i+n]) {
	case TypePing:
		return TypePing, rest, true
	case TypePong:
		return TypePong, rest, true
	case TypeDrain:
		return TypeDrain, rest, true
	case TypeReady:
		return TypeReady, rest, true
	case TypeConnectionEstablished:
		return TypeConnectionEstablished, rest, true
	case TypeHTTPRequest:
		return TypeHTTPRequest, rest, true
	case TypeHTTPResponse:
		return TypeHTTPResponse, rest, true
	case TypeError:
		return TypeError, rest, true
	}
	return "", 0, false
}

// isBare reports whether rest, what follows the type member, only closes
// the object: the message has no other member.
func isBare(rest []byte) bool {
	i := skipSpace(rest, 0)
	return i < len(rest) && rest[i] == '}' && skipSpace(rest, i+1) == len(rest)
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}
