package tunnel

import "sync"

// proxyBuffers recycles the ReverseProxy's copy buffers, which would
// otherwise cost a 32 KiB allocation per request.
var proxyBuffers = &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}}

type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte { return *p.pool.Get().(*[]byte) }

func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }
