// Package protocol is the wire layer between a tunnel agent and a gateway:
// the message types, their JSON encoding, the size caps every reader
// enforces, and the constants both sides must agree on.
//
// The normative description of the protocol is spec.md in this directory;
// this package is its reference encoding. Everything above the wire — the
// WebSocket transport, the yamux session of mux mode, request
// reassembly, routing — lives in other packages, and this one imports
// nothing from the rest of the module so that every one of them can depend
// on it.
//
// A connection speaks one of two modes, chosen by WebSocket subprotocol:
// mux mode ([SubprotocolMux]) carries a yamux session after a JSON
// handshake; json mode ([SubprotocolJSON], or no subprotocol at all) carries
// JSON messages only and is byte-compatible with the original agent. Both
// modes share the handshake messages [Ready], [ConnectionEstablished] and
// [Error].
//
// [Marshal] and [Unmarshal] convert between [Message] values and their wire
// form. Unmarshal checks the size cap before it looks at a byte, so a
// reader can hand it whatever the transport delivered. Both functions are
// safe for concurrent use; messages are plain values that the caller owns.
package protocol
