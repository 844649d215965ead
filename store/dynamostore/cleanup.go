package dynamostore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

const (
	// cleanupSegments is the number of parallel Scan segments per table,
	// each served by one goroutine.
	cleanupSegments = 4
	// batchSize is BatchWriteItem's limit of requests per call.
	batchSize = 25
	// retryBase and retryMax bound the wait before resending the items a
	// BatchWriteItem left unprocessed. DynamoDB leaves items unprocessed
	// when a partition is throttled, so the wait doubles per attempt.
	retryBase = 50 * time.Millisecond
	retryMax  = 2 * time.Second
)

// CleanupStats counts what one Cleanup did, over both tables. The zero
// value is a cleanup that found nothing.
type CleanupStats struct {
	// Scanned is the number of rows the Scans read, expired or not.
	Scanned int
	// Expired is the number of rows the Scans found expired.
	Expired int
	// Deleted is the number of expired rows deleted.
	Deleted int
	// Skipped is the number of expired claim rows left in place because
	// they changed (a Put took the tunnel) between the Scan and the
	// delete.
	Skipped int
	// Batches is the number of groups of up to 25 rows sent to
	// BatchWriteItem, not counting resends.
	Batches int
	// Retries is the number of BatchWriteItem calls that resent rows a
	// previous call left unprocessed.
	Retries int
}

func (c *CleanupStats) add(o CleanupStats) {
	c.Scanned += o.Scanned
	c.Expired += o.Expired
	c.Deleted += o.Deleted
	c.Skipped += o.Skipped
	c.Batches += o.Batches
	c.Retries += o.Retries
}

// Expressions of Cleanup. A row is expired when its expiresAt has come or,
// for rows without one (pending requests, and connection rows the
// original system wrote), when its ttl has passed. Rows with neither never
// expire.
var (
	expiredFilter = "#e <= :ms OR (attribute_not_exists(#e) AND #ttl < :s)"
	claimExpired  = "#e <= :ms"
	expiredNames  = map[string]string{"#e": attrExpiresAt}
)

// Cleanup deletes the rows of both tables that have expired, for
// deployments where DynamoDB's TTL deletion is off or too slow (it
// typically lags expiry by up to two days, and emulators lack it).
// Lookups never return expired rows either way; Cleanup only reclaims
// their space.
//
// It scans each table in 4 parallel segments, one goroutine each, reading
// only the keys of expired rows. It deletes connection rows and pending
// rows with BatchWriteItem, in groups of 25, resending unprocessed items
// after a jittered, doubling wait; and claim rows one by one with a
// DeleteItem conditional on their being expired still, because a Put may
// have taken the tunnel since the Scan read the row (such rows count as
// Skipped). The package documentation explains why expired connection
// rows need no condition. A live row is never deleted.
//
// ctx bounds the whole call. On an error, including the end of ctx,
// Cleanup stops every segment and returns what it did so far with the
// first error, wrapped as "dynamostore: cleanup: <cause>". It is safe to
// run concurrently with every other method and with Cleanup on other
// nodes. Its Scans read whole tables: run it periodically (for example
// every few minutes, from one node or a scheduled function), not per
// request. It needs the dynamodb:Scan, dynamodb:BatchWriteItem and
// dynamodb:DeleteItem permissions.
func (s *Store) Cleanup(ctx context.Context) (CleanupStats, error) {
	return s.cleanup(ctx, true)
}

// CleanupConnections is Cleanup of the connections table alone: the
// pending table's rows are left to DynamoDB's TTL deletion, which costs
// nothing, while a Scan reads, and a delete writes, every stored
// response's bytes again (a 1.5 MiB response costs about 190 read units
// per Scan, and 1,540 write units to delete). It is what a deployment
// with TTL on the pending table runs; lookups never return expired rows
// either way. The rest is as for Cleanup.
func (s *Store) CleanupConnections(ctx context.Context) (CleanupStats, error) {
	return s.cleanup(ctx, false)
}

func (s *Store) cleanup(ctx context.Context, pending bool) (CleanupStats, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nowMs := time.Now().UnixMilli()
	values := item{":ms": num(nowMs), ":s": num(nowMs / 1000)}

	type segment struct {
		table   *string
		keyAttr string
		n       int32
	}
	var segs []segment
	for n := range int32(cleanupSegments) {
		segs = append(segs, segment{s.conns, attrConnectionID, n})
		if pending {
			segs = append(segs, segment{s.pending, attrRequestID, n})
		}
	}

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		total    CleanupStats
		firstErr error
	)
	for _, seg := range segs {
		wg.Go(func() {
			st, err := s.cleanSegment(ctx, seg.table, seg.keyAttr, seg.n, values)
			mu.Lock()
			defer mu.Unlock()
			total.add(st)
			if err != nil && firstErr == nil {
				// The others would only fail with context.Canceled
				// now; the first error is the cause.
				firstErr = fmt.Errorf("dynamostore: cleanup: %w", err)
				cancel()
			}
		})
	}
	wg.Wait()
	return total, firstErr
}

// cleanSegment scans one segment of table for expired rows and deletes
// them. keyAttr is the table's partition key; values holds the cutoff of
// this Cleanup.
func (s *Store) cleanSegment(ctx context.Context, table *string, keyAttr string, n int32, values item) (CleanupStats, error) {
	var st CleanupStats
	names := map[string]string{"#k": keyAttr, "#e": attrExpiresAt, "#ttl": attrTTL}
	isConns := table == s.conns
	var (
		start item
		batch []types.WriteRequest
	)
	for {
		out, err := s.client.Scan(ctx, &dynamodb.ScanInput{
			TableName:                 table,
			Segment:                   aws.Int32(n),
			TotalSegments:             aws.Int32(cleanupSegments),
			FilterExpression:          &expiredFilter,
			ProjectionExpression:      aws.String("#k"),
			ExpressionAttributeNames:  names,
			ExpressionAttributeValues: values,
			ExclusiveStartKey:         start,
			Limit:                     s.scanLimit,
		})
		if err != nil {
			return st, err
		}
		st.Scanned += int(out.ScannedCount)
		st.Expired += int(out.Count)
		if s.scanned != nil {
			s.scanned(*table, out.Items)
		}
		for _, key := range out.Items {
			if isConns && isClaimKey(getS(key, attrConnectionID)) {
				if err := s.deleteClaim(ctx, key, values, &st); err != nil {
					return st, err
				}
				continue
			}
			batch = append(batch, types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: key}})
			if len(batch) == batchSize {
				if err := s.writeBatch(ctx, table, batch, &st); err != nil {
					return st, err
				}
				batch = nil
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		start = out.LastEvaluatedKey
	}
	if len(batch) > 0 {
		if err := s.writeBatch(ctx, table, batch, &st); err != nil {
			return st, err
		}
	}
	return st, nil
}

// deleteClaim deletes the claim row with key if it is still expired at
// the cutoff in values.
func (s *Store) deleteClaim(ctx context.Context, key, values item, st *CleanupStats) error {
	_, err := s.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                 s.conns,
		Key:                       key,
		ConditionExpression:       &claimExpired,
		ExpressionAttributeNames:  expiredNames,
		ExpressionAttributeValues: item{":ms": values[":ms"]},
	})
	switch {
	case conditionFailed(err):
		st.Skipped++
	case err != nil:
		return err
	default:
		st.Deleted++
	}
	return nil
}

// writeBatch deletes the rows of reqs from table, resending what DynamoDB
// leaves unprocessed until nothing is left or ctx ends.
func (s *Store) writeBatch(ctx context.Context, table *string, reqs []types.WriteRequest, st *CleanupStats) error {
	st.Batches++
	for attempt := 0; ; attempt++ {
		out, err := s.client.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{
			RequestItems: map[string][]types.WriteRequest{*table: reqs},
		})
		if err != nil {
			return err
		}
		left := out.UnprocessedItems[*table]
		st.Deleted += len(reqs) - len(left)
		if len(left) == 0 {
			return nil
		}
		reqs = left
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return err
		}
		st.Retries++
	}
}

// backoff returns the wait before resend number attempt+1: half of a
// doubling step, capped at retryMax, plus a random part up to the other
// half, so that segments throttled together do not resend together.
func backoff(attempt int) time.Duration {
	d := retryMax
	if attempt < 16 && retryBase<<attempt < retryMax {
		d = retryBase << attempt
	}
	return d/2 + rand.N(d/2+1)
}

// sleep waits for d or until ctx ends, returning ctx.Err() in that case.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
