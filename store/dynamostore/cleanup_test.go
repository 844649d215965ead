package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/http-tunnel/tunnel/internal/randid"
	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/store/dynamostore/dynamotest"
)

// seed is what one test puts in a store's tables.
type seed struct {
	// live and expired are the records put through the Store; each is a
	// claim row and a connection row. Half of the live ones never expire.
	live, expired []store.Record
	// rows are written directly: pending requests and connection rows in
	// the original's shape (ttl only), expired or not.
	liveRows, expiredRows int
}

// seedStore puts expired and live records, and as many raw rows of each
// kind, into s: per unit, one tunnel (two rows), one original-style
// connection row and one pending request.
func seedStore(t *testing.T, s *Store, opts Options, expired, live int) seed {
	t.Helper()
	ctx := t.Context()
	var sd seed
	for i := range expired {
		r := testRecord(fmt.Sprint("owner-", i), -time.Hour)
		mustPut(t, s, r)
		sd.expired = append(sd.expired, r)
	}
	for i := range live {
		expiresIn := time.Hour
		if i%2 == 1 {
			expiresIn = 0
		}
		r := testRecord(fmt.Sprint("owner-", i), expiresIn)
		mustPut(t, s, r)
		sd.live = append(sd.live, r)
	}
	now := time.Now().Unix()
	put := func(table string, it item) {
		if _, err := s.client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: it}); err != nil {
			t.Fatalf("PutItem(%s): %v", table, err)
		}
	}
	for i := range expired + live {
		ttl := now + 3600
		if i < expired {
			ttl = now - 3600
		}
		put(opts.ConnectionsTable, item{
			attrConnectionID: str("orig" + randid.Hex(8)),
			attrTunnelID:     str(randid.TunnelID()),
			attrPublicURL:    str("https://example.test/x"),
			attrCreatedAt:    num(now - 7200),
			attrTTL:          num(ttl),
		})
		put(opts.PendingTable, item{
			attrRequestID:    str("req" + randid.Hex(8)),
			attrConnectionID: str("c" + randid.Hex(8)),
			attrStatus:       str("pending"),
			attrTTL:          num(ttl),
		})
	}
	sd.liveRows, sd.expiredRows = live, expired
	return sd
}

// TestCleanup seeds expired and live rows of every kind and checks that
// Cleanup deletes exactly the expired ones, counts them right, and leaves
// every live record readable.
func TestCleanup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		expired, live int
		// scanLimit forces small Scan pages, so that pagination is used.
		scanLimit int32
	}{
		{"Empty", 0, 0, 0},
		{"OnlyLive", 0, 6, 0},
		{"OnlyExpired", 30, 0, 0},
		{"Mixed", 40, 20, 0},
		{"MixedSmallPages", 40, 20, 3},
	}
	client := dynamotest.Client(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, opts := newStore(t, client)
			if tt.scanLimit > 0 {
				s.scanLimit = aws.Int32(tt.scanLimit)
			}
			sd := seedStore(t, s, opts, tt.expired, tt.live)
			// Per unit: 2 rows per tunnel + 1 original row in the
			// connections table, 1 row in the pending table.
			if n := countRows(t, client, opts.ConnectionsTable); n != 3*(tt.expired+tt.live) {
				t.Fatalf("seeded %d connection-table rows, want %d", n, 3*(tt.expired+tt.live))
			}

			st, err := s.Cleanup(t.Context())
			if err != nil {
				t.Fatalf("Cleanup: %v", err)
			}
			want := CleanupStats{
				Scanned: 4 * (tt.expired + tt.live),
				Expired: 4 * tt.expired,
				Deleted: 4 * tt.expired,
			}
			// Batches depend on how rows fall into segments and pages;
			// only their bounds are fixed.
			got := st
			got.Batches, got.Retries = 0, 0
			if got != want {
				t.Errorf("stats = %+v, want %+v (batches aside)", st, want)
			}
			batchRows := 3 * tt.expired // all but claim rows
			if minBatches := (batchRows + batchSize - 1) / batchSize; st.Batches < minBatches || st.Batches > batchRows {
				t.Errorf("Batches = %d, want %d..%d", st.Batches, minBatches, batchRows)
			}
			if st.Retries != 0 {
				t.Errorf("Retries = %d, want 0 (dynalite processes every batch)", st.Retries)
			}
			if n := countRows(t, client, opts.ConnectionsTable); n != 3*tt.live {
				t.Errorf("connection-table rows after Cleanup = %d, want %d", n, 3*tt.live)
			}
			if n := countRows(t, client, opts.PendingTable); n != tt.live {
				t.Errorf("pending rows after Cleanup = %d, want %d", n, tt.live)
			}
			for _, r := range sd.live {
				if _, err := s.Get(t.Context(), r.TunnelID); err != nil {
					t.Errorf("Get(live %s) after Cleanup = %v", r.TunnelID, err)
				}
				if _, err := s.GetByConnection(t.Context(), r.ConnectionID); err != nil {
					t.Errorf("GetByConnection(live %s) after Cleanup = %v", r.ConnectionID, err)
				}
			}

			again, err := s.Cleanup(t.Context())
			if err != nil || again.Deleted != 0 || again.Expired != 0 {
				t.Errorf("second Cleanup = %+v, %v; want nothing expired", again, err)
			}
		})
	}
}

// TestCleanupKeepsRetakenClaim changes an expired claim row after
// Cleanup's Scan read it and before Cleanup deletes it: the row is live
// again, so it must survive, and the record stays whole.
func TestCleanupKeepsRetakenClaim(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		owner string
	}{
		{"SameOwnerReconnects", "owner-a"},
		{"OtherOwnerClaims", "owner-b"},
	}
	client := dynamotest.Client(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, _ := newStore(t, client)
			old := testRecord("owner-a", -time.Hour)
			mustPut(t, s, old)
			cur := testRecord(tt.owner, time.Hour)
			cur.TunnelID = old.TunnelID

			var once sync.Once
			s.scanned = func(_ string, keys []item) {
				if slices.ContainsFunc(keys, func(k item) bool {
					return getS(k, attrConnectionID) == claimPrefix+old.TunnelID
				}) {
					once.Do(func() { mustPut(t, s, cur) })
				}
			}
			st, err := s.Cleanup(t.Context())
			if err != nil {
				t.Fatalf("Cleanup: %v", err)
			}
			if st.Skipped != 1 {
				t.Errorf("Skipped = %d, want 1 (the retaken claim)", st.Skipped)
			}
			for _, got := range []func() (store.Record, error){
				func() (store.Record, error) { return s.Get(t.Context(), cur.TunnelID) },
				func() (store.Record, error) { return s.GetByConnection(t.Context(), cur.ConnectionID) },
			} {
				r, err := got()
				if err != nil || r.ConnectionID != cur.ConnectionID || r.Owner != cur.Owner {
					t.Errorf("lookup after Cleanup = %+v, %v; want %+v", r, err, cur)
				}
			}
		})
	}
}

// unprocessor is a client middleware that makes BatchWriteItem leave items
// unprocessed, as DynamoDB does under throttling: each of the first n
// calls with two or more items processes half of them and returns the
// rest, or, when never is set, every call processes nothing.
type unprocessor struct {
	never bool
	n     atomic.Int64 // splits left to make
	calls atomic.Int64
}

// take uses up one split, if any is left.
func (u *unprocessor) take() bool {
	for {
		n := u.n.Load()
		if n <= 0 {
			return false
		}
		if u.n.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

func (u *unprocessor) addTo(o *dynamodb.Options) {
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("unprocess",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				bw, ok := in.Parameters.(*dynamodb.BatchWriteItemInput)
				if !ok {
					return next.HandleInitialize(ctx, in)
				}
				u.calls.Add(1)
				if u.never {
					return middleware.InitializeOutput{Result: &dynamodb.BatchWriteItemOutput{
						UnprocessedItems: bw.RequestItems,
					}}, middleware.Metadata{}, nil
				}
				send := map[string][]types.WriteRequest{}
				left := map[string][]types.WriteRequest{}
				for table, reqs := range bw.RequestItems {
					if len(reqs) < 2 || !u.take() {
						send[table] = reqs
						continue
					}
					send[table], left[table] = reqs[:len(reqs)/2], reqs[len(reqs)/2:]
				}
				cp := *bw
				cp.RequestItems = send
				in.Parameters = &cp
				out, md, err := next.HandleInitialize(ctx, in)
				if err == nil && len(left) > 0 {
					out.Result.(*dynamodb.BatchWriteItemOutput).UnprocessedItems = left
				}
				return out, md, err
			}), middleware.Before)
	})
}

// TestCleanupResendsUnprocessed checks that Cleanup resends what
// BatchWriteItem leaves unprocessed until it is done, and gives up with
// ctx's error when it never is.
func TestCleanupResendsUnprocessed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		unprocessed int64 // batches split in two; with wantErr, none processed
		timeout     time.Duration
		wantErr     error
	}{
		{"Some", 5, time.Minute, nil},
		{"Never", 0, 300 * time.Millisecond, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u := unprocessor{never: tt.wantErr != nil}
			u.n.Store(tt.unprocessed)
			client := dynamotest.Client(t, u.addTo)
			s, opts := newStore(t, client)
			const rows = 120
			for i := range rows {
				if _, err := client.PutItem(t.Context(), &dynamodb.PutItemInput{
					TableName: aws.String(opts.PendingTable),
					Item: item{
						attrRequestID: str("req" + strconv.Itoa(i)),
						attrTTL:       num(time.Now().Unix() - 60),
					},
				}); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(t.Context(), tt.timeout)
			defer cancel()
			st, err := s.Cleanup(ctx)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Cleanup = %+v, %v; want error %v", st, err, tt.wantErr)
			}
			if tt.wantErr != nil {
				if st.Deleted != 0 || st.Retries == 0 {
					t.Errorf("stats = %+v, want retries and nothing deleted", st)
				}
				return
			}
			if st.Retries != int(tt.unprocessed) || st.Deleted != rows {
				t.Errorf("stats = %+v, want %d retries and %d deleted", st, tt.unprocessed, rows)
			}
			if n := countRows(t, client, opts.PendingTable); n != 0 {
				t.Errorf("%d pending rows left, want 0", n)
			}
			if calls := u.calls.Load(); calls != int64(st.Batches+st.Retries) {
				t.Errorf("BatchWriteItem calls = %d, want Batches+Retries = %d", calls, st.Batches+st.Retries)
			}
		})
	}
}

// TestCleanupIdentityRows puts rows shaped as the serverless adapter's
// identity rows ("identity#" + a connection ID, expiresAt and ttl) beside
// a live tunnel: Cleanup deletes the expired one, keeps the live one, and
// no lookup of the store ever returns either.
func TestCleanupIdentityRows(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	s, opts := newStore(t, client)
	ctx := t.Context()
	r := testRecord("owner-identity", time.Hour)
	mustPut(t, s, r)
	now := time.Now()
	put := func(key string, expires time.Time) {
		if _, err := client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(opts.ConnectionsTable), Item: item{
			attrConnectionID: str(key),
			"subject":        str("alice"),
			attrExpiresAt:    num(expires.UnixMilli()),
			attrTTL:          num(expires.Unix()),
		}}); err != nil {
			t.Fatalf("PutItem(%s): %v", key, err)
		}
	}
	put("identity#"+r.ConnectionID, now.Add(time.Hour))
	put("identity#gone"+randid.Hex(8), now.Add(-time.Hour))

	if _, err := s.GetByConnection(ctx, "identity#"+r.ConnectionID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetByConnection(identity row) = %v; want ErrNotFound (the store refuses keys with '#')", err)
	}
	st, err := s.Cleanup(ctx)
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if st.Deleted != 1 {
		t.Errorf("Cleanup deleted %d rows; want 1, the expired identity row", st.Deleted)
	}
	if n := countRows(t, client, opts.ConnectionsTable); n != 3 {
		t.Errorf("connection-table rows after Cleanup = %d; want 3 (the tunnel's two and the live identity row)", n)
	}
	if got, err := s.GetByConnection(ctx, r.ConnectionID); err != nil || got.TunnelID != r.TunnelID {
		t.Errorf("GetByConnection(%s) after Cleanup = %+v, %v", r.ConnectionID, got, err)
	}
}
