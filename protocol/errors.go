package protocol

import "errors"

// Sentinel errors of [Marshal], [Unmarshal] and [DecodeBody]. The errors those
// functions return wrap exactly one of them, with the detail appended; branch
// with errors.Is, never on the text.
var (
	// ErrTooLarge reports a message longer than the reader's limit. The
	// message was not parsed.
	ErrTooLarge = errors.New("protocol: message too large")

	// ErrUnknownType reports a well-formed JSON object whose type this
	// package does not know. New types are additive, so a receiver ignores
	// such a message rather than closing the connection.
	ErrUnknownType = errors.New("protocol: unknown message type")

	// ErrMalformed reports anything else a message cannot be: not JSON, not
	// an object, without a type, with a member of the wrong JSON type, with
	// trailing data, or missing a member its type requires. When the cause
	// is an encoding/json error, that error is wrapped too.
	ErrMalformed = errors.New("protocol: malformed message")
)
