package tunnel

import (
	"sync"
	"testing"
)

// TestBufferPoolPutDoesNotAllocate pins that returning a copy buffer costs
// nothing (pooling slices as *[]byte cost every request an allocation),
// that Get hands out full-size buffers, and that slices not of the pool's
// size are not taken.
func TestBufferPoolPutDoesNotAllocate(t *testing.T) {
	p := &bufferPool{pool: sync.Pool{New: func() any { return new([proxyBufferSize]byte) }}}
	b := p.Get()
	if len(b) != proxyBufferSize {
		t.Fatalf("Get: %d bytes, want %d", len(b), proxyBufferSize)
	}
	if n := testing.AllocsPerRun(100, func() { p.Put(b) }); n != 0 {
		t.Errorf("Put: %v allocations, want 0", n)
	}
	// A slice of another size is dropped, never handed out by Get.
	q := &bufferPool{pool: sync.Pool{New: func() any { return new([proxyBufferSize]byte) }}}
	q.Put(make([]byte, 10))
	if got := q.Get(); len(got) != proxyBufferSize {
		t.Fatalf("Get after a foreign Put: %d bytes, want %d", len(got), proxyBufferSize)
	}
}
