// Package logbuf is a log destination for tests: a buffer that any number
// of goroutines may write to while a test reads what they logged. It
// imports nothing of the module, so that the tests of every package,
// including the root package's own, can use it.
package logbuf

import "sync"

// Buffer collects what is written to it. The zero value is ready to use; it
// is safe for concurrent use.
type Buffer struct {
	mu sync.Mutex
	b  []byte
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b = append(b.b, p...)
	return len(p), nil
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.b)
}
