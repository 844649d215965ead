package ratelimittest

import (
	"sync"
	"time"
)

// Clock is a fake clock for limiters under test: it stands still until
// Advance moves it. Pass its Now method where a limiter takes a clock
// function.
//
// A Clock is safe for concurrent use. The zero value reads the zero
// time.Time; use NewClock to start elsewhere.
//
// The suite does not run in a testing/synctest bubble instead: the
// limiters it checks talk to real Redis and DynamoDB servers over the
// network, which a bubble is not for (its clients' goroutines and timers
// would belong to the bubble, and the server's clock, which expires keys,
// is not the bubble's), so their time comes from a Clock they are handed.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock that reads start until advanced. The monotonic
// clock reading of start, if any, is dropped so that the times it returns
// compare and format like wall-clock times from a backend.
func NewClock(start time.Time) *Clock {
	return &Clock{now: start.Round(0)}
}

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d; a negative d moves it back, as a
// misbehaving wall clock might.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
