package inspector

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Defaults of Options' zero fields.
const (
	DefaultMaxExchanges = 500
	DefaultMaxBytes     = 32 << 20
	DefaultMaxBodyBytes = 64 << 10
)

// Overheads counted for what a record holds besides its bytes: the
// structures, slice and map headers, and the allocator's rounding. They
// keep the count close to the heap the records take (a test compares the
// two).
const (
	exchangeOverhead = 1 << 10
	headerOverhead   = 64 // per header value
	frameOverhead    = 96
	eventOverhead    = 128
)

// Options configures a Recorder. The zero value (or a nil *Options) is
// ready to use: 500 exchanges, 32 MiB, 64 KiB of each body, the default
// secret headers masked, no replay, the page answering loopback names
// only.
type Options struct {
	// MaxExchanges bounds how many exchanges are kept; when a new one would
	// exceed it, the oldest is dropped. Zero means DefaultMaxExchanges.
	MaxExchanges int

	// MaxBytes bounds the memory the kept exchanges take, as the Recorder
	// counts it: headers, the kept bytes of bodies, frames and events, and
	// a fixed overhead for each. The oldest exchanges are dropped to stay
	// within it, even one still in progress (it is then no longer
	// recorded); an exchange that alone exceeds it is dropped too. Zero
	// means DefaultMaxBytes.
	MaxBytes int64

	// MaxBodyBytes is how much of each body is kept: of the request body,
	// of the response body, and of the WebSocket frames (payload and
	// overhead) each way or the events of a stream. The rest is counted,
	// not kept. Zero means DefaultMaxBodyBytes; a negative value keeps no
	// body at all.
	MaxBodyBytes int

	// MaskHeaders names headers whose values are masked in what is kept,
	// besides those always masked: Authorization, Proxy-Authorization,
	// Cookie and Set-Cookie. Names are case-insensitive. A masked value
	// keeps what is not secret (an authorization's scheme, the names and
	// attributes of cookies) and shows Masked in place of the rest.
	MaskHeaders []string

	// Replay is the handler that Replay sends a captured request to again:
	// normally the local service, or the handler that Middleware wraps
	// (not the wrapped one; if it is, the exchange is still recorded
	// once). ReplayTo makes one for a service at a URL. Nil means no
	// replay: Replay returns ErrNoReplay and the page shows no replay
	// button.
	Replay http.Handler

	// AllowedHosts lists the host names, besides loopback ones (localhost,
	// *.localhost, 127.0.0.0/8, ::1), by which Handler may be reached, for
	// a page served on another interface on purpose. A request whose Host
	// is none of them is refused, which defeats DNS rebinding. Nil means
	// loopback names only.
	AllowedHosts []string
}

// Sentinel errors of Replay and Next.
var (
	// ErrNotFound means no exchange with that ID is kept: it never existed
	// or was dropped.
	ErrNotFound = errors.New("inspector: no such exchange")
	// ErrNoReplay means the Recorder has no Options.Replay.
	ErrNoReplay = errors.New("inspector: replay is not configured")
	// ErrNotReplayable means the exchange cannot be sent again as it was
	// recorded: a WebSocket, or a request body that was not kept whole.
	// The error wrapping it says which.
	ErrNotReplayable = errors.New("inspector: exchange cannot be replayed")
)

// Recorder keeps a bounded log of HTTP exchanges. Create one with New; the
// zero Recorder is not usable. Its methods are safe for concurrent use: the
// Middleware may serve any number of requests at once while the page,
// Exchanges and Next read the log.
type Recorder struct {
	opts Options
	mask map[string]bool // canonical header names
	now  func() time.Time

	mu      sync.Mutex
	log     []*entry // oldest first; IDs increase
	bytes   int64    // the sum of the entries' cost
	nextID  uint64
	rev     uint64 // bumped at each visible change
	doneSeq uint64 // the number of exchanges that have ended
	taken   uint64 // the doneSeq of the last exchange Next returned
	dropped uint64
	clears  uint64
	changed chan struct{} // closed and replaced at each visible change

	streams chan struct{} // a token per live stream of the page
}

// entry is a kept exchange and its bookkeeping, guarded by Recorder.mu.
type entry struct {
	ex      Exchange
	cost    int64
	rev     uint64 // Recorder.rev at its last visible change
	doneSeq uint64 // its place among ended exchanges, 0 while in progress
	inLog   bool

	frameBudget [2]int64 // bytes of frames still to keep: [from server, from client]
	eventBudget int64
}

// New returns a Recorder configured by opts, which it copies; nil means
// the zero Options.
func New(opts *Options) *Recorder {
	var o Options
	if opts != nil {
		o = *opts
	}
	o.MaskHeaders = append([]string(nil), o.MaskHeaders...)
	o.AllowedHosts = append([]string(nil), o.AllowedHosts...)
	if o.MaxExchanges <= 0 {
		o.MaxExchanges = DefaultMaxExchanges
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	switch {
	case o.MaxBodyBytes == 0:
		o.MaxBodyBytes = DefaultMaxBodyBytes
	case o.MaxBodyBytes < 0:
		o.MaxBodyBytes = 0
	}
	mask := map[string]bool{}
	for _, h := range append(defaultMasked[:], o.MaskHeaders...) {
		mask[http.CanonicalHeaderKey(h)] = true
	}
	return &Recorder{opts: o, mask: mask, now: time.Now, changed: make(chan struct{}), streams: make(chan struct{}, maxStreams)}
}

// Stats describes what a Recorder holds.
type Stats struct {
	// Exchanges is how many exchanges are kept.
	Exchanges int
	// Bytes is the memory they take as the Recorder counts it (see
	// Options.MaxBytes); never more than MaxBytes.
	Bytes int64
	// Dropped counts the exchanges dropped to stay within the bounds.
	Dropped uint64
}

// Stats returns the Recorder's current counts.
func (r *Recorder) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Stats{Exchanges: len(r.log), Bytes: r.bytes, Dropped: r.dropped}
}

// Exchanges returns copies of the kept exchanges, oldest first, including
// those in progress.
func (r *Recorder) Exchanges() []Exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Exchange, len(r.log))
	for i, e := range r.log {
		out[i] = e.ex.clone()
	}
	return out
}

// Get returns a copy of the exchange with that ID, if it is kept.
func (r *Recorder) Get(id uint64) (Exchange, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.findLocked(id); e != nil {
		return e.ex.clone(), true
	}
	return Exchange{}, false
}

// Next returns the oldest exchange that has ended and that no call to Next
// has returned yet, waiting for one until ctx is done. It works as a
// queue: each ended exchange goes to one caller, in the order they ended,
// whether it ended before or after the call; exchanges dropped before
// they were taken are skipped. It is what a test uses to wait for the next
// delivery of a webhook:
//
//	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
//	defer cancel()
//	ex, err := rec.Next(ctx)
//
// When ctx ends first the error wraps ctx.Err() (context.DeadlineExceeded
// is a net.Error whose Timeout is true).
func (r *Recorder) Next(ctx context.Context) (Exchange, error) {
	for {
		r.mu.Lock()
		var next *entry
		for _, e := range r.log {
			if e.doneSeq > r.taken && (next == nil || e.doneSeq < next.doneSeq) {
				next = e
			}
		}
		if next != nil {
			r.taken = next.doneSeq
			ex := next.ex.clone()
			r.mu.Unlock()
			return ex, nil
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return Exchange{}, fmt.Errorf("inspector: waiting for the next exchange: %w", ctx.Err())
		}
	}
}

// Clear drops every kept exchange. Exchanges in progress go on without
// being recorded; IDs keep increasing.
func (r *Recorder) Clear() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.log {
		r.releaseLocked(e)
	}
	clear(r.log)
	r.log = r.log[:0]
	r.bytes = 0
	r.clears++
	r.notifyLocked(nil)
}

// findLocked returns the kept entry with that ID, or nil.
func (r *Recorder) findLocked(id uint64) *entry {
	lo, hi := 0, len(r.log)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.log[m].ex.ID < id {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(r.log) && r.log[lo].ex.ID == id {
		return r.log[lo]
	}
	return nil
}

// notifyLocked marks e (if any) changed and wakes those waiting for a
// change.
func (r *Recorder) notifyLocked(e *entry) {
	r.rev++
	if e != nil {
		e.rev = r.rev
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// addLocked puts e at the end of the log, counting cost for it.
func (r *Recorder) addLocked(e *entry, cost int64) {
	r.nextID++
	e.ex.ID = r.nextID
	e.inLog = true
	r.log = append(r.log, e)
	r.growLocked(e, cost)
	r.notifyLocked(e)
}

// growLocked adds delta to e's cost, then drops the oldest entries until
// the log is within its bounds. e itself may be dropped: callers check
// e.inLog before keeping more.
func (r *Recorder) growLocked(e *entry, delta int64) {
	if !e.inLog {
		return
	}
	e.cost += delta
	r.bytes += delta
	evicted := false
	for len(r.log) > 0 && (len(r.log) > r.opts.MaxExchanges || r.bytes > r.opts.MaxBytes) {
		old := r.log[0]
		r.log[0] = nil
		r.log = r.log[1:]
		r.bytes -= old.cost
		r.releaseLocked(old)
		r.dropped++
		evicted = true
	}
	if evicted {
		r.notifyLocked(nil)
	}
}

// releaseLocked takes e out of the log and lets its memory go; the
// Middleware may still hold e, and counts without keeping from then on.
func (r *Recorder) releaseLocked(e *entry) {
	e.inLog = false
	e.cost = 0
	e.ex.RequestBody.Data = nil
	e.ex.ResponseBody.Data = nil
	e.ex.Frames = nil
	e.ex.Events = nil
}

// headerCost is what a kept header counts for.
func headerCost(h map[string][]string) int64 {
	var n int64
	for k, vs := range h {
		n += int64(len(k))
		for _, v := range vs {
			n += int64(len(v)) + headerOverhead
		}
	}
	return n
}
