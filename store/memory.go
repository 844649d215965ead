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
// A pool's members expire one by one, like plain records.
//
// Get and GetByConnection take O(1) time, and so do Put, Renew, Release
// and Delete besides the freeing above, except that a Put to a pool scans
// its members to check their owner, and Get of a pool scans them up to the
// first live one. Members takes time linear in the pool.
//
// Memory does no I/O, so it ignores every ctx, including a canceled one.
// Its errors are ErrNotFound and ErrConflict themselves, not wrapped.
type Memory struct {
	mu sync.RWMutex
	// byTunnel holds what is stored for each tunnel ID, a plain record or
	// a pool's members: the live records and expired ones not yet freed.
	// Nil until the first Put.
	byTunnel map[string]tunnel
	// byConn indexes the records by ConnectionID so that GetByConnection
	// is O(1). An entry may point at a tunnel whose record for that
	// connection is gone (two tunnels put with one ConnectionID); readers
	// check.
	byConn map[string]string
	// records counts the records held, plain ones and pool members: the
	// size the expiry index is measured against.
	records int
	// expiries has an entry for every non-zero ExpiresAt that Put or Renew
	// stored, earliest first. Entries outlive the expiry they recorded
	// when a record is renewed, replaced or deleted; they are discarded
	// when they come due, or all at once by a rebuild.
	expiries expiryHeap
}

// tunnel is what a Memory holds for one tunnel ID: a plain record, or the
// members of a pool. A pool without members is not kept.
type tunnel struct {
	// plain is the record of a tunnel that is not a pool.
	plain Record
	// members holds a pool's members by ConnectionID; nil for a plain
	// record.
	members map[string]Record
}

// admits reports whether Put may store r over t, what is held for
// r.TunnelID at now: the rules of Store.Put.
func (t tunnel) admits(r Record, now time.Time) bool {
	if t.members == nil {
		return !t.plain.Live(now) || (!r.Pool && Replaces(r, t.plain))
	}
	for _, m := range t.members {
		if m.Live(now) && (!r.Pool || m.Owner != r.Owner) {
			return false
		}
	}
	return true
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
	t, ok := m.byTunnel[r.TunnelID]
	if ok && !t.admits(r, now) {
		return ErrConflict
	}
	r.Released = false
	switch {
	case !ok:
	case r.Pool && t.members != nil:
		// A member joins: the one it replaces goes, and so do expired
		// ones (of any owner) not yet freed; the others stay.
		for _, old := range t.members {
			if old.ConnectionID == r.ConnectionID || !old.Live(now) {
				m.removeLocked(old)
			}
		}
	case t.members == nil && !r.Pool && r.Live(now):
		// The common reconnect: r overwrites the plain record in place
		// below, which spares the map a delete and an insert.
		m.unindexLocked(t.plain)
	case t.members == nil:
		m.removeLocked(t.plain)
	default:
		// A plain record replaces a pool whose members have all expired.
		for _, old := range t.members {
			m.removeLocked(old)
		}
	}
	if !r.Live(now) {
		return nil
	}
	if m.byTunnel == nil {
		m.byTunnel = make(map[string]tunnel)
		m.byConn = make(map[string]string)
	}
	m.setLocked(r)
	m.records++
	m.byConn[r.ConnectionID] = r.TunnelID
	m.scheduleLocked(r)
	return nil
}

// Get implements Store.Get. Of a pool it returns the first live member it
// meets, which may differ from call to call.
func (m *Memory) Get(_ context.Context, tunnelID string) (Record, error) {
	now := time.Now()
	m.mu.RLock()
	t, ok := m.byTunnel[tunnelID]
	for _, r := range t.members {
		if r.Live(now) {
			m.mu.RUnlock()
			return r, nil
		}
	}
	m.mu.RUnlock()
	if !ok {
		return Record{}, ErrNotFound
	}
	if t.members != nil || !t.plain.Live(now) {
		m.dropExpired(tunnelID, now)
		return Record{}, ErrNotFound
	}
	return t.plain, nil
}

// Members implements Store.Members. The slice is new; the caller owns it.
func (m *Memory) Members(_ context.Context, tunnelID string) ([]Record, error) {
	now := time.Now()
	var (
		live    []Record
		expired bool
	)
	m.mu.RLock()
	t, ok := m.byTunnel[tunnelID]
	switch {
	case !ok:
	case t.members == nil:
		if expired = !t.plain.Live(now); !expired {
			live = []Record{t.plain}
		}
	default:
		live = make([]Record, 0, len(t.members))
		for _, r := range t.members {
			if r.Live(now) {
				live = append(live, r)
			} else {
				expired = true
			}
		}
	}
	m.mu.RUnlock()
	if expired {
		m.dropExpired(tunnelID, now)
	}
	if len(live) == 0 {
		return nil, ErrNotFound
	}
	return live, nil
}

// GetByConnection implements Store.GetByConnection.
func (m *Memory) GetByConnection(_ context.Context, connectionID string) (Record, error) {
	now := time.Now()
	m.mu.RLock()
	tunnelID, ok := m.byConn[connectionID]
	r, found := m.findLocked(tunnelID, connectionID)
	m.mu.RUnlock()
	if !ok || !found {
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
	r, ok := m.findLocked(tunnelID, connectionID)
	if !ok || !r.Live(now) {
		return ErrNotFound
	}
	r.ExpiresAt = expiresAt
	r.Released = false
	if !r.Live(now) {
		m.removeLocked(r)
		return nil
	}
	m.setLocked(r)
	m.scheduleLocked(r)
	return nil
}

// Release implements Store.Release.
func (m *Memory) Release(_ context.Context, tunnelID, connectionID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.findLocked(tunnelID, connectionID)
	if !ok || !r.Live(time.Now()) {
		return ErrNotFound
	}
	r.Released = true
	m.setLocked(r)
	return nil
}

// Delete implements Store.Delete.
func (m *Memory) Delete(_ context.Context, tunnelID, connectionID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(time.Now())
	if r, ok := m.findLocked(tunnelID, connectionID); ok {
		m.removeLocked(r)
	}
	return nil
}

// dropExpired frees the records for tunnelID that are still expired at
// now. A reader calls it after releasing its read lock, so the records may
// have been replaced in between; the check keeps fresh ones.
func (m *Memory) dropExpired(tunnelID string, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.byTunnel[tunnelID]
	switch {
	case !ok:
	case t.members == nil:
		if !t.plain.Live(now) {
			m.removeLocked(t.plain)
		}
	default:
		for _, r := range t.members {
			if !r.Live(now) {
				m.removeLocked(r)
			}
		}
	}
}

// findLocked returns the record held for tunnelID that names
// connectionID: its plain record if that names it, or its pool's member of
// that connection. m.mu must be held.
func (m *Memory) findLocked(tunnelID, connectionID string) (Record, bool) {
	t, ok := m.byTunnel[tunnelID]
	switch {
	case !ok:
		return Record{}, false
	case t.members == nil:
		return t.plain, t.plain.ConnectionID == connectionID
	}
	r, ok := t.members[connectionID]
	return r, ok
}

// setLocked stores r in place: as its tunnel's plain record, or as the
// member of its connection, making the pool if there is none. It leaves
// the record count, the index and the expiries to the caller. m.mu must
// be held for writing.
func (m *Memory) setLocked(r Record) {
	if !r.Pool {
		m.byTunnel[r.TunnelID] = tunnel{plain: r}
		return
	}
	t := m.byTunnel[r.TunnelID]
	if t.members == nil {
		t = tunnel{members: make(map[string]Record)}
		m.byTunnel[r.TunnelID] = t
	}
	t.members[r.ConnectionID] = r
}

// removeLocked deletes r, a record held (so a member if and only if
// r.Pool), and its index entry, and its pool if r was its last member. The index entry is left alone if it points at
// another tunnel, which happens when a later Put for another tunnel reused
// r.ConnectionID. Its expiry entry is left to be discarded when due. m.mu
// must be held for writing.
func (m *Memory) removeLocked(r Record) {
	if r.Pool {
		t := m.byTunnel[r.TunnelID]
		delete(t.members, r.ConnectionID)
		if len(t.members) == 0 {
			delete(m.byTunnel, r.TunnelID)
		}
	} else {
		delete(m.byTunnel, r.TunnelID)
	}
	m.unindexLocked(r)
}

// unindexLocked is removeLocked without the table: it uncounts r and
// deletes its index entry, for a caller that overwrites r in the table.
// m.mu must be held for writing.
func (m *Memory) unindexLocked(r Record) {
	m.records--
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
		if r, ok := m.findLocked(e.tunnelID, e.connectionID); ok && !r.Live(now) {
			m.removeLocked(r)
		}
	}
}

// scheduleLocked records r's expiry so that expireLocked frees r in time.
// Renewals and takeovers leave stale entries behind, so once the heap is
// more than twice the records held it is rebuilt from them: that O(n) is
// paid for by the n or more pushes since the last rebuild. m.mu must be
// held for writing.
func (m *Memory) scheduleLocked(r Record) {
	if r.ExpiresAt.IsZero() {
		return
	}
	m.expiries.push(expiry{at: r.ExpiresAt, tunnelID: r.TunnelID, connectionID: r.ConnectionID})
	if len(m.expiries) <= 2*m.records+minRebuild {
		return
	}
	// Reuse the array unless it has grown far past what the records need,
	// so that steady reconnects do not allocate a new one each rebuild.
	old := m.expiries
	h := old[:0]
	reuse := cap(old) <= 4*m.records+2*minRebuild
	if !reuse {
		h = make(expiryHeap, 0, m.records)
	}
	add := func(r Record) {
		if !r.ExpiresAt.IsZero() {
			h = append(h, expiry{at: r.ExpiresAt, tunnelID: r.TunnelID, connectionID: r.ConnectionID})
		}
	}
	for _, t := range m.byTunnel {
		if t.members == nil {
			add(t.plain)
		}
		for _, r := range t.members {
			add(r)
		}
	}
	if reuse {
		clear(old[len(h):]) // release the stale ID strings
	}
	h.init()
	m.expiries = h
}

// expiry is one entry of an expiryHeap: the record for tunnelID that
// names connectionID was stored to expire at at.
type expiry struct {
	at                     time.Time
	tunnelID, connectionID string
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
	old[n] = expiry{} // release the ID strings
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
