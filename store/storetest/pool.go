package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/store"
)

// The subtests of pools: several connections of one owner, each with a
// record of its own under one tunnel ID.

// newPool returns n members of a pool for a fresh tunnel ID, owned by
// owner, not yet put: each has a connection, a node and a policy of its
// own, so that a store that mixes members up fails.
func newPool(owner string, n int) []store.Record {
	first := newRecord(owner)
	first.Pool = true
	members := []store.Record{first}
	for i := 1; i < n; i++ {
		m := reconnect(first)
		m.Node = fmt.Sprintf("node-%d", i)
		members = append(members, m)
	}
	return members
}

// putAll puts every record of rs, in order.
func putAll(t *testing.T, s store.Store, rs []store.Record) {
	t.Helper()
	for _, r := range rs {
		mustPut(t, s, r)
	}
}

// wantMembers checks that the live records of tunnelID are exactly want,
// members of its pool: Members returns them, each once; GetByConnection
// returns each for its connection; Get returns one of them. With want
// empty, the tunnel must be free: Get and Members fail with ErrNotFound.
func wantMembers(t *testing.T, s store.Store, tunnelID string, want ...store.Record) {
	t.Helper()
	ctx := t.Context()
	if len(want) == 0 {
		if r, err := s.Get(ctx, tunnelID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Get(%s) = %+v, %v; want ErrNotFound", tunnelID, r, err)
		}
		if rs, err := s.Members(ctx, tunnelID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Members(%s) = %+v, %v; want ErrNotFound", tunnelID, rs, err)
		}
		return
	}
	byConn := make(map[string]store.Record, len(want))
	for _, w := range want {
		byConn[w.ConnectionID] = w
	}

	got, err := s.Members(ctx, tunnelID)
	if err != nil {
		t.Fatalf("Members(%s): %v", tunnelID, err)
	}
	seen := make(map[string]bool, len(got))
	for _, g := range got {
		w, ok := byConn[g.ConnectionID]
		switch {
		case !ok:
			t.Errorf("Members(%s) has connection %s, which is not a live member", tunnelID, g.ConnectionID)
		case seen[g.ConnectionID]:
			t.Errorf("Members(%s) has connection %s twice", tunnelID, g.ConnectionID)
		default:
			if d := diff(g, w); d != "" {
				t.Errorf("Members(%s), member %s, differs:%s", tunnelID, g.ConnectionID, d)
			}
		}
		seen[g.ConnectionID] = true
	}
	for c := range byConn {
		if !seen[c] {
			t.Errorf("Members(%s) lacks member %s", tunnelID, c)
		}
	}

	for _, w := range want {
		g, err := s.GetByConnection(ctx, w.ConnectionID)
		if err != nil {
			t.Errorf("GetByConnection(%s): %v", w.ConnectionID, err)
			continue
		}
		if d := diff(g, w); d != "" {
			t.Errorf("GetByConnection(%s) differs:%s", w.ConnectionID, d)
		}
	}

	g, err := s.Get(ctx, tunnelID)
	if err != nil {
		t.Fatalf("Get(%s): %v", tunnelID, err)
	}
	if w, ok := byConn[g.ConnectionID]; !ok {
		t.Errorf("Get(%s) = member %s, which is not a live member", tunnelID, g.ConnectionID)
	} else if d := diff(g, w); d != "" {
		t.Errorf("Get(%s), member %s, differs:%s", tunnelID, g.ConnectionID, d)
	}
}

// without returns rs less its record at i, in a new slice.
func without(rs []store.Record, i int) []store.Record {
	return slices.Delete(slices.Clone(rs), i, i+1)
}

// testPoolJoin checks that members join one by one, each keeping the
// others, and that a plain tunnel's Members is its record alone.
func testPoolJoin(t *testing.T, s store.Store) {
	t.Run("OneByOne", func(t *testing.T) {
		t.Parallel()
		pool := newPool("owner", 4)
		for i, m := range pool {
			mustPut(t, s, m)
			wantMembers(t, s, m.TunnelID, pool[:i+1]...)
		}
	})
	t.Run("NoExpiry", func(t *testing.T) {
		// Members that never expire live beside members that do.
		t.Parallel()
		pool := newPool("owner", 3)
		pool[1].ExpiresAt = time.Time{}
		putAll(t, s, pool)
		wantMembers(t, s, pool[0].TunnelID, pool...)
	})
	t.Run("LargeAccess", func(t *testing.T) {
		t.Parallel()
		pool := newPool("owner", 3)
		for i := range pool {
			pool[i].Access = largeAccess(pool[i].ConnectionID)
		}
		putAll(t, s, pool)
		wantMembers(t, s, pool[0].TunnelID, pool...)
	})
	t.Run("NotOtherTunnels", func(t *testing.T) {
		// Two pools of one owner, and a plain tunnel, keep their records
		// apart.
		t.Parallel()
		a, b := newPool("owner", 2), newPool("owner", 2)
		plain := newRecord("owner")
		putAll(t, s, a)
		putAll(t, s, b)
		mustPut(t, s, plain)
		wantMembers(t, s, a[0].TunnelID, a...)
		wantMembers(t, s, b[0].TunnelID, b...)
		wantRecord(t, s, plain)
	})
}

// testPoolRejoin checks a Put of a member's own connection again: it
// replaces that member, fields, expiry and released mark included, and
// keeps the others.
func testPoolRejoin(t *testing.T, s store.Store) {
	tests := []struct {
		name string
		edit func(r *store.Record)
	}{
		{"NewFields", func(r *store.Record) {
			r.Node = "node-moved"
			r.PublicURL += "/moved"
			r.Subject = "agent-renamed"
			r.Version = 4
			r.Access = accessPolicy("rejoined")
			r.ExpiresAt = time.Now().Add(2 * future)
		}},
		{"NoAccess", func(r *store.Record) { r.Access = "" }},
		{"NoExpiry", func(r *store.Record) { r.ExpiresAt = time.Time{} }},
		{"ClaimingReleased", func(r *store.Record) { r.Released = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := newPool("owner", 3)
			putAll(t, s, pool)
			mustRelease(t, s, pool[1])
			next := pool[1]
			tt.edit(&next)
			mustPut(t, s, next)
			next.Released = false
			pool[1] = next
			wantMembers(t, s, next.TunnelID, pool...)
		})
	}
}

// testPoolRenew checks that Renew acts on the member of its connection
// alone.
func testPoolRenew(t *testing.T, s store.Store) {
	t.Run("OneMember", func(t *testing.T) {
		t.Parallel()
		pool := newPool("owner", 3)
		putAll(t, s, pool)
		for i, exp := range []time.Time{time.Now().Add(2 * future), {}, time.Now().Add(3 * future)} {
			pool[1].ExpiresAt = exp
			if err := s.Renew(t.Context(), pool[1].TunnelID, pool[1].ConnectionID, exp); err != nil {
				t.Fatalf("Renew #%d of a member = %v, want nil", i+1, err)
			}
			wantMembers(t, s, pool[0].TunnelID, pool...)
		}
	})
	t.Run("ClearsRelease", func(t *testing.T) {
		t.Parallel()
		pool := newPool("owner", 2)
		putAll(t, s, pool)
		pool[0] = mustRelease(t, s, pool[0])
		pool[1] = mustRelease(t, s, pool[1])
		pool[1].Released = false
		if err := s.Renew(t.Context(), pool[1].TunnelID, pool[1].ConnectionID, pool[1].ExpiresAt); err != nil {
			t.Fatalf("Renew of a released member = %v, want nil", err)
		}
		wantMembers(t, s, pool[0].TunnelID, pool...)
	})
	t.Run("Refuses", func(t *testing.T) {
		t.Parallel()
		pool := newPool("owner", 2)
		putAll(t, s, pool)
		other := newPool("owner", 1)[0]
		mustPut(t, s, other)
		refusals := []struct {
			name                   string
			tunnelID, connectionID string
		}{
			{"NotAMember", pool[0].TunnelID, randomID("c")},
			{"MemberOfAnotherPool", pool[0].TunnelID, other.ConnectionID},
			{"MemberUnderAnotherTunnel", other.TunnelID, pool[0].ConnectionID},
		}
		for _, tt := range refusals {
			err := s.Renew(t.Context(), tt.tunnelID, tt.connectionID, time.Now().Add(2*future))
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Renew %s = %v, want ErrNotFound", tt.name, err)
			}
		}
		wantMembers(t, s, pool[0].TunnelID, pool...)
		wantMembers(t, s, other.TunnelID, other)
	})
}

// testPoolRelease checks that Release marks the member of its connection
// alone, and that a released member lets nobody in: the takeover by
// Subject is a plain record's.
func testPoolRelease(t *testing.T, s store.Store) {
	t.Run("OneMember", func(t *testing.T) {
		t.Parallel()
		pool := newPool("owner", 3)
		putAll(t, s, pool)
		pool[2] = mustRelease(t, s, pool[2])
		wantMembers(t, s, pool[0].TunnelID, pool...)
		pool[2] = mustRelease(t, s, pool[2]) // twice is fine
		wantMembers(t, s, pool[0].TunnelID, pool...)
	})
	t.Run("Refuses", func(t *testing.T) {
		t.Parallel()
		pool := newPool("owner", 2)
		putAll(t, s, pool)
		if err := s.Release(t.Context(), pool[0].TunnelID, randomID("c")); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Release of no member = %v, want ErrNotFound", err)
		}
		wantMembers(t, s, pool[0].TunnelID, pool...)
	})
	t.Run("NoTakeoverBySubject", func(t *testing.T) {
		t.Parallel()
		pool := newPool("owner-a", 2)
		putAll(t, s, pool)
		for i := range pool {
			pool[i] = mustRelease(t, s, pool[i])
		}
		for _, asPool := range []bool{false, true} {
			other := reconnect(pool[0])
			other.Owner = "owner-b"
			other.Pool = asPool
			if err := s.Put(t.Context(), other); !errors.Is(err, store.ErrConflict) {
				t.Errorf("Put (Pool %v) by another owner with the released members' Subject = %v, want ErrConflict", asPool, err)
			}
		}
		wantMembers(t, s, pool[0].TunnelID, pool...)
	})
}

// testPoolDelete checks that Delete removes the member of its connection
// alone, and that a pool whose members are all deleted is free.
func testPoolDelete(t *testing.T, s store.Store) {
	t.Run("OneByOne", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		pool := newPool("owner-a", 3)
		putAll(t, s, pool)
		id := pool[0].TunnelID
		for len(pool) > 0 {
			gone := pool[0]
			if err := s.Delete(ctx, id, gone.ConnectionID); err != nil {
				t.Fatalf("Delete = %v, want nil", err)
			}
			pool = pool[1:]
			wantMembers(t, s, id, pool...)
			if r, err := s.GetByConnection(ctx, gone.ConnectionID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetByConnection(deleted member) = %+v, %v; want ErrNotFound", r, err)
			}
			for name, call := range map[string]func() error{
				"Renew":   func() error { return s.Renew(ctx, id, gone.ConnectionID, time.Now().Add(future)) },
				"Release": func() error { return s.Release(ctx, id, gone.ConnectionID) },
			} {
				if err := call(); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("%s(deleted member) = %v, want ErrNotFound", name, err)
				}
			}
		}
		// Free: another owner takes the name.
		other := newRecord("owner-b")
		other.TunnelID = id
		mustPut(t, s, other)
		wantRecord(t, s, other)
	})
	t.Run("NotAMember", func(t *testing.T) {
		t.Parallel()
		pool := newPool("owner", 2)
		putAll(t, s, pool)
		for _, conn := range []string{randomID("c"), ""} {
			if err := s.Delete(t.Context(), pool[0].TunnelID, conn); err != nil {
				t.Errorf("Delete(%q) = %v, want nil", conn, err)
			}
		}
		wantMembers(t, s, pool[0].TunnelID, pool...)
	})
}

// testPoolExpiry checks that members expire one by one, and that a pool
// whose members have all expired is free to anyone, as either kind of
// tunnel.
func testPoolExpiry(t *testing.T, s store.Store) {
	t.Run("RenewOneToPast", func(t *testing.T) {
		t.Parallel()
		pool := newPool("owner", 3)
		putAll(t, s, pool)
		if err := s.Renew(t.Context(), pool[1].TunnelID, pool[1].ConnectionID, time.Now().Add(past)); err != nil {
			t.Fatalf("Renew(past) = %v, want nil", err)
		}
		wantMembers(t, s, pool[0].TunnelID, without(pool, 1)...)
		wantGone(t, s, randomID("t"), pool[1].ConnectionID)
		if err := s.Renew(t.Context(), pool[1].TunnelID, pool[1].ConnectionID, time.Now().Add(future)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Renew of the expired member = %v, want ErrNotFound", err)
		}
	})
	t.Run("PutExpired", func(t *testing.T) {
		// A member put already expired is not kept; put again for a
		// member's connection, it replaces that member.
		t.Parallel()
		pool := newPool("owner", 3)
		putAll(t, s, pool[:2])
		expired := []store.Record{pool[2], pool[0]}
		for _, r := range expired {
			r.ExpiresAt = time.Now().Add(past)
			mustPut(t, s, r)
		}
		wantMembers(t, s, pool[0].TunnelID, pool[1])
		wantGone(t, s, randomID("t"), pool[0].ConnectionID)
		wantGone(t, s, randomID("t"), pool[2].ConnectionID)
	})
	for _, asPool := range []bool{false, true} {
		t.Run(fmt.Sprintf("AllExpired/NextIsPool=%v", asPool), func(t *testing.T) {
			t.Parallel()
			pool := newPool("owner-a", 3)
			putAll(t, s, pool)
			for _, m := range pool {
				if err := s.Renew(t.Context(), m.TunnelID, m.ConnectionID, time.Now().Add(past)); err != nil {
					t.Fatalf("Renew(past) = %v, want nil", err)
				}
			}
			wantMembers(t, s, pool[0].TunnelID)
			next := newRecord("owner-b")
			next.TunnelID = pool[0].TunnelID
			next.Pool = asPool
			mustPut(t, s, next)
			if asPool {
				wantMembers(t, s, next.TunnelID, next)
			} else {
				wantRecord(t, s, next)
			}
			for _, m := range pool {
				wantGone(t, s, randomID("t"), m.ConnectionID)
			}
		})
	}
	t.Run("PlainExpiredThenPool", func(t *testing.T) {
		t.Parallel()
		held := newRecord("owner-a")
		held.ExpiresAt = time.Now().Add(past)
		mustPut(t, s, held)
		pool := newPool("owner-b", 2)
		for i := range pool {
			pool[i].TunnelID = held.TunnelID
		}
		putAll(t, s, pool)
		wantMembers(t, s, held.TunnelID, pool...)
	})
}

// testPoolConflict checks that plain records and pools never replace
// each other while live, whoever puts them, and that a pool takes members
// of its own owner only. A refused Put changes nothing.
func testPoolConflict(t *testing.T, s store.Store) {
	// Each case holds the tunnel with held, a plain record or a pool of
	// two, released if release is set, and tries next, the same owner's
	// reconnect as edit changes it.
	tests := []struct {
		name     string
		pool     bool // whether held is a pool
		release  bool
		sameConn bool // whether next has held's (first) connection
		edit     func(next *store.Record)
	}{
		{"PlainHeld/PoolBySameOwner", false, false, false, func(n *store.Record) { n.Pool = true }},
		{"PlainHeld/PoolBySameOwnerSameConnection", false, false, true, func(n *store.Record) { n.Pool = true }},
		{"PlainHeld/PoolByOtherOwner", false, false, false, func(n *store.Record) { n.Pool, n.Owner = true, "owner-b" }},
		{"ReleasedPlainHeld/PoolBySameSubject", false, true, false, func(n *store.Record) { n.Pool, n.Owner = true, "owner-b" }},
		{"ReleasedPlainHeld/PoolBySameOwner", false, true, false, func(n *store.Record) { n.Pool = true }},
		{"PoolHeld/PlainBySameOwner", true, false, false, func(n *store.Record) { n.Pool = false }},
		{"PoolHeld/PlainBySameOwnerSameConnection", true, false, true, func(n *store.Record) { n.Pool = false }},
		{"PoolHeld/PlainByOtherOwner", true, false, false, func(n *store.Record) { n.Pool, n.Owner = false, "owner-b" }},
		{"PoolHeld/PoolByOtherOwner", true, false, false, func(n *store.Record) { n.Owner = "owner-b" }},
		{"PoolHeld/PoolByOtherOwnerSameConnection", true, false, true, func(n *store.Record) { n.Owner = "owner-b" }},
		{"PoolHeld/PoolByOtherOwnerNoExpiry", true, false, false, func(n *store.Record) { n.Owner, n.ExpiresAt = "owner-b", time.Time{} }},
		{"ReleasedPoolHeld/PlainBySameSubject", true, true, false, func(n *store.Record) { n.Pool, n.Owner = false, "owner-b" }},
		{"ReleasedPoolHeld/PlainBySameOwner", true, true, false, func(n *store.Record) { n.Pool = false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			held := newPool("owner-a", 2)
			if !tt.pool {
				held = held[:1]
				held[0].Pool = false
			}
			putAll(t, s, held)
			if tt.release {
				for i := range held {
					held[i] = mustRelease(t, s, held[i])
				}
			}
			next := reconnect(held[0])
			next.Released = false
			if tt.sameConn {
				next.ConnectionID = held[0].ConnectionID
			}
			tt.edit(&next)
			if err := s.Put(t.Context(), next); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("Put = %v, want ErrConflict", err)
			}
			if tt.pool {
				wantMembers(t, s, held[0].TunnelID, held...)
			} else {
				wantRecord(t, s, held[0])
			}
			if !tt.sameConn {
				wantGone(t, s, randomID("t"), next.ConnectionID)
			}
		})
	}
}

// testRacingPoolJoins checks concurrent Puts for one free tunnel: members
// of one owner all join, and a Put that conflicts with them (a plain
// record of any owner, members of another owner) either wins alone or
// loses to all of them, never a mix.
func testRacingPoolJoins(t *testing.T, s store.Store) {
	const (
		tunnels = 8
		members = 16
	)
	tests := []struct {
		name string
		// rival returns the Puts that race the members of pool, all for
		// its tunnel ID.
		rival func(pool []store.Record) []store.Record
	}{
		{"Alone", func([]store.Record) []store.Record { return nil }},
		{"PlainOfOtherOwner", func(pool []store.Record) []store.Record {
			r := newRecord("owner-b")
			r.TunnelID = pool[0].TunnelID
			return []store.Record{r}
		}},
		{"PlainOfSameOwner", func(pool []store.Record) []store.Record {
			r := reconnect(pool[0])
			r.Pool = false
			return []store.Record{r}
		}},
		{"PoolOfOtherOwner", func(pool []store.Record) []store.Record {
			rivals := newPool("owner-b", members)
			for i := range rivals {
				rivals[i].TunnelID = pool[0].TunnelID
			}
			return rivals
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for i := range tunnels {
				t.Run(fmt.Sprint(i), func(t *testing.T) {
					t.Parallel()
					pool := newPool("owner-a", members)
					raceGroups(t, s, pool, tt.rival(pool))
				})
			}
		})
	}
}

// raceGroups puts every record of a and of b, which conflict with each
// other and not within either, from one goroutine each at once. It checks
// that every Put of one group succeeded and every Put of the other failed
// with ErrConflict, and that the store holds the winners: their members,
// or their plain record. An empty b must not lose.
func raceGroups(t *testing.T, s store.Store, a, b []store.Record) {
	t.Helper()
	all := slices.Concat(a, b)
	errs := make([]error, len(all))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for j := range all {
		wg.Go(func() {
			<-start
			errs[j] = s.Put(t.Context(), all[j])
		})
	}
	close(start)
	wg.Wait()

	outcome := func(errs []error) string {
		var won, lost int
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case errors.Is(err, store.ErrConflict):
				lost++
			default:
				t.Errorf("Put = %v, want nil or ErrConflict", err)
			}
		}
		switch {
		case lost == 0:
			return "won"
		case won == 0:
			return "lost"
		}
		return fmt.Sprintf("%d won and %d lost", won, lost)
	}
	oa, ob := outcome(errs[:len(a)]), outcome(errs[len(a):])
	var winners, losers []store.Record
	switch {
	case oa == "won" && (ob == "lost" || len(b) == 0):
		winners, losers = a, b
	case oa == "lost" && ob == "won" && len(b) > 0:
		winners, losers = b, a
	default:
		t.Fatalf("group of %d Puts: %s; group of %d rival Puts: %s; want one group to win all and the other to lose all",
			len(a), oa, len(b), ob)
	}
	if winners[0].Pool {
		wantMembers(t, s, winners[0].TunnelID, winners...)
	} else {
		wantRecord(t, s, winners[0])
	}
	for _, r := range losers {
		if r.ConnectionID != winners[0].ConnectionID {
			wantGone(t, s, randomID("t"), r.ConnectionID)
		}
	}
}

// testPoolCanceledContext checks that a canceled ctx makes each method, on
// a pool, either fail with context.Canceled or behave as usual.
func testPoolCanceledContext(t *testing.T, s store.Store) {
	pool := newPool("owner", 3)
	putAll(t, s, pool)
	id := pool[0].TunnelID
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	joining := newPool("owner", 1)[0]
	joining.TunnelID = id

	tests := []struct {
		name string
		call func(ctx context.Context) error
		// effect applies the call's usual effect to the members, which
		// are then checked when the call returned nil.
		effect func(pool []store.Record) []store.Record
	}{
		{"Members", func(ctx context.Context) error {
			got, err := s.Members(ctx, id)
			if err == nil && len(got) != len(pool) {
				return fmt.Errorf("returned %d members, want %d", len(got), len(pool))
			}
			return err
		}, nil},
		{"Get", func(ctx context.Context) error {
			got, err := s.Get(ctx, id)
			if err == nil && !slices.ContainsFunc(pool, func(m store.Record) bool { return diff(got, m) == "" }) {
				return fmt.Errorf("returned %+v, not a member", got)
			}
			return err
		}, nil},
		{"Join", func(ctx context.Context) error {
			return s.Put(ctx, joining)
		}, func(pool []store.Record) []store.Record { return append(pool, joining) }},
		{"Release", func(ctx context.Context) error {
			return s.Release(ctx, id, pool[1].ConnectionID)
		}, func(pool []store.Record) []store.Record {
			pool[1].Released = true
			return pool
		}},
		{"Renew", func(ctx context.Context) error {
			return s.Renew(ctx, id, pool[1].ConnectionID, pool[1].ExpiresAt.Add(time.Minute))
		}, func(pool []store.Record) []store.Record {
			pool[1].ExpiresAt = pool[1].ExpiresAt.Add(time.Minute)
			pool[1].Released = false
			return pool
		}},
		{"Delete", func(ctx context.Context) error {
			return s.Delete(ctx, id, pool[2].ConnectionID)
		}, func(pool []store.Record) []store.Record { return without(pool, 2) }},
	}
	// Sequential and in this order: each call may change the pool the
	// next ones find. pool is what the store should hold.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(canceled)
			switch {
			case err == nil && tt.effect != nil:
				pool = tt.effect(pool)
			case err != nil && !errors.Is(err, context.Canceled):
				t.Errorf("%s with a canceled ctx = %v, want nil or an error wrapping context.Canceled", tt.name, err)
			}
			if err != nil && tt.name == "Join" {
				// A refused join left the joining connection out.
				wantGone(t, s, randomID("t"), joining.ConnectionID)
			}
			wantMembers(t, s, id, pool...)
		})
	}
}
