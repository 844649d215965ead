package tunnel

import (
	"fmt"
	"time"
)

// EventKind says what an Event reports.
type EventKind int

// The kinds of Event.
const (
	// EventConnected: the tunnel is up, at the first connection or after
	// a reconnect. Attempt is the number of the reconnect attempt that
	// succeeded, 0 for the first connection.
	EventConnected EventKind = iota + 1
	// EventDisconnected: the connection to the gateway dropped; Err says
	// why. Reconnect attempts follow.
	EventDisconnected
	// EventReconnecting: reconnect attempt number Attempt starts after
	// Delay.
	EventReconnecting
	// EventHeartbeat: a keepalive ping came back after RTT.
	EventHeartbeat
)

// String returns "connected", "disconnected", "reconnecting" or
// "heartbeat".
func (k EventKind) String() string {
	switch k {
	case EventConnected:
		return "connected"
	case EventDisconnected:
		return "disconnected"
	case EventReconnecting:
		return "reconnecting"
	case EventHeartbeat:
		return "heartbeat"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is something that happened to a Listener's connection to its
// gateway. Fields that do not apply to the Kind are zero.
type Event struct {
	Kind     EventKind
	TunnelID string
	URL      string
	Gateway  string        // the gateway URL involved, token redacted
	Attempt  int           // reconnect attempt number (EventConnected, EventReconnecting)
	Delay    time.Duration // wait before the attempt (EventReconnecting)
	RTT      time.Duration // round-trip time (EventHeartbeat)
	Err      error         // why the connection dropped (EventDisconnected)
}

// emit delivers an event to the WithEvents callback, if any.
func (l *Listener) emit(e Event) {
	if l.opts.events != nil {
		l.opts.events(e)
	}
}
