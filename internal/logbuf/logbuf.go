// Package logbuf is a log destination for tests: a buffer that any number
// of goroutines may write to while a test reads what they logged. It
// imports nothing of the module, so that the tests of every package,
// including the root package's own, can use it.
package logbuf

import (
	"sync"
	"time"
)

// Buffer collects what is written to it. The zero value is ready to use; it
// is safe for concurrent use.
type Buffer struct {
	mu      sync.Mutex
	b       []byte
	written chan struct{} // closed by the next Write; nil until WaitFor
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b = append(b.b, p...)
	if b.written != nil {
		close(b.written)
		b.written = nil
	}
	return len(p), nil
}

// WaitFor waits until everything written so far satisfies ok, for at most
// timeout, and returns what was written and whether it did: a test waits
// for the log line of something that happens after what it can observe.
func (b *Buffer) WaitFor(timeout time.Duration, ok func(logged string) bool) (string, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		s := string(b.b)
		if b.written == nil {
			b.written = make(chan struct{})
		}
		written := b.written
		b.mu.Unlock()
		if ok(s) {
			return s, true
		}
		select {
		case <-written:
		case <-deadline.C:
			return s, false
		}
	}
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b)
}
