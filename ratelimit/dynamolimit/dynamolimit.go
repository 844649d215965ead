// Package dynamolimit is a ratelimit.Limiter kept in DynamoDB, for
// serverless gateways (AWS Lambda) that have no Redis: every invocation
// sharing one table shares each key's allowance.
//
// It counts events in fixed windows, as the original project did: one item
// per key and window, incremented by a conditional UpdateItem that fails
// once the count reaches the limit. Unlike the original, the window start is
// part of the item's key, so a new window is a new item and the count resets
// exactly when the window ends; old items carry a ttl attribute for DynamoDB
// TTL to delete.
//
// Table layout (see CreateTable):
//
//	key    (S, partition key)  Options.Prefix + limiter key + "#" + window start in Unix nanoseconds
//	count  (N)                 events admitted in that window
//	ttl    (N)                 Unix seconds after which the item may be deleted: window end + Options.TTLSlack
package dynamolimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/http-tunnel/tunnel/ratelimit"
)

// Attribute names of the limiter's table items.
const (
	// KeyAttribute is the partition key (type S): Options.Prefix, the
	// limiter key, "#" and the window start in Unix nanoseconds. The window
	// start is all digits, so no two (key, window) pairs share an item
	// whatever the keys contain.
	KeyAttribute = "key"
	// CountAttribute (type N) is the number of events admitted in the
	// item's window.
	CountAttribute = "count"
	// TTLAttribute (type N) is when the item may be deleted, in Unix
	// seconds, as DynamoDB TTL expects. Enable TTL on it (CreateTable does).
	TTLAttribute = "ttl"
)

// DefaultTTLSlack is how long past its window's end an item is kept when
// Options.TTLSlack is zero, as in the original (window + one hour).
const DefaultTTLSlack = time.Hour

// UpdateItemAPI is the part of *dynamodb.Client a Limiter uses.
type UpdateItemAPI interface {
	UpdateItem(ctx context.Context, params *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
}

var _ UpdateItemAPI = (*dynamodb.Client)(nil)

// Options configures New. The zero value (or a nil pointer) is ready to use
// and gives the defaults each field describes.
type Options struct {
	// Prefix is prepended to every key to form its item key. Empty means
	// none: the table is the namespace. Limiters with different Limits on
	// one table need different prefixes (say "connect:" and "request:");
	// otherwise they count into the same items.
	Prefix string

	// TTLSlack is how long after its window ends an item's ttl attribute
	// lies. Zero or negative means DefaultTTLSlack. DynamoDB deletes
	// expired items lazily (often within days), and a node whose clock is
	// behind still writes to a window the others have left, so the slack
	// only needs to cover clock skew; longer costs storage, not
	// correctness.
	TTLSlack time.Duration

	// Now returns the current time. Nil means time.Now. It is intended for
	// tests, which drive a fake clock (see ratelimittest.Clock); production
	// code leaves it nil.
	//
	// Windows are computed from the caller's clock, so nodes sharing a
	// table should keep their clocks in sync (NTP): near a window edge a
	// node whose clock is ahead already counts in the next window.
	Now func() time.Time
}

// Limiter is a fixed-window ratelimit.Limiter whose counts live in a
// DynamoDB table.
//
// Windows are aligned to multiples of the Limit's Period since the Unix
// epoch. Each window admits Limit.Events events, however they arrive;
// Limit.Burst is ignored. A client can therefore get up to twice Events
// through in a short time across a window edge (the end of one window and
// the start of the next); the token-bucket limiters (ratelimit.Local,
// redislimit) do not allow that.
//
// Decision.Remaining is Events minus the window's count right after this
// event was counted, exact at that instant. Decision.RetryAfter is the time
// until the current window ends.
//
// A Limiter is safe for concurrent use by multiple goroutines; the count is
// kept exact across callers by DynamoDB's conditional writes. Use New to
// create one; the zero value is not usable.
type Limiter struct {
	client UpdateItemAPI
	table  string
	limit  ratelimit.Limit
	prefix string
	slack  time.Duration
	now    func() time.Time
}

var _ ratelimit.Limiter = (*Limiter)(nil)

// New returns a Limiter enforcing l on every key, counting in table through
// client (typically a *dynamodb.Client). The table must have the layout
// described in the package doc; CreateTable makes one. opts may be nil; New
// copies it.
func New(client UpdateItemAPI, table string, l ratelimit.Limit, opts *Options) *Limiter {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.TTLSlack <= 0 {
		o.TTLSlack = DefaultTTLSlack
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	l = l.WithDefaults()
	return &Limiter{
		client: client,
		table:  table,
		limit:  l,
		prefix: o.Prefix,
		slack:  o.TTLSlack,
		now:    o.Now,
	}
}

// Allow counts one event for key in the current window if the window has
// room, in one conditional UpdateItem. ctx bounds that call (including the
// SDK's retries). Unlimited Limits are answered without calling DynamoDB.
//
// A denied event costs a write too: DynamoDB charges for conditional writes
// that fail.
func (l *Limiter) Allow(ctx context.Context, key string) (ratelimit.Decision, error) {
	if l.limit.Unlimited() {
		return ratelimit.Decision{Allowed: true, Remaining: math.MaxInt}, nil
	}
	now := l.now()
	start, end := window(now, l.limit.Period)
	itemKey := l.prefix + key + "#" + strconv.FormatInt(start.UnixNano(), 10)
	ttl := end.Add(l.slack).Unix()

	out, err := l.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(l.table),
		Key: map[string]types.AttributeValue{
			KeyAttribute: &types.AttributeValueMemberS{Value: itemKey},
		},
		// ADD creates the count at 1 on a window's first event; the
		// condition keeps it from passing the limit however many
		// callers race.
		UpdateExpression:    aws.String("ADD #count :one SET #ttl = :ttl"),
		ConditionExpression: aws.String("attribute_not_exists(#count) OR #count < :limit"),
		// COUNT is a DynamoDB reserved word, so attribute names go
		// through placeholders.
		ExpressionAttributeNames: map[string]string{
			"#count": CountAttribute,
			"#ttl":   TTLAttribute,
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":one":   &types.AttributeValueMemberN{Value: "1"},
			":limit": &types.AttributeValueMemberN{Value: strconv.Itoa(l.limit.Events)},
			":ttl":   &types.AttributeValueMemberN{Value: strconv.FormatInt(ttl, 10)},
		},
		ReturnValues: types.ReturnValueUpdatedNew,
	})
	var full *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &full):
		return ratelimit.Decision{RetryAfter: max(end.Sub(now), 1)}, nil
	case err != nil:
		return ratelimit.Decision{}, fmt.Errorf("dynamolimit: allow %q: %w", key, err)
	}

	count, err := countOf(out.Attributes)
	if err != nil {
		return ratelimit.Decision{}, fmt.Errorf("dynamolimit: allow %q: %w", key, err)
	}
	return ratelimit.Decision{Allowed: true, Remaining: max(l.limit.Events-count, 0)}, nil
}

// window returns the fixed window of length period that holds t: windows
// are aligned to multiples of period since the Unix epoch, so every node
// computes the same boundaries.
func window(t time.Time, period time.Duration) (start, end time.Time) {
	ns, p := t.UnixNano(), period.Nanoseconds()
	off := ns % p
	if off < 0 { // before 1970: round towards the past, not towards zero
		off += p
	}
	start = time.Unix(0, ns-off)
	return start, start.Add(period)
}

// countOf reads the count attribute from UpdateItem's UPDATED_NEW values.
func countOf(attrs map[string]types.AttributeValue) (int, error) {
	n, ok := attrs[CountAttribute].(*types.AttributeValueMemberN)
	if !ok {
		return 0, fmt.Errorf("UpdateItem returned no numeric %q attribute", CountAttribute)
	}
	count, err := strconv.Atoi(n.Value)
	if err != nil {
		return 0, fmt.Errorf("UpdateItem returned %q = %q: %w", CountAttribute, n.Value, err)
	}
	return count, nil
}
