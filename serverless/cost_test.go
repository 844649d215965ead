package serverless

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
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
)

// ddbMeter counts the DynamoDB calls of one client, by operation, and the
// capacity units they consumed: it asks for ReturnConsumedCapacity TOTAL
// on every call, and dynalite answers it as DynamoDB does (reads in 4 KB
// units, halved when eventually consistent; writes in 1 KB units, of the
// larger of the old and the new item).
type ddbMeter struct {
	mu           sync.Mutex
	calls        map[string]int64
	rcu, wcu     float64
	pendingTable string          // the table of the rows CreatePending writes
	scanned      map[string]bool // the tables scanned
}

func newDDBMeter() *ddbMeter { return &ddbMeter{calls: map[string]int64{}, scanned: map[string]bool{}} }

func (m *ddbMeter) options(o *dynamodb.Options) {
	o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("costMeter", m.handle), middleware.After)
	})
}

func (m *ddbMeter) handle(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	total := types.ReturnConsumedCapacityTotal
	var op string
	switch v := in.Parameters.(type) {
	case *dynamodb.GetItemInput:
		op, v.ReturnConsumedCapacity = "GetItem", total
	case *dynamodb.PutItemInput:
		op, v.ReturnConsumedCapacity = "PutItem", total
		if _, ok := v.Item[attrRequestIDForTest]; ok && v.ConditionExpression != nil {
			m.mu.Lock()
			m.pendingTable = aws.ToString(v.TableName)
			m.mu.Unlock()
		}
	case *dynamodb.UpdateItemInput:
		op, v.ReturnConsumedCapacity = "UpdateItem", total
	case *dynamodb.DeleteItemInput:
		op, v.ReturnConsumedCapacity = "DeleteItem", total
	case *dynamodb.BatchGetItemInput:
		op, v.ReturnConsumedCapacity = "BatchGetItem", total
	case *dynamodb.BatchWriteItemInput:
		op, v.ReturnConsumedCapacity = "BatchWriteItem", total
	case *dynamodb.QueryInput:
		op, v.ReturnConsumedCapacity = "Query", total
	case *dynamodb.ScanInput:
		op, v.ReturnConsumedCapacity = "Scan", total
		m.mu.Lock()
		m.scanned[aws.ToString(v.TableName)] = true
		m.mu.Unlock()
	default:
		op = fmt.Sprintf("%T", v)
	}
	out, md, err := next.HandleInitialize(ctx, in)
	var read bool
	var units float64
	add := func(cs ...types.ConsumedCapacity) {
		for _, c := range cs {
			units += aws.ToFloat64(c.CapacityUnits)
		}
	}
	switch r := out.Result.(type) {
	case *dynamodb.GetItemOutput:
		read = true
		if r.ConsumedCapacity != nil {
			add(*r.ConsumedCapacity)
		}
	case *dynamodb.PutItemOutput:
		if r.ConsumedCapacity != nil {
			add(*r.ConsumedCapacity)
		}
	case *dynamodb.UpdateItemOutput:
		if r.ConsumedCapacity != nil {
			add(*r.ConsumedCapacity)
		}
	case *dynamodb.DeleteItemOutput:
		if r.ConsumedCapacity != nil {
			add(*r.ConsumedCapacity)
		}
	case *dynamodb.BatchGetItemOutput:
		read = true
		add(r.ConsumedCapacity...)
	case *dynamodb.BatchWriteItemOutput:
		add(r.ConsumedCapacity...)
	case *dynamodb.QueryOutput:
		read = true
		if r.ConsumedCapacity != nil {
			add(*r.ConsumedCapacity)
		}
	case *dynamodb.ScanOutput:
		read = true
		if r.ConsumedCapacity != nil {
			add(*r.ConsumedCapacity)
		}
	}
	m.mu.Lock()
	m.calls[op]++
	if read {
		m.rcu += units
	} else {
		m.wcu += units
	}
	m.mu.Unlock()
	return out, md, err
}

// attrRequestIDForTest is the pending table's key, as dynamostore names it.
const attrRequestIDForTest = "requestId"

// ddbUsage is a snapshot of a ddbMeter.
type ddbUsage struct {
	calls    map[string]int64
	rcu, wcu float64
}

func (m *ddbMeter) snapshot() ddbUsage {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := make(map[string]int64, len(m.calls))
	for k, v := range m.calls {
		c[k] = v
	}
	return ddbUsage{c, m.rcu, m.wcu}
}

// sub returns u - v.
func (u ddbUsage) sub(v ddbUsage) ddbUsage {
	d := ddbUsage{calls: map[string]int64{}, rcu: u.rcu - v.rcu, wcu: u.wcu - v.wcu}
	for k, n := range u.calls {
		if n-v.calls[k] != 0 {
			d.calls[k] = n - v.calls[k]
		}
	}
	return d
}

func (u ddbUsage) reads() int64 {
	return u.calls["GetItem"] + u.calls["BatchGetItem"] + u.calls["Query"] + u.calls["Scan"]
}

func (u ddbUsage) writes() int64 {
	return u.calls["PutItem"] + u.calls["UpdateItem"] + u.calls["DeleteItem"] + u.calls["BatchWriteItem"]
}

func (u ddbUsage) String() string {
	ops := make([]string, 0, len(u.calls))
	for op, n := range u.calls {
		ops = append(ops, fmt.Sprintf("%s %d", op, n))
	}
	slices.Sort(ops)
	return strings.Join(ops, ", ")
}

// Prices assumed by the cost table, US East (N. Virginia), list prices
// without free tier, as published on the AWS pricing pages in 2025
// (DynamoDB on-demand after its November 2024 reduction). Keep them in
// step with docs/serverless.md.
const (
	priceLambdaRequest   = 0.20 / 1e6   // per invocation
	priceLambdaGBSecond  = 0.0000133334 // arm64
	priceHTTPAPIRequest  = 1.00 / 1e6   // per request, first 300 million a month
	priceWebSocketUnit   = 1.00 / 1e6   // per message of up to 32 KB, first billion a month
	priceDynamoDBRead    = 0.125 / 1e6  // per read request unit, on-demand
	priceDynamoDBWrite   = 0.625 / 1e6  // per write request unit, on-demand
	functionMemoryGB     = 256.0 / 1024 // template.yaml's MemorySize
	assumedHTTPSeconds   = 0.1          // HTTP invocation: the agent answers in tens of ms
	assumedDefaultSecond = 0.02         // a $default invocation: one or a few DynamoDB calls
	assumedDataOutPerGB  = 0.09         // data transfer out, not in the table
	perMillion           = 1e6
	_                    = assumedDataOutPerGB
)

// costRow is the measured cost of one kind of request.
type costRow struct {
	name             string
	invocations      int64 // Lambda, every route
	defaults         int64 // of which $default
	posts, gets      int64 // @connections calls: posts (every answer), GETs
	units            int64 // WebSocket messages in 32 KB units, both ways
	after, deleteAll ddbUsage
}

func (c costRow) dollars(d ddbUsage) float64 {
	lambda := float64(c.invocations)*priceLambdaRequest +
		(assumedHTTPSeconds+float64(c.defaults)*assumedDefaultSecond)*functionMemoryGB*priceLambdaGBSecond
	return perMillion * (lambda + priceHTTPAPIRequest + float64(c.units)*priceWebSocketUnit +
		d.rcu*priceDynamoDBRead + d.wcu*priceDynamoDBWrite)
}

// TestCost measures what one forwarded request costs: Lambda invocations,
// Management API calls, WebSocket messages in billing units, and DynamoDB
// calls with the capacity units they consume, for a small GET, a GET of a
// 32 KiB response and a 1.5 MiB POST echoed back. Responses are left to
// DynamoDB's TTL: no request deletes a row, every row it wrote keeps a
// ttl in the near future. "Before" adds what deleting the rows explicitly
// (DeletePending, as the adapter did before) costs on the rows just
// written. It prints the table that docs/serverless.md shows:
//
//	go test -run TestCost -v ./serverless/
func TestCost(t *testing.T) {
	t.Parallel()
	meter := newDDBMeter()
	g := newGateway(t, gatewayConfig{ddbOptions: meter.options})
	ln, _ := g.agent(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/bytes/")); err == nil {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(randomBytes(n))
			return
		}
		echo.ServeHTTP(w, r)
	}))
	// Warm up, so that the counts cover a request, not the connection.
	if resp, _ := g.do(t, http.MethodGet, ln.URL()+"/warm", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("warm-up status %d", resp.StatusCode)
	}
	seen := map[string]bool{}
	for _, id := range pendingRequests(t, g, meter) {
		seen[id] = true
	}

	big := randomBytes(1536 << 10)
	tests := []struct {
		name   string
		method string
		path   string
		body   []byte
		want   int // response body bytes
	}{
		{"small GET", http.MethodGet, "/bytes/2", nil, 2},
		{"32 KiB response", http.MethodGet, "/bytes/32768", nil, 32768},
		{"1.5 MiB POST, echoed", http.MethodPost, "/echo", big, len(big)},
	}
	var rows []costRow
	for _, tt := range tests {
		s0, d0 := g.emu.Stats(), meter.snapshot()
		resp, body := g.do(t, tt.method, ln.URL()+tt.path, tt.body, nil)
		if resp.StatusCode != http.StatusOK || len(body) != tt.want || (tt.body != nil && !bytes.Equal(body, tt.body)) {
			t.Fatalf("%s: status %d, %d bytes back", tt.name, resp.StatusCode, len(body))
		}
		s1, d1 := g.emu.Stats(), meter.snapshot()
		ended := time.Now()
		row := costRow{
			name:        tt.name,
			invocations: s1.Invocations() - s0.Invocations(),
			defaults:    s1.DefaultInvocations - s0.DefaultInvocations,
			posts:       s1.Posts + s1.GonePosts + s1.ThrottledPosts - s0.Posts - s0.GonePosts - s0.ThrottledPosts,
			gets:        s1.ConnectionGets - s0.ConnectionGets,
			units:       s1.MeteredMessages - s0.MeteredMessages,
			after:       d1.sub(d0),
		}
		if n := row.after.calls["DeleteItem"] + row.after.calls["BatchWriteItem"]; n != 0 {
			t.Errorf("%s: %d delete calls; completed rows are left to TTL", tt.name, n)
		}

		// The rows the request left: a ttl DynamoDB's TTL will act on, no
		// later than the pending TTL from the request's start.
		var id string
		for _, r := range pendingRequests(t, g, meter) {
			if !seen[r] {
				if id != "" {
					t.Fatalf("%s: two new requests %s and %s", tt.name, id, r)
				}
				id = r
			}
		}
		if id == "" {
			t.Fatalf("%s: no pending row left for TTL", tt.name)
		}
		seen[id] = true
		checkTTL(t, g, meter.pendingTable, id, ended, g.relay.pendingTTL())

		// What the explicit delete cost before: DeletePending on these rows.
		b0 := meter.snapshot()
		if err := g.h.Store.DeletePending(t.Context(), id); err != nil {
			t.Fatalf("DeletePending: %v", err)
		}
		row.deleteAll = meter.snapshot().sub(b0)
		rows = append(rows, row)
	}

	t.Logf("per request (DynamoDB capacity units as dynalite reports them):")
	for _, r := range rows {
		before := ddbUsage{calls: map[string]int64{}, rcu: r.after.rcu + r.deleteAll.rcu, wcu: r.after.wcu + r.deleteAll.wcu}
		t.Logf("%-22s Lambda %d (%d $default), Management API %d posts and %d GETs, WebSocket units %d", r.name, r.invocations, r.defaults, r.posts, r.gets, r.units)
		t.Logf("%-22s   after (TTL):  DynamoDB %d reads, %d writes [%v], %.1f RCU, %.1f WCU; $%.2f per million",
			"", r.after.reads(), r.after.writes(), r.after, r.after.rcu, r.after.wcu, r.dollars(r.after))
		t.Logf("%-22s   before (delete): + %d writes [%v], %.1f WCU more: %.1f WCU; $%.2f per million",
			"", r.deleteAll.writes(), r.deleteAll, r.deleteAll.wcu, before.wcu, r.dollars(before))
	}
	// The 1.5 MiB echo's response is stored once: its write units are
	// about its size in KiB, and deleting it explicitly would cost as much
	// again.
	last := rows[len(rows)-1]
	if last.after.wcu < 1536 || math.Abs(last.deleteAll.wcu-last.after.wcu) > 0.1*last.after.wcu {
		t.Errorf("1.5 MiB echo: %.0f WCU to store, %.0f to delete; want about 1536 each", last.after.wcu, last.deleteAll.wcu)
	}
}

// pendingRequests returns the IDs of the request rows in the pending
// table (not their chunk rows).
func pendingRequests(t *testing.T, g *gateway, meter *ddbMeter) []string {
	t.Helper()
	meter.mu.Lock()
	table := meter.pendingTable
	meter.mu.Unlock()
	if table == "" {
		t.Fatal("no pending table seen yet")
	}
	ddb := g.ddbClient
	var ids []string
	p := dynamodb.NewScanPaginator(ddb, &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true),
		ProjectionExpression: aws.String("#k"), ExpressionAttributeNames: map[string]string{"#k": attrRequestIDForTest}})
	for p.HasMorePages() {
		out, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		for _, it := range out.Items {
			if v, ok := it[attrRequestIDForTest].(*types.AttributeValueMemberS); ok && !strings.Contains(v.Value, "#") {
				ids = append(ids, v.Value)
			}
		}
	}
	return ids
}

// checkTTL checks that request id's rows (its request row and chunk rows)
// carry a ttl in the future, and no later than ttl after ended, when the
// request had been answered.
func checkTTL(t *testing.T, g *gateway, table, id string, ended time.Time, ttl time.Duration) {
	t.Helper()
	out, err := g.ddbClient.Scan(t.Context(), &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true),
		FilterExpression:          aws.String("begins_with(#k, :id)"),
		ProjectionExpression:      aws.String("#k, #ttl"),
		ExpressionAttributeNames:  map[string]string{"#k": attrRequestIDForTest, "#ttl": "ttl"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":id": &types.AttributeValueMemberS{Value: id}}})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	if len(out.Items) == 0 {
		t.Fatalf("request %s: no rows", id)
	}
	now := time.Now().Unix()
	latest := (ended.Add(ttl).UnixMilli() + 999) / 1000 // ttl is rounded up to a second
	for _, it := range out.Items {
		v, _ := it["ttl"].(*types.AttributeValueMemberN)
		var n int64
		if v != nil {
			n, _ = strconv.ParseInt(v.Value, 10, 64)
		}
		if n <= now || n > latest {
			t.Errorf("row %v: ttl %d, want in (%d, %d]", it[attrRequestIDForTest], n, now, latest)
		}
	}
}
