package store

import (
	"context"
	"strconv"
	"testing"
	"testing/synctest"
	"time"
)

// The tests that move time run in a synctest bubble, where time.Now is a
// fake clock that time.Sleep advances at once: LRU reads time.Now itself,
// so no clock needs to be injected.

func TestLRUDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		lru      func() *LRU
		wantSize int
		wantTTL  time.Duration
	}{
		{"ZeroValue", func() *LRU { return new(LRU) }, DefaultLRUSize, DefaultLRUTTL},
		{"Zero", func() *LRU { return NewLRU(0, 0) }, 10_000, 30 * time.Second},
		{"Negative", func() *LRU { return NewLRU(-1, -time.Second) }, 10_000, 30 * time.Second},
		{"Given", func() *LRU { return NewLRU(5, time.Minute) }, 5, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := tt.lru()
			// Using the LRU is what fills in a zero value's defaults.
			c.Add(context.Background(), Record{TunnelID: "a"})
			if _, ok := c.Get(context.Background(), "a"); !ok {
				t.Error("Get after Add missed")
			}
			if c.size != tt.wantSize || c.ttl != tt.wantTTL {
				t.Errorf("size, ttl = %d, %v; want %d, %v", c.size, c.ttl, tt.wantSize, tt.wantTTL)
			}
		})
	}
}

// TestLRUExpiry checks both deadlines of an entry: the LRU's ttl and the
// record's own ExpiresAt, whichever comes first.
func TestLRUExpiry(t *testing.T) {
	t.Parallel()
	const ttl = 30 * time.Second
	tests := []struct {
		name string
		// expiresIn sets the record's ExpiresAt relative to the Add; 0
		// leaves it zero (never).
		expiresIn time.Duration
		advance   time.Duration
		wantHit   bool
	}{
		{"WithinTTL", 0, ttl - time.Nanosecond, true},
		{"AtTTL", 0, ttl, false},
		{"RecordOutlivesTTL", time.Hour, ttl, false},
		{"BeforeRecordExpiry", 10 * time.Second, 10*time.Second - time.Nanosecond, true},
		{"AtRecordExpiry", 10 * time.Second, 10 * time.Second, false},
		{"RecordExpiredWhenAdded", -time.Second, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				l := NewLRU(10, ttl)
				r := Record{TunnelID: "a", ConnectionID: "c"}
				if tt.expiresIn != 0 {
					r.ExpiresAt = time.Now().Add(tt.expiresIn)
				}
				l.Add(ctx, r)
				time.Sleep(tt.advance)
				got, ok := l.Get(ctx, "a")
				if ok != tt.wantHit {
					t.Fatalf("Get hit = %v, want %v", ok, tt.wantHit)
				}
				if ok && got != r {
					t.Errorf("Get = %+v, want %+v", got, r)
				}
				if !ok && l.Len() != 0 {
					t.Errorf("Len after a miss on an expired entry = %d, want 0 (dropped)", l.Len())
				}
			})
		})
	}
}

// TestLRUAddExpiredReplaces checks that adding an already-expired record
// does not leave the previous, live entry behind.
func TestLRUAddExpiredReplaces(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		l := NewLRU(10, time.Minute)
		l.Add(ctx, Record{TunnelID: "a", ConnectionID: "old"})
		l.Add(ctx, Record{TunnelID: "a", ConnectionID: "new", ExpiresAt: time.Now()})
		if got, ok := l.Get(ctx, "a"); ok {
			t.Errorf("Get = %+v, want a miss", got)
		}
	})
}

func TestLRUStats(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		l := NewLRU(10, time.Minute)
		steps := []struct {
			name    string
			do      func()
			get     string
			wantHit bool
		}{
			{"empty", func() {}, "a", false},
			{"added", func() { l.Add(ctx, Record{TunnelID: "a"}) }, "a", true},
			{"again", func() {}, "a", true},
			{"other", func() {}, "b", false},
			{"expired", func() { time.Sleep(time.Minute) }, "a", false},
			{"re-added", func() { l.Add(ctx, Record{TunnelID: "a"}) }, "a", true},
			{"removed", func() { l.Remove(ctx, "a") }, "a", false},
		}
		var want CacheStats
		for _, s := range steps {
			s.do()
			if _, ok := l.Get(ctx, s.get); ok != s.wantHit {
				t.Fatalf("%s: Get(%s) hit = %v, want %v", s.name, s.get, ok, s.wantHit)
			}
			if s.wantHit {
				want.Hits++
			} else {
				want.Misses++
			}
			if got := l.Stats(); got != want {
				t.Fatalf("%s: Stats = %+v, want %+v", s.name, got, want)
			}
		}
	})
}

// TestLRUSize checks the size bound and that it evicts the least recently
// used entry, where a Get counts as a use.
func TestLRUSize(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := NewLRU(3, time.Minute)
	for _, id := range []string{"a", "b", "c"} {
		l.Add(ctx, Record{TunnelID: id})
	}
	l.Get(ctx, "a") // b is now the least recently used
	l.Add(ctx, Record{TunnelID: "d"})
	if l.Len() != 3 {
		t.Errorf("Len = %d, want 3", l.Len())
	}
	for id, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true} {
		if _, ok := l.Get(ctx, id); ok != want {
			t.Errorf("Get(%s) hit = %v, want %v", id, ok, want)
		}
	}
	for i := range 100 {
		l.Add(ctx, Record{TunnelID: strconv.Itoa(i)})
	}
	if l.Len() != 3 {
		t.Errorf("after 100 more Adds, Len = %d, want 3", l.Len())
	}
}

func TestLRURemove(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := NewLRU(10, time.Minute)
	l.Add(ctx, Record{TunnelID: "a", ConnectionID: "1"})
	l.Add(ctx, Record{TunnelID: "b", ConnectionID: "2"})
	l.Remove(ctx, "a")
	l.Remove(ctx, "missing") // a no-op, not a panic
	if _, ok := l.Get(ctx, "a"); ok {
		t.Error("Get(a) after Remove hit")
	}
	if got, ok := l.Get(ctx, "b"); !ok || got.ConnectionID != "2" {
		t.Errorf("Get(b) = %+v, %v; want the untouched entry", got, ok)
	}
	if l.Len() != 1 {
		t.Errorf("Len = %d, want 1", l.Len())
	}
}

func BenchmarkLRUGet(b *testing.B) {
	ctx := context.Background()
	l := NewLRU(0, time.Hour)
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = "t" + strconv.Itoa(i)
		l.Add(ctx, Record{TunnelID: ids[i], ExpiresAt: time.Now().Add(time.Hour)})
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := l.Get(ctx, ids[i%len(ids)]); !ok {
				b.Error("miss")
				return
			}
			i++
		}
	})
}
