package dynamostore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/store/dynamostore/dynamotest"
	"github.com/http-tunnel/tunnel/store/storetest"
)

func TestConformance(t *testing.T) {
	client := dynamotest.Client(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := newStore(t, client)
		return s
	})
}

// rawItem reads a row as DynamoDB holds it.
func rawItem(t *testing.T, client *dynamodb.Client, table, key string) item {
	t.Helper()
	out, err := client.GetItem(t.Context(), &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            connKey(key),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatalf("GetItem(%s): %v", key, err)
	}
	return out.Item
}

// plain renders an item as attribute name -> "S:value", "N:value",
// "BOOL:value" or "B:" and the value in base64, as the console shows it,
// for comparison.
func plain(it item) map[string]string {
	m := make(map[string]string, len(it))
	for k, v := range it {
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			m[k] = "S:" + v.Value
		case *types.AttributeValueMemberN:
			m[k] = "N:" + v.Value
		case *types.AttributeValueMemberBOOL:
			m[k] = "BOOL:" + strconv.FormatBool(v.Value)
		case *types.AttributeValueMemberB:
			m[k] = "B:" + base64.StdEncoding.EncodeToString(v.Value)
		default:
			m[k] = "?"
		}
	}
	return m
}

// TestSchema pins the rows as other readers see them: the original's
// attribute names and units on connection rows, claim rows that the
// tunnel-id-index does not see, the access policy on the claim row alone,
// as binary, kept by Release and Renew and left out when empty, the
// released mark that Release sets on the claim row alone and Renew
// removes, and the key schemas of both tables.
func TestSchema(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	s, opts := newStore(t, client)
	ctx := t.Context()

	r := testRecord("owner-a", 0)
	r.CreatedAt = time.Date(2030, 1, 2, 3, 4, 5, 678_900_000, time.UTC)
	r.ExpiresAt = time.Date(2030, 1, 2, 5, 4, 5, 1_000_000, time.UTC) // ttl rounds up
	mustPut(t, s, r)
	createdMs := strconv.FormatInt(r.CreatedAt.UnixMilli(), 10)
	expiresMs := strconv.FormatInt(r.ExpiresAt.UnixMilli(), 10)
	common := map[string]string{
		"owner":           "S:owner-a",
		"node":            "S:node-a",
		"publicUrl":       "S:" + r.PublicURL,
		"subject":         "S:agent-of-owner-a",
		"protocolVersion": "N:1",
		"createdAt":       "N:" + strconv.FormatInt(r.CreatedAt.Unix(), 10),
		"createdAtMs":     "N:" + createdMs,
		"expiresAt":       "N:" + expiresMs,
		"ttl":             "N:" + strconv.FormatInt(r.ExpiresAt.Unix()+1, 10),
	}
	wantConn := maps.Clone(common)
	wantConn["connectionId"] = "S:" + r.ConnectionID
	wantConn["tunnelId"] = "S:" + r.TunnelID
	wantClaim := maps.Clone(common)
	wantClaim["connectionId"] = "S:tunnel#" + r.TunnelID
	wantClaim["holder"] = "S:" + r.ConnectionID
	wantClaim["access"] = "B:" + base64.StdEncoding.EncodeToString([]byte(testAccess))

	rows := []struct {
		name, key string
		want      map[string]string
	}{
		{"ConnectionRow", r.ConnectionID, wantConn},
		{"ClaimRow", "tunnel#" + r.TunnelID, wantClaim},
	}
	checkRows := func(t *testing.T) {
		t.Helper()
		for _, row := range rows {
			t.Run(row.name, func(t *testing.T) {
				got := plain(rawItem(t, client, opts.ConnectionsTable, row.key))
				if !maps.Equal(got, row.want) {
					t.Errorf("row %s:\n got %v\nwant %v", row.key, got, row.want)
				}
			})
		}
	}
	checkRows(t)
	if err := s.Release(ctx, r.TunnelID, r.ConnectionID); err != nil {
		t.Fatalf("Release: %v", err)
	}
	wantClaim["released"] = "BOOL:true"
	t.Run("Released", checkRows)
	if err := s.Renew(ctx, r.TunnelID, r.ConnectionID, r.ExpiresAt); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	delete(wantClaim, "released")
	t.Run("Renewed", checkRows)

	// The original's lookup: the index holds connection rows only, so the
	// claim row never answers for a tunnel. After a takeover only the new
	// connection is left.
	queryIndex := func() []string {
		t.Helper()
		out, err := client.Query(ctx, &dynamodb.QueryInput{
			TableName:                 aws.String(opts.ConnectionsTable),
			IndexName:                 aws.String(DefaultTunnelIndex),
			KeyConditionExpression:    aws.String("tunnelId = :id"),
			ExpressionAttributeValues: item{":id": str(r.TunnelID)},
		})
		if err != nil {
			t.Fatalf("Query(%s): %v", DefaultTunnelIndex, err)
		}
		var ids []string
		for _, it := range out.Items {
			ids = append(ids, getS(it, attrConnectionID))
		}
		return ids
	}
	if got := queryIndex(); !slices.Equal(got, []string{r.ConnectionID}) {
		t.Errorf("index query = %q, want [%q]", got, r.ConnectionID)
	}
	next := r
	next.ConnectionID = "c-next"
	next.Access = ""
	mustPut(t, s, next)
	if got := queryIndex(); !slices.Equal(got, []string{next.ConnectionID}) {
		t.Errorf("index query after takeover = %q, want [%q]", got, next.ConnectionID)
	}
	// A record without Access has no access attribute, not an empty one.
	if claim := plain(rawItem(t, client, opts.ConnectionsTable, "tunnel#"+r.TunnelID)); claim["holder"] != "S:c-next" || claim["access"] != "" {
		t.Errorf("claim row after a takeover without Access = %v, want holder c-next and no access", claim)
	}

	tables := []struct {
		table, key, index, indexKey string
	}{
		{opts.ConnectionsTable, "connectionId", DefaultTunnelIndex, "tunnelId"},
		{opts.PendingTable, "requestId", "", ""},
	}
	for _, tt := range tables {
		out, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(tt.table)})
		if err != nil {
			t.Fatalf("DescribeTable(%s): %v", tt.table, err)
		}
		if ks := out.Table.KeySchema; len(ks) != 1 || aws.ToString(ks[0].AttributeName) != tt.key || ks[0].KeyType != types.KeyTypeHash {
			t.Errorf("%s key schema = %+v, want %s HASH", tt.table, ks, tt.key)
		}
		var indexes []string
		for _, gsi := range out.Table.GlobalSecondaryIndexes {
			indexes = append(indexes, aws.ToString(gsi.IndexName)+"("+aws.ToString(gsi.KeySchema[0].AttributeName)+")")
		}
		want := []string(nil)
		if tt.index != "" {
			want = []string{tt.index + "(" + tt.indexKey + ")"}
		}
		if !slices.Equal(indexes, want) {
			t.Errorf("%s indexes = %q, want %q", tt.table, indexes, want)
		}
	}
}

// TestCreateTablesIdempotent checks that creating existing tables again
// succeeds and keeps their rows.
func TestCreateTablesIdempotent(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	s, opts := newStore(t, client)
	r := testRecord("owner", time.Hour)
	mustPut(t, s, r)
	if err := CreateTables(t.Context(), client, opts); err != nil {
		t.Fatalf("second CreateTables = %v, want nil", err)
	}
	if _, err := s.Get(t.Context(), r.TunnelID); err != nil {
		t.Errorf("Get after second CreateTables = %v", err)
	}
}

// inputRecorder is a client middleware that keeps the input of every
// request the client sends.
type inputRecorder struct {
	mu     sync.Mutex
	inputs []any
}

func (rec *inputRecorder) addTo(o *dynamodb.Options) {
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("recordInput",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				rec.mu.Lock()
				rec.inputs = append(rec.inputs, in.Parameters)
				rec.mu.Unlock()
				return next.HandleInitialize(ctx, in)
			}), middleware.Before)
	})
}

// take returns the inputs recorded since the last call.
func (rec *inputRecorder) take() []any {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	in := rec.inputs
	rec.inputs = nil
	return in
}

// projected returns the attribute names a projection expression reads,
// sorted, or nil when there is none (and so the whole row is read).
func projected(expr *string, names map[string]string) []string {
	if expr == nil {
		return nil
	}
	var out []string
	for _, p := range strings.Split(*expr, ",") {
		p = strings.TrimSpace(p)
		if n, ok := names[p]; ok {
			p = n
		}
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// TestLookupsUseProjection checks that lookups read only the attributes a
// Record needs, strongly consistently, in as many reads as documented: one
// GetItem for Get and Members of a plain record, as before pools; one more
// for Get of a pool, and a BatchGetItem for its Members.
func TestLookupsUseProjection(t *testing.T) {
	t.Parallel()
	var rec inputRecorder
	client := dynamotest.Client(t, rec.addTo)
	s, _ := newStore(t, client)
	r := testRecord("owner", time.Hour)
	mustPut(t, s, r)
	m := testRecord("owner", time.Hour)
	m.Pool = true
	mustPut(t, s, m)

	claim := []string{"access", "createdAtMs", "expiresAt", "holder", "members", "node", "owner", "pool", "protocolVersion", "publicUrl", "released", "rev", "subject"}
	row := []string{"access", "connectionId", "createdAtMs", "node", "owner", "pool", "protocolVersion", "publicUrl", "subject", "tunnelId"}
	one := func(recs []store.Record, err error) (store.Record, error) {
		if err == nil && len(recs) != 1 {
			err = fmt.Errorf("%d records, want 1", len(recs))
		}
		if err != nil {
			return store.Record{}, err
		}
		return recs[0], nil
	}
	tests := []struct {
		name   string
		want   store.Record
		lookup func(ctx context.Context) (store.Record, error)
		reads  []string   // the kind of each read, in order
		proj   [][]string // and its projection
	}{
		{"Get", r, func(ctx context.Context) (store.Record, error) {
			return s.Get(ctx, r.TunnelID)
		}, []string{"GetItem"}, [][]string{claim}},
		{"Members", r, func(ctx context.Context) (store.Record, error) {
			return one(s.Members(ctx, r.TunnelID))
		}, []string{"GetItem"}, [][]string{claim}},
		{"GetByConnection", r, func(ctx context.Context) (store.Record, error) {
			return s.GetByConnection(ctx, r.ConnectionID)
		}, []string{"GetItem", "GetItem"}, [][]string{row, claim}},
		{"GetPool", m, func(ctx context.Context) (store.Record, error) {
			return s.Get(ctx, m.TunnelID)
		}, []string{"GetItem", "GetItem"}, [][]string{claim, row}},
		{"MembersPool", m, func(ctx context.Context) (store.Record, error) {
			return one(s.Members(ctx, m.TunnelID))
		}, []string{"GetItem", "BatchGetItem"}, [][]string{claim, row}},
		{"GetByConnectionPool", m, func(ctx context.Context) (store.Record, error) {
			return s.GetByConnection(ctx, m.ConnectionID)
		}, []string{"GetItem", "GetItem"}, [][]string{row, claim}},
	}
	for _, tt := range tests {
		// Sequential: the recorder is shared.
		t.Run(tt.name, func(t *testing.T) {
			rec.take()
			got, err := tt.lookup(t.Context())
			w := tt.want
			if err != nil || got.ConnectionID != w.ConnectionID || got.Access != w.Access || got.Pool != w.Pool || !got.ExpiresAt.Equal(w.ExpiresAt.Truncate(time.Millisecond)) {
				t.Fatalf("%s = %+v, %v; want %+v", tt.name, got, err, w)
			}
			var kinds []string
			var proj [][]string
			for _, in := range rec.take() {
				switch in := in.(type) {
				case *dynamodb.GetItemInput:
					kinds = append(kinds, "GetItem")
					if !aws.ToBool(in.ConsistentRead) {
						t.Errorf("%s read %v without ConsistentRead", tt.name, in.Key)
					}
					proj = append(proj, projected(in.ProjectionExpression, in.ExpressionAttributeNames))
				case *dynamodb.BatchGetItemInput:
					kinds = append(kinds, "BatchGetItem")
					for _, ka := range in.RequestItems {
						if !aws.ToBool(ka.ConsistentRead) {
							t.Errorf("%s batch-read %d keys without ConsistentRead", tt.name, len(ka.Keys))
						}
						proj = append(proj, projected(ka.ProjectionExpression, ka.ExpressionAttributeNames))
					}
				default:
					t.Errorf("%s sent %T, want reads only", tt.name, in)
				}
			}
			if !slices.Equal(kinds, tt.reads) || !slices.EqualFunc(proj, tt.proj, slices.Equal) {
				t.Errorf("%s read %q with projections %q, want %q with %q", tt.name, kinds, proj, tt.reads, tt.proj)
			}
		})
	}
}

// TestCanceledContext checks that every method, given a canceled ctx,
// fails with an error that wraps context.Canceled and names the package.
// (storetest also accepts success; this backend always does I/O first.)
func TestCanceledContext(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	s, opts := newStore(t, client)
	r := testRecord("owner", time.Hour)
	mustPut(t, s, r)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	tests := []struct {
		name string
		call func() error
	}{
		{"Put", func() error { return s.Put(ctx, testRecord("owner", time.Hour)) }},
		{"Get", func() error { _, err := s.Get(ctx, r.TunnelID); return err }},
		{"GetByConnection", func() error { _, err := s.GetByConnection(ctx, r.ConnectionID); return err }},
		{"Members", func() error { _, err := s.Members(ctx, r.TunnelID); return err }},
		{"Join", func() error { m := testRecord("owner", time.Hour); m.Pool = true; return s.Put(ctx, m) }},
		{"Renew", func() error { return s.Renew(ctx, r.TunnelID, r.ConnectionID, time.Now().Add(2*time.Hour)) }},
		{"Release", func() error { return s.Release(ctx, r.TunnelID, r.ConnectionID) }},
		{"Delete", func() error { return s.Delete(ctx, r.TunnelID, r.ConnectionID) }},
		{"Cleanup", func() error { _, err := s.Cleanup(ctx); return err }},
		{"CreateTables", func() error { return CreateTables(ctx, client, opts) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.call()
			if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "dynamostore: ") {
				t.Errorf("%s(canceled ctx) = %v, want a dynamostore error wrapping context.Canceled", tt.name, err)
			}
		})
	}
}

// TestInvalidIDs checks the IDs that cannot be keys: Put refuses them and
// the other methods treat them as absent, without reading claim rows as
// connection rows.
func TestInvalidIDs(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	s, _ := newStore(t, client)
	ctx := t.Context()
	live := testRecord("owner", time.Hour)
	mustPut(t, s, live)
	claimAsConn := "tunnel#" + live.TunnelID

	puts := []struct {
		name string
		edit func(r *store.Record)
	}{
		{"EmptyTunnel", func(r *store.Record) { r.TunnelID = "" }},
		{"EmptyConnection", func(r *store.Record) { r.ConnectionID = "" }},
		{"HashInConnection", func(r *store.Record) { r.ConnectionID = claimAsConn }},
	}
	for _, tt := range puts {
		t.Run("Put"+tt.name, func(t *testing.T) {
			r := testRecord("owner", time.Hour)
			tt.edit(&r)
			err := s.Put(ctx, r)
			if err == nil || errors.Is(err, store.ErrConflict) {
				t.Errorf("Put = %v, want an invalid-ID error", err)
			}
		})
	}
	if got, err := s.GetByConnection(ctx, claimAsConn); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetByConnection(claim key) = %+v, %v; want ErrNotFound", got, err)
	}
	if err := s.Renew(ctx, live.TunnelID, claimAsConn, time.Now().Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Renew(claim key) = %v, want ErrNotFound", err)
	}
	for _, conn := range []string{claimAsConn, ""} {
		if err := s.Release(ctx, live.TunnelID, conn); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Release(%q) = %v, want ErrNotFound", conn, err)
		}
	}
	if err := s.Delete(ctx, live.TunnelID, claimAsConn); err != nil {
		t.Errorf("Delete(claim key) = %v, want nil", err)
	}
	if got, err := s.Get(ctx, live.TunnelID); err != nil || got.Released {
		t.Errorf("Get after the refused calls = %+v, %v; want the live record, not released", got, err)
	}
}

// TestOlderRows checks rows as a release before Subject, Version, Released
// and Access wrote them, without those attributes: they read with the zero
// values, Release and Renew work on them, and a released one lets nobody
// in but its owner, since it has no subject.
func TestOlderRows(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	s, opts := newStore(t, client)
	ctx := t.Context()
	r := testRecord("owner", time.Hour)
	claim, conn := claimItem(r), connItem(r)
	for _, it := range []item{claim, conn} {
		delete(it, attrSubject)
		delete(it, attrVersion)
		delete(it, attrAccess)
		putRaw(t, client, opts.ConnectionsTable, it)
	}
	want := r
	want.Subject, want.Version, want.Access = "", 0, ""
	want.CreatedAt = want.CreatedAt.Truncate(time.Millisecond).UTC()
	want.ExpiresAt = want.ExpiresAt.Truncate(time.Millisecond).UTC()
	check := func(t *testing.T, want store.Record) {
		t.Helper()
		if got, err := s.Get(ctx, r.TunnelID); err != nil || got != want {
			t.Errorf("Get = %+v, %v; want %+v", got, err, want)
		}
		if got, err := s.GetByConnection(ctx, r.ConnectionID); err != nil || got != want {
			t.Errorf("GetByConnection = %+v, %v; want %+v", got, err, want)
		}
	}
	check(t, want)

	if err := s.Release(ctx, r.TunnelID, r.ConnectionID); err != nil {
		t.Fatalf("Release = %v", err)
	}
	want.Released = true
	check(t, want)
	for _, subject := range []string{"", "agent-of-owner"} {
		other := testRecord("other", time.Hour)
		other.TunnelID = r.TunnelID
		other.Subject = subject
		if err := s.Put(ctx, other); !errors.Is(err, store.ErrConflict) {
			t.Errorf("Put by another owner, Subject %q, over a released older row = %v, want ErrConflict", subject, err)
		}
	}
	check(t, want)

	if err := s.Renew(ctx, r.TunnelID, r.ConnectionID, r.ExpiresAt); err != nil {
		t.Fatalf("Renew = %v", err)
	}
	want.Released = false
	check(t, want)
}

// TestForeignAccess checks that a claim row whose access attribute is not
// binary, which this package never writes, makes lookups fail rather than
// return the record with no policy, which would open its URL to anyone.
func TestForeignAccess(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	tests := []struct {
		name string
		v    types.AttributeValue
	}{
		{"String", str(testAccess)},
		{"EmptyString", str("")},
		{"Number", num(1)},
		{"Null", &types.AttributeValueMemberNULL{Value: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, opts := newStore(t, client)
			r := testRecord("owner", time.Hour)
			mustPut(t, s, r)
			claim := claimItem(r)
			claim[attrAccess] = tt.v
			putRaw(t, client, opts.ConnectionsTable, claim)
			lookups := []struct {
				name string
				call func() (store.Record, error)
			}{
				{"Get", func() (store.Record, error) { return s.Get(t.Context(), r.TunnelID) }},
				{"GetByConnection", func() (store.Record, error) { return s.GetByConnection(t.Context(), r.ConnectionID) }},
			}
			for _, l := range lookups {
				got, err := l.call()
				if err == nil || errors.Is(err, store.ErrNotFound) || !strings.HasPrefix(err.Error(), "dynamostore: ") {
					t.Errorf("%s = %+v, %v; want a dynamostore error", l.name, got, err)
				}
			}
		})
	}
}

// TestRenewRepairsConnectionRow checks the repair of the window a Put can
// leave open (claim written, connection row not): the holder's next Renew
// writes the row again, and lookups by connection work afterwards.
func TestRenewRepairsConnectionRow(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	s, opts := newStore(t, client)
	ctx := t.Context()
	r := testRecord("owner", time.Hour)
	mustPut(t, s, r)
	deleteRaw(t, client, opts.ConnectionsTable, r.ConnectionID)
	if _, err := s.GetByConnection(ctx, r.ConnectionID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetByConnection without its row = %v, want ErrNotFound", err)
	}
	r.ExpiresAt = time.Now().Add(2 * time.Hour)
	if err := s.Renew(ctx, r.TunnelID, r.ConnectionID, r.ExpiresAt); err != nil {
		t.Fatalf("Renew = %v", err)
	}
	got, err := s.GetByConnection(ctx, r.ConnectionID)
	if err != nil || !got.ExpiresAt.Equal(r.ExpiresAt.Truncate(time.Millisecond)) {
		t.Errorf("GetByConnection after Renew = %+v, %v; want expiry %v", got, err, r.ExpiresAt)
	}
	if row := rawItem(t, client, opts.ConnectionsTable, r.ConnectionID); getS(row, attrTunnelID) != r.TunnelID {
		t.Errorf("repaired row = %v, want tunnelId %s", plain(row), r.TunnelID)
	}
}

// TestInterruptedWrites builds the states that a crash between the writes
// of one call leaves behind, and checks that lookups follow the claim row,
// the authoritative one: a connection row alone never makes a record
// visible.
func TestInterruptedWrites(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	tests := []struct {
		name string
		// interrupt leaves the state of a call cut short after r was put;
		// it returns the connection that must not be found.
		interrupt func(t *testing.T, s *Store, opts Options, r store.Record) string
	}{
		{"TakeoverBeforeOldRowDeleted", func(t *testing.T, s *Store, opts Options, r store.Record) string {
			old := rawItem(t, client, opts.ConnectionsTable, r.ConnectionID)
			next := r
			next.ConnectionID = "c-next-" + r.TunnelID
			mustPut(t, s, next)
			putRaw(t, client, opts.ConnectionsTable, old)
			return r.ConnectionID
		}},
		{"DeleteBeforeConnectionRow", func(t *testing.T, s *Store, opts Options, r store.Record) string {
			deleteRaw(t, client, opts.ConnectionsTable, claimPrefix+r.TunnelID)
			return r.ConnectionID
		}},
		{"LateRenewOfExpiredClaim", func(t *testing.T, s *Store, opts Options, r store.Record) string {
			// Renew writes the connection row first; here the claim
			// expired on its own, and a late Renew extended only the
			// connection row before its claim update was refused.
			claim := rawItem(t, client, opts.ConnectionsTable, claimPrefix+r.TunnelID)
			claim[attrExpiresAt] = num(time.Now().Add(-time.Minute).UnixMilli())
			putRaw(t, client, opts.ConnectionsTable, claim)
			if err := s.Renew(t.Context(), r.TunnelID, r.ConnectionID, time.Now().Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("Renew of an expired claim = %v, want ErrNotFound", err)
			}
			return r.ConnectionID
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, opts := newStore(t, client)
			r := testRecord("owner", time.Hour)
			mustPut(t, s, r)
			conn := tt.interrupt(t, s, opts, r)
			if len(rawItem(t, client, opts.ConnectionsTable, conn)) == 0 {
				t.Fatalf("the connection row of %s is gone; the test needs it", conn)
			}
			if got, err := s.GetByConnection(t.Context(), conn); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetByConnection(%s) = %+v, %v; want ErrNotFound", conn, got, err)
			}
		})
	}
}

// TestRenewWriteOrder pins the order Cleanup relies on: Renew extends the
// connection row before the claim row, so a connection row never expires
// before the claim that names it.
func TestRenewWriteOrder(t *testing.T) {
	t.Parallel()
	var rec inputRecorder
	client := dynamotest.Client(t, rec.addTo)
	s, _ := newStore(t, client)
	r := testRecord("owner", time.Hour)
	mustPut(t, s, r)
	rec.take()
	if err := s.Renew(t.Context(), r.TunnelID, r.ConnectionID, time.Now().Add(2*time.Hour)); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	var keys []string
	for _, in := range rec.take() {
		if u, ok := in.(*dynamodb.UpdateItemInput); ok {
			keys = append(keys, getS(u.Key, attrConnectionID))
		}
	}
	if want := []string{r.ConnectionID, claimPrefix + r.TunnelID}; !slices.Equal(keys, want) {
		t.Errorf("Renew updated %q, want %q in that order", keys, want)
	}
}

func putRaw(t *testing.T, client *dynamodb.Client, table string, it item) {
	t.Helper()
	if _, err := client.PutItem(t.Context(), &dynamodb.PutItemInput{TableName: aws.String(table), Item: it}); err != nil {
		t.Fatalf("PutItem: %v", err)
	}
}

func deleteRaw(t *testing.T, client *dynamodb.Client, table, key string) {
	t.Helper()
	if _, err := client.DeleteItem(t.Context(), &dynamodb.DeleteItemInput{TableName: aws.String(table), Key: connKey(key)}); err != nil {
		t.Fatalf("DeleteItem: %v", err)
	}
}
