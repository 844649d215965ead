package dynamostore

import (
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/http-tunnel/tunnel/store/dynamostore/dynamotest"
)

// seedExpired writes tunnels expired records straight into the
// connections table with BatchWriteItem, two rows each (claim and
// connection row, as Put writes them), from 8 goroutines.
func seedExpired(b *testing.B, s *Store, tunnels int) {
	b.Helper()
	reqs := make([]types.WriteRequest, 0, 2*tunnels)
	for range tunnels {
		r := testRecord("owner", -time.Hour)
		reqs = append(reqs,
			types.WriteRequest{PutRequest: &types.PutRequest{Item: claimItem(r)}},
			types.WriteRequest{PutRequest: &types.PutRequest{Item: connItem(r)}})
	}
	batches := make(chan []types.WriteRequest)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for batch := range batches {
				for len(batch) > 0 {
					out, err := s.client.BatchWriteItem(b.Context(), &dynamodb.BatchWriteItemInput{
						RequestItems: map[string][]types.WriteRequest{*s.conns: batch},
					})
					if err != nil {
						b.Error(err)
						return
					}
					batch = out.UnprocessedItems[*s.conns]
				}
			}
		})
	}
	for len(reqs) > 0 {
		n := min(batchSize, len(reqs))
		batches <- reqs[:n]
		reqs = reqs[n:]
	}
	close(batches)
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

// BenchmarkCleanup10k times one Cleanup of 10,000 expired rows (5,000
// tunnels: 5,000 conditional claim deletes and 5,000 batched connection
// row deletes), seeded outside the timer.
func BenchmarkCleanup10k(b *testing.B) {
	const tunnels = 5000
	client := dynamotest.Client(b)
	s, _ := newStore(b, client)
	b.ReportAllocs()
	var (
		rows    int
		elapsed time.Duration
	)
	for b.Loop() {
		b.StopTimer()
		seedExpired(b, s, tunnels)
		b.StartTimer()
		start := time.Now()
		st, err := s.Cleanup(b.Context())
		elapsed += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if st.Deleted != 2*tunnels {
			b.Fatalf("Cleanup deleted %d rows, want %d: %+v", st.Deleted, 2*tunnels, st)
		}
		rows += st.Deleted
	}
	b.ReportMetric(float64(rows)/elapsed.Seconds(), "rows/s")
}

// BenchmarkGet times a lookup of a live record: one consistent GetItem
// with a projection.
func BenchmarkGet(b *testing.B) {
	client := dynamotest.Client(b)
	s, _ := newStore(b, client)
	r := testRecord("owner", time.Hour)
	mustPut(b, s, r)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Get(b.Context(), r.TunnelID); err != nil {
			b.Fatal(err)
		}
	}
}
