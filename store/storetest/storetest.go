// Package storetest is the conformance suite for store.Store
// implementations. Every backend runs it from its own tests, so the memory,
// Redis and DynamoDB stores are held to one contract: the one documented on
// store.Store.
//
// A backend calls Run with a factory. Run calls the factory once per
// subtest, with that subtest's t, and the factory must return an empty store
// isolated from every other store it returned: give each one its own key
// prefix or table, and release it with t.Cleanup. For example:
//
//	func TestConformance(t *testing.T) {
//		client := newTestClient(t) // fails when the server is absent; closed by t.Cleanup
//		storetest.Run(t, func(t *testing.T) store.Store {
//			prefix := randomPrefix() // fresh for every call
//			t.Cleanup(func() { dropKeys(client, prefix) })
//			return mybackend.New(client, prefix)
//		})
//	}
//
// The subtests run in parallel with each other, and every tunnel and
// connection ID they use is random, so a backend that cannot isolate stores
// perfectly still sees no interference.
//
// What the suite assumes of a backend:
//
//   - Times round-trip to the millisecond. Record times are compared with
//     time.Time.Equal after truncation to milliseconds, so a backend may
//     drop sub-millisecond precision (by truncating, not rounding), the
//     location and the monotonic reading. A zero ExpiresAt must come back
//     zero.
//   - Expiry is tested without sleeping: records expire by being put or
//     renewed with an ExpiresAt an hour in the past, so a backend whose
//     clock differs from the test process's by less than that passes.
//   - A canceled ctx either makes a method fail with an error wrapping
//     context.Canceled or lets it complete as if ctx were live; both pass.
//   - Record.Version round-trips from 0 to 65535; Subject round-trips like
//     the other strings, empty included.
//   - Record.Access round-trips byte for byte, whatever the bytes (NUL,
//     invalid UTF-8) and up to LargeAccess bytes long; empty stays empty.
//     Release and Renew leave it as it is, and a Put that replaces a
//     record replaces it too, with empty when the new record has none.
//   - Record.Pool round-trips. Pools are small: the suite's have up to 16
//     members.
package storetest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/store"
)

// Run runs the conformance suite against the stores newStore returns. It
// calls newStore once per subtest, from that subtest's goroutine, and each
// call must return an empty store isolated from the others.
//
// The subtests are parallel, so they run after the test function that
// called Run has returned: release shared resources such as a client with
// t.Cleanup, never with defer.
//
// The subtests are PutGet, NotFound, Takeover, Conflict, Expiry, Renew,
// Delete, Release, ReleasedTakeover, Access, RacingClaims,
// RacingReleasedClaims, ConcurrentTunnels and CanceledContext for plain
// records, and PoolJoin, PoolRejoin, PoolRenew, PoolRelease, PoolDelete,
// PoolExpiry, PoolConflict, RacingPoolJoins and PoolCanceledContext for
// pools; run one with go test -run 'TestName/Takeover'.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	subtests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"PutGet", testPutGet},
		{"NotFound", testNotFound},
		{"Takeover", testTakeover},
		{"Conflict", testConflict},
		{"Expiry", testExpiry},
		{"Renew", testRenew},
		{"Delete", testDelete},
		{"Release", testRelease},
		{"ReleasedTakeover", testReleasedTakeover},
		{"Access", testAccess},
		{"RacingClaims", testRacingClaims},
		{"RacingReleasedClaims", testRacingReleasedClaims},
		{"ConcurrentTunnels", testConcurrentTunnels},
		{"CanceledContext", testCanceledContext},
		{"PoolJoin", testPoolJoin},
		{"PoolRejoin", testPoolRejoin},
		{"PoolRenew", testPoolRenew},
		{"PoolRelease", testPoolRelease},
		{"PoolDelete", testPoolDelete},
		{"PoolExpiry", testPoolExpiry},
		{"PoolConflict", testPoolConflict},
		{"RacingPoolJoins", testRacingPoolJoins},
		{"PoolCanceledContext", testPoolCanceledContext},
	}
	for _, st := range subtests {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			st.fn(t, newStore(t))
		})
	}
}

// LargeAccess is the length of the largest Record.Access the suite puts:
// 16 KiB, several times the policy of a tunnel with many credentials and
// address ranges. Every Store must keep one this long.
const LargeAccess = 16 << 10

const (
	// past is far enough back that a backend whose clock is a little off
	// still calls a record expired.
	past = -time.Hour
	// future is far enough ahead that no record expires while a subtest
	// runs.
	future = time.Hour
)

// randomID returns prefix followed by 16 random hex digits: unique across
// subtests, runs and gateway nodes sharing a backend, and a valid DNS label
// when prefix is one.
func randomID(prefix string) string {
	var b [8]byte
	rand.Read(b[:]) // crypto/rand.Read never returns an error.
	return fmt.Sprintf("%s%x", prefix, b)
}

// accessPolicy returns an Access of typical shape and size (about 200
// bytes, JSON as the gateway writes it) that differs for every tag.
func accessPolicy(tag string) string {
	return `{"basic":[{"user":"ci","salt":"` + tag + `","hash":"9b74c9897bac770ffc029102a200c5de"}],` +
		`"allow":["192.0.2.0/24","198.51.100.7/32","203.0.113.128/25","2001:db8::/48","2001:db8:1::/64"]}`
}

// binaryAccess returns an Access that a store keeping text would mangle:
// every byte value, NUL first, so the invalid UTF-8 of 0x80 to 0xff too,
// then an overlong NUL, an encoded surrogate, a lone continuation byte and
// a trailing NUL that a C string would drop.
func binaryAccess() string {
	b := make([]byte, 0, 256+8)
	for i := range 256 {
		b = append(b, byte(i))
	}
	return string(append(b, "\xc0\x80\xed\xa0\x80\x80\x00"...))
}

// largeAccess returns an Access of LargeAccess bytes: binaryAccess over and
// over, then the tag, so that a store that truncates it or returns another
// record's fails.
func largeAccess(tag string) string {
	s := strings.Repeat(binaryAccess(), LargeAccess/len(binaryAccess())+1)
	return s[:LargeAccess-len(tag)] + tag
}

// newRecord returns a live record with every field set, for a fresh tunnel
// and connection, claimed by owner. Its Subject is owner's own, so records
// of different owners never share one unless a test sets it.
func newRecord(owner string) store.Record {
	now := time.Now()
	id := randomID("t")
	return store.Record{
		TunnelID:     id,
		ConnectionID: randomID("c"),
		Owner:        owner,
		Node:         "node-a",
		PublicURL:    "https://" + id + ".tunnel.example",
		Subject:      "agent-of-" + owner,
		Version:      3,
		Access:       accessPolicy(id),
		CreatedAt:    now,
		ExpiresAt:    now.Add(future),
	}
}

// reconnect returns r as the same owner's next connection would put it,
// with a policy of its own: a Put that replaces r must replace its Access
// too, and a refused one must leave r's.
func reconnect(r store.Record) store.Record {
	r.ConnectionID = randomID("c")
	r.Node = "node-b"
	r.Access = accessPolicy(r.ConnectionID)
	r.ExpiresAt = time.Now().Add(future)
	return r
}

// diff describes how got differs from want, or returns "" when they are
// equal to the millisecond.
func diff(got, want store.Record) string {
	var b strings.Builder
	str := func(name, g, w string) {
		if g != w {
			fmt.Fprintf(&b, "\n\t%s = %q, want %q", name, g, w)
		}
	}
	tm := func(name string, g, w time.Time) {
		if !g.Truncate(time.Millisecond).Equal(w.Truncate(time.Millisecond)) {
			fmt.Fprintf(&b, "\n\t%s = %v, want %v", name, g, w)
		}
	}
	str("TunnelID", got.TunnelID, want.TunnelID)
	str("ConnectionID", got.ConnectionID, want.ConnectionID)
	str("Owner", got.Owner, want.Owner)
	str("Node", got.Node, want.Node)
	str("PublicURL", got.PublicURL, want.PublicURL)
	str("Subject", got.Subject, want.Subject)
	if got.Access != want.Access {
		fmt.Fprintf(&b, "\n\tAccess = %s, want %s", brief(got.Access), brief(want.Access))
	}
	if got.Version != want.Version {
		fmt.Fprintf(&b, "\n\tVersion = %d, want %d", got.Version, want.Version)
	}
	if got.Pool != want.Pool {
		fmt.Fprintf(&b, "\n\tPool = %v, want %v", got.Pool, want.Pool)
	}
	if got.Released != want.Released {
		fmt.Fprintf(&b, "\n\tReleased = %v, want %v", got.Released, want.Released)
	}
	tm("CreatedAt", got.CreatedAt, want.CreatedAt)
	tm("ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	return b.String()
}

// brief quotes s, or, when it is long, says how long it is and quotes its
// ends, so that a failure with a LargeAccess stays readable.
func brief(s string) string {
	if len(s) <= 80 {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%d bytes %q...%q", len(s), s[:16], s[len(s)-16:])
}

func mustPut(t *testing.T, s store.Store, r store.Record) {
	t.Helper()
	if err := s.Put(t.Context(), r); err != nil {
		t.Fatalf("Put(%s, owner %s): %v", r.TunnelID, r.Owner, err)
	}
}

// wantRecord checks that Get and GetByConnection return want, a plain
// record, and Members want alone.
func wantRecord(t *testing.T, s store.Store, want store.Record) {
	t.Helper()
	got, err := s.Get(t.Context(), want.TunnelID)
	if err != nil {
		t.Fatalf("Get(%s): %v", want.TunnelID, err)
	}
	if d := diff(got, want); d != "" {
		t.Errorf("Get(%s) differs:%s", want.TunnelID, d)
	}
	got, err = s.GetByConnection(t.Context(), want.ConnectionID)
	if err != nil {
		t.Fatalf("GetByConnection(%s): %v", want.ConnectionID, err)
	}
	if d := diff(got, want); d != "" {
		t.Errorf("GetByConnection(%s) differs:%s", want.ConnectionID, d)
	}
	members, err := s.Members(t.Context(), want.TunnelID)
	if err != nil {
		t.Fatalf("Members(%s): %v", want.TunnelID, err)
	}
	if len(members) != 1 {
		t.Fatalf("Members(%s) = %d records, want 1: %+v", want.TunnelID, len(members), members)
	}
	if d := diff(members[0], want); d != "" {
		t.Errorf("Members(%s)[0] differs:%s", want.TunnelID, d)
	}
}

// wantGone checks that Get and Members of tunnelID and GetByConnection of
// connectionID all fail with ErrNotFound.
func wantGone(t *testing.T, s store.Store, tunnelID, connectionID string) {
	t.Helper()
	if r, err := s.Get(t.Context(), tunnelID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(%s) = %+v, %v; want ErrNotFound", tunnelID, r, err)
	}
	if rs, err := s.Members(t.Context(), tunnelID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Members(%s) = %+v, %v; want ErrNotFound", tunnelID, rs, err)
	}
	if r, err := s.GetByConnection(t.Context(), connectionID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetByConnection(%s) = %+v, %v; want ErrNotFound", connectionID, r, err)
	}
}

// testPutGet checks that every field survives a round trip.
func testPutGet(t *testing.T, s store.Store) {
	base := time.Date(2030, 1, 2, 3, 4, 5, 678_901_234, time.UTC)
	tests := []struct {
		name string
		edit func(r *store.Record)
	}{
		{"AllFields", func(r *store.Record) {}},
		{"EmptyOptionalFields", func(r *store.Record) {
			r.Node = ""
			r.PublicURL = ""
			r.Subject = ""
			r.Version = 0
			r.Access = ""
		}},
		{"LargeVersion", func(r *store.Record) { r.Version = 65535 }},
		{"BinaryAccess", func(r *store.Record) { r.Access = binaryAccess() }},
		{"LargeAccess", func(r *store.Record) { r.Access = largeAccess(r.TunnelID) }},
		{"NoExpiry", func(r *store.Record) { r.ExpiresAt = time.Time{} }},
		{"ZeroCreatedAt", func(r *store.Record) { r.CreatedAt = time.Time{} }},
		{"SubMillisecondTimes", func(r *store.Record) {
			r.CreatedAt = base
			r.ExpiresAt = base.Add(future)
		}},
		{"NonUTCLocation", func(r *store.Record) {
			loc := time.FixedZone("UTC+5", 5*60*60)
			r.CreatedAt = r.CreatedAt.In(loc)
			r.ExpiresAt = r.ExpiresAt.In(loc)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRecord(randomID("owner-"))
			tt.edit(&r)
			mustPut(t, s, r)
			wantRecord(t, s, r)
		})
	}
}

// testNotFound checks lookups of IDs that were never put.
func testNotFound(t *testing.T, s store.Store) {
	// Another tunnel exists so that a store that returns any record it has
	// fails.
	mustPut(t, s, newRecord("owner"))
	tests := []struct {
		name   string
		lookup func(ctx context.Context, id string) (store.Record, error)
	}{
		{"Get", s.Get},
		{"GetByConnection", s.GetByConnection},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := randomID("x")
			r, err := tt.lookup(t.Context(), id)
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s(%s) = %+v, %v; want ErrNotFound", tt.name, id, r, err)
			}
		})
	}
	t.Run("Members", func(t *testing.T) {
		t.Parallel()
		id := randomID("x")
		if rs, err := s.Members(t.Context(), id); !errors.Is(err, store.ErrNotFound) || len(rs) != 0 {
			t.Errorf("Members(%s) = %+v, %v; want none and ErrNotFound", id, rs, err)
		}
	})
}

// testTakeover checks a reconnect by the same owner: the new connection
// gets the tunnel and the old one loses every handle on it.
func testTakeover(t *testing.T, s store.Store) {
	ctx := t.Context()
	old := newRecord("owner")
	mustPut(t, s, old)
	cur := reconnect(old)
	mustPut(t, s, cur)
	wantRecord(t, s, cur)

	if r, err := s.GetByConnection(ctx, old.ConnectionID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetByConnection(old) = %+v, %v; want ErrNotFound", r, err)
	}
	if err := s.Renew(ctx, old.TunnelID, old.ConnectionID, time.Now().Add(2*future)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Renew(old connection) = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, old.TunnelID, old.ConnectionID); err != nil {
		t.Errorf("Delete(old connection) = %v, want nil", err)
	}
	// Neither the Renew nor the Delete by the old connection touched it.
	wantRecord(t, s, cur)
}

// testConflict checks that another owner cannot take a live tunnel, even
// with the holder's Subject while the record is not Released.
func testConflict(t *testing.T, s store.Store) {
	ctx := t.Context()
	held := newRecord("owner-a")
	mustPut(t, s, held)
	tests := []struct {
		name string
		edit func(r *store.Record)
	}{
		{"NewConnection", func(r *store.Record) {}},
		{"SameConnection", func(r *store.Record) { r.ConnectionID = held.ConnectionID }},
		{"NoExpiry", func(r *store.Record) { r.ExpiresAt = time.Time{} }},
		{"SameSubject", func(r *store.Record) { r.Subject = held.Subject }},
		{"SameSubjectClaimingReleased", func(r *store.Record) {
			r.Subject = held.Subject
			r.Released = true
		}},
	}
	for _, tt := range tests {
		// Sequential: every case checks the same record is unchanged.
		t.Run(tt.name, func(t *testing.T) {
			other := reconnect(held)
			other.Owner = "owner-b"
			other.Subject = "agent-of-owner-b"
			tt.edit(&other)
			if err := s.Put(ctx, other); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("Put by another owner = %v, want ErrConflict", err)
			}
			wantRecord(t, s, held)
			if other.ConnectionID != held.ConnectionID {
				wantGone(t, s, randomID("t"), other.ConnectionID)
			}
		})
	}
}

// testExpiry checks that expired records are invisible and free, and that
// a zero ExpiresAt never expires.
func testExpiry(t *testing.T, s store.Store) {
	t.Run("PutExpired", func(t *testing.T) {
		t.Parallel()
		r := newRecord("owner-a")
		r.ExpiresAt = time.Now().Add(past)
		mustPut(t, s, r)
		wantGone(t, s, r.TunnelID, r.ConnectionID)
		if err := s.Renew(t.Context(), r.TunnelID, r.ConnectionID, time.Now().Add(future)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Renew(expired) = %v, want ErrNotFound", err)
		}

		other := newRecord("owner-b")
		other.TunnelID = r.TunnelID
		mustPut(t, s, other)
		wantRecord(t, s, other)
	})
	t.Run("ExpiredByTakeover", func(t *testing.T) {
		// An expired record of the same owner is replaced like a live one,
		// and the expired one stays invisible by its connection.
		t.Parallel()
		r := newRecord("owner")
		r.ExpiresAt = time.Now().Add(past)
		mustPut(t, s, r)
		cur := reconnect(r)
		mustPut(t, s, cur)
		wantRecord(t, s, cur)
		wantGone(t, s, randomID("t"), r.ConnectionID)
	})
	t.Run("RenewToPast", func(t *testing.T) {
		t.Parallel()
		r := newRecord("owner-a")
		mustPut(t, s, r)
		if err := s.Renew(t.Context(), r.TunnelID, r.ConnectionID, time.Now().Add(past)); err != nil {
			t.Fatalf("Renew(past) = %v, want nil", err)
		}
		wantGone(t, s, r.TunnelID, r.ConnectionID)

		other := newRecord("owner-b")
		other.TunnelID = r.TunnelID
		mustPut(t, s, other)
		wantRecord(t, s, other)
	})
	t.Run("RenewToFuture", func(t *testing.T) {
		t.Parallel()
		r := newRecord("owner")
		mustPut(t, s, r)
		r.ExpiresAt = time.Now().Add(2 * future)
		if err := s.Renew(t.Context(), r.TunnelID, r.ConnectionID, r.ExpiresAt); err != nil {
			t.Fatalf("Renew(future) = %v, want nil", err)
		}
		wantRecord(t, s, r)
	})
	t.Run("RenewToNoExpiry", func(t *testing.T) {
		t.Parallel()
		r := newRecord("owner")
		mustPut(t, s, r)
		r.ExpiresAt = time.Time{}
		if err := s.Renew(t.Context(), r.TunnelID, r.ConnectionID, r.ExpiresAt); err != nil {
			t.Fatalf("Renew(zero) = %v, want nil", err)
		}
		wantRecord(t, s, r)
	})
	t.Run("ZeroNeverExpires", func(t *testing.T) {
		// Without waiting forever, "never expires" shows as: the record is
		// visible with a zero ExpiresAt, and it still holds the tunnel
		// against another owner.
		t.Parallel()
		r := newRecord("owner-a")
		r.ExpiresAt = time.Time{}
		mustPut(t, s, r)
		wantRecord(t, s, r)
		other := reconnect(r)
		other.Owner = "owner-b"
		if err := s.Put(t.Context(), other); !errors.Is(err, store.ErrConflict) {
			t.Errorf("Put over a record with no expiry = %v, want ErrConflict", err)
		}
		wantRecord(t, s, r)
	})
}

// testRenew checks the cases where Renew must refuse.
func testRenew(t *testing.T, s store.Store) {
	live := newRecord("owner")
	mustPut(t, s, live)
	tests := []struct {
		name                   string
		tunnelID, connectionID string
	}{
		{"MissingTunnel", randomID("t"), randomID("c")},
		{"MissingTunnelKnownConnection", randomID("t"), live.ConnectionID},
		{"OtherConnection", live.TunnelID, randomID("c")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Renew(t.Context(), tt.tunnelID, tt.connectionID, time.Now().Add(2*future))
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Renew = %v, want ErrNotFound", err)
			}
			// The refused Renew left the live record as it was.
			wantRecord(t, s, live)
		})
	}
}

// testDelete checks removal and that a deleted tunnel is free again.
func testDelete(t *testing.T, s store.Store) {
	t.Run("Removes", func(t *testing.T) {
		t.Parallel()
		r := newRecord("owner-a")
		mustPut(t, s, r)
		if err := s.Delete(t.Context(), r.TunnelID, r.ConnectionID); err != nil {
			t.Fatalf("Delete = %v, want nil", err)
		}
		wantGone(t, s, r.TunnelID, r.ConnectionID)
		if err := s.Renew(t.Context(), r.TunnelID, r.ConnectionID, time.Now().Add(future)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Renew after Delete = %v, want ErrNotFound", err)
		}

		other := newRecord("owner-b")
		other.TunnelID = r.TunnelID
		mustPut(t, s, other)
		wantRecord(t, s, other)
	})
	t.Run("Missing", func(t *testing.T) {
		t.Parallel()
		if err := s.Delete(t.Context(), randomID("t"), randomID("c")); err != nil {
			t.Errorf("Delete(missing) = %v, want nil", err)
		}
	})
	t.Run("Twice", func(t *testing.T) {
		t.Parallel()
		r := newRecord("owner")
		mustPut(t, s, r)
		for i := range 2 {
			if err := s.Delete(t.Context(), r.TunnelID, r.ConnectionID); err != nil {
				t.Errorf("Delete #%d = %v, want nil", i+1, err)
			}
		}
		wantGone(t, s, r.TunnelID, r.ConnectionID)
	})
	t.Run("OtherConnection", func(t *testing.T) {
		t.Parallel()
		r := newRecord("owner")
		mustPut(t, s, r)
		if err := s.Delete(t.Context(), r.TunnelID, randomID("c")); err != nil {
			t.Errorf("Delete(other connection) = %v, want nil", err)
		}
		wantRecord(t, s, r)
	})
}

// mustRelease releases r's tunnel for r's connection and returns r as the
// store should now return it.
func mustRelease(t *testing.T, s store.Store, r store.Record) store.Record {
	t.Helper()
	if err := s.Release(t.Context(), r.TunnelID, r.ConnectionID); err != nil {
		t.Fatalf("Release(%s, %s): %v", r.TunnelID, r.ConnectionID, err)
	}
	r.Released = true
	return r
}

// testRelease checks what Release marks, what it refuses, and what clears
// the mark.
func testRelease(t *testing.T, s store.Store) {
	t.Run("Marks", func(t *testing.T) {
		// Released shows through both lookups; nothing else changes,
		// the expiry included.
		t.Parallel()
		r := newRecord("owner")
		mustPut(t, s, r)
		wantRecord(t, s, mustRelease(t, s, r))
	})
	t.Run("Twice", func(t *testing.T) {
		t.Parallel()
		r := newRecord("owner")
		mustPut(t, s, r)
		mustRelease(t, s, r)
		wantRecord(t, s, mustRelease(t, s, r))
	})
	t.Run("NoExpiry", func(t *testing.T) {
		t.Parallel()
		r := newRecord("owner")
		r.ExpiresAt = time.Time{}
		mustPut(t, s, r)
		wantRecord(t, s, mustRelease(t, s, r))
	})
	t.Run("RenewClears", func(t *testing.T) {
		t.Parallel()
		r := newRecord("owner")
		mustPut(t, s, r)
		mustRelease(t, s, r)
		r.ExpiresAt = time.Now().Add(2 * future)
		if err := s.Renew(t.Context(), r.TunnelID, r.ConnectionID, r.ExpiresAt); err != nil {
			t.Fatalf("Renew of a released record = %v, want nil", err)
		}
		wantRecord(t, s, r)
	})
	t.Run("RenewToNoExpiryClears", func(t *testing.T) {
		t.Parallel()
		r := newRecord("owner")
		mustPut(t, s, r)
		mustRelease(t, s, r)
		r.ExpiresAt = time.Time{}
		if err := s.Renew(t.Context(), r.TunnelID, r.ConnectionID, r.ExpiresAt); err != nil {
			t.Fatalf("Renew of a released record = %v, want nil", err)
		}
		wantRecord(t, s, r)
	})
	t.Run("PutClears", func(t *testing.T) {
		// The same owner's Put replaces a released record with an
		// unreleased one, even when the caller passes Released.
		t.Parallel()
		r := newRecord("owner")
		mustPut(t, s, r)
		mustRelease(t, s, r)
		cur := reconnect(r)
		cur.Released = true
		mustPut(t, s, cur)
		cur.Released = false
		wantRecord(t, s, cur)
	})
	t.Run("PutStoresUnreleased", func(t *testing.T) {
		t.Parallel()
		r := newRecord("owner")
		r.Released = true
		mustPut(t, s, r)
		r.Released = false
		wantRecord(t, s, r)
	})

	// refusals each leave a tunnel in a state where Release by the given
	// connection must return ErrNotFound. They return the live record the
	// refused Release must leave as it was, if there is one.
	refusals := []struct {
		name string
		// setup returns the tunnel and connection to release, and the
		// record that must then be unchanged (TunnelID "" for none).
		setup func(t *testing.T) (tunnelID, connectionID string, live store.Record)
	}{
		{"MissingTunnel", func(t *testing.T) (string, string, store.Record) {
			return randomID("t"), randomID("c"), store.Record{}
		}},
		{"MissingTunnelKnownConnection", func(t *testing.T) (string, string, store.Record) {
			r := newRecord("owner")
			mustPut(t, s, r)
			return randomID("t"), r.ConnectionID, r
		}},
		{"OtherConnection", func(t *testing.T) (string, string, store.Record) {
			r := newRecord("owner")
			mustPut(t, s, r)
			return r.TunnelID, randomID("c"), r
		}},
		{"PutExpired", func(t *testing.T) (string, string, store.Record) {
			r := newRecord("owner")
			r.ExpiresAt = time.Now().Add(past)
			mustPut(t, s, r)
			return r.TunnelID, r.ConnectionID, store.Record{}
		}},
		{"RenewedToPast", func(t *testing.T) (string, string, store.Record) {
			r := newRecord("owner")
			mustPut(t, s, r)
			if err := s.Renew(t.Context(), r.TunnelID, r.ConnectionID, time.Now().Add(past)); err != nil {
				t.Fatalf("Renew(past) = %v, want nil", err)
			}
			return r.TunnelID, r.ConnectionID, store.Record{}
		}},
		{"Deleted", func(t *testing.T) (string, string, store.Record) {
			r := newRecord("owner")
			mustPut(t, s, r)
			if err := s.Delete(t.Context(), r.TunnelID, r.ConnectionID); err != nil {
				t.Fatalf("Delete = %v, want nil", err)
			}
			return r.TunnelID, r.ConnectionID, store.Record{}
		}},
		{"TakenOver", func(t *testing.T) (string, string, store.Record) {
			old := newRecord("owner")
			mustPut(t, s, old)
			cur := reconnect(old)
			mustPut(t, s, cur)
			return old.TunnelID, old.ConnectionID, cur
		}},
	}
	for _, tt := range refusals {
		t.Run("Refuses"+tt.name, func(t *testing.T) {
			t.Parallel()
			tunnelID, connectionID, live := tt.setup(t)
			if err := s.Release(t.Context(), tunnelID, connectionID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Release = %v, want ErrNotFound", err)
			}
			if live.TunnelID != "" {
				wantRecord(t, s, live)
				return
			}
			// The refused Release did not bring the record back.
			wantGone(t, s, tunnelID, connectionID)
		})
	}
}

// testReleasedTakeover checks which Puts may replace a released record:
// those of its owner, as always, and those with its non-empty Subject;
// nobody else.
func testReleasedTakeover(t *testing.T, s store.Store) {
	tests := []struct {
		name string
		// heldSubject is the Subject of the released record.
		heldSubject string
		// edit turns the same owner's reconnect into the Put to try.
		edit    func(r *store.Record)
		replace bool
	}{
		{"SameOwner", "agent", func(r *store.Record) {}, true},
		{"SameOwnerOtherSubject", "agent", func(r *store.Record) { r.Subject = "agent-2" }, true},
		{"SameSubjectOtherOwner", "agent", func(r *store.Record) { r.Owner = "owner-b" }, true},
		{"SameSubjectOtherOwnerNoExpiry", "agent", func(r *store.Record) {
			r.Owner = "owner-b"
			r.ExpiresAt = time.Time{}
		}, true},
		{"OtherSubject", "agent", func(r *store.Record) {
			r.Owner = "owner-b"
			r.Subject = "agent-2"
		}, false},
		{"EmptySubject", "agent", func(r *store.Record) {
			r.Owner = "owner-b"
			r.Subject = ""
		}, false},
		{"BothSubjectsEmpty", "", func(r *store.Record) {
			r.Owner = "owner-b"
			r.Subject = ""
		}, false},
		{"SubjectPrefix", "agent", func(r *store.Record) {
			r.Owner = "owner-b"
			r.Subject = "agen"
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			held := newRecord("owner-a")
			held.Subject = tt.heldSubject
			mustPut(t, s, held)
			held = mustRelease(t, s, held)

			next := reconnect(held)
			next.Released = false
			tt.edit(&next)
			err := s.Put(ctx, next)
			if !tt.replace {
				if !errors.Is(err, store.ErrConflict) {
					t.Fatalf("Put = %v, want ErrConflict", err)
				}
				wantRecord(t, s, held)
				wantGone(t, s, randomID("t"), next.ConnectionID)
				return
			}
			if err != nil {
				t.Fatalf("Put = %v, want nil", err)
			}
			wantRecord(t, s, next)
			// The released connection has lost every handle on the tunnel.
			if r, err := s.GetByConnection(ctx, held.ConnectionID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetByConnection(released) = %+v, %v; want ErrNotFound", r, err)
			}
			for name, call := range map[string]func() error{
				"Renew":   func() error { return s.Renew(ctx, held.TunnelID, held.ConnectionID, time.Now().Add(2*future)) },
				"Release": func() error { return s.Release(ctx, held.TunnelID, held.ConnectionID) },
			} {
				if err := call(); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("%s(released connection) = %v, want ErrNotFound", name, err)
				}
			}
			wantRecord(t, s, next)

			// The new record is not released, so a third owner with the
			// same Subject is refused now.
			third := reconnect(next)
			third.Owner = "owner-c"
			third.Subject = next.Subject
			if err := s.Put(ctx, third); !errors.Is(err, store.ErrConflict) {
				t.Errorf("Put by a third owner with Subject %q = %v, want ErrConflict", third.Subject, err)
			}
			wantRecord(t, s, next)
		})
	}
	t.Run("AfterRenew", func(t *testing.T) {
		// Renew clears the mark, and with it the takeover by Subject.
		t.Parallel()
		held := newRecord("owner-a")
		mustPut(t, s, held)
		mustRelease(t, s, held)
		if err := s.Renew(t.Context(), held.TunnelID, held.ConnectionID, held.ExpiresAt); err != nil {
			t.Fatalf("Renew = %v, want nil", err)
		}
		other := reconnect(held)
		other.Owner = "owner-b"
		if err := s.Put(t.Context(), other); !errors.Is(err, store.ErrConflict) {
			t.Errorf("Put with the Subject of a renewed record = %v, want ErrConflict", err)
		}
		wantRecord(t, s, held)
	})
	t.Run("AfterExpiry", func(t *testing.T) {
		// An expired released record is free to anyone, like any expired
		// record.
		t.Parallel()
		held := newRecord("owner-a")
		mustPut(t, s, held)
		mustRelease(t, s, held)
		if err := s.Renew(t.Context(), held.TunnelID, held.ConnectionID, time.Now().Add(past)); err != nil {
			t.Fatalf("Renew(past) = %v, want nil", err)
		}
		other := newRecord("owner-b")
		other.TunnelID = held.TunnelID
		mustPut(t, s, other)
		wantRecord(t, s, other)
	})
}

// testAccess checks that a record's Access is its own: kept by Release
// and Renew whatever its bytes and length, and replaced, by empty too, by
// every Put that replaces the record. (The other subtests check it as
// well, through the policies of newRecord and reconnect.)
func testAccess(t *testing.T, s store.Store) {
	kept := []struct {
		name   string
		access func(tag string) string
	}{
		{"Typical", accessPolicy},
		{"Binary", func(string) string { return binaryAccess() }},
		{"Large", largeAccess},
	}
	for _, tt := range kept {
		t.Run("Kept"+tt.name, func(t *testing.T) {
			// Release and Renew change a stored record in place.
			t.Parallel()
			r := newRecord(randomID("owner-"))
			r.Access = tt.access(r.TunnelID)
			mustPut(t, s, r)
			r = mustRelease(t, s, r)
			wantRecord(t, s, r)
			r.Released = false
			for _, exp := range []time.Time{time.Now().Add(2 * future), {}} {
				r.ExpiresAt = exp
				if err := s.Renew(t.Context(), r.TunnelID, r.ConnectionID, exp); err != nil {
					t.Fatalf("Renew(%v) = %v, want nil", exp, err)
				}
				wantRecord(t, s, r)
			}
		})
	}

	// Ways for next, the same owner's reconnect by default, to replace
	// held: prepare readies held and edits next.
	sameOwner := func(t *testing.T, held store.Record, next *store.Record) {}
	bySubject := func(t *testing.T, held store.Record, next *store.Record) {
		mustRelease(t, s, held)
		next.Owner = "owner-b"
	}
	afterExpiry := func(t *testing.T, held store.Record, next *store.Record) {
		if err := s.Renew(t.Context(), held.TunnelID, held.ConnectionID, time.Now().Add(past)); err != nil {
			t.Fatalf("Renew(past) = %v, want nil", err)
		}
		next.Owner = "owner-b"
		next.Subject = "agent-of-owner-b"
	}
	replaced := []struct {
		name       string
		held, next string
		prepare    func(t *testing.T, held store.Record, next *store.Record)
	}{
		{"BySameOwner", accessPolicy("held"), accessPolicy("next"), sameOwner},
		{"BySameOwnerWithNone", accessPolicy("held"), "", sameOwner},
		{"BySameOwnerFromNone", "", accessPolicy("next"), sameOwner},
		{"BySameOwnerLargeWithShort", largeAccess("held"), accessPolicy("next"), sameOwner},
		{"BySameOwnerLargeWithNone", largeAccess("held"), "", sameOwner},
		{"BySameOwnerShortWithLarge", accessPolicy("held"), largeAccess("next"), sameOwner},
		{"BySubjectOfReleased", accessPolicy("held"), accessPolicy("next"), bySubject},
		{"BySubjectOfReleasedWithNone", accessPolicy("held"), "", bySubject},
		{"ByOtherOwnerAfterExpiry", largeAccess("held"), "", afterExpiry},
	}
	for _, tt := range replaced {
		t.Run("Replaced"+tt.name, func(t *testing.T) {
			t.Parallel()
			held := newRecord("owner-a")
			held.Access = tt.held
			mustPut(t, s, held)
			next := reconnect(held)
			next.Access = tt.next
			tt.prepare(t, held, &next)
			mustPut(t, s, next)
			wantRecord(t, s, next)
		})
	}
}

// testRacingClaims checks that of many owners claiming one free tunnel at
// once, exactly one wins.
func testRacingClaims(t *testing.T, s store.Store) {
	const (
		tunnels = 8
		owners  = 16
	)
	for i := range tunnels {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			id := randomID("t")
			recs := make([]store.Record, owners)
			for j := range recs {
				recs[j] = newRecord(fmt.Sprintf("owner-%d", j))
				recs[j].TunnelID = id
			}
			race(t, s, recs)
		})
	}
}

// testRacingReleasedClaims checks that of many owners with one Subject
// claiming a tunnel released by that Subject at once, exactly one wins:
// the winner's record is not released, so it bars the rest.
func testRacingReleasedClaims(t *testing.T, s store.Store) {
	const (
		tunnels = 8
		owners  = 16
	)
	for i := range tunnels {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			held := newRecord("owner-held")
			held.Subject = randomID("agent-")
			mustPut(t, s, held)
			mustRelease(t, s, held)
			recs := make([]store.Record, owners)
			for j := range recs {
				recs[j] = newRecord(fmt.Sprintf("owner-%d", j))
				recs[j].TunnelID = held.TunnelID
				recs[j].Subject = held.Subject
			}
			race(t, s, recs)
			wantGone(t, s, randomID("t"), held.ConnectionID)
		})
	}
}

// race puts recs, all for one tunnel and of different owners, from one
// goroutine each at once, and checks that exactly one Put succeeded, the
// others failed with ErrConflict, and the store holds the winner's record.
func race(t *testing.T, s store.Store, recs []store.Record) {
	t.Helper()
	errs := make([]error, len(recs))
	// start lines the goroutines up so that their Puts overlap.
	start := make(chan struct{})
	var wg sync.WaitGroup
	for j := range recs {
		wg.Go(func() {
			<-start
			errs[j] = s.Put(t.Context(), recs[j])
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for j, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("owners %d and %d both won", winner, j)
		case err == nil:
			winner = j
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("Put by owner %d = %v, want nil or ErrConflict", j, err)
		}
	}
	if winner < 0 {
		t.Fatal("no owner won")
	}
	wantRecord(t, s, recs[winner])
	for j, r := range recs {
		if j != winner {
			wantGone(t, s, randomID("t"), r.ConnectionID)
		}
	}
}

// testConcurrentTunnels runs the whole lifecycle on many tunnels at once,
// each goroutine on its own tunnel, so that a store sharing state between
// tunnels unsafely fails, under the race detector or by returning another
// tunnel's record.
func testConcurrentTunnels(t *testing.T, s store.Store) {
	const (
		workers = 32
		rounds  = 10
	)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			ctx := t.Context()
			r := newRecord(randomID("owner-"))
			for range rounds {
				r = reconnect(r)
				if err := s.Put(ctx, r); err != nil {
					t.Errorf("Put(%s) = %v", r.TunnelID, err)
					return
				}
				if got, err := s.Get(ctx, r.TunnelID); err != nil || diff(got, r) != "" {
					t.Errorf("Get(%s) = %+v, %v; want %+v", r.TunnelID, got, err, r)
					return
				}
				if got, err := s.GetByConnection(ctx, r.ConnectionID); err != nil || diff(got, r) != "" {
					t.Errorf("GetByConnection(%s) = %+v, %v; want %+v", r.ConnectionID, got, err, r)
					return
				}
				r.ExpiresAt = r.ExpiresAt.Add(time.Minute)
				if err := s.Renew(ctx, r.TunnelID, r.ConnectionID, r.ExpiresAt); err != nil {
					t.Errorf("Renew(%s) = %v", r.TunnelID, err)
					return
				}
				if got, err := s.Get(ctx, r.TunnelID); err != nil || diff(got, r) != "" {
					t.Errorf("Get(%s) after Renew = %+v, %v; want %+v", r.TunnelID, got, err, r)
					return
				}
				if err := s.Delete(ctx, r.TunnelID, r.ConnectionID); err != nil {
					t.Errorf("Delete(%s) = %v", r.TunnelID, err)
					return
				}
				if got, err := s.Get(ctx, r.TunnelID); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("Get(%s) after Delete = %+v, %v; want ErrNotFound", r.TunnelID, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// testCanceledContext checks that a canceled ctx makes each method either
// fail with context.Canceled or behave as usual.
func testCanceledContext(t *testing.T, s store.Store) {
	r := newRecord("owner")
	mustPut(t, s, r)
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	renewed := time.Now().Add(2 * future)

	tests := []struct {
		name string
		call func(ctx context.Context) error
		// check runs, with a live ctx, after call returned nil: the call
		// must then have had its usual effect.
		check func(t *testing.T)
	}{
		{"Get", func(ctx context.Context) error {
			got, err := s.Get(ctx, r.TunnelID)
			if err == nil && diff(got, r) != "" {
				return fmt.Errorf("returned the wrong record:%s", diff(got, r))
			}
			return err
		}, nil},
		{"GetByConnection", func(ctx context.Context) error {
			got, err := s.GetByConnection(ctx, r.ConnectionID)
			if err == nil && diff(got, r) != "" {
				return fmt.Errorf("returned the wrong record:%s", diff(got, r))
			}
			return err
		}, nil},
		{"Members", func(ctx context.Context) error {
			got, err := s.Members(ctx, r.TunnelID)
			if err == nil && (len(got) != 1 || diff(got[0], r) != "") {
				return fmt.Errorf("returned %+v, want the record alone", got)
			}
			return err
		}, nil},
		{"Put", func(ctx context.Context) error {
			return s.Put(ctx, newRecord("owner"))
		}, nil},
		{"Release", func(ctx context.Context) error {
			return s.Release(ctx, r.TunnelID, r.ConnectionID)
		}, func(t *testing.T) {
			want := r
			want.Released = true
			wantRecord(t, s, want)
		}},
		// Renew clears what Release may have set, so its check holds
		// whether or not Release had its effect.
		{"Renew", func(ctx context.Context) error {
			return s.Renew(ctx, r.TunnelID, r.ConnectionID, renewed)
		}, func(t *testing.T) {
			want := r
			want.ExpiresAt = renewed
			wantRecord(t, s, want)
		}},
		{"Delete", func(ctx context.Context) error {
			return s.Delete(ctx, r.TunnelID, r.ConnectionID)
		}, func(t *testing.T) {
			wantGone(t, s, r.TunnelID, r.ConnectionID)
		}},
	}
	// Sequential and in this order: Release, Renew and Delete act on r,
	// which the lookups before them read.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(canceled)
			switch {
			case err == nil && tt.check != nil:
				tt.check(t)
			case err != nil && !errors.Is(err, context.Canceled):
				t.Errorf("%s with a canceled ctx = %v, want nil or an error wrapping context.Canceled", tt.name, err)
			}
		})
	}
}
