package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/http-tunnel/tunnel/store"
)

// The pending-requests API: the serverless adapter forwards a public
// request over an agent's WebSocket, and the invocation that holds the
// public request waits here for the response, which another invocation
// (the one that receives the agent's messages) stores.
//
// Key layout of the pending table:
//
//   - The request row, keyed by the request ID, in the original's shape:
//     connectionId (S), status (S, "pending" then "completed") and ttl (N,
//     epoch seconds, set once by CreatePending). An unchunked response is
//     stored in this row's responseData, as the original stores it, with
//     status "completed". For a chunked response, the row also gets
//     chunkCount (N) and chunks (NS, the indexes stored so far), and
//     status becomes "completed" once every chunk is stored.
//   - A chunk row per chunk of a chunked response, keyed by the request ID,
//     '#' and the chunk's decimal index (0 to chunkCount-1), holding
//     responseData and the request row's ttl. Request IDs never contain
//     '#' (every method refuses one that does), so the two kinds of keys
//     never meet.
//
// A chunk row is written before its index is added to the request row's
// chunks, so a reader that sees every index there finds every chunk row.

// Attributes of the pending table that the original lacks.
const (
	attrChunkCount = "chunkCount" // N, request rows of chunked responses
	attrChunks     = "chunks"     // NS, the indexes of the chunk rows written
)

// Values of the status attribute.
const (
	statusPending   = "pending"
	statusCompleted = "completed"
)

// MaxChunkBytes is the largest data PutResponseChunk accepts for one
// chunk, in bytes: 350 KiB, which keeps every row well under DynamoDB's
// 400 KB item limit with its key and other attributes. Split larger
// responses into more chunks.
const MaxChunkBytes = 350 << 10

// batchGetSize is BatchGetItem's limit of keys per call.
const batchGetSize = 100

// Defaults of WaitOptions.
const (
	DefaultWaitInitialDelay = 10 * time.Millisecond
	DefaultWaitMaxDelay     = 200 * time.Millisecond
)

// WaitOptions tunes how WaitResponse polls. The zero value uses the
// defaults. WaitResponse copies the options; they may be reused and
// shared.
type WaitOptions struct {
	// InitialDelay is the wait before the first poll; every following wait
	// is twice the previous one, up to MaxDelay. Zero or negative means
	// DefaultWaitInitialDelay (10 ms). Keep it at or below 20 ms: an agent
	// on a nearby network answers within tens of milliseconds, and the
	// first poll bounds the latency a fast response sees.
	InitialDelay time.Duration
	// MaxDelay caps the wait between polls. Zero or negative means
	// DefaultWaitMaxDelay (200 ms); a value below InitialDelay means
	// InitialDelay.
	MaxDelay time.Duration

	// sleep, when non-nil, replaces the wait between polls, so that tests
	// see every delay without waiting for it.
	sleep func(ctx context.Context, d time.Duration) error
}

func (o WaitOptions) withDefaults() WaitOptions {
	if o.InitialDelay <= 0 {
		o.InitialDelay = DefaultWaitInitialDelay
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = DefaultWaitMaxDelay
	}
	if o.MaxDelay < o.InitialDelay {
		o.MaxDelay = o.InitialDelay
	}
	if o.sleep == nil {
		o.sleep = sleep
	}
	return o
}

// pendingOps counts the DynamoDB calls of the pending-requests API. Its
// zero value counts nothing yet; it is safe for concurrent use.
type pendingOps struct {
	reads, writes atomic.Int64
}

// PendingOps returns the number of DynamoDB calls the pending-requests
// methods of s (CreatePending, PutResponseChunk, WaitResponse and
// DeletePending) have sent since s was created: reads are GetItem and
// BatchGetItem calls, writes are PutItem, UpdateItem, DeleteItem and
// BatchWriteItem calls. Every call sent counts, whether it failed or not,
// and so does every resend of unprocessed keys or items. The other methods
// of s are not counted.
//
// The counts only grow. To measure one forwarded request, take the
// difference of two calls around it; that is exact only when no other
// request uses s meanwhile (as in a Lambda invocation, which serves one
// request at a time). PendingOps is safe for concurrent use.
func (s *Store) PendingOps() (reads, writes int64) {
	return s.ops.reads.Load(), s.ops.writes.Load()
}

func (s *Store) countRead()  { s.ops.reads.Add(1) }
func (s *Store) countWrite() { s.ops.writes.Add(1) }

// Expressions of the pending-requests API; see the note on the name maps
// in store.go.
var (
	// requestLive holds for a request row that exists and whose ttl has
	// not passed (:now is in epoch seconds). It needs #k and #ttl, which
	// the name map of every expression it is part of has.
	requestLive = "attribute_exists(#k) AND #ttl > :now"

	pendingAbsent      = "attribute_not_exists(#k)"
	pendingAbsentNames = map[string]string{"#k": attrRequestID}

	completeUnchunked      = "SET #st = :st, #d = :d REMOVE #n, #c, #b"
	completeUnchunkedRef   = "SET #st = :st, #b = :d REMOVE #n, #c, #d"
	completeUnchunkedNames = map[string]string{
		"#k": attrRequestID, "#ttl": attrTTL,
		"#st": attrStatus, "#d": attrResponseData, "#n": attrChunkCount, "#c": attrChunks, "#b": attrBodyRef,
	}

	// markChunk records one stored chunk. The set makes a resent chunk
	// harmless; the condition refuses a count that differs from the one
	// the first chunk set.
	markChunk          = "SET #n = :n ADD #c :i"
	markChunkCondition = requestLive + " AND (attribute_not_exists(#n) OR #n = :n)"
	markChunkNames     = map[string]string{"#k": attrRequestID, "#ttl": attrTTL, "#n": attrChunkCount, "#c": attrChunks}

	setCompleted      = "SET #st = :st"
	setCompletedNames = map[string]string{"#k": attrRequestID, "#ttl": attrTTL, "#st": attrStatus}

	// requestProjection is what a poll reads from a request row.
	requestProjection = "#st, #d, #b, #n, #c, #ttl"
	requestNames      = map[string]string{
		"#st": attrStatus, "#d": attrResponseData, "#b": attrBodyRef, "#n": attrChunkCount, "#c": attrChunks, "#ttl": attrTTL,
	}
	// chunkLookupProjection is what PutResponseChunk reads from a request
	// row before writing a chunk row.
	chunkLookupProjection = "#ttl, #n"
	chunkLookupNames      = map[string]string{"#ttl": attrTTL, "#n": attrChunkCount}

	chunkProjection = "#k, #d, #b"
	chunkNames      = map[string]string{"#k": attrRequestID, "#d": attrResponseData, "#b": attrBodyRef}
)

// ErrChunkCount is returned (wrapped) by PutResponseChunk when a chunk's
// count differs from the count an earlier chunk of the same request
// stored.
var ErrChunkCount = errors.New("dynamostore: chunk count differs from the stored one")

// validRequestID reports whether id can key a request row: it must be
// non-empty and never equal a chunk row's key.
func validRequestID(id string) bool {
	return id != "" && !strings.Contains(id, "#")
}

func pendingKey(requestID string) item {
	return item{attrRequestID: str(requestID)}
}

func chunkKey(requestID string, index int) item {
	return item{attrRequestID: str(requestID + "#" + strconv.Itoa(index))}
}

func nowSeconds() types.AttributeValue { return num(time.Now().Unix()) }

// CreatePending stores the request row of a forwarded request: requestID
// waits for a response from connectionID, for ttl (rounded up to whole
// seconds; it must be positive). Create the row before sending the request
// to the agent, so that the response always finds it. The ttl set here is
// the row's and its chunk rows' for good; after it, the other methods treat
// the request as absent, and DynamoDB's TTL deletion or Cleanup removes
// the rows.
//
// A requestID that has a row already, expired or not, is refused with
// store.ErrConflict itself. requestID must be non-empty without '#', and
// connectionID non-empty. ctx bounds the one PutItem. It is safe for
// concurrent use.
func (s *Store) CreatePending(ctx context.Context, requestID, connectionID string, ttl time.Duration) error {
	if !validRequestID(requestID) || connectionID == "" || ttl <= 0 {
		return fmt.Errorf("dynamostore: create pending: invalid request ID %q, connection ID %q or ttl %v", requestID, connectionID, ttl)
	}
	s.countWrite()
	_, err := s.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: s.pending,
		Item: item{
			attrRequestID:    str(requestID),
			attrConnectionID: str(connectionID),
			attrStatus:       str(statusPending),
			attrTTL:          num(ttlSeconds(time.Now().Add(ttl).UnixMilli())),
		},
		ConditionExpression:      &pendingAbsent,
		ExpressionAttributeNames: pendingAbsentNames,
	})
	if conditionFailed(err) {
		return store.ErrConflict
	}
	if err != nil {
		return fmt.Errorf("dynamostore: create pending: %w", err)
	}
	return nil
}

// PutResponseChunk stores chunk index (from 0) of count of the response to
// requestID. data is stored as it is, as a Binary attribute, and must be
// at most MaxChunkBytes long; the Store does not keep it after returning.
//
// A response in one chunk (index 0, count 1) goes into the request row,
// in the original's shape: status "completed" and responseData, in one
// conditional UpdateItem. Storing it again replaces it. Each chunk of a
// larger response goes into its own row (see the key layout above): one
// GetItem of the request row for its ttl, one PutItem of the chunk row,
// and one UpdateItem that adds the index to the request row; the writer
// that adds the last index also sets status "completed", with one more
// UpdateItem. Chunks may be stored in any order, concurrently, and more
// than once.
//
// When the request row is missing or its ttl has passed, PutResponseChunk
// returns store.ErrNotFound itself (the waiting side has given up). A
// count that differs from an earlier chunk's is ErrChunkCount, wrapped.
// ctx bounds every call. It is safe for concurrent use.
func (s *Store) PutResponseChunk(ctx context.Context, requestID string, index, count int, data []byte) error {
	if !validRequestID(requestID) || count < 1 || index < 0 || index >= count || len(data) > MaxChunkBytes {
		return fmt.Errorf("dynamostore: put response chunk: invalid request ID %q, chunk %d of %d or size %d",
			requestID, index, count, len(data))
	}
	var err error
	if count == 1 {
		err = s.putUnchunked(ctx, requestID, data)
	} else {
		err = s.putChunk(ctx, requestID, index, count, data)
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("dynamostore: put response chunk: %w", err)
	}
	return err
}

func (s *Store) putUnchunked(ctx context.Context, requestID string, data []byte) error {
	expr, value := &completeUnchunked, bin(data)
	if s.offloads(data) {
		key, err := s.putBody(ctx, requestID, 0, data)
		if err != nil {
			return err
		}
		expr, value = &completeUnchunkedRef, str(key)
	}
	s.countWrite()
	_, err := s.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 s.pending,
		Key:                       pendingKey(requestID),
		UpdateExpression:          expr,
		ConditionExpression:       &requestLive,
		ExpressionAttributeNames:  completeUnchunkedNames,
		ExpressionAttributeValues: item{":st": str(statusCompleted), ":d": value, ":now": nowSeconds()},
	})
	if conditionFailed(err) {
		return store.ErrNotFound
	}
	return err
}

func (s *Store) putChunk(ctx context.Context, requestID string, index, count int, data []byte) error {
	// The chunk row takes the request row's ttl, so that both expire
	// together; reading it first also spares an unknown request an
	// orphan chunk row.
	ttl, err := s.chunkTarget(ctx, requestID, count)
	if err != nil {
		return err
	}

	chunk := chunkKey(requestID, index)
	if s.offloads(data) {
		key, err := s.putBody(ctx, requestID, index, data)
		if err != nil {
			return err
		}
		chunk[attrBodyRef] = str(key)
	} else {
		chunk[attrResponseData] = bin(data)
	}
	chunk[attrTTL] = num(ttl)
	s.countWrite()
	if _, err := s.client.PutItem(ctx, &dynamodb.PutItemInput{TableName: s.pending, Item: chunk}); err != nil {
		return err
	}

	s.countWrite()
	upd, err := s.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                s.pending,
		Key:                      pendingKey(requestID),
		UpdateExpression:         &markChunk,
		ConditionExpression:      &markChunkCondition,
		ExpressionAttributeNames: markChunkNames,
		ExpressionAttributeValues: item{
			":n":   num(int64(count)),
			":i":   &types.AttributeValueMemberNS{Value: []string{strconv.Itoa(index)}},
			":now": nowSeconds(),
		},
		ReturnValues: types.ReturnValueUpdatedNew,
	})
	if conditionFailed(err) {
		// The row went, expired or got another count since the read;
		// the chunk row is left to its ttl.
		if _, err := s.chunkTarget(ctx, requestID, count); err != nil {
			return err
		}
		return store.ErrNotFound
	}
	if err != nil {
		return err
	}
	if len(getNS(upd.Attributes, attrChunks)) < count {
		return nil
	}
	s.countWrite()
	_, err = s.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 s.pending,
		Key:                       pendingKey(requestID),
		UpdateExpression:          &setCompleted,
		ConditionExpression:       &requestLive,
		ExpressionAttributeNames:  setCompletedNames,
		ExpressionAttributeValues: item{":st": str(statusCompleted), ":now": nowSeconds()},
	})
	if conditionFailed(err) {
		return store.ErrNotFound
	}
	return err
}

// chunkTarget reads the request row that chunks of count belong to and
// returns its ttl. A missing or expired row is store.ErrNotFound, a row
// with another chunk count ErrChunkCount.
func (s *Store) chunkTarget(ctx context.Context, requestID string, count int) (int64, error) {
	s.countRead()
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:                s.pending,
		Key:                      pendingKey(requestID),
		ConsistentRead:           aws.Bool(true),
		ProjectionExpression:     &chunkLookupProjection,
		ExpressionAttributeNames: chunkLookupNames,
	})
	if err != nil {
		return 0, err
	}
	ttl, ok := getN(out.Item, attrTTL)
	if !ok || ttl <= time.Now().Unix() {
		return 0, store.ErrNotFound
	}
	if n, ok := getN(out.Item, attrChunkCount); ok && n != int64(count) {
		return 0, fmt.Errorf("%w: %d, stored %d", ErrChunkCount, count, n)
	}
	return ttl, nil
}

// WaitResponse waits for the response to requestID and returns its data:
// the chunks' data concatenated in index order, a new slice that the
// caller owns. It polls the request row with strongly consistent GetItems,
// the first after opts.InitialDelay and then at doubling intervals up to
// opts.MaxDelay, until every chunk is stored; it then reads the chunk rows
// of a chunked response with strongly consistent BatchGetItems of up to
// 100 keys, resending unprocessed keys after a jittered, doubling wait.
// Responses that the original system's writers stored (responseData as a
// String) are returned as their bytes.
//
// ctx bounds the wait: when it ends, WaitResponse returns an error
// wrapping ctx.Err() (context.DeadlineExceeded for a deadline). A request
// row that is missing, or whose ttl passes while waiting, is
// store.ErrNotFound itself. WaitResponse neither changes nor deletes rows:
// their ttl removes them, or DeletePending at once. It is safe for
// concurrent use, also by several waiters of one request.
func (s *Store) WaitResponse(ctx context.Context, requestID string, opts WaitOptions) ([]byte, error) {
	if !validRequestID(requestID) {
		return nil, store.ErrNotFound
	}
	opts = opts.withDefaults()
	data, err := s.waitResponse(ctx, requestID, opts)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		if cerr := ctx.Err(); cerr != nil {
			// The SDK's error may not wrap ctx's, which callers
			// branch on; ctx's end is the cause.
			err = cerr
		}
		return nil, fmt.Errorf("dynamostore: wait response: %w", err)
	}
	return data, err
}

func (s *Store) waitResponse(ctx context.Context, requestID string, opts WaitOptions) ([]byte, error) {
	delay := opts.InitialDelay
	for {
		if err := opts.sleep(ctx, delay); err != nil {
			return nil, err
		}
		delay = min(2*delay, opts.MaxDelay)

		s.countRead()
		out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName:                s.pending,
			Key:                      pendingKey(requestID),
			ConsistentRead:           aws.Bool(true),
			ProjectionExpression:     &requestProjection,
			ExpressionAttributeNames: requestNames,
		})
		if err != nil {
			return nil, err
		}
		ttl, ok := getN(out.Item, attrTTL)
		if !ok || ttl <= time.Now().Unix() {
			return nil, store.ErrNotFound
		}
		count, chunked := getN(out.Item, attrChunkCount)
		switch {
		case chunked && count > 1 && len(getNS(out.Item, attrChunks)) >= int(count):
			return s.readChunks(ctx, requestID, int(count))
		case !chunked && getS(out.Item, attrStatus) == statusCompleted:
			if ref := getS(out.Item, attrBodyRef); ref != "" {
				return s.getBody(ctx, ref)
			}
			return getBytes(out.Item, attrResponseData), nil
		}
	}
}

// readChunks reads the count chunk rows of requestID and concatenates
// their data in index order.
func (s *Store) readChunks(ctx context.Context, requestID string, count int) ([]byte, error) {
	parts := make([][]byte, count)
	refs := make([]string, count)
	found := make([]bool, count)
	prefix := requestID + "#"
	for first := 0; first < count; first += batchGetSize {
		keys := make([]item, 0, min(batchGetSize, count-first))
		for i := first; i < first+cap(keys); i++ {
			keys = append(keys, chunkKey(requestID, i))
		}
		for attempt := 0; len(keys) > 0; attempt++ {
			if attempt > 0 {
				if err := sleep(ctx, backoff(attempt-1)); err != nil {
					return nil, err
				}
			}
			s.countRead()
			out, err := s.client.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{
				RequestItems: map[string]types.KeysAndAttributes{*s.pending: {
					Keys:                     keys,
					ConsistentRead:           aws.Bool(true),
					ProjectionExpression:     &chunkProjection,
					ExpressionAttributeNames: chunkNames,
				}},
			})
			if err != nil {
				return nil, err
			}
			for _, it := range out.Responses[*s.pending] {
				i, err := strconv.Atoi(strings.TrimPrefix(getS(it, attrRequestID), prefix))
				if err != nil || i < 0 || i >= count {
					return nil, fmt.Errorf("unexpected chunk row %q", getS(it, attrRequestID))
				}
				parts[i] = getBytes(it, attrResponseData)
				refs[i] = getS(it, attrBodyRef)
				found[i] = true
			}
			keys = out.UnprocessedKeys[*s.pending].Keys
		}
	}
	if slices.Contains(found, false) {
		// Marked chunks are written first, so only their ttl, a
		// concurrent DeletePending or Cleanup removes one.
		return nil, store.ErrNotFound
	}
	if err := s.getBodies(ctx, parts, refs); err != nil {
		return nil, err
	}
	return slices.Concat(parts...), nil
}

// DeletePending deletes the request row of requestID and, for a chunked
// response, its chunk rows: one DeleteItem, then BatchWriteItems of up to
// 25 chunk rows, resending unprocessed items after a jittered, doubling
// wait. Call it once the response has been read, or the wait abandoned;
// rows it misses (a chunk stored after it ran, or a failure) expire with
// their ttl. Deleting a request that has no row is not an error. ctx
// bounds every call. It is safe for concurrent use.
func (s *Store) DeletePending(ctx context.Context, requestID string) error {
	if !validRequestID(requestID) {
		return nil
	}
	// The old row tells how many chunk rows there are; it is small
	// except for an unchunked response, which is returned once more.
	s.countWrite()
	out, err := s.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:    s.pending,
		Key:          pendingKey(requestID),
		ReturnValues: types.ReturnValueAllOld,
	})
	if err != nil {
		return fmt.Errorf("dynamostore: delete pending: %w", err)
	}
	count, _ := getN(out.Attributes, attrChunkCount)
	for first := 0; first < int(count); first += batchSize {
		var reqs []types.WriteRequest
		for i := first; i < min(first+batchSize, int(count)); i++ {
			reqs = append(reqs, types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: chunkKey(requestID, i)}})
		}
		var st CleanupStats
		err := s.writeBatch(ctx, s.pending, reqs, &st)
		s.ops.writes.Add(int64(st.Batches + st.Retries))
		if err != nil {
			return fmt.Errorf("dynamostore: delete pending: %w", err)
		}
	}
	return nil
}

func bin(b []byte) types.AttributeValue { return &types.AttributeValueMemberB{Value: b} }

// getN returns the number attribute name of it as an integer, and whether
// it is present and one.
func getN(it item, name string) (int64, bool) {
	v, ok := it[name].(*types.AttributeValueMemberN)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v.Value, 10, 64)
	return n, err == nil
}

// getNS returns the number set attribute name of it, or nil.
func getNS(it item, name string) []string {
	if v, ok := it[name].(*types.AttributeValueMemberNS); ok {
		return v.Value
	}
	return nil
}

// getBytes returns the binary attribute name of it, or the bytes of a
// string attribute (as the original system's writers store responseData),
// or nil when it is absent.
func getBytes(it item, name string) []byte {
	switch v := it[name].(type) {
	case *types.AttributeValueMemberB:
		return v.Value
	case *types.AttributeValueMemberS:
		return []byte(v.Value)
	}
	return nil
}
