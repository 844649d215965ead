package store

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"testing"
	"testing/synctest"
	"time"
)

// The tests that move time run in a synctest bubble, where time.Now is a
// fake clock that time.Sleep advances at once: Memory reads time.Now
// itself, so no clock needs to be injected.

// sizes returns the number of records held, index entries and expiry
// entries.
func (m *Memory) sizes() (records, index, expiries int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.records, len(m.byConn), len(m.expiries)
}

// checkIndex fails t unless the record count, byConn and byTunnel agree,
// one to one, which holds whenever no two tunnels were put with one
// ConnectionID, and no pool is kept empty.
func checkIndex(t *testing.T, m *Memory) {
	t.Helper()
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := 0
	for id, tn := range m.byTunnel {
		switch {
		case tn.members == nil:
			n++
		case len(tn.members) == 0:
			t.Errorf("tunnel %q is kept as an empty pool", id)
		default:
			n += len(tn.members)
			for conn, r := range tn.members {
				if r.ConnectionID != conn || r.TunnelID != id || !r.Pool {
					t.Errorf("pool %q holds %+v under connection %q", id, r, conn)
				}
			}
		}
	}
	if n != m.records {
		t.Errorf("%d records held, counted %d", n, m.records)
	}
	if len(m.byConn) != n {
		t.Errorf("index has %d entries, table %d records", len(m.byConn), n)
	}
	for conn, id := range m.byConn {
		if _, ok := m.findLocked(id, conn); !ok {
			t.Errorf("index %q -> %q points at no record", conn, id)
		}
	}
}

// testRecord returns a record for tunnel id, served by connection "c-"+id,
// that expires ttl after now (never, for ttl 0).
func testRecord(id string, ttl time.Duration) Record {
	r := Record{TunnelID: id, ConnectionID: "c-" + id, Owner: "owner"}
	if ttl != 0 {
		r.ExpiresAt = time.Now().Add(ttl)
	}
	return r
}

// testMember returns a member of pool id, served by connection conn, that
// expires ttl after now (never, for ttl 0).
func testMember(id, conn string, ttl time.Duration) Record {
	r := testRecord(id, ttl)
	r.ConnectionID, r.Pool = conn, true
	return r
}

func mustPut(t *testing.T, m *Memory, r Record) {
	t.Helper()
	if err := m.Put(context.Background(), r); err != nil {
		t.Fatalf("Put(%s): %v", r.TunnelID, err)
	}
}

// TestMemoryFreesExpired checks that records nobody reads again are freed
// by the next write, so that memory follows the live set rather than every
// tunnel ever put.
func TestMemoryFreesExpired(t *testing.T) {
	t.Parallel()
	const expiring = 10_000
	ctx := context.Background()
	tests := []struct {
		name string
		// write is any write after the expiry; it returns how many
		// records it added.
		write func(t *testing.T, m *Memory) int
	}{
		{"PutMore", func(t *testing.T, m *Memory) int {
			for i := range 100 {
				mustPut(t, m, testRecord("new"+strconv.Itoa(i), time.Minute))
			}
			return 100
		}},
		{"Renew", func(t *testing.T, m *Memory) int {
			if err := m.Renew(ctx, "keep", "c-keep", time.Now().Add(time.Hour)); err != nil {
				t.Fatalf("Renew: %v", err)
			}
			return 0
		}},
		{"DeleteMissing", func(t *testing.T, m *Memory) int {
			if err := m.Delete(ctx, "missing", "c-missing"); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			return 0
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				m := NewMemory()
				mustPut(t, m, testRecord("keep", time.Hour))
				mustPut(t, m, testRecord("forever", 0))
				for i := range expiring {
					mustPut(t, m, testRecord("old"+strconv.Itoa(i), time.Minute))
				}
				if n, _, _ := m.sizes(); n != expiring+2 {
					t.Fatalf("before expiry, %d records held, want %d", n, expiring+2)
				}

				time.Sleep(2 * time.Minute)
				added := tt.write(t, m)

				n, _, e := m.sizes()
				if want := 2 + added; n != want {
					t.Errorf("after expiry and a write, %d records held, want %d", n, want)
				}
				if limit := 2*n + minRebuild; e > limit {
					t.Errorf("expiry index has %d entries, want at most %d", e, limit)
				}
				checkIndex(t, m)
				for _, id := range []string{"keep", "forever"} {
					if _, err := m.Get(ctx, id); err != nil {
						t.Errorf("Get(%s) of a live record: %v", id, err)
					}
				}
			})
		})
	}
}

// TestMemoryExpiresInOrder checks the expiry index against brute force:
// after each step of the clock, exactly the records that have not expired
// are held.
func TestMemoryExpiresInOrder(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const records = 1_000
		m := NewMemory()
		rng := rand.New(rand.NewPCG(1, 2))
		ttls := make([]time.Duration, records)
		for i := range ttls {
			// Whole seconds, so that several records share an expiry.
			ttls[i] = time.Duration(1+rng.IntN(100)) * time.Second
			mustPut(t, m, testRecord(strconv.Itoa(i), ttls[i]))
		}
		for elapsed := time.Duration(0); elapsed <= 101*time.Second; elapsed += 7 * time.Second {
			want := 0
			for _, ttl := range ttls {
				if ttl > elapsed {
					want++
				}
			}
			// Deleting a missing tunnel is a write that changes nothing else.
			if err := m.Delete(context.Background(), "missing", "c-missing"); err != nil {
				t.Fatal(err)
			}
			if n, _, _ := m.sizes(); n != want {
				t.Fatalf("after %v, %d records held, want %d", elapsed, n, want)
			}
			time.Sleep(7 * time.Second)
		}
	})
}

// TestMemoryLookupFreesExpired checks the lazy half of expiry: a lookup
// that meets an expired record frees it without waiting for a write.
func TestMemoryLookupFreesExpired(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		lookup func(m *Memory, r Record) error
	}{
		{"Get", func(m *Memory, r Record) error {
			_, err := m.Get(context.Background(), r.TunnelID)
			return err
		}},
		{"GetByConnection", func(m *Memory, r Record) error {
			_, err := m.GetByConnection(context.Background(), r.ConnectionID)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				m := NewMemory()
				r := testRecord("a", time.Minute)
				mustPut(t, m, r)
				time.Sleep(time.Minute)
				if err := tt.lookup(m, r); !errors.Is(err, ErrNotFound) {
					t.Fatalf("lookup of an expired record = %v, want ErrNotFound", err)
				}
				if n, i, _ := m.sizes(); n != 0 || i != 0 {
					t.Errorf("after the lookup, %d records and %d index entries held, want 0", n, i)
				}
			})
		})
	}
}

// TestMemoryExpiryIndexBounded checks that renewals and reconnects, which
// leave stale expiry entries behind, do not grow the index without bound.
func TestMemoryExpiryIndexBounded(t *testing.T) {
	t.Parallel()
	const rounds = 10_000
	ctx := context.Background()
	tests := []struct {
		name  string
		round func(t *testing.T, m *Memory, i int)
	}{
		{"Renew", func(t *testing.T, m *Memory, i int) {
			if i == 0 {
				mustPut(t, m, testRecord("a", time.Hour))
			}
			if err := m.Renew(ctx, "a", "c-a", time.Now().Add(time.Hour+time.Duration(i))); err != nil {
				t.Fatalf("Renew: %v", err)
			}
		}},
		{"Reconnect", func(t *testing.T, m *Memory, i int) {
			r := testRecord("a", time.Hour+time.Duration(i))
			r.ConnectionID = "c-" + strconv.Itoa(i)
			mustPut(t, m, r)
		}},
		{"PutDelete", func(t *testing.T, m *Memory, i int) {
			r := testRecord(strconv.Itoa(i), time.Hour)
			mustPut(t, m, r)
			if err := m.Delete(ctx, r.TunnelID, r.ConnectionID); err != nil {
				t.Fatalf("Delete: %v", err)
			}
		}},
		{"PoolRenew", func(t *testing.T, m *Memory, i int) {
			if i == 0 {
				for _, c := range []string{"c-0", "c-1", "c-2"} {
					mustPut(t, m, testMember("a", c, time.Hour))
				}
			}
			if err := m.Renew(ctx, "a", "c-"+strconv.Itoa(i%3), time.Now().Add(time.Hour+time.Duration(i))); err != nil {
				t.Fatalf("Renew: %v", err)
			}
		}},
		{"PoolChurn", func(t *testing.T, m *Memory, i int) {
			// Members come and go under new connections; three stay.
			mustPut(t, m, testMember("a", "c-"+strconv.Itoa(i), time.Hour+time.Duration(i)))
			if i >= 3 {
				if err := m.Delete(ctx, "a", "c-"+strconv.Itoa(i-3)); err != nil {
					t.Fatalf("Delete: %v", err)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := NewMemory()
			for i := range rounds {
				tt.round(t, m, i)
			}
			n, _, e := m.sizes()
			if limit := 2*n + minRebuild + 1; e > limit {
				t.Errorf("after %d rounds, expiry index has %d entries for %d records, want at most %d",
					rounds, e, n, limit)
			}
			checkIndex(t, m)
		})
	}
}

// TestMemoryReleaseExpired checks that Release refuses a record that has
// expired but not yet been freed, which the conformance suite cannot build:
// Memory frees a record put or renewed to the past at once.
func TestMemoryReleaseExpired(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		m := NewMemory()
		r := testRecord("a", time.Minute)
		r.Subject = "agent"
		mustPut(t, m, r)
		time.Sleep(time.Minute)
		if err := m.Release(ctx, r.TunnelID, r.ConnectionID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Release of an expired record = %v, want ErrNotFound", err)
		}
		// Nor did it make the record live again for its Subject or anyone.
		other := testRecord("a", time.Minute)
		other.ConnectionID, other.Owner = "c-other", "other"
		mustPut(t, m, other)
		if got, err := m.Get(ctx, "a"); err != nil || got != other {
			t.Errorf("Get = %+v, %v; want %+v", got, err, other)
		}
	})
}

// TestMemoryPutExpired checks that a record already expired when put is not
// kept, yet still replaces the record it may replace.
func TestMemoryPutExpired(t *testing.T) {
	t.Parallel()
	m := NewMemory()
	mustPut(t, m, testRecord("a", time.Hour))
	mustPut(t, m, testRecord("a", -time.Second))
	if n, i, _ := m.sizes(); n != 0 || i != 0 {
		t.Errorf("%d records and %d index entries held, want 0", n, i)
	}
}

// TestMemorySharedConnectionID pins what Memory does when two tunnels are
// put with one ConnectionID, which the Store contract leaves open:
// GetByConnection finds the later one, and removing the earlier one does not
// break that.
func TestMemorySharedConnectionID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := NewMemory()
	first := testRecord("a", time.Hour)
	second := testRecord("b", time.Hour)
	second.ConnectionID = first.ConnectionID
	mustPut(t, m, first)
	mustPut(t, m, second)

	if got, err := m.GetByConnection(ctx, first.ConnectionID); err != nil || got != second {
		t.Fatalf("GetByConnection = %+v, %v; want %+v", got, err, second)
	}
	if err := m.Delete(ctx, first.TunnelID, first.ConnectionID); err != nil {
		t.Fatalf("Delete(first): %v", err)
	}
	if got, err := m.GetByConnection(ctx, first.ConnectionID); err != nil || got != second {
		t.Errorf("after deleting the first tunnel, GetByConnection = %+v, %v; want %+v", got, err, second)
	}
	if _, err := m.Get(ctx, second.TunnelID); err != nil {
		t.Errorf("Get(second): %v", err)
	}
}

// TestMemoryFreesExpiredMembers checks that pool members expire one by
// one without a goroutine: the next write frees exactly the members that
// have expired, and a pool whose members have all expired is gone.
func TestMemoryFreesExpiredMembers(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		m := NewMemory()
		// Pool "a" keeps two of its four members; pool "b" loses both.
		a := []Record{
			testMember("a", "a-1", time.Minute),
			testMember("a", "a-2", time.Hour),
			testMember("a", "a-3", 0),
			testMember("a", "a-4", 2*time.Minute),
		}
		b := []Record{testMember("b", "b-1", time.Minute), testMember("b", "b-2", time.Minute)}
		for _, r := range append(a, b...) {
			mustPut(t, m, r)
		}
		checkIndex(t, m)

		time.Sleep(3 * time.Minute)
		if err := m.Delete(ctx, "missing", "c-missing"); err != nil {
			t.Fatal(err)
		}
		if n, i, _ := m.sizes(); n != 2 || i != 2 {
			t.Errorf("after expiry and a write, %d records and %d index entries held, want 2", n, i)
		}
		checkIndex(t, m)
		got, err := m.Members(ctx, "a")
		if err != nil || len(got) != 2 {
			t.Fatalf("Members(a) = %+v, %v; want a-2 and a-3", got, err)
		}
		for _, r := range got {
			if r.ConnectionID != "a-2" && r.ConnectionID != "a-3" {
				t.Errorf("Members(a) has %s, which has expired", r.ConnectionID)
			}
		}
		if _, err := m.Members(ctx, "b"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Members(b) = %v, want ErrNotFound", err)
		}
		// The name of pool b is free for a plain record of another owner.
		other := testRecord("b", time.Minute)
		other.Owner = "other"
		mustPut(t, m, other)
	})
}

// TestMemoryLookupFreesExpiredMembers checks the lazy half of expiry for
// pools: a lookup that meets an expired member frees the pool's expired
// members.
func TestMemoryLookupFreesExpiredMembers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		lookup func(m *Memory) error
	}{
		{"Get", func(m *Memory) error {
			_, err := m.Get(context.Background(), "a")
			return err
		}},
		{"Members", func(m *Memory) error {
			_, err := m.Members(context.Background(), "a")
			return err
		}},
		{"GetByConnection", func(m *Memory) error {
			_, err := m.GetByConnection(context.Background(), "a-1")
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				m := NewMemory()
				mustPut(t, m, testMember("a", "a-1", time.Minute))
				mustPut(t, m, testMember("a", "a-2", time.Minute))
				time.Sleep(time.Minute)
				if err := tt.lookup(m); !errors.Is(err, ErrNotFound) {
					t.Fatalf("lookup of expired members = %v, want ErrNotFound", err)
				}
				if n, i, _ := m.sizes(); n != 0 || i != 0 {
					t.Errorf("after the lookup, %d records and %d index entries held, want 0", n, i)
				}
				checkIndex(t, m)
			})
		})
	}
}
