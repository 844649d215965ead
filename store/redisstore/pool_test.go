package redisstore_test

import (
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/http-tunnel/tunnel/internal/randid"
	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/store/redisstore"
	"github.com/http-tunnel/tunnel/store/redisstore/redistest"
)

// Key names of a pool as the package documents them.
func membersKey(prefix, tunnelID string) string  { return "{" + prefix + "}m:" + tunnelID }
func expiriesKey(prefix, tunnelID string) string { return "{" + prefix + "}e:" + tunnelID }

// newPool returns n members of a pool for a fresh tunnel, not yet put,
// each with a connection and node of its own.
func newPool(n int) []store.Record {
	first := newRecord()
	first.Pool = true
	pool := []store.Record{first}
	for i := 1; i < n; i++ {
		m := first
		m.ConnectionID = "c" + randid.Hex(8)
		m.Node = "node-" + strconv.Itoa(i)
		pool = append(pool, m)
	}
	return pool
}

// poolKeys returns the keys of a pool's tunnel: record, members and
// expiries.
func poolKeys(prefix, tunnelID string) []string {
	return []string{recordKey(prefix, tunnelID), membersKey(prefix, tunnelID), expiriesKey(prefix, tunnelID)}
}

// TestPoolKeyLayout pins the keys of a pool as the package doc describes
// them: the marker in the record key, each member's value (layout 3, as
// a plain record's) in the members hash under its connection, its expiry
// as its score in the expiries set, and its connection key.
func TestPoolKeyLayout(t *testing.T) {
	client := redistest.Client(t)
	s, prefix := newStore(t, client)
	ctx := t.Context()
	pool := newPool(2)
	pool[1].ExpiresAt = time.Time{}
	for _, m := range pool {
		mustPut(t, s, m)
	}
	id := pool[0].TunnelID

	marker, err := client.Get(ctx, recordKey(prefix, id)).Result()
	want := "\x04" + string(binary.BigEndian.AppendUint16(nil, uint16(len(pool[0].Owner)))) + pool[0].Owner
	if err != nil || marker != want {
		t.Errorf("GET %s = %q, %v; want the marker %q", recordKey(prefix, id), marker, err, want)
	}
	values, err := client.HGetAll(ctx, membersKey(prefix, id)).Result()
	if err != nil || len(values) != len(pool) {
		t.Fatalf("HGETALL %s = %d fields, %v; want %d", membersKey(prefix, id), len(values), err, len(pool))
	}
	scores, err := client.ZRangeWithScores(ctx, expiriesKey(prefix, id), 0, -1).Result()
	if err != nil || len(scores) != len(pool) {
		t.Fatalf("ZRANGE %s = %v, %v; want %d members", expiriesKey(prefix, id), scores, err, len(pool))
	}
	wantScores := map[string]string{
		pool[0].ConnectionID: strconv.FormatInt(pool[0].ExpiresAt.UnixMilli(), 10),
		pool[1].ConnectionID: "+Inf",
	}
	for _, z := range scores {
		if got := strconv.FormatFloat(z.Score, 'f', -1, 64); got != wantScores[z.Member.(string)] {
			t.Errorf("score of %s = %s, want %s", z.Member, got, wantScores[z.Member.(string)])
		}
	}
	for _, m := range pool {
		m.Pool = false // not in the value: where it is kept says so
		v, err := redisstore.Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		if values[m.ConnectionID] != string(v) {
			t.Errorf("member %s = %x, want %x", m.ConnectionID, values[m.ConnectionID], v)
		}
		if got, err := client.Get(ctx, connKey(prefix, m.ConnectionID)).Result(); err != nil || got != id {
			t.Errorf("GET %s = %q, %v; want %q", connKey(prefix, m.ConnectionID), got, err, id)
		}
	}
}

// TestPoolTTL checks that a pool's keys expire with its member that
// expires last, following Put, Renew and Delete, and that each member's
// connection key expires with it.
func TestPoolTTL(t *testing.T) {
	client := redistest.Client(t)
	const noTTL = -1
	s, prefix := newStore(t, client)
	ctx := t.Context()
	pool := newPool(3)
	pool[0].ExpiresAt = time.Now().Add(time.Hour)
	pool[1].ExpiresAt = time.Now().Add(3 * time.Hour)
	pool[2].ExpiresAt = time.Now().Add(2 * time.Hour)
	for _, m := range pool {
		mustPut(t, s, m)
	}
	id := pool[0].TunnelID
	check := func(t *testing.T, want time.Duration) {
		t.Helper()
		for _, k := range poolKeys(prefix, id) {
			got, err := client.PTTL(ctx, k).Result()
			switch {
			case err != nil:
				t.Fatalf("PTTL %s: %v", k, err)
			case want == noTTL && got != noTTL:
				t.Errorf("PTTL %s = %v, want none", k, got)
			case want != noTTL && (got <= want-time.Minute || got > want):
				t.Errorf("PTTL %s = %v, want within a minute below %v", k, got, want)
			}
		}
	}
	check(t, 3*time.Hour)
	for _, m := range pool {
		got, err := client.PTTL(ctx, connKey(prefix, m.ConnectionID)).Result()
		if want := time.Until(m.ExpiresAt); err != nil || got > want+time.Second || got <= want-time.Minute {
			t.Errorf("PTTL of %s's connection key = %v, %v; want its own expiry, in %v", m.ConnectionID, got, err, want)
		}
	}

	steps := []struct {
		name string
		act  func() error
		want time.Duration
	}{
		{"RenewShorter", func() error { return s.Renew(ctx, id, pool[1].ConnectionID, time.Now().Add(90*time.Minute)) }, 2 * time.Hour},
		{"RenewLonger", func() error { return s.Renew(ctx, id, pool[0].ConnectionID, time.Now().Add(4*time.Hour)) }, 4 * time.Hour},
		{"RenewToNoExpiry", func() error { return s.Renew(ctx, id, pool[2].ConnectionID, time.Time{}) }, noTTL},
		{"DeleteNoExpiry", func() error { return s.Delete(ctx, id, pool[2].ConnectionID) }, 4 * time.Hour},
		{"DeleteLast", func() error { return s.Delete(ctx, id, pool[0].ConnectionID) }, 90 * time.Minute},
		{"RejoinWithNoExpiry", func() error {
			m := pool[0]
			m.ExpiresAt = time.Time{}
			return s.Put(ctx, m)
		}, noTTL},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := st.act(); err != nil {
				t.Fatal(err)
			}
			check(t, st.want)
		})
	}
}

// TestPoolLeavesNoKeys checks that a pool whose members are all gone,
// however they went, leaves no key behind, connection keys included.
func TestPoolLeavesNoKeys(t *testing.T) {
	client := redistest.Client(t)
	past := time.Now().Add(-time.Hour)
	tests := []struct {
		name string
		end  func(t *testing.T, s store.Store, m store.Record)
	}{
		{"Delete", func(t *testing.T, s store.Store, m store.Record) {
			if err := s.Delete(t.Context(), m.TunnelID, m.ConnectionID); err != nil {
				t.Fatal(err)
			}
		}},
		{"RenewToPast", func(t *testing.T, s store.Store, m store.Record) {
			if err := s.Renew(t.Context(), m.TunnelID, m.ConnectionID, past); err != nil {
				t.Fatal(err)
			}
		}},
		{"RejoinExpired", func(t *testing.T, s store.Store, m store.Record) {
			m.ExpiresAt = past
			mustPut(t, s, m)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, prefix := newStore(t, client)
			pool := newPool(3)
			for _, m := range pool {
				mustPut(t, s, m)
			}
			for _, m := range pool {
				tt.end(t, s, m)
			}
			keys := poolKeys(prefix, pool[0].TunnelID)
			for _, m := range pool {
				keys = append(keys, connKey(prefix, m.ConnectionID))
			}
			if n, err := client.Exists(t.Context(), keys...).Result(); err != nil || n != 0 {
				t.Errorf("EXISTS %v = %d, %v; want 0", keys, n, err)
			}
		})
	}
}

// TestPoolExpiryCheckedByScripts checks that members past their expiry
// are treated as expired while Redis still holds every key, as it does
// through the millisecond of a deadline and for members that expired
// before the pool's last one: the scripts judge by the scores and values,
// not by what Redis has dropped. The test makes such members by moving
// their scores and expiry fields to the past, without touching any TTL.
func TestPoolExpiryCheckedByScripts(t *testing.T) {
	client := redistest.Client(t)
	tests := []struct {
		name  string
		check func(t *testing.T, s store.Store, expired, live []store.Record)
	}{
		{"Lookups", func(t *testing.T, s store.Store, expired, live []store.Record) {
			ctx := t.Context()
			got, err := s.Members(ctx, live[0].TunnelID)
			if err != nil || len(got) != 1 || got[0].ConnectionID != live[0].ConnectionID {
				t.Errorf("Members = %+v, %v; want %s alone", got, err, live[0].ConnectionID)
			}
			if got, err := s.Get(ctx, live[0].TunnelID); err != nil || got.ConnectionID != live[0].ConnectionID {
				t.Errorf("Get = %+v, %v; want %s", got, err, live[0].ConnectionID)
			}
			if got, err := s.GetByConnection(ctx, expired[0].ConnectionID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetByConnection(expired) = %+v, %v; want ErrNotFound", got, err)
			}
		}},
		{"RenewAndRelease", func(t *testing.T, s store.Store, expired, live []store.Record) {
			ctx := t.Context()
			m := expired[0]
			if err := s.Renew(ctx, m.TunnelID, m.ConnectionID, time.Now().Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Renew(expired) = %v, want ErrNotFound", err)
			}
			if err := s.Release(ctx, m.TunnelID, m.ConnectionID); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Release(expired) = %v, want ErrNotFound", err)
			}
		}},
		{"AllExpiredFreesTheName", func(t *testing.T, s store.Store, expired, live []store.Record) {
			ctx := t.Context()
			if err := s.Delete(ctx, live[0].TunnelID, live[0].ConnectionID); err != nil {
				t.Fatal(err)
			}
			other := newRecord()
			other.TunnelID = live[0].TunnelID
			mustPut(t, s, other)
			if got, err := s.Members(ctx, other.TunnelID); err != nil || len(got) != 1 || got[0].ConnectionID != other.ConnectionID || got[0].Pool {
				t.Errorf("Members = %+v, %v; want the plain record of %s", got, err, other.ConnectionID)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, prefix := newStore(t, client)
			pool := newPool(3)
			for _, m := range pool {
				mustPut(t, s, m)
			}
			id := pool[0].TunnelID
			pastMs := time.Now().Add(-time.Second).UnixMilli()
			for _, m := range pool[:2] {
				v, err := client.HGet(ctx, membersKey(prefix, id), m.ConnectionID).Result()
				if err != nil {
					t.Fatal(err)
				}
				b := []byte(v)
				binary.BigEndian.PutUint64(b[1:], uint64(pastMs))
				if err := client.HSet(ctx, membersKey(prefix, id), m.ConnectionID, b).Err(); err != nil {
					t.Fatal(err)
				}
				if err := client.ZAdd(ctx, expiriesKey(prefix, id), redis.Z{Score: float64(pastMs), Member: m.ConnectionID}).Err(); err != nil {
					t.Fatal(err)
				}
			}
			tt.check(t, s, pool[:2], pool[2:])
		})
	}
}

// TestPoolSharedConnection covers one connection put for a plain tunnel
// and then as a member of a pool: the connection key names the pool, and
// deleting the plain record, or the pool's other members, leaves it so.
func TestPoolSharedConnection(t *testing.T) {
	client := redistest.Client(t)
	s, prefix := newStore(t, client)
	ctx := t.Context()
	plain := newRecord()
	pool := newPool(2)
	pool[0].ConnectionID = plain.ConnectionID
	mustPut(t, s, plain)
	for _, m := range pool {
		mustPut(t, s, m)
	}
	if err := s.Delete(ctx, plain.TunnelID, plain.ConnectionID); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, pool[1].TunnelID, pool[1].ConnectionID); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetByConnection(ctx, plain.ConnectionID)
	if err != nil || got.TunnelID != pool[0].TunnelID || !got.Pool {
		t.Errorf("GetByConnection = %+v, %v; want the member of %s", got, err, pool[0].TunnelID)
	}
	if ttl, err := client.PTTL(ctx, connKey(prefix, plain.ConnectionID)).Result(); err != nil || ttl <= 0 {
		t.Errorf("PTTL of the connection key = %v, %v; want the member's", ttl, err)
	}
}

// TestPoolMarkerRefusedByOlderReleases pins what keeps nodes of releases
// before pools from misreading one: every script of theirs parses the
// record key's value with the parse of luaPrelude, unchanged since layout
// version 3, and that refuses the marker's version (4) with an error. So
// an older node fails every operation on a pool's tunnel ID: it neither
// serves the tunnel as a plain record nor claims the name as free.
func TestPoolMarkerRefusedByOlderReleases(t *testing.T) {
	client := redistest.Client(t)
	s, prefix := newStore(t, client)
	m := newPool(1)[0]
	mustPut(t, s, m)
	olderGet := redis.NewScript(redisstore.LuaPrelude + `
local v = redis.call('GET', KEYS[1])
if v then
	parse(v)
end
return v
`)
	_, err := olderGet.Run(t.Context(), client, []string{recordKey(prefix, m.TunnelID)}).Result()
	if err == nil || !strings.Contains(err.Error(), "record layout version 4") {
		t.Errorf("an older release's parse of a pool marker = %v, want an error naming layout version 4", err)
	}
}

// BenchmarkGetPool is BenchmarkGet for a pool of three members: the
// script finds the member that expires last and reads it.
func BenchmarkGetPool(b *testing.B) {
	client := redistest.Client(b)
	s, _ := newStore(b, client)
	ctx := context.Background()
	pool := newPool(3)
	for _, m := range pool {
		if err := s.Put(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Get(ctx, pool[0].TunnelID); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkMembers measures Members of a pool of three members.
func BenchmarkMembers(b *testing.B) {
	client := redistest.Client(b)
	s, _ := newStore(b, client)
	ctx := context.Background()
	pool := newPool(3)
	for _, m := range pool {
		if err := s.Put(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if got, err := s.Members(ctx, pool[0].TunnelID); err != nil || len(got) != 3 {
				b.Errorf("Members = %d, %v", len(got), err)
				return
			}
		}
	})
}

// BenchmarkRenewMember measures Renew of pool members from parallel
// goroutines, each on a member of its own in one pool: what every node
// does for every member it holds, periodically.
func BenchmarkRenewMember(b *testing.B) {
	client := redistest.Client(b)
	s, _ := newStore(b, client)
	ctx := context.Background()
	id := newRecord().TunnelID
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		m := newPool(1)[0]
		m.TunnelID = id
		m.Owner = "pool-owner"
		if err := s.Put(ctx, m); err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			m.ExpiresAt = m.ExpiresAt.Add(time.Millisecond)
			if err := s.Renew(ctx, m.TunnelID, m.ConnectionID, m.ExpiresAt); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
