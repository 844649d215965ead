package redisstore_test

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/http-tunnel/tunnel/internal/randid"
	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/store/redisstore"
	"github.com/http-tunnel/tunnel/store/redisstore/redistest"
	"github.com/http-tunnel/tunnel/store/storetest"
)

// newStore returns a Store under a prefix of its own, so that tests sharing
// the server never see each other's keys, which are deleted when tb ends.
// It returns the prefix too, for tests that inspect the keys.
func newStore(tb testing.TB, client *redis.Client) (*redisstore.Store, string) {
	tb.Helper()
	prefix := redistest.Prefix(tb, client)
	return redisstore.New(client, redisstore.Options{Prefix: prefix}), prefix
}

// Key names as the package documents them; the tests below pin them.
func recordKey(prefix, tunnelID string) string   { return "{" + prefix + "}t:" + tunnelID }
func connKey(prefix, connectionID string) string { return "{" + prefix + "}c:" + connectionID }

// newRecord returns a live record with every field set, for a fresh tunnel
// and connection.
func newRecord() store.Record {
	now := time.Now()
	id := "t" + randid.Hex(8)
	return store.Record{
		TunnelID:     id,
		ConnectionID: "c" + randid.Hex(8),
		Owner:        "owner-" + randid.Hex(4),
		Node:         "node-a",
		PublicURL:    "https://" + id + ".tunnel.example",
		Subject:      "agent-" + randid.Hex(4),
		Version:      1,
		Access:       `{"allow":["192.0.2.0/24"]}`,
		CreatedAt:    now,
		ExpiresAt:    now.Add(time.Hour),
	}
}

func mustPut(t *testing.T, s store.Store, r store.Record) {
	t.Helper()
	if err := s.Put(t.Context(), r); err != nil {
		t.Fatalf("Put(%s): %v", r.TunnelID, err)
	}
}

func TestConformance(t *testing.T) {
	client := redistest.Client(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := newStore(t, client)
		return s
	})
}

// TestKeyLayout checks the documented key names, that the zero Options
// use DefaultPrefix, and that the connection key holds the tunnel ID.
func TestKeyLayout(t *testing.T) {
	client := redistest.Client(t)
	tests := []struct {
		name, prefix, wantTag string
	}{
		{"ZeroIsDefault", "", "{tunnel:}"},
		{"Custom", "edge-eu:", "{edge-eu:}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := redisstore.New(client, redisstore.Options{Prefix: tt.prefix})
			r := newRecord()
			rk, ck := tt.wantTag+"t:"+r.TunnelID, tt.wantTag+"c:"+r.ConnectionID
			// The IDs are random, so only this test's keys match, even
			// under the shared default prefix.
			t.Cleanup(func() {
				if err := client.Del(context.Background(), rk, ck).Err(); err != nil {
					t.Errorf("DEL %s %s: %v", rk, ck, err)
				}
			})
			mustPut(t, s, r)
			if n, err := client.Exists(t.Context(), rk).Result(); err != nil || n != 1 {
				t.Errorf("EXISTS %s = %d, %v; want 1", rk, n, err)
			}
			if got, err := client.Get(t.Context(), ck).Result(); err != nil || got != r.TunnelID {
				t.Errorf("GET %s = %q, %v; want %q", ck, got, err, r.TunnelID)
			}
		})
	}
}

// TestTTL checks that the keys' TTLs in Redis follow ExpiresAt through Put,
// Renew and takeover: a deadline when there is one, none when it is zero.
func TestTTL(t *testing.T) {
	client := redistest.Client(t)
	const noTTL = -1 // PTTL of a key without one
	tests := []struct {
		name string
		// act puts r (and may renew or replace it) and returns the record
		// that should hold the tunnel.
		act func(t *testing.T, s store.Store, r store.Record) store.Record
		// want is the TTL both of the holder's keys should have, to within
		// a minute below; noTTL for none.
		want time.Duration
	}{
		{"Put", func(t *testing.T, s store.Store, r store.Record) store.Record {
			mustPut(t, s, r)
			return r
		}, time.Hour},
		{"PutNoExpiry", func(t *testing.T, s store.Store, r store.Record) store.Record {
			r.ExpiresAt = time.Time{}
			mustPut(t, s, r)
			return r
		}, noTTL},
		{"RenewLater", func(t *testing.T, s store.Store, r store.Record) store.Record {
			mustPut(t, s, r)
			r.ExpiresAt = time.Now().Add(3 * time.Hour)
			if err := s.Renew(t.Context(), r.TunnelID, r.ConnectionID, r.ExpiresAt); err != nil {
				t.Fatal(err)
			}
			return r
		}, 3 * time.Hour},
		{"RenewToNoExpiry", func(t *testing.T, s store.Store, r store.Record) store.Record {
			mustPut(t, s, r)
			r.ExpiresAt = time.Time{}
			if err := s.Renew(t.Context(), r.TunnelID, r.ConnectionID, r.ExpiresAt); err != nil {
				t.Fatal(err)
			}
			return r
		}, noTTL},
		{"RenewFromNoExpiry", func(t *testing.T, s store.Store, r store.Record) store.Record {
			r.ExpiresAt = time.Time{}
			mustPut(t, s, r)
			r.ExpiresAt = time.Now().Add(2 * time.Hour)
			if err := s.Renew(t.Context(), r.TunnelID, r.ConnectionID, r.ExpiresAt); err != nil {
				t.Fatal(err)
			}
			return r
		}, 2 * time.Hour},
		{"Release", func(t *testing.T, s store.Store, r store.Record) store.Record {
			mustPut(t, s, r)
			if err := s.Release(t.Context(), r.TunnelID, r.ConnectionID); err != nil {
				t.Fatal(err)
			}
			return r
		}, time.Hour},
		{"ReleaseNoExpiry", func(t *testing.T, s store.Store, r store.Record) store.Record {
			r.ExpiresAt = time.Time{}
			mustPut(t, s, r)
			if err := s.Release(t.Context(), r.TunnelID, r.ConnectionID); err != nil {
				t.Fatal(err)
			}
			return r
		}, noTTL},
		{"TakeoverOfReleased", func(t *testing.T, s store.Store, r store.Record) store.Record {
			r.Subject = "agent"
			mustPut(t, s, r)
			if err := s.Release(t.Context(), r.TunnelID, r.ConnectionID); err != nil {
				t.Fatal(err)
			}
			r.Owner += "-restarted"
			r.ConnectionID = "c" + randid.Hex(8)
			r.ExpiresAt = time.Now().Add(2 * time.Hour)
			mustPut(t, s, r)
			return r
		}, 2 * time.Hour},
		{"TakeoverToNoExpiry", func(t *testing.T, s store.Store, r store.Record) store.Record {
			mustPut(t, s, r)
			r.ConnectionID = "c" + randid.Hex(8)
			r.ExpiresAt = time.Time{}
			mustPut(t, s, r)
			return r
		}, noTTL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, prefix := newStore(t, client)
			r := tt.act(t, s, newRecord())
			for _, key := range []string{recordKey(prefix, r.TunnelID), connKey(prefix, r.ConnectionID)} {
				got, err := client.PTTL(t.Context(), key).Result()
				if err != nil {
					t.Fatalf("PTTL %s: %v", key, err)
				}
				if tt.want == noTTL {
					if got != noTTL {
						t.Errorf("PTTL %s = %v, want none (-1)", key, got)
					}
					continue
				}
				if got <= tt.want-time.Minute || got > tt.want {
					t.Errorf("PTTL %s = %v, want within a minute below %v", key, got, tt.want)
				}
			}
		})
	}
}

// TestExpiredLeavesNoKeys checks that a record put or renewed to the past
// is deleted from Redis, not only hidden, along with its connection key and
// the keys of the record it replaced.
func TestExpiredLeavesNoKeys(t *testing.T) {
	client := redistest.Client(t)
	past := time.Now().Add(-time.Hour)
	tests := []struct {
		name string
		// act returns the records whose keys must all be gone.
		act func(t *testing.T, s store.Store) []store.Record
	}{
		{"PutPast", func(t *testing.T, s store.Store) []store.Record {
			r := newRecord()
			r.ExpiresAt = past
			mustPut(t, s, r)
			return []store.Record{r}
		}},
		{"PutPastOverLive", func(t *testing.T, s store.Store) []store.Record {
			r := newRecord()
			mustPut(t, s, r)
			next := r
			next.ConnectionID = "c" + randid.Hex(8)
			next.ExpiresAt = past
			mustPut(t, s, next)
			return []store.Record{r, next}
		}},
		{"RenewToPast", func(t *testing.T, s store.Store) []store.Record {
			r := newRecord()
			mustPut(t, s, r)
			if err := s.Renew(t.Context(), r.TunnelID, r.ConnectionID, past); err != nil {
				t.Fatalf("Renew(past) = %v, want nil", err)
			}
			return []store.Record{r}
		}},
		{"RenewToBeforeEpoch", func(t *testing.T, s store.Store) []store.Record {
			r := newRecord()
			mustPut(t, s, r)
			if err := s.Renew(t.Context(), r.TunnelID, r.ConnectionID, time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
				t.Fatalf("Renew(1960) = %v, want nil", err)
			}
			return []store.Record{r}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, prefix := newStore(t, client)
			for _, r := range tt.act(t, s) {
				keys := []string{recordKey(prefix, r.TunnelID), connKey(prefix, r.ConnectionID)}
				if n, err := client.Exists(t.Context(), keys...).Result(); err != nil || n != 0 {
					t.Errorf("EXISTS %v = %d, %v; want 0", keys, n, err)
				}
			}
		})
	}
}

// TestExpiryCheckedByScripts checks that a record past its ExpiresAt is
// treated as expired even while Redis still holds its key, as it does
// through the millisecond of the deadline. The test makes such a record by
// rewriting the expiry field of a live one (offset 1, Unix milliseconds,
// big-endian) and removing its TTL.
func TestExpiryCheckedByScripts(t *testing.T) {
	client := redistest.Client(t)
	tests := []struct {
		name  string
		check func(t *testing.T, s store.Store, r store.Record)
	}{
		{"Get", func(t *testing.T, s store.Store, r store.Record) {
			if got, err := s.Get(t.Context(), r.TunnelID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get = %+v, %v; want ErrNotFound", got, err)
			}
		}},
		{"GetByConnection", func(t *testing.T, s store.Store, r store.Record) {
			if got, err := s.GetByConnection(t.Context(), r.ConnectionID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetByConnection = %+v, %v; want ErrNotFound", got, err)
			}
		}},
		{"Renew", func(t *testing.T, s store.Store, r store.Record) {
			if err := s.Renew(t.Context(), r.TunnelID, r.ConnectionID, time.Now().Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Renew = %v, want ErrNotFound", err)
			}
		}},
		{"Release", func(t *testing.T, s store.Store, r store.Record) {
			if err := s.Release(t.Context(), r.TunnelID, r.ConnectionID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Release = %v, want ErrNotFound", err)
			}
		}},
		{"PutByAnotherOwner", func(t *testing.T, s store.Store, r store.Record) {
			r.Owner += "-other"
			r.ConnectionID = "c" + randid.Hex(8)
			mustPut(t, s, r)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, prefix := newStore(t, client)
			r := newRecord()
			mustPut(t, s, r)
			var past [8]byte
			binary.BigEndian.PutUint64(past[:], uint64(time.Now().Add(-time.Second).UnixMilli()))
			rk := recordKey(prefix, r.TunnelID)
			if err := client.SetRange(t.Context(), rk, 1, string(past[:])).Err(); err != nil {
				t.Fatal(err)
			}
			if err := client.Persist(t.Context(), rk).Err(); err != nil {
				t.Fatal(err)
			}
			tt.check(t, s, r)
		})
	}
}

// layoutCase is a test of a record that an older release wrote.
type layoutCase struct {
	name string
	// act works on r, stored in the older layout, and returns the record
	// that must then hold the tunnel (TunnelID "" for none).
	act func(t *testing.T, s store.Store, r store.Record) store.Record
	// wantLayout is the layout version the record key must then hold,
	// with exactly the returned record in it (0: no record key).
	wantLayout byte
}

// encoders write a record in each layout version, as the release that
// wrote that version did.
var encoders = map[byte]func(store.Record) ([]byte, error){
	1: redisstore.EncodeV1,
	2: redisstore.EncodeV2,
	3: redisstore.Encode,
}

// testOlderLayout runs tests on records stored in layout version layout,
// after holds has cleared the fields of newRecord that the layout cannot
// hold. Every case then checks the raw value and both lookups.
func testOlderLayout(t *testing.T, layout byte, holds func(r *store.Record), tests []layoutCase) {
	client := redistest.Client(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, prefix := newStore(t, client)
			r := newRecord()
			v, err := encoders[layout](r)
			if err != nil {
				t.Fatal(err)
			}
			rk, ck := recordKey(prefix, r.TunnelID), connKey(prefix, r.ConnectionID)
			if err := client.Set(ctx, rk, v, time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			if err := client.Set(ctx, ck, r.TunnelID, time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			holds(&r)

			want := tt.act(t, s, r)

			raw, err := client.Get(ctx, rk).Result()
			if tt.wantLayout == 0 {
				if !errors.Is(err, redis.Nil) {
					t.Errorf("GET %s = %x, %v; want no key", rk, raw, err)
				}
				if got, err := s.Get(ctx, r.TunnelID); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("Get = %+v, %v; want ErrNotFound", got, err)
				}
				return
			}
			// The scripts rewrote the value in place, or the store wrote
			// it whole: either way it is want, byte for byte.
			if wantRaw, err := encoders[tt.wantLayout](want); err != nil || raw != string(wantRaw) {
				t.Errorf("GET %s =\n%x\nwant, layout version %d,\n%x (%v)", rk, raw, tt.wantLayout, wantRaw, err)
			}
			if ttl, err := client.PTTL(ctx, rk).Result(); err != nil || ttl <= 0 {
				t.Errorf("PTTL %s = %v, %v; want the TTL kept", rk, ttl, err)
			}
			want.CreatedAt = want.CreatedAt.Truncate(time.Millisecond)
			want.ExpiresAt = want.ExpiresAt.Truncate(time.Millisecond)
			for _, lookup := range []struct {
				name string
				call func() (store.Record, error)
			}{
				{"Get", func() (store.Record, error) { return s.Get(ctx, want.TunnelID) }},
				{"GetByConnection", func() (store.Record, error) { return s.GetByConnection(ctx, want.ConnectionID) }},
			} {
				got, err := lookup.call()
				if err != nil {
					t.Errorf("%s = %v", lookup.name, err)
					continue
				}
				if !got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
					t.Errorf("%s times = %v, %v; want %v, %v", lookup.name, got.CreatedAt, got.ExpiresAt, want.CreatedAt, want.ExpiresAt)
				}
				got.CreatedAt, got.ExpiresAt = want.CreatedAt, want.ExpiresAt
				if got != want {
					t.Errorf("%s = %+v, want %+v", lookup.name, got, want)
				}
			}
		})
	}
}

// Cases that work on a record of any older layout.
var (
	layoutRead = func(t *testing.T, s store.Store, r store.Record) store.Record {
		return r
	}
	layoutRenew = func(t *testing.T, s store.Store, r store.Record) store.Record {
		r.ExpiresAt = time.Now().Add(2 * time.Hour)
		if err := s.Renew(t.Context(), r.TunnelID, r.ConnectionID, r.ExpiresAt); err != nil {
			t.Fatalf("Renew = %v", err)
		}
		return r
	}
	layoutRelease = func(t *testing.T, s store.Store, r store.Record) store.Record {
		if err := s.Release(t.Context(), r.TunnelID, r.ConnectionID); err != nil {
			t.Fatalf("Release = %v", err)
		}
		r.Released = true
		return r
	}
	layoutReleaseThenRenew = func(t *testing.T, s store.Store, r store.Record) store.Record {
		r = layoutRelease(t, s, r)
		r.Released = false
		if err := s.Renew(t.Context(), r.TunnelID, r.ConnectionID, r.ExpiresAt); err != nil {
			t.Fatalf("Renew = %v", err)
		}
		return r
	}
	layoutReleaseByOtherConnection = func(t *testing.T, s store.Store, r store.Record) store.Record {
		if err := s.Release(t.Context(), r.TunnelID, "c"+randid.Hex(8)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Release by another connection = %v, want ErrNotFound", err)
		}
		return r
	}
	layoutPutByOtherOwner = func(t *testing.T, s store.Store, r store.Record) store.Record {
		other := r
		other.Owner += "-other"
		other.ConnectionID = "c" + randid.Hex(8)
		other.Access = "other's policy"
		if err := s.Put(t.Context(), other); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("Put by another owner = %v, want ErrConflict", err)
		}
		return r
	}
	layoutPutBySameOwner = func(t *testing.T, s store.Store, r store.Record) store.Record {
		r.ConnectionID = "c" + randid.Hex(8)
		r.Subject = "alice@example.com"
		r.Version = 1
		r.Access = "{\"allow\":[\"192.0.2.0/24\"]}\x00\xff"
		mustPut(t, s, r)
		return r
	}
	layoutDelete = func(t *testing.T, s store.Store, r store.Record) store.Record {
		if err := s.Delete(t.Context(), r.TunnelID, r.ConnectionID); err != nil {
			t.Fatalf("Delete = %v", err)
		}
		return store.Record{}
	}
)

// TestLayoutV1 checks that records a release before Subject, Version,
// Released and Access wrote, in layout version 1, work with every method:
// they read as records without those; Renew keeps them in version 1;
// Release rewrites them in version 3, keeping the TTL; Put applies the
// rules to them and writes version 3.
func TestLayoutV1(t *testing.T) {
	testOlderLayout(t, 1, func(r *store.Record) {
		r.Subject, r.Version, r.Access = "", 0, ""
	}, []layoutCase{
		{"Read", layoutRead, 1},
		{"Renew", layoutRenew, 1},
		{"Release", layoutRelease, 3},
		{"ReleaseThenRenew", layoutReleaseThenRenew, 3},
		{"ReleaseByOtherConnection", layoutReleaseByOtherConnection, 1},
		{"PutByOtherOwner", layoutPutByOtherOwner, 1},
		{"PutByOtherOwnerAfterRelease", func(t *testing.T, s store.Store, r store.Record) store.Record {
			// A version-1 record has no Subject, so its release lets
			// nobody but its owner in early, however the Put is signed.
			r = layoutRelease(t, s, r)
			for _, subject := range []string{"", "agent-of-someone"} {
				other := r
				other.Owner += "-other"
				other.Subject = subject
				other.ConnectionID = "c" + randid.Hex(8)
				if err := s.Put(t.Context(), other); !errors.Is(err, store.ErrConflict) {
					t.Fatalf("Put by another owner, Subject %q = %v, want ErrConflict", subject, err)
				}
			}
			return r
		}, 3},
		{"PutBySameOwner", layoutPutBySameOwner, 3},
		{"Delete", layoutDelete, 0},
	})
}

// TestLayoutV2 checks that records the release before Access wrote, in
// layout version 2, work with every method: they read as records without
// Access; Renew and Release change them in place and keep them in
// version 2 (the offsets they write at are version 3's too); Put applies
// the rules to them, by Subject included, and writes version 3.
func TestLayoutV2(t *testing.T) {
	testOlderLayout(t, 2, func(r *store.Record) {
		r.Access = ""
	}, []layoutCase{
		{"Read", layoutRead, 2},
		{"Renew", layoutRenew, 2},
		{"Release", layoutRelease, 2},
		{"ReleaseThenRenew", layoutReleaseThenRenew, 2},
		{"ReleaseByOtherConnection", layoutReleaseByOtherConnection, 2},
		{"PutByOtherOwner", layoutPutByOtherOwner, 2},
		{"PutBySubjectAfterRelease", func(t *testing.T, s store.Store, r store.Record) store.Record {
			r = layoutRelease(t, s, r)
			next := r
			next.Owner += "-restarted"
			next.ConnectionID = "c" + randid.Hex(8)
			next.Released = false
			next.Access = "the restarted agent's policy"
			mustPut(t, s, next)
			return next
		}, 3},
		{"PutBySameOwner", layoutPutBySameOwner, 3},
		{"Delete", layoutDelete, 0},
	})
}

// TestSharedConnection covers one connection put for two tunnels. The
// connection key then names the later tunnel, and what is done to the
// earlier tunnel's record must leave that key alone.
func TestSharedConnection(t *testing.T) {
	client := redistest.Client(t)
	tests := []struct {
		name string
		act  func(t *testing.T, s store.Store, first store.Record)
		// wantTTL is whether the connection key must still have one.
		wantTTL bool
	}{
		{"DeleteFirst", func(t *testing.T, s store.Store, first store.Record) {
			if err := s.Delete(t.Context(), first.TunnelID, first.ConnectionID); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"RenewFirstToNoExpiry", func(t *testing.T, s store.Store, first store.Record) {
			if err := s.Renew(t.Context(), first.TunnelID, first.ConnectionID, time.Time{}); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"TakeOverFirst", func(t *testing.T, s store.Store, first store.Record) {
			first.ConnectionID = "c" + randid.Hex(8)
			mustPut(t, s, first)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, prefix := newStore(t, client)
			first := newRecord()
			second := newRecord()
			second.ConnectionID = first.ConnectionID
			mustPut(t, s, first)
			mustPut(t, s, second)
			tt.act(t, s, first)

			got, err := s.GetByConnection(t.Context(), second.ConnectionID)
			if err != nil || got.TunnelID != second.TunnelID {
				t.Errorf("GetByConnection = %+v, %v; want tunnel %s", got, err, second.TunnelID)
			}
			ck := connKey(prefix, second.ConnectionID)
			if ttl, err := client.PTTL(t.Context(), ck).Result(); err != nil || (ttl > 0) != tt.wantTTL {
				t.Errorf("PTTL %s = %v, %v; want a TTL: %v", ck, ttl, err, tt.wantTTL)
			}
		})
	}
}

// TestCanceledContext checks that every method, given a canceled ctx,
// fails with an error that wraps context.Canceled and names the method.
// (The conformance suite also accepts success; this Store does no I/O with
// a canceled ctx.)
func TestCanceledContext(t *testing.T) {
	client := redistest.Client(t)
	s, _ := newStore(t, client)
	r := newRecord()
	mustPut(t, s, r)
	tests := []struct {
		name, phrase string
		call         func(ctx context.Context) error
	}{
		{"Put", "redisstore: put: ", func(ctx context.Context) error {
			return s.Put(ctx, newRecord())
		}},
		{"Get", "redisstore: get: ", func(ctx context.Context) error {
			_, err := s.Get(ctx, r.TunnelID)
			return err
		}},
		{"Members", "redisstore: members: ", func(ctx context.Context) error {
			_, err := s.Members(ctx, r.TunnelID)
			return err
		}},
		{"Join", "redisstore: put: ", func(ctx context.Context) error {
			m := newRecord()
			m.Pool = true
			return s.Put(ctx, m)
		}},
		{"GetByConnection", "redisstore: get by connection: ", func(ctx context.Context) error {
			_, err := s.GetByConnection(ctx, r.ConnectionID)
			return err
		}},
		{"Renew", "redisstore: renew: ", func(ctx context.Context) error {
			return s.Renew(ctx, r.TunnelID, r.ConnectionID, time.Now().Add(2*time.Hour))
		}},
		{"Release", "redisstore: release: ", func(ctx context.Context) error {
			return s.Release(ctx, r.TunnelID, r.ConnectionID)
		}},
		{"Delete", "redisstore: delete: ", func(ctx context.Context) error {
			return s.Delete(ctx, r.TunnelID, r.ConnectionID)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			err := tt.call(ctx)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("%s with a canceled ctx = %v, want an error wrapping context.Canceled", tt.name, err)
			}
			if !strings.HasPrefix(err.Error(), tt.phrase) {
				t.Errorf("error %q does not start with %q", err, tt.phrase)
			}
		})
	}
	// None of the canceled calls reached the server.
	got, err := s.Get(t.Context(), r.TunnelID)
	if err != nil || got.ExpiresAt.UnixMilli() != r.ExpiresAt.UnixMilli() || got.Released {
		t.Errorf("Get after the canceled calls = %+v, %v; want the record as put", got, err)
	}
}

// TestForeignValue checks that a record key holding something this package
// did not write is reported as an error, never as a record or a miss, by
// every method that reads it.
func TestForeignValue(t *testing.T) {
	client := redistest.Client(t)
	tests := []struct {
		name  string
		write func(ctx context.Context, key string) error
	}{
		{"OtherLayoutVersion", func(ctx context.Context, key string) error {
			return client.Set(ctx, key, "\x05"+strings.Repeat("\x00", 40), 0).Err()
		}},
		{"PoolMarkerTrailingBytes", func(ctx context.Context, key string) error {
			return client.Set(ctx, key, "\x04"+strings.Repeat("\x00", 40), 0).Err()
		}},
		{"PoolMarkerTruncated", func(ctx context.Context, key string) error {
			return client.Set(ctx, key, "\x04\x00\x05own", 0).Err()
		}},
		{"PoolMarkerNoLength", func(ctx context.Context, key string) error {
			return client.Set(ctx, key, "\x04\x00", 0).Err()
		}},
		{"Truncated", func(ctx context.Context, key string) error {
			return client.Set(ctx, key, "\x02\x00", 0).Err()
		}},
		{"TruncatedV3", func(ctx context.Context, key string) error {
			return client.Set(ctx, key, "\x03\x00", 0).Err()
		}},
		{"TruncatedV1", func(ctx context.Context, key string) error {
			return client.Set(ctx, key, "\x01\x00", 0).Err()
		}},
		{"WrongType", func(ctx context.Context, key string) error {
			return client.HSet(ctx, key, "c", "x").Err()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, prefix := newStore(t, client)
			r := newRecord()
			if err := tt.write(t.Context(), recordKey(prefix, r.TunnelID)); err != nil {
				t.Fatal(err)
			}
			if err := client.Set(t.Context(), connKey(prefix, r.ConnectionID), r.TunnelID, 0).Err(); err != nil {
				t.Fatal(err)
			}
			calls := []struct {
				name string
				call func() error
			}{
				{"Put", func() error { return s.Put(t.Context(), r) }},
				{"Join", func() error { m := r; m.Pool = true; return s.Put(t.Context(), m) }},
				{"Get", func() error { _, err := s.Get(t.Context(), r.TunnelID); return err }},
				{"Members", func() error { _, err := s.Members(t.Context(), r.TunnelID); return err }},
				{"GetByConnection", func() error { _, err := s.GetByConnection(t.Context(), r.ConnectionID); return err }},
				{"Renew", func() error { return s.Renew(t.Context(), r.TunnelID, r.ConnectionID, r.ExpiresAt) }},
				{"Release", func() error { return s.Release(t.Context(), r.TunnelID, r.ConnectionID) }},
				{"Delete", func() error { return s.Delete(t.Context(), r.TunnelID, r.ConnectionID) }},
			}
			for _, c := range calls {
				err := c.call()
				if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
					t.Errorf("%s over a foreign value = %v, want a backend error", c.name, err)
				}
			}
		})
	}
}

// TestFieldTooLong checks that Put refuses a field the record layout cannot
// hold, and writes nothing.
func TestFieldTooLong(t *testing.T) {
	client := redistest.Client(t)
	s, prefix := newStore(t, client)
	r := newRecord()
	r.PublicURL = "https://" + strings.Repeat("x", 1<<16)
	if err := s.Put(t.Context(), r); err == nil {
		t.Fatal("Put with a 64 KiB PublicURL = nil, want an error")
	}
	if n, err := client.Exists(t.Context(), recordKey(prefix, r.TunnelID)).Result(); err != nil || n != 0 {
		t.Errorf("EXISTS = %d, %v; want 0", n, err)
	}
}

// BenchmarkGet measures Get of a live record from parallel goroutines: the
// lookup behind every public request that misses the node's cache.
func BenchmarkGet(b *testing.B) {
	client := redistest.Client(b)
	s, _ := newStore(b, client)
	ctx := context.Background()
	r := newRecord()
	if err := s.Put(ctx, r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Get(ctx, r.TunnelID); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkGetByConnection is BenchmarkGet for the lookup by connection,
// which follows the connection key to the record inside one script.
func BenchmarkGetByConnection(b *testing.B) {
	client := redistest.Client(b)
	s, _ := newStore(b, client)
	ctx := context.Background()
	r := newRecord()
	if err := s.Put(ctx, r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.GetByConnection(ctx, r.ConnectionID); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkPut measures Put from parallel goroutines, each reconnecting to
// its own tunnel over and over: every Put after the first is a takeover,
// the most work a Put does.
func BenchmarkPut(b *testing.B) {
	client := redistest.Client(b)
	s, _ := newStore(b, client)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := newRecord()
		conns := [2]string{r.ConnectionID, "c" + randid.Hex(8)}
		for i := 0; pb.Next(); i++ {
			r.ConnectionID = conns[i%2]
			if err := s.Put(ctx, r); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRenew measures Renew from parallel goroutines, each on its own
// tunnel: what every node does for every tunnel it holds, periodically.
func BenchmarkRenew(b *testing.B) {
	client := redistest.Client(b)
	s, _ := newStore(b, client)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := newRecord()
		if err := s.Put(ctx, r); err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			r.ExpiresAt = r.ExpiresAt.Add(time.Millisecond)
			if err := s.Renew(ctx, r.TunnelID, r.ConnectionID, r.ExpiresAt); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
