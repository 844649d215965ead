package dynamolimit_test

import (
	"context"
	"crypto/rand"
	"errors"
	"math"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/http-tunnel/tunnel/internal/leakcheck"
	"github.com/http-tunnel/tunnel/ratelimit"
	"github.com/http-tunnel/tunnel/ratelimit/dynamolimit"
	"github.com/http-tunnel/tunnel/ratelimit/ratelimittest"
	"github.com/http-tunnel/tunnel/store/dynamostore"
	"github.com/http-tunnel/tunnel/store/dynamostore/dynamotest"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m)
}

// newTable creates a table of the test's own, deleted when the test ends.
func newTable(tb testing.TB, client *dynamodb.Client) string {
	tb.Helper()
	return dynamotest.Tables(tb, client, func(ctx context.Context, names []string) error {
		return dynamolimit.CreateTable(ctx, client, names[0])
	}, "ratelimit-test")[0]
}

func TestConformance(t *testing.T) {
	client := dynamotest.Client(t)
	table := newTable(t, client)
	ratelimittest.Run(t, func(t *testing.T, l ratelimit.Limit, now func() time.Time) ratelimit.Limiter {
		return dynamolimit.New(client, table, l, &dynamolimit.Options{Now: now})
	})
}

// item reads the item for (prefix+key, window start) and returns its count
// and ttl; ok is false when there is none.
func item(t *testing.T, client *dynamodb.Client, table, itemKey string) (count, ttl int64, ok bool) {
	t.Helper()
	out, err := client.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            map[string]types.AttributeValue{dynamolimit.KeyAttribute: &types.AttributeValueMemberS{Value: itemKey}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	if out.Item == nil {
		return 0, 0, false
	}
	num := func(name string) int64 {
		n, ok := out.Item[name].(*types.AttributeValueMemberN)
		if !ok {
			t.Fatalf("item %q: attribute %q missing or not a number: %#v", itemKey, name, out.Item)
		}
		v, err := strconv.ParseInt(n.Value, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return num(dynamolimit.CountAttribute), num(dynamolimit.TTLAttribute), true
}

// TestItemLayout pins what lands in the table: one item per key and
// window, a count that stops at the limit, and a ttl at window end + slack.
func TestItemLayout(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	table := newTable(t, client)
	tests := []struct {
		name    string
		opts    dynamolimit.Options
		prefix  string
		slack   time.Duration
		period  time.Duration
		advance time.Duration // from the window start to the first call
	}{
		{"Defaults", dynamolimit.Options{}, "", dynamolimit.DefaultTTLSlack, time.Minute, 10 * time.Second},
		{"PrefixAndSlack", dynamolimit.Options{Prefix: "request:", TTLSlack: 10 * time.Minute}, "request:", 10 * time.Minute, time.Hour, 59 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			key := "k-" + rand.Text()
			start := time.Now().Truncate(tt.period)
			clock := ratelimittest.NewClock(start.Add(tt.advance))
			opts := tt.opts
			opts.Now = clock.Now
			l := ratelimit.Limit{Events: 2, Period: tt.period}
			lim := dynamolimit.New(client, table, l, &opts)
			ctx := context.Background()

			for i, want := range []bool{true, true, false, false} {
				d, err := lim.Allow(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				if d.Allowed != want {
					t.Fatalf("call %d: %+v, want Allowed=%v", i, d, want)
				}
				if !want && d.RetryAfter != tt.period-tt.advance {
					t.Errorf("call %d: RetryAfter %v, want the rest of the window %v", i, d.RetryAfter, tt.period-tt.advance)
				}
			}
			first := tt.prefix + key + "#" + strconv.FormatInt(start.UnixNano(), 10)
			count, ttl, ok := item(t, client, table, first)
			if want := start.Add(tt.period + tt.slack).Unix(); !ok || count != 2 || ttl != want {
				t.Errorf("item %q: count %d ttl %d (found %v), want count 2 (denials not counted) ttl %d", first, count, ttl, ok, want)
			}

			// The next window is a new item; the old one is left alone.
			clock.Advance(tt.period)
			if d, err := lim.Allow(ctx, key); err != nil || !d.Allowed || d.Remaining != 1 {
				t.Fatalf("first call of the next window: %+v, %v; want allowed with 1 remaining", d, err)
			}
			second := tt.prefix + key + "#" + strconv.FormatInt(start.Add(tt.period).UnixNano(), 10)
			if count, _, ok := item(t, client, table, second); !ok || count != 1 {
				t.Errorf("item %q: count %d (found %v), want 1", second, count, ok)
			}
			if count, _, _ := item(t, client, table, first); count != 2 {
				t.Errorf("old window's item %q: count %d, want 2", first, count)
			}
		})
	}
}

// TestFixedWindowEdge pins the documented trade-off of fixed windows: up to
// twice Events within moments across a window edge, and Burst ignored.
func TestFixedWindowEdge(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	table := newTable(t, client)
	tests := []struct {
		name  string
		limit ratelimit.Limit
		want  int
	}{
		{"TwiceEventsAcrossEdge", ratelimit.Limit{Events: 3, Period: time.Minute}, 6},
		{"BurstIgnored", ratelimit.Limit{Events: 3, Period: time.Minute, Burst: 10}, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := ratelimittest.NewClock(time.Now().Truncate(time.Minute).Add(time.Minute - time.Millisecond))
			lim := dynamolimit.New(client, table, tt.limit, &dynamolimit.Options{Prefix: rand.Text(), Now: clock.Now})
			allowed := 0
			for i := range 20 {
				if i == 10 {
					clock.Advance(2 * time.Millisecond) // across the edge
				}
				d, err := lim.Allow(context.Background(), "k")
				if err != nil {
					t.Fatal(err)
				}
				if d.Allowed {
					allowed++
				}
			}
			if allowed != tt.want {
				t.Errorf("allowed %d within 2ms across a window edge, want %d", allowed, tt.want)
			}
		})
	}
}

func TestCreateTable(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	ctx := context.Background()

	t.Run("Idempotent", func(t *testing.T) {
		t.Parallel()
		table := newTable(t, client) // created once already
		if err := dynamolimit.CreateTable(ctx, client, table); err != nil {
			t.Fatalf("second CreateTable: %v", err)
		}
		out, err := client.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
		if err != nil {
			t.Fatal(err)
		}
		if bm := out.Table.BillingModeSummary; bm == nil || bm.BillingMode != types.BillingModePayPerRequest {
			t.Errorf("billing mode %+v, want PAY_PER_REQUEST", bm)
		}
	})

	tests := []struct {
		name  string
		attrs []types.AttributeDefinition
		keys  []types.KeySchemaElement
	}{
		{
			name:  "OtherKeyName",
			attrs: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
			keys:  []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		},
		{
			name:  "NumericKey",
			attrs: []types.AttributeDefinition{{AttributeName: aws.String(dynamolimit.KeyAttribute), AttributeType: types.ScalarAttributeTypeN}},
			keys:  []types.KeySchemaElement{{AttributeName: aws.String(dynamolimit.KeyAttribute), KeyType: types.KeyTypeHash}},
		},
		{
			name: "SortKey",
			attrs: []types.AttributeDefinition{
				{AttributeName: aws.String(dynamolimit.KeyAttribute), AttributeType: types.ScalarAttributeTypeS},
				{AttributeName: aws.String("window"), AttributeType: types.ScalarAttributeTypeN},
			},
			keys: []types.KeySchemaElement{
				{AttributeName: aws.String(dynamolimit.KeyAttribute), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String("window"), KeyType: types.KeyTypeRange},
			},
		},
	}
	for _, tt := range tests {
		t.Run("RejectsExisting"+tt.name, func(t *testing.T) {
			t.Parallel()
			table := dynamotest.Tables(t, client, func(ctx context.Context, names []string) error {
				_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
					TableName:            aws.String(names[0]),
					AttributeDefinitions: tt.attrs,
					KeySchema:            tt.keys,
					BillingMode:          types.BillingModePayPerRequest,
				})
				return err
			}, "ratelimit-test-other")[0]
			if err := dynamolimit.CreateTable(ctx, client, table); !errors.Is(err, dynamostore.ErrTableSchema) {
				t.Errorf("CreateTable over a table with another key schema: %v, want an error wrapping dynamostore.ErrTableSchema", err)
			}
		})
	}
}

// TestBackendErrors checks that failures are errors, never denials: a
// caller's fail-open policy depends on telling them apart.
func TestBackendErrors(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()
	deadClient := dynamotest.ClientAt(t, down, func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 })

	tests := []struct {
		name    string
		client  func(t *testing.T) (*dynamodb.Client, string)
		limit   ratelimit.Limit
		wantErr bool
	}{
		{"ServerDown", func(*testing.T) (*dynamodb.Client, string) { return deadClient, "t" },
			ratelimit.Limit{Events: 1}, true},
		{"UnlimitedNeedsNoServer", func(*testing.T) (*dynamodb.Client, string) { return deadClient, "t" },
			ratelimit.Limit{}, false},
		{"MissingTable", func(t *testing.T) (*dynamodb.Client, string) {
			return dynamotest.Client(t), "ratelimit-test-missing-" + strings.ToLower(rand.Text()[:12])
		}, ratelimit.Limit{Events: 1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client, table := tt.client(t)
			d, err := dynamolimit.New(client, table, tt.limit, nil).Allow(context.Background(), "k")
			if (err != nil) != tt.wantErr {
				t.Fatalf("Allow: %+v, %v; want error %v", d, err, tt.wantErr)
			}
			if !tt.wantErr && (d != ratelimit.Decision{Allowed: true, Remaining: math.MaxInt}) {
				t.Errorf("unlimited decision %+v", d)
			}
		})
	}
}

func TestCanceledContextWraps(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	table := newTable(t, client)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := dynamolimit.New(client, table, ratelimit.Limit{Events: 1}, nil).Allow(ctx, "k")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Allow with canceled ctx: %v, want an error wrapping context.Canceled", err)
	}
}
