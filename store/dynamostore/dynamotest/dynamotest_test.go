package dynamotest_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/http-tunnel/tunnel/internal/leakcheck"
	"github.com/http-tunnel/tunnel/store/dynamostore"
	"github.com/http-tunnel/tunnel/store/dynamostore/dynamotest"
)

// TestMain fails the package if a client's connections outlive its test.
func TestMain(m *testing.M) {
	leakcheck.Main(m)
}

// exists reports whether table exists and is not being deleted: DeleteTable
// returns while the table is still there, DELETING.
func exists(t *testing.T, client *dynamodb.Client, table string) bool {
	t.Helper()
	out, err := client.DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	var missing *types.ResourceNotFoundException
	if errors.As(err, &missing) {
		return false
	}
	if err != nil {
		t.Fatalf("DescribeTable(%s): %v", table, err)
	}
	return out.Table.TableStatus != types.TableStatusDeleting
}

// TestTables checks that Tables passes create names unique to the call,
// derived from the bases in order, and that the tables are gone when the
// test ends.
func TestTables(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	var names, again []string
	t.Run("Test", func(t *testing.T) {
		var created []string
		names = dynamotest.Tables(t, client, func(ctx context.Context, n []string) error {
			created = n
			return dynamostore.CreateTables(ctx, client, dynamostore.Options{ConnectionsTable: n[0], PendingTable: n[1]})
		}, "dynamotest-a", "dynamotest-b")
		again = dynamotest.Names(t, client, "dynamotest-a")
		if len(names) != 2 || !strings.HasPrefix(names[0], "dynamotest-a-") || !strings.HasPrefix(names[1], "dynamotest-b-") {
			t.Fatalf("names %q, want dynamotest-a-..., dynamotest-b-...", names)
		}
		if fmt.Sprint(created) != fmt.Sprint(names) {
			t.Errorf("create got %q, Tables returned %q", created, names)
		}
		if again[0] == names[0] {
			t.Errorf("two calls gave one name %q", again[0])
		}
		for _, name := range names {
			if !exists(t, client, name) {
				t.Errorf("table %s missing during the test", name)
			}
		}
	})
	// Cleanup deleted the tables, and did not mind that again[0] was
	// never created: the subtest would have failed.
	for _, name := range names {
		if exists(t, client, name) {
			t.Errorf("table %s still exists after the test", name)
		}
	}
}

// failRecorder is a testing.TB whose Fatalf records instead of stopping.
type failRecorder struct {
	testing.TB
	msg string
}

func (r *failRecorder) Helper() {}

func (r *failRecorder) Fatalf(format string, args ...any) { r.msg = fmt.Sprintf(format, args...) }

func TestTablesCreateFails(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	r := &failRecorder{TB: t}
	dynamotest.Tables(r, client, func(context.Context, []string) error {
		return errors.New("no such luck")
	}, "dynamotest-fail")
	if !strings.HasPrefix(r.msg, "dynamotest: create tables [dynamotest-fail-") || !strings.HasSuffix(r.msg, ": no such luck") {
		t.Errorf("Fatalf(%q), want one naming the table and create's error", r.msg)
	}
}

// TestClientAtCredentials checks that ClientAt signs with the dummy
// credentials and region whatever the environment says, and talks to the
// endpoint it was given. It sets environment variables, so it is not
// parallel.
func TestClientAtCredentials(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "from-the-environment")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_REGION", "eu-west-1")
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		fmt.Fprint(w, `{"TableNames":["x"]}`)
	}))
	t.Cleanup(srv.Close)
	client := dynamotest.ClientAt(t, srv.URL)
	out, err := client.ListTables(t.Context(), &dynamodb.ListTablesInput{})
	if err != nil || len(out.TableNames) != 1 {
		t.Fatalf("ListTables = %+v, %v", out, err)
	}
	want := "Credential=" + dynamotest.AccessKeyID + "/"
	if !strings.Contains(auth, want) || !strings.Contains(auth, "/"+dynamotest.Region+"/dynamodb/aws4_request") {
		t.Errorf("Authorization %q, want the dummy key %s in %s", auth, dynamotest.AccessKeyID, dynamotest.Region)
	}
}
