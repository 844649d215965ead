package dynamostore

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/http-tunnel/tunnel/internal/backendtest"
	"github.com/http-tunnel/tunnel/internal/randid"
	"github.com/http-tunnel/tunnel/store"
)

// newClient returns a client of the test DynamoDB (dynalite), skipping or
// failing tb as backendtest decides when it is absent. Its idle
// connections are closed by tb.Cleanup, after every subtest that shares
// it, so that no transport goroutine outlives the tests. optFns adjust
// the client, for example to add a middleware.
func newClient(tb testing.TB, optFns ...func(*dynamodb.Options)) *dynamodb.Client {
	tb.Helper()
	endpoint := backendtest.DynamoEndpoint(tb)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	tb.Cleanup(tr.CloseIdleConnections)
	return dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		HTTPClient:   &http.Client{Transport: tr},
	}, optFns...)
}

// newStore creates a pair of tables with a random suffix, so that stores
// never see each other's rows, and returns a Store on them with its
// Options. The tables are deleted by tb.Cleanup.
func newStore(tb testing.TB, client *dynamodb.Client) (*Store, Options) {
	tb.Helper()
	suffix := randid.Hex(6)
	opts := Options{
		ConnectionsTable: "test-connections-" + suffix,
		PendingTable:     "test-pending-" + suffix,
	}
	if err := CreateTables(tb.Context(), client, opts); err != nil {
		tb.Fatalf("CreateTables: %v", err)
	}
	tb.Cleanup(func() {
		// tb.Context is canceled by now.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, name := range []string{opts.ConnectionsTable, opts.PendingTable} {
			if _, err := client.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)}); err != nil {
				tb.Errorf("DeleteTable(%s): %v", name, err)
			}
		}
	})
	return New(client, opts), opts
}

// testRecord returns a record for a fresh tunnel and connection, with a
// Subject of owner's own, expiring at the given offset from now, or never
// for 0.
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
		CreatedAt:    now,
	}
	if expiresIn != 0 {
		r.ExpiresAt = now.Add(expiresIn)
	}
	return r
}

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
