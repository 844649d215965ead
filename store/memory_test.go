package store_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/store/storetest"
)

func TestMemoryConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return store.NewMemory() })
}

func TestMemoryZeroValueConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return &store.Memory{} })
}

// benchRecords returns n live records for distinct tunnels, all owned by
// one owner.
func benchRecords(n int) []store.Record {
	recs := make([]store.Record, n)
	exp := time.Now().Add(time.Hour)
	for i := range recs {
		id := "t" + strconv.Itoa(i)
		recs[i] = store.Record{
			TunnelID:     id,
			ConnectionID: "c" + strconv.Itoa(i),
			Owner:        "owner",
			ExpiresAt:    exp,
		}
	}
	return recs
}

func BenchmarkMemoryGet(b *testing.B) {
	ctx := context.Background()
	s := store.NewMemory()
	recs := benchRecords(1024)
	for _, r := range recs {
		if err := s.Put(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Get(ctx, recs[i%len(recs)].TunnelID); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkMemoryPut measures a reconnect: a Put replacing the same
// owner's record, which is the steady state of a gateway.
func BenchmarkMemoryPut(b *testing.B) {
	ctx := context.Background()
	s := store.NewMemory()
	recs := benchRecords(1024)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.Put(ctx, recs[i%len(recs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
