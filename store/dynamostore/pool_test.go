package dynamostore

import (
	"encoding/base64"
	"errors"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/http-tunnel/tunnel/internal/randid"
	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/store/dynamostore/dynamotest"
)

// testPool returns n members of a pool for a fresh tunnel, not yet put,
// each with a connection and node of its own, expiring at the given
// offset from now.
func testPool(n int, expiresIn time.Duration) []store.Record {
	first := testRecord("owner", expiresIn)
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

// plainMembers renders a claim row's members map as connection ID ->
// "e=<expiry>" or "e=<expiry> r", for comparison.
func plainMembers(t *testing.T, it item) map[string]string {
	t.Helper()
	m, ok := it[attrMembers].(*types.AttributeValueMemberM)
	if !ok {
		t.Fatalf("claim row %v has no members map", plain(it))
	}
	out := make(map[string]string, len(m.Value))
	for c, v := range m.Value {
		entry := v.(*types.AttributeValueMemberM).Value
		s := "e=" + plain(entry)[memberExpires]
		if r, ok := entry[memberReleased]; ok {
			s += " r=" + plain(item{"r": r})["r"]
		}
		out[c] = s
	}
	return out
}

// TestPoolSchema pins a pool's rows as other readers see them: the claim
// row with its owner, members map, revision and lease, outside the
// tunnel-id-index; each member's connection row in the original's shape
// plus the pool mark and its Access, in the index, where the original
// lookup finds every member.
func TestPoolSchema(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	s, opts := newStore(t, client)
	ctx := t.Context()
	pool := testPool(2, 0)
	pool[0].ExpiresAt = time.Date(2030, 1, 2, 5, 4, 5, 1_000_000, time.UTC)
	pool[1].ExpiresAt = time.Date(2030, 1, 2, 6, 4, 5, 0, time.UTC)
	pool[1].Access = ""
	for _, m := range pool {
		mustPut(t, s, m)
	}
	id := pool[0].TunnelID
	ms := func(tm time.Time) string { return strconv.FormatInt(tm.UnixMilli(), 10) }

	claim := plain(rawItem(t, client, opts.ConnectionsTable, claimPrefix+id))
	rev := claim["rev"]
	delete(claim, "rev")
	delete(claim, "members")
	wantClaim := map[string]string{
		"connectionId": "S:tunnel#" + id,
		"pool":         "BOOL:true",
		"owner":        "S:owner",
		"expiresAt":    "N:" + ms(pool[1].ExpiresAt),
		"ttl":          "N:" + strconv.FormatInt(pool[1].ExpiresAt.Unix(), 10),
	}
	if !maps.Equal(claim, wantClaim) {
		t.Errorf("claim row:\n got %v\nwant %v (and rev, members)", claim, wantClaim)
	}
	if _, err := strconv.ParseInt(rev[len("N:"):], 10, 64); err != nil {
		t.Errorf("rev = %q, want a number", rev)
	}
	checkMembers := func(t *testing.T, want map[string]string) {
		t.Helper()
		got := plainMembers(t, rawItem(t, client, opts.ConnectionsTable, claimPrefix+id))
		if !maps.Equal(got, want) {
			t.Errorf("members:\n got %v\nwant %v", got, want)
		}
	}
	wantMembers := map[string]string{
		pool[0].ConnectionID: "e=N:" + ms(pool[0].ExpiresAt),
		pool[1].ConnectionID: "e=N:" + ms(pool[1].ExpiresAt),
	}
	checkMembers(t, wantMembers)

	for _, m := range pool {
		want := map[string]string{
			"connectionId":    "S:" + m.ConnectionID,
			"tunnelId":        "S:" + id,
			"pool":            "BOOL:true",
			"owner":           "S:owner",
			"node":            "S:" + m.Node,
			"publicUrl":       "S:" + m.PublicURL,
			"subject":         "S:agent-of-owner",
			"protocolVersion": "N:1",
			"createdAt":       "N:" + strconv.FormatInt(m.CreatedAt.Unix(), 10),
			"createdAtMs":     "N:" + ms(m.CreatedAt),
			"expiresAt":       "N:" + ms(m.ExpiresAt),
			"ttl":             "N:" + strconv.FormatInt(ttlSeconds(m.ExpiresAt.UnixMilli()), 10),
		}
		if m.Access != "" {
			want["access"] = "B:" + base64.StdEncoding.EncodeToString([]byte(m.Access))
		}
		if got := plain(rawItem(t, client, opts.ConnectionsTable, m.ConnectionID)); !maps.Equal(got, want) {
			t.Errorf("connection row of %s:\n got %v\nwant %v", m.ConnectionID, got, want)
		}
	}

	// The mark is the claim row's; Renew clears it and moves the expiry
	// there and on the connection row.
	if err := s.Release(ctx, id, pool[0].ConnectionID); err != nil {
		t.Fatal(err)
	}
	wantMembers[pool[0].ConnectionID] += " r=BOOL:true"
	checkMembers(t, wantMembers)
	if got := plain(rawItem(t, client, opts.ConnectionsTable, pool[0].ConnectionID)); got["released"] != "" {
		t.Errorf("connection row after Release = %v, want no released attribute", got)
	}
	later := time.Date(2030, 1, 3, 0, 0, 0, 0, time.UTC)
	if err := s.Renew(ctx, id, pool[0].ConnectionID, later); err != nil {
		t.Fatal(err)
	}
	wantMembers[pool[0].ConnectionID] = "e=N:" + ms(later)
	checkMembers(t, wantMembers)
	if got := plain(rawItem(t, client, opts.ConnectionsTable, claimPrefix+id)); got["expiresAt"] != "N:"+ms(later) || got["rev"] == rev {
		t.Errorf("claim row after Renew = %v, want expiresAt %s and a new rev", got, ms(later))
	}
	if got := plain(rawItem(t, client, opts.ConnectionsTable, pool[0].ConnectionID)); got["expiresAt"] != "N:"+ms(later) {
		t.Errorf("connection row after Renew = %v, want expiresAt %s", got, ms(later))
	}

	// The original's lookup finds every member, and the claim row never.
	out, err := client.Query(ctx, &dynamodb.QueryInput{
		TableName:                 aws.String(opts.ConnectionsTable),
		IndexName:                 aws.String(DefaultTunnelIndex),
		KeyConditionExpression:    aws.String("tunnelId = :id"),
		ExpressionAttributeValues: item{":id": str(id)},
	})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, it := range out.Items {
		ids = append(ids, getS(it, attrConnectionID))
	}
	slices.Sort(ids)
	want := []string{pool[0].ConnectionID, pool[1].ConnectionID}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("index query = %q, want %q", ids, want)
	}
}

// TestPoolRenewWrites pins the writes of a member's Renew: its connection
// row first, as for a plain record (Cleanup relies on it), then one
// update of the claim row when the new expiry is the pool's latest, and a
// read and a conditional write of it when not.
func TestPoolRenewWrites(t *testing.T) {
	t.Parallel()
	var rec inputRecorder
	client := dynamotest.Client(t, rec.addTo)
	s, _ := newStore(t, client)
	pool := testPool(2, time.Hour)
	for _, m := range pool {
		mustPut(t, s, m)
	}
	id := pool[0].TunnelID
	tests := []struct {
		name    string
		conn    string
		expires time.Time
		want    []string
	}{
		{"Latest", pool[0].ConnectionID, time.Now().Add(2 * time.Hour),
			[]string{"UpdateItem " + pool[0].ConnectionID, "UpdateItem " + claimPrefix + id}},
		{"Earlier", pool[1].ConnectionID, time.Now().Add(90 * time.Minute),
			[]string{"UpdateItem " + pool[1].ConnectionID, "UpdateItem " + claimPrefix + id, "GetItem " + claimPrefix + id, "PutItem " + claimPrefix + id}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec.take()
			if err := s.Renew(t.Context(), id, tt.conn, tt.expires); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, in := range rec.take() {
				switch in := in.(type) {
				case *dynamodb.UpdateItemInput:
					got = append(got, "UpdateItem "+getS(in.Key, attrConnectionID))
				case *dynamodb.GetItemInput:
					got = append(got, "GetItem "+getS(in.Key, attrConnectionID))
				case *dynamodb.PutItemInput:
					got = append(got, "PutItem "+getS(in.Item, attrConnectionID))
				default:
					got = append(got, "?")
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Renew sent %q, want %q", got, tt.want)
			}
			r, err := s.GetByConnection(t.Context(), tt.conn)
			if err != nil || !r.ExpiresAt.Equal(tt.expires.Truncate(time.Millisecond)) {
				t.Errorf("GetByConnection after Renew = %+v, %v; want expiry %v", r, err, tt.expires)
			}
		})
	}
}

// TestPoolInterruptedJoin builds the state a join leaves when it stops
// after its claim write, before the member's connection row: the member
// holds its place in the pool (the name stays the pool's) but no lookup
// returns it, its Renew reports the tunnel lost, and its rejoin repairs
// it.
func TestPoolInterruptedJoin(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	s, opts := newStore(t, client)
	ctx := t.Context()
	pool := testPool(2, time.Hour)
	for _, m := range pool {
		mustPut(t, s, m)
	}
	id, cut := pool[0].TunnelID, pool[1]
	deleteRaw(t, client, opts.ConnectionsTable, cut.ConnectionID)

	got, err := s.Members(ctx, id)
	if err != nil || len(got) != 1 || got[0].ConnectionID != pool[0].ConnectionID {
		t.Errorf("Members = %+v, %v; want %s alone", got, err, pool[0].ConnectionID)
	}
	if r, err := s.GetByConnection(ctx, cut.ConnectionID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetByConnection(cut) = %+v, %v; want ErrNotFound", r, err)
	}
	if err := s.Renew(ctx, id, cut.ConnectionID, time.Now().Add(2*time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Renew(cut) = %v, want ErrNotFound", err)
	}
	// Only the first member is left to answer Get, even when the cut one
	// expires last.
	if err := s.Delete(ctx, id, pool[0].ConnectionID); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Get(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get with only the cut member left = %+v, %v; want ErrNotFound", r, err)
	}
	other := testRecord("other", time.Hour)
	other.TunnelID = id
	if err := s.Put(ctx, other); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Put by another owner while the cut member holds its place = %v, want ErrConflict", err)
	}
	mustPut(t, s, cut)
	if r, err := s.GetByConnection(ctx, cut.ConnectionID); err != nil || r.Node != cut.Node {
		t.Errorf("GetByConnection after the rejoin = %+v, %v; want the member", r, err)
	}
}

// TestPoolCleanup checks that Cleanup deletes a pool whose members have
// all expired, claim row and connection rows, and leaves a live pool and
// its members alone, the expired member's row aside.
func TestPoolCleanup(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	s, opts := newStore(t, client)
	ctx := t.Context()
	lapsed := testPool(2, time.Hour)
	live := testPool(2, time.Hour)
	for _, m := range append(slices.Clone(lapsed), live...) {
		mustPut(t, s, m)
	}
	for _, m := range append(slices.Clone(lapsed), live[1]) {
		// Expired a minute ago, as a crashed node leaves its members,
		// written as Renew would have.
		for _, key := range []string{m.ConnectionID, claimPrefix + m.TunnelID} {
			it := rawItem(t, client, opts.ConnectionsTable, key)
			past := time.Now().Add(-time.Minute).UnixMilli()
			if key == m.ConnectionID {
				it[attrExpiresAt] = num(past)
				it[attrTTL] = num(ttlSeconds(past))
			} else {
				members := it[attrMembers].(*types.AttributeValueMemberM).Value
				members[m.ConnectionID] = &types.AttributeValueMemberM{Value: item{memberExpires: num(past)}}
				if m.TunnelID == lapsed[0].TunnelID {
					it[attrExpiresAt] = num(past)
					it[attrTTL] = num(ttlSeconds(past))
				}
			}
			putRaw(t, client, opts.ConnectionsTable, it)
		}
	}
	st, err := s.Cleanup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Deleted != 4 {
		t.Errorf("Cleanup deleted %d rows, want 4 (a claim row and three connection rows)", st.Deleted)
	}
	if n := countRows(t, client, opts.ConnectionsTable); n != 2 {
		t.Errorf("%d rows left, want 2 (the live pool's claim and live member)", n)
	}
	got, err := s.Members(ctx, live[0].TunnelID)
	if err != nil || len(got) != 1 || got[0].ConnectionID != live[0].ConnectionID {
		t.Errorf("Members(live pool) = %+v, %v; want %s", got, err, live[0].ConnectionID)
	}
	other := testRecord("other", time.Hour)
	other.TunnelID = lapsed[0].TunnelID
	mustPut(t, s, other)
}

// TestPoolClaimBlocksOlderReleases pins what the package doc tells
// operators about nodes of the release before pools: their Put, with the
// claim condition of that release, conflicts with a live pool of another
// owner (its claim row's expiresAt is its last member's), and takes the
// name once every member has expired; their Get reads a pool as a record
// without a connection, which no node can forward to.
func TestPoolClaimBlocksOlderReleases(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	s, opts := newStore(t, client)
	ctx := t.Context()
	pool := testPool(2, time.Hour)
	for _, m := range pool {
		mustPut(t, s, m)
	}
	id := pool[0].TunnelID
	olderPut := func() error {
		r := testRecord("other", time.Hour)
		r.TunnelID = id
		_, err := client.PutItem(ctx, &dynamodb.PutItemInput{
			TableName:                aws.String(opts.ConnectionsTable),
			Item:                     claimItem(r),
			ConditionExpression:      aws.String("attribute_not_exists(#k) OR #o = :owner OR #e <= :now"),
			ExpressionAttributeNames: map[string]string{"#k": attrConnectionID, "#o": attrOwner, "#e": attrExpiresAt},
			ExpressionAttributeValues: item{
				":owner": str(r.Owner),
				":now":   num(time.Now().UnixMilli()),
			},
		})
		return err
	}
	if err := olderPut(); !conditionFailed(err) {
		t.Errorf("an older release's Put over a live pool = %v, want its condition refused", err)
	}
	// What an older release's Get makes of the claim row.
	older, err := claimRecord(id, rawItem(t, client, opts.ConnectionsTable, claimPrefix+id))
	if err != nil || older.ConnectionID != "" || older.Owner != "owner" || older.Access != "" {
		t.Errorf("an older release reads the pool as %+v, %v; want a record of owner without connection or Access", older, err)
	}
	for _, m := range pool {
		if err := s.Renew(ctx, id, m.ConnectionID, time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if err := olderPut(); err != nil {
		t.Errorf("an older release's Put once the pool has lapsed = %v, want nil", err)
	}
}

// TestPoolInvalidIDs checks that a member whose connection ID cannot key a
// connection row is refused like a plain record's.
func TestPoolInvalidIDs(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	s, _ := newStore(t, client)
	m := testPool(1, time.Hour)[0]
	for _, conn := range []string{"", "tunnel#" + m.TunnelID, "a#b"} {
		m.ConnectionID = conn
		if err := s.Put(t.Context(), m); err == nil || errors.Is(err, store.ErrConflict) {
			t.Errorf("Put of a member with connection %q = %v, want an invalid-ID error", conn, err)
		}
	}
	if _, err := s.Members(t.Context(), m.TunnelID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Members after the refused Puts = %v, want ErrNotFound", err)
	}
}
