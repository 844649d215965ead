package store

import (
	"context"
	"sync"
	"time"
)

// minRebuild is the slack the expiry heap may have over the table before
// it is rebuilt: below it, a rebuild would cost more than the few stale
// entries it frees.
const minRebuild = 64

// Memory is a Store that keeps records in process memory. It serves a
// single gateway node (records are not shared with other nodes) and tests.
//
// The zero value is an empty store ready to use; NewMemory is equivalent
// to new(Memory). A Memory must not be copied after first use. It is safe
// for concurrent use by multiple goroutines, and it starts no goroutines,
// so there is nothing to close.
//
// Expired records are invisible at once and are freed without a
// background goroutine: a lookup that meets one frees it, and every Put,
// Renew and Delete first frees all records that have expired, in time
// O(log n) each, amortised over the Puts and Renews that set their expiry.
// The records held are therefore the live set as of the last Put, Renew or
// Delete, and the expiry index has at most about twice as many entries.
//
// Memory does no I/O, so it ignores every ctx, including a canceled one.
// Its errors are ErrNotFound and ErrConflict themselves, not wrapped.
type Memory struct {
	mu sync.RWMutex
	// byTunnel holds the stored records by TunnelID: the live ones and
	// expired ones not yet freed. Nil until the first Put.
	byTunnel map[string]Record
	// byConn indexes byTunnel by ConnectionID so that GetByConnection is
	// O(1). An entry may point at a record that now names another
	// connection (two tunnels put with one ConnectionID); readers check.
	byConn map[string]string
	// expiries has an entry for every non-zero ExpiresAt that Put or Renew
	// stored, earliest first. Entries outlive the expiry they recorded
	// when a record is renewed, replaced or deleted; they are discarded
	// when they come due, or all at once by a rebuild.
	expiries expiryHeap
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory Store. It is the same as new(Memory)
// and exists so that callers can write store.NewMemory() next to the
// constructors of other backends.
func NewMemory() *Memory {
	return new(Memory)
}

// Put implements Store.Put. A record that has already expired when put
// replaces what it may replace but is not kept, since no method could
// return it.
func (m *Memory) Put(_ context.Context, r Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	m.expireLocked(now)
	old, ok := m.byTunnel[r.TunnelID]
	if ok && old.Live(now) && !Replaces(r, old) {
		return ErrConflict
	}
	r.Released = false
	if ok {
		m.removeLocked(old)
	}
	if !r.Live(now) {
		return nil
	}
	if m.byTunnel == nil {
		m.byTunnel = make(map[string]Record)
		m.byConn = make(map[string]string)
	}
	m.byTunnel[r.TunnelID] = r
	m.byConn[r.ConnectionID] = r.TunnelID
	m.scheduleLocked(r)
	return nil
}

// Get implements Store.Get.
func (m *Memory) Get(_ context.Context, tunnelID string) (Record, error) {
	now := time.Now()
	m.mu.RLock()
	r, ok := m.byTunnel[tunnelID]
	m.mu.RUnlock()
	if !ok {
		return Record{}, ErrNotFound
	}
	if !r.Live(now) {
		m.dropExpired(tunnelID, now)
		return Record{}, ErrNotFound
	}
	return r, nil
}

// GetByConnection implements Store.GetByConnection.
func (m *Memory) GetByConnection(_ context.Context, connectionID string) (Record, error) {
	now := time.Now()
	m.mu.RLock()
	tunnelID, ok := m.byConn[connectionID]
	r, found := m.byTunnel[tunnelID]
	m.mu.RUnlock()
	if !ok || !found || r.ConnectionID != connectionID {
		return Record{}, ErrNotFound
	}
	if !r.Live(now) {
		m.dropExpired(tunnelID, now)
		return Record{}, ErrNotFound
	}
	return r, nil
}

// Renew implements Store.Renew. Renewing to a time that has already passed
// succeeds and frees the record, since no method could return it any more.
func (m *Memory) Renew(_ context.Context, tunnelID, connectionID string, expiresAt time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	m.expireLocked(now)
	r, ok := m.byTunnel[tunnelID]
	if !ok || !r.Live(now) || r.ConnectionID != connectionID {
		return ErrNotFound
	}
	r.ExpiresAt = expiresAt
	r.Released = false
	if !r.Live(now) {
		m.removeLocked(r)
		return nil
	}
	m.byTunnel[tunnelID] = r
	m.scheduleLocked(r)
	return nil
}

// Release implements Store.Release.
func (m *Memory) Release(_ context.Context, tunnelID, connectionID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	r, ok := m.byTunnel[tunnelID]
	if !ok || !r.Live(now) || r.ConnectionID != connectionID {
		return ErrNotFound
	}
	r.Released = true
	m.byTunnel[tunnelID] = r
	return nil
}

// Delete implements Store.Delete.
func (m *Memory) Delete(_ context.Context, tunnelID, connectionID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(time.Now())
	if r, ok := m.byTunnel[tunnelID]; ok && r.ConnectionID == connectionID {
		m.removeLocked(r)
	}
	return nil
}

// dropExpired frees the record for tunnelID if it is still expired at now.
// A reader calls it after releasing its read lock, so the record may have
// been replaced in between; the check keeps a fresh one.
func (m *Memory) dropExpired(tunnelID string, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.byTunnel[tunnelID]; ok && !r.Live(now) {
		m.removeLocked(r)
	}
}

// removeLocked deletes r and its index entry. The index entry is left
// alone if it points at another tunnel, which happens when a later Put for
// another tunnel reused r.ConnectionID. Its expiry entry is left to be
// discarded when due. m.mu must be held for writing.
func (m *Memory) removeLocked(r Record) {
	delete(m.byTunnel, r.TunnelID)
	if m.byConn[r.ConnectionID] == r.TunnelID {
		delete(m.byConn, r.ConnectionID)
	}
}

// expireLocked frees every record whose expiry has come at now. Each entry
// it pops was pushed by one Put or Renew, which pays for it. An entry whose
// record has since been renewed or replaced is discarded, since the new
// expiry has an entry of its own. m.mu must be held for writing.
func (m *Memory) expireLocked(now time.Time) {
	for len(m.expiries) > 0 && !now.Before(m.expiries[0].at) {
		e := m.expiries.pop()
		if r, ok := m.byTunnel[e.tunnelID]; ok && !r.Live(now) {
			m.removeLocked(r)
		}
	}
}

// scheduleLocked records r's expiry so that expireLocked frees r in time.
// Renewals and takeovers leave stale entries behind, so once the heap is
// more than twice the table it is rebuilt from the table: that O(n) is paid
// for by the n or more pushes since the last rebuild. m.mu must be held for
// writing.
func (m *Memory) scheduleLocked(r Record) {
	if r.ExpiresAt.IsZero() {
		return
	}
	m.expiries.push(expiry{at: r.ExpiresAt, tunnelID: r.TunnelID})
	if len(m.expiries) <= 2*len(m.byTunnel)+minRebuild {
		return
	}
	// Reuse the array unless it has grown far past what the table needs, so
	// that steady reconnects do not allocate a new one each rebuild.
	old := m.expiries
	h := old[:0]
	reuse := cap(old) <= 4*len(m.byTunnel)+2*minRebuild
	if !reuse {
		h = make(expiryHeap, 0, len(m.byTunnel))
	}
	for _, r := range m.byTunnel {
		if !r.ExpiresAt.IsZero() {
			h = append(h, expiry{at: r.ExpiresAt, tunnelID: r.TunnelID})
		}
	}
	if reuse {
		clear(old[len(h):]) // release the stale tunnel ID strings
	}
	h.init()
	m.expiries = h
}

// expiry is one entry of an expiryHeap: tunnelID's record was stored to
// expire at at.
type expiry struct {
	at       time.Time
	tunnelID string
}

// expiryHeap is a binary min-heap of expiries ordered by at. It is written
// out rather than built on container/heap, whose interface{} boxing would
// allocate on every push.
type expiryHeap []expiry

func (h expiryHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *expiryHeap) push(e expiry) {
	*h = append(*h, e)
	h.up(len(*h) - 1)
}

// pop removes and returns the earliest expiry. h must not be empty.
func (h *expiryHeap) pop() expiry {
	old := *h
	n := len(old) - 1
	top := old[0]
	old[0] = old[n]
	old[n] = expiry{} // release the tunnel ID string
	*h = old[:n]
	h.down(0)
	return top
}

func (h expiryHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h[i].at.Before(h[parent].at) {
			return
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
}

func (h expiryHeap) down(i int) {
	for {
		least := i
		if l := 2*i + 1; l < len(h) && h[l].at.Before(h[least].at) {
			least = l
		}
		if r := 2*i + 2; r < len(h) && h[r].at.Before(h[least].at) {
			least = r
		}
		if least == i {
			return
		}
		h[i], h[least] = h[least], h[i]
		i = least
	}
}
