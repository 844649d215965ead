package dynamostore

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/http-tunnel/tunnel/internal/randid"
	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/store/dynamostore/dynamotest"
)

// newStore creates a pair of tables of the test's own, so that stores
// never see each other's rows, and returns a Store on them with its
// Options. The tables are deleted by tb.Cleanup.
func newStore(tb testing.TB, client *dynamodb.Client) (*Store, Options) {
	tb.Helper()
	var opts Options
	dynamotest.Tables(tb, client, func(ctx context.Context, names []string) error {
		opts = Options{ConnectionsTable: names[0], PendingTable: names[1]}
		return CreateTables(ctx, client, opts)
	}, "test-connections", "test-pending")
	return New(client, opts), opts
}

// testRecord returns a record for a fresh tunnel and connection, with a
// Subject of owner's own and testAccess, expiring at the given offset from
// now, or never for 0.
func testRecord(owner string, expiresIn time.Duration) store.Record {
	now := time.Now()
	id := randid.TunnelID()
	r := store.Record{
		TunnelID:     id,
		ConnectionID: "c" + randid.Hex(8),
		Owner:        owner,
		Node:         "node-a",
		PublicURL:    "https://" + id + ".tunnel.example",
		Subject:      "agent-of-" + owner,
		Version:      1,
		Access:       testAccess,
		CreatedAt:    now,
	}
	if expiresIn != 0 {
		r.ExpiresAt = now.Add(expiresIn)
	}
	return r
}

// testAccess is the Access of testRecord: a policy that is not valid
// UTF-8, as an opaque Access may be, so a row that kept it as a string
// would fail to hold it.
const testAccess = "{\"allow\":[\"192.0.2.0/24\"]}\x00\xff"

func mustPut(tb testing.TB, s *Store, r store.Record) {
	tb.Helper()
	if err := s.Put(tb.Context(), r); err != nil {
		tb.Fatalf("Put(%s): %v", r.TunnelID, err)
	}
}

// countRows returns the number of rows in table, by a paginated Scan.
func countRows(tb testing.TB, client *dynamodb.Client, table string) int {
	tb.Helper()
	n := 0
	p := dynamodb.NewScanPaginator(client, &dynamodb.ScanInput{
		TableName:      aws.String(table),
		Select:         types.SelectCount,
		ConsistentRead: aws.Bool(true),
	})
	for p.HasMorePages() {
		out, err := p.NextPage(tb.Context())
		if err != nil {
			tb.Fatalf("Scan(%s): %v", table, err)
		}
		n += int(out.Count)
	}
	return n
}
