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
	return len(m.byTunnel), len(m.byConn), len(m.expiries)
}

// checkIndex fails t unless byConn and byTunnel agree one to one, which
// holds whenever no two tunnels were put with one ConnectionID.
func checkIndex(t *testing.T, m *Memory) {
	t.Helper()
	m.mu.RLock()
	defer m.mu.RUnlock()
	if len(m.byConn) != len(m.byTunnel) {
		t.Errorf("index has %d entries, table %d", len(m.byConn), len(m.byTunnel))
	}
	for conn, id := range m.byConn {
		if r, ok := m.byTunnel[id]; !ok || r.ConnectionID != conn {
			t.Errorf("index %q -> %q points at %+v (present %v)", conn, id, r, ok)
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
