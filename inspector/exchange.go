package inspector

import (
	"bytes"
	"net/http"
	"slices"
	"time"
)

// Kind says what an exchange turned into once its response began.
type Kind string

const (
	// KindHTTP is a request and its response.
	KindHTTP Kind = "http"
	// KindWebSocket is a request upgraded to a WebSocket (status 101): its
	// messages are in Exchange.Frames.
	KindWebSocket Kind = "websocket"
	// KindSSE is a response of type text/event-stream: its events are in
	// Exchange.Events.
	KindSSE Kind = "sse"
)

// Exchange is one recorded request and its response. The values the
// Recorder returns are copies that the caller owns.
//
// An exchange is recorded from the moment its request reaches the
// Middleware; Status, ResponseHeader and HeaderTime are zero until the
// handler starts its response, and Done is false until the handler has
// returned (for a WebSocket, until its connection has closed).
type Exchange struct {
	// ID identifies the exchange within its Recorder: 1 for the first
	// request, then one more for each request in the order they arrived.
	ID uint64
	// ReplayOf is the ID of the exchange this one replays, or 0 for a
	// request that came from a client.
	ReplayOf uint64
	// Kind is KindHTTP until the response shows otherwise.
	Kind Kind

	// Start is when the request reached the Middleware.
	Start time.Time
	// RemoteAddr is the client's address as the server saw it
	// (http.Request.RemoteAddr); under a tunnel, the public client's.
	RemoteAddr string
	// Method, URL (the request target: path and query as received), Host
	// and Proto are the request's.
	Method, URL, Host, Proto string
	// RequestHeader is the request's header with secret values masked
	// (see Options.MaskHeaders).
	RequestHeader http.Header
	// RequestBody is the request body as the handler read it.
	RequestBody Body

	// Status is the response's status code; 0 until the response starts,
	// and 0 for good if the handler panicked before it.
	Status int
	// ResponseHeader is the response's header as the handler set it, with
	// secret values masked.
	ResponseHeader http.Header
	// ResponseBody is the response body as the handler wrote it.
	ResponseBody Body

	// HeaderTime is the time from Start to the response's header; Duration
	// the time from Start to the end of the exchange. Both are zero until
	// then.
	HeaderTime, Duration time.Duration
	// Done reports that the exchange has ended.
	Done bool

	// Frames are the first WebSocket frames each way, in the order they
	// were seen, with at most Options.MaxBodyBytes of payload (and frame
	// overhead) kept for each direction. FrameCount counts every frame,
	// kept or not.
	Frames     []Frame
	FrameCount int64
	// Events are the first Server-Sent Events of the response, at most
	// Options.MaxBodyBytes of them (with their overhead). EventCount
	// counts every event, kept or not.
	Events     []Event
	EventCount int64
}

// Body is the start of a request or response body, and its size.
//
// For a WebSocket, the bodies are the framed bytes each way after the
// upgrade: Size counts them and Data is empty (the frames are in
// Exchange.Frames). For another protocol taken over with Hijack, they are
// the raw bytes each way.
type Body struct {
	// Data holds the first bytes of the body, at most
	// Options.MaxBodyBytes.
	Data []byte
	// Size counts the bytes of the body seen so far, kept or not.
	Size int64
	// Complete reports that Size is the whole body: the request body was
	// read to its end, or the handler finished writing the response. A
	// request body the handler left unread is not complete.
	Complete bool
}

// Truncated reports whether bytes of the body were seen but not kept.
func (b Body) Truncated() bool { return b.Size > int64(len(b.Data)) }

// Frame is one WebSocket frame (RFC 6455 section 5.2).
type Frame struct {
	// Time is when the frame's header was seen.
	Time time.Time
	// FromClient is true for a frame the client sent, false for one the
	// server sent.
	FromClient bool
	// Opcode is the frame's opcode: 0x0 continuation, 0x1 text, 0x2
	// binary, 0x8 close, 0x9 ping, 0xA pong.
	Opcode byte
	// Fin reports the frame's FIN bit: the last frame of its message.
	Fin bool
	// Length is the payload's length on the wire.
	Length int64
	// Payload holds the first bytes of the payload, unmasked; fewer than
	// Length when the direction's budget ran out.
	Payload []byte
}

// Event is one Server-Sent Event (the HTML Living Standard's "event
// stream" format).
type Event struct {
	// Time is when the event was complete (its blank line was seen).
	Time time.Time
	// Type is the event's "event:" field; "" means "message".
	Type string
	// ID is its "id:" field, or "".
	ID string
	// Data is its data, with the lines of several "data:" fields joined
	// by "\n".
	Data string
	// Truncated reports that Data was cut to the budget.
	Truncated bool
}

// clone returns a deep copy of e that shares no memory with it.
func (e *Exchange) clone() Exchange {
	c := *e
	c.RequestHeader = e.RequestHeader.Clone()
	c.ResponseHeader = e.ResponseHeader.Clone()
	c.RequestBody.Data = bytes.Clone(e.RequestBody.Data)
	c.ResponseBody.Data = bytes.Clone(e.ResponseBody.Data)
	c.Frames = slices.Clone(e.Frames)
	for i := range c.Frames {
		c.Frames[i].Payload = bytes.Clone(c.Frames[i].Payload)
	}
	c.Events = slices.Clone(e.Events)
	return c
}

// view returns a copy of e for reading outside the Recorder's lock. It
// shares the memory that is never written again once visible (headers,
// the kept bytes of bodies and payloads, events) and copies the rest.
func (e *Exchange) view() Exchange {
	c := *e
	c.RequestBody.Data = e.RequestBody.Data[:len(e.RequestBody.Data):len(e.RequestBody.Data)]
	c.ResponseBody.Data = e.ResponseBody.Data[:len(e.ResponseBody.Data):len(e.ResponseBody.Data)]
	c.Frames = slices.Clone(e.Frames)
	for i := range c.Frames {
		p := c.Frames[i].Payload
		c.Frames[i].Payload = p[:len(p):len(p)]
	}
	c.Events = e.Events[:len(e.Events):len(e.Events)]
	return c
}
