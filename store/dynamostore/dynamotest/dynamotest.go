// Package dynamotest gives tests a client of the test DynamoDB (dynalite)
// and tables of their own that are deleted when the test ends. It is what
// every test of this repository that needs DynamoDB builds on: the tests
// of dynamostore and dynamolimit, the gateway's cluster tests and the
// examples' end-to-end tests.
//
// The server is found through internal/backendtest: the endpoint in
// TUNNEL_TEST_DYNAMODB_ENDPOINT (default http://127.0.0.1:8000) must answer
// as DynamoDB, or the test is skipped (failed when CI=true) with a message
// that says what answered instead.
//
// Tables are made by the caller's create function, which is
// dynamostore.CreateTables or dynamolimit.CreateTable, both built on the
// one table helper dynamostore.CreateTable. Tables does not call them
// itself so that dynamostore's own tests can import this package.
package dynamotest

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/http-tunnel/tunnel/internal/backendtest"
	"github.com/http-tunnel/tunnel/internal/randid"
)

// Dummy credentials and region of every test client: dynalite accepts any
// signature, and a fixed region keeps the SDK from looking for one.
const (
	AccessKeyID     = "test"
	SecretAccessKey = "test"
	Region          = "us-east-1"
)

// tableTimeout bounds creating a test's tables, and deleting them.
const tableTimeout = time.Minute

// Client returns a client of the test DynamoDB, or skips t (fails it when
// CI=true) if there is none; see the package doc. It is ClientAt with the
// endpoint backendtest found.
func Client(t testing.TB, optFns ...func(*dynamodb.Options)) *dynamodb.Client {
	t.Helper()
	endpoint := backendtest.DynamoEndpoint(t)
	if endpoint == "" {
		return nil // only a testing.TB whose Skip returns gets here
	}
	return ClientAt(t, endpoint, optFns...)
}

// ClientAt returns a client of the DynamoDB at endpoint (a URL), signing
// with the dummy credentials AccessKeyID and SecretAccessKey in Region,
// whatever the environment holds. It needs no server: tests of a backend
// that is down point it at a closed port.
//
// The client has an HTTP transport of its own, whose idle connections
// t.Cleanup closes, so that no connection goroutine outlives the test.
// optFns adjust the client's options after those, for example to add a
// middleware or to limit retries.
func ClientAt(t testing.TB, endpoint string, optFns ...func(*dynamodb.Options)) *dynamodb.Client {
	t.Helper()
	// Parallel tests share a client; enough idle connections that they
	// do not open and close one per request.
	tr := &http.Transport{MaxIdleConnsPerHost: 128}
	t.Cleanup(tr.CloseIdleConnections)
	return dynamodb.New(dynamodb.Options{
		Region:       Region,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""),
		HTTPClient:   &http.Client{Transport: tr},
	}, optFns...)
}

// Names returns a table name for each of bases, base + "-" + 12 random hex
// digits, and has t.Cleanup delete those tables through client. It creates
// nothing: it is for tables that the code under test creates (a gateway
// started with a create-tables flag), and Tables builds on it. A table
// that was never created is not an error at cleanup.
//
// Call it before starting what creates the tables: cleanups run last
// registered first, so the tables are deleted after that has stopped.
func Names(t testing.TB, client *dynamodb.Client, bases ...string) []string {
	t.Helper()
	names := make([]string, len(bases))
	for i, base := range bases {
		names[i] = base + "-" + randid.Hex(6)
	}
	t.Cleanup(func() {
		// t's own context is canceled by the time cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), tableTimeout)
		defer cancel()
		for _, name := range names {
			_, err := client.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)})
			var missing *types.ResourceNotFoundException
			if err != nil && !errors.As(err, &missing) {
				t.Errorf("dynamotest: delete table %s: %v", name, err)
			}
		}
	})
	return names
}

// Tables gives t tables of its own: it takes a name for each of bases from
// Names, calls create with those names in that order, and returns them;
// t.Cleanup deletes the tables. create makes the tables, typically with
// dynamostore.CreateTables or dynamolimit.CreateTable; its ctx is bounded
// by a minute and by t. An error from create fails t.
func Tables(t testing.TB, client *dynamodb.Client, create func(ctx context.Context, names []string) error, bases ...string) []string {
	t.Helper()
	names := Names(t, client, bases...)
	ctx, cancel := context.WithTimeout(t.Context(), tableTimeout)
	defer cancel()
	if err := create(ctx, names); err != nil {
		t.Fatalf("dynamotest: create tables %v: %v", names, err)
	}
	return names
}
