package tunnel

import (
	"fmt"
	"sync"
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
	// Delay; Err says why attempt Attempt-1 failed (nil for the first).
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
	Err      error         // why the connection dropped (EventDisconnected), or why the previous attempt failed (EventReconnecting; nil for the first)
	// Transport is the transport of the new connection (EventConnected):
	// TransportRaw or TransportWebSocket.
	Transport Transport
}

// emit hands an event to the WithEvents callback, if any, without waiting
// for it.
func (l *Listener) emit(e Event) { l.events.push(e) }

// maxPendingEvents bounds the events waiting for a slow callback.
const maxPendingEvents = 1000

// eventQueue delivers a Listener's events to the WithEvents callback one at
// a time and in order, on a goroutine that runs while events are pending.
// The supervisor and the heartbeat, which emit them, never wait for the
// callback, and the callback may call the Listener's methods, Close
// included, without deadlocking with them.
type eventQueue struct {
	fn func(Event)

	mu      sync.Mutex
	pending []Event
	running bool // a goroutine is delivering pending
}

// push queues e; past maxPendingEvents waiting, it drops e.
func (q *eventQueue) push(e Event) {
	if q.fn == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) >= maxPendingEvents {
		return
	}
	q.pending = append(q.pending, e)
	if !q.running {
		q.running = true
		go q.run()
	}
}

func (q *eventQueue) run() {
	for {
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.pending = nil
			q.running = false
			q.mu.Unlock()
			return
		}
		e := q.pending[0]
		q.pending = q.pending[1:]
		q.mu.Unlock()
		q.fn(e)
	}
}
