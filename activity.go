package tunnel

import (
	"context"
	"sync"
)

// activity counts work in progress that a graceful stop waits for: the
// gateway's public requests and agent handlers, a json-mode connection's
// requests, the connections a Listener has handed out. Unlike a
// sync.WaitGroup it refuses new work once closed, so that starting work
// and waiting for it cannot race, and its wait takes a ctx.
type activity struct {
	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{} // closed when n drops to zero while waited for
}

// enter starts a piece of work; it returns false once close was called.
func (a *activity) enter() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.n++
	return true
}

// leave ends a piece of work started by a successful enter.
func (a *activity) leave() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n--
	if a.n == 0 && a.idle != nil {
		close(a.idle)
		a.idle = nil
	}
}

// close refuses new work.
func (a *activity) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
}

// wait waits until no work is in progress, or ctx ends.
func (a *activity) wait(ctx context.Context) error {
	a.mu.Lock()
	if a.n == 0 {
		a.mu.Unlock()
		return nil
	}
	if a.idle == nil {
		a.idle = make(chan struct{})
	}
	idle := a.idle
	a.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
