package apigwtest

import (
	"maps"
	"sync"
)

// Stats counts what the emulator did since Start. A forwarded request's
// cost in Lambda invocations is the difference of Invocations() around it.
type Stats struct {
	// Lambda invocations, by route. An invocation counts when the handler
	// is called, whatever its outcome.
	ConnectInvocations    int64 // WebSocket $connect
	DefaultInvocations    int64 // WebSocket $default, one per client message
	DisconnectInvocations int64 // WebSocket $disconnect
	HTTPInvocations       int64 // HTTP API, either payload format

	// RefusedConnects counts upgrades refused by $connect (non-2xx status,
	// error or timeout).
	RefusedConnects int64

	// MessagesIn counts complete data messages received from clients and
	// accepted (within the size limits).
	MessagesIn int64

	// MessagesOut counts messages delivered to clients: @connections
	// posts, route responses and error notices.
	MessagesOut int64

	// Throttles counts invocations refused for want of concurrency
	// (Config.WebSocketConcurrency, Config.HTTPConcurrency), on every
	// route; they are not counted as invocations.
	Throttles int64

	// MeteredMessages counts messages in both directions, client
	// messages and messages delivered to clients, in the 32 KB units
	// (32768 bytes here) in which API Gateway bills WebSocket messages:
	// a 100 KB message is 4.
	MeteredMessages int64

	// Posts counts @connections POSTs answered 200; GonePosts those
	// answered 410 GoneException; ThrottledPosts those answered 429
	// LimitExceededException because the client's buffer was full.
	Posts          int64
	GonePosts      int64
	ThrottledPosts int64

	// ConnectionGets counts @connections GETs, answered or not.
	ConnectionGets int64

	// Closes counts ended connections by close code: the code the
	// emulator sent (1001 idle or lifetime, 1009 size, 1000 DELETE, ...),
	// the client's code when the client closed first (1005 for a close
	// frame without one), or 1006 when the TCP connection ended without a
	// close frame.
	Closes map[int]int64
}

// ManagementCalls returns the number of @connections API calls answered
// (posts, GETs; DELETEs are not counted).
func (s Stats) ManagementCalls() int64 {
	return s.Posts + s.GonePosts + s.ThrottledPosts + s.ConnectionGets
}

// meterUnit is the size of API Gateway's billing unit of WebSocket
// messages.
const meterUnit = 32 << 10

// meteredUnits returns the billed units of a message of n bytes.
func meteredUnits(n int) int64 { return max(1, int64((n+meterUnit-1)/meterUnit)) }

// Invocations returns the total number of Lambda invocations.
func (s Stats) Invocations() int64 {
	return s.ConnectInvocations + s.DefaultInvocations + s.DisconnectInvocations + s.HTTPInvocations
}

// Stats returns a snapshot of the counters.
func (e *Emulator) Stats() Stats { return e.stats.snapshot() }

// statsCounter is the mutable form of Stats.
type statsCounter struct {
	mu sync.Mutex
	s  Stats
}

func (c *statsCounter) add(f func(*Stats)) {
	c.mu.Lock()
	f(&c.s)
	c.mu.Unlock()
}

func (c *statsCounter) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.s
	s.Closes = maps.Clone(c.s.Closes)
	if s.Closes == nil {
		s.Closes = map[int]int64{}
	}
	return s
}

func (c *statsCounter) closed(code int) {
	c.add(func(s *Stats) {
		if s.Closes == nil {
			s.Closes = map[int]int64{}
		}
		s.Closes[code]++
	})
}
