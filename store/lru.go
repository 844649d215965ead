package store

import (
	"container/list"
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of an LRU built by NewLRU with a size or ttl <= 0, and of the zero
// LRU.
const (
	// DefaultLRUSize is the number of entries an LRU holds by default.
	DefaultLRUSize = 10_000
	// DefaultLRUTTL is how long an LRU keeps an entry by default.
	DefaultLRUTTL = 30 * time.Second
)

// LRU is the default Cache: a bounded, least-recently-used cache of records
// in which every entry expires.
//
// An entry expires after the LRU's ttl or at its record's ExpiresAt,
// whichever comes first, so the cache never serves a record that its Store
// would already call expired. Expired entries are dropped when a Get meets
// them or when the size bound evicts them; no goroutine runs in the
// background, so there is nothing to close.
//
// The zero value is an empty LRU with DefaultLRUSize and DefaultLRUTTL. An
// LRU must not be copied after first use. It is safe for concurrent use by
// multiple goroutines. It does no I/O and ignores every ctx.
type LRU struct {
	init sync.Once
	// size and ttl are the bounds asked for; values <= 0 select the
	// defaults when init runs.
	size int
	ttl  time.Duration
	mu   sync.Mutex
	// order holds the entries (*lruEntry), most recently used first; the
	// size bound evicts from its back. byID indexes it.
	order list.List
	byID  map[string]*list.Element

	hits   atomic.Uint64
	misses atomic.Uint64
}

// lruEntry is a cached record and the instant it stops being served.
type lruEntry struct {
	rec      Record
	deadline time.Time
}

func entryOf(el *list.Element) *lruEntry { return el.Value.(*lruEntry) }

// CacheStats counts the lookups a cache has answered since it was created.
// Each counter is read atomically, but the two are read one after the other,
// so a snapshot taken during Gets may be off by the Gets in flight.
type CacheStats struct {
	// Hits is the number of Gets that returned a record.
	Hits uint64
	// Misses is the number of Gets that found no entry or an expired one.
	Misses uint64
}

var _ Cache = (*LRU)(nil)

// NewLRU returns an empty LRU that holds at most size entries, each for at
// most ttl. A size <= 0 means DefaultLRUSize (10,000 entries); a ttl <= 0
// means DefaultLRUTTL (30 s).
func NewLRU(size int, ttl time.Duration) *LRU {
	c := &LRU{size: size, ttl: ttl}
	c.init.Do(c.setup)
	return c
}

// setup fills in the defaults and builds the list. It runs once, from
// NewLRU or from the first method called on a zero LRU.
func (c *LRU) setup() {
	if c.size <= 0 {
		c.size = DefaultLRUSize
	}
	if c.ttl <= 0 {
		c.ttl = DefaultLRUTTL
	}
	c.byID = make(map[string]*list.Element)
}

// Get implements Cache.Get. It counts a hit or a miss, and drops an entry
// whose deadline has passed.
func (c *LRU) Get(_ context.Context, tunnelID string) (Record, bool) {
	c.init.Do(c.setup)
	c.mu.Lock()
	el, ok := c.byID[tunnelID]
	var rec Record
	if ok {
		if e := entryOf(el); time.Now().Before(e.deadline) {
			c.order.MoveToFront(el)
			rec = e.rec
		} else {
			c.removeLocked(el)
			ok = false
		}
	}
	c.mu.Unlock()
	if !ok {
		c.misses.Add(1)
		return Record{}, false
	}
	c.hits.Add(1)
	return rec, true
}

// Add implements Cache.Add. The entry lasts for the LRU's ttl or until
// r.ExpiresAt, whichever is sooner; a record that has already expired only
// removes any previous entry. Past the size bound, the least recently used
// entry is evicted.
func (c *LRU) Add(_ context.Context, r Record) {
	c.init.Do(c.setup)
	now := time.Now()
	deadline := now.Add(c.ttl)
	if !r.ExpiresAt.IsZero() && r.ExpiresAt.Before(deadline) {
		deadline = r.ExpiresAt
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byID[r.TunnelID]
	if !now.Before(deadline) {
		if ok {
			c.removeLocked(el)
		}
		return
	}
	if ok {
		*entryOf(el) = lruEntry{rec: r, deadline: deadline}
		c.order.MoveToFront(el)
		return
	}
	c.byID[r.TunnelID] = c.order.PushFront(&lruEntry{rec: r, deadline: deadline})
	if c.order.Len() > c.size {
		c.removeLocked(c.order.Back())
	}
}

// Remove implements Cache.Remove.
func (c *LRU) Remove(_ context.Context, tunnelID string) {
	c.init.Do(c.setup)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[tunnelID]; ok {
		c.removeLocked(el)
	}
}

func (c *LRU) removeLocked(el *list.Element) {
	delete(c.byID, entryOf(el).rec.TunnelID)
	c.order.Remove(el)
}

// Len returns the number of entries held, at most the LRU's size. It
// counts expired entries that no Get has dropped yet.
func (c *LRU) Len() int {
	c.init.Do(c.setup)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// Stats returns the hit and miss counts since the LRU was created.
func (c *LRU) Stats() CacheStats {
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load()}
}
