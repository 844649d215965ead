package tunnel

import "sync"

// proxyBufferSize is the size of the ReverseProxies' copy buffers: large
// enough that a bulk body moves in few writes.
const proxyBufferSize = 256 << 10

// proxyBuffers recycles the ReverseProxies' copy buffers, which would
// otherwise cost an allocation of proxyBufferSize per request.
var proxyBuffers = &bufferPool{pool: sync.Pool{New: func() any { return new([proxyBufferSize]byte) }}}

// bufferPool is an httputil.BufferPool of proxyBufferSize buffers. It
// pools them as array pointers, which a slice converts back to without
// allocating: pooling the slices themselves (as *[]byte) cost every Put an
// allocation of the slice header.
type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte { return p.pool.Get().(*[proxyBufferSize]byte)[:] }

// Put takes back a buffer that Get returned; any other slice is left to
// the garbage collector.
func (p *bufferPool) Put(b []byte) {
	if cap(b) != proxyBufferSize {
		return
	}
	p.pool.Put((*[proxyBufferSize]byte)(b[:proxyBufferSize]))
}
