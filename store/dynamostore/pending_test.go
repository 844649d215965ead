package dynamostore

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/http-tunnel/tunnel/internal/randid"
	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/store/dynamostore/dynamotest"
)

// newRecordedStore returns a Store on fresh tables whose client records
// every request's input.
func newRecordedStore(t *testing.T) (*Store, Options, *dynamodb.Client, *inputRecorder) {
	t.Helper()
	rec := &inputRecorder{}
	client := dynamotest.Client(t, rec.addTo)
	s, opts := newStore(t, client)
	rec.take() // CreateTables' requests
	return s, opts, client, rec
}

// opsOf counts the reads and writes among inputs as PendingOps defines
// them, and returns the number of GetItems separately.
func opsOf(tb testing.TB, inputs []any) (reads, writes, gets int64) {
	tb.Helper()
	for _, in := range inputs {
		switch in.(type) {
		case *dynamodb.GetItemInput:
			reads++
			gets++
		case *dynamodb.BatchGetItemInput:
			reads++
		case *dynamodb.PutItemInput, *dynamodb.UpdateItemInput,
			*dynamodb.DeleteItemInput, *dynamodb.BatchWriteItemInput:
			writes++
		default:
			tb.Errorf("unexpected request %T", in)
		}
	}
	return reads, writes, gets
}

// checkOps checks that PendingOps grew by what the client sent since the
// last take, and returns that growth.
func checkOps(tb testing.TB, s *Store, rec *inputRecorder, prevReads, prevWrites int64) (reads, writes int64) {
	tb.Helper()
	r, w := s.PendingOps()
	wantR, wantW, _ := opsOf(tb, rec.take())
	if r-prevReads != wantR || w-prevWrites != wantW {
		tb.Errorf("PendingOps grew by (%d, %d), client sent (%d, %d)", r-prevReads, w-prevWrites, wantR, wantW)
	}
	return r - prevReads, w - prevWrites
}

func rawRow(tb testing.TB, client *dynamodb.Client, table, key string) item {
	tb.Helper()
	out, err := client.GetItem(tb.Context(), &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            pendingKey(key),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		tb.Fatalf("GetItem(%s): %v", key, err)
	}
	return out.Item
}

func mustCreatePending(tb testing.TB, s *Store, requestID string) {
	tb.Helper()
	if err := s.CreatePending(tb.Context(), requestID, "conn-"+requestID, time.Minute); err != nil {
		tb.Fatalf("CreatePending(%s): %v", requestID, err)
	}
}

// TestPendingSingleRow checks the round trip of an unchunked response,
// which keeps the original's row shape, and the calls it costs.
func TestPendingSingleRow(t *testing.T) {
	t.Parallel()
	s, opts, client, rec := newRecordedStore(t)
	ctx := t.Context()
	id := randid.Hex(16)
	body := []byte(`{"status_code":200,"body":"aGVsbG8="}`)

	before := time.Now()
	mustCreatePending(t, s, id)
	if r, w := checkOps(t, s, rec, 0, 0); r != 0 || w != 1 {
		t.Errorf("CreatePending cost (%d reads, %d writes), want (0, 1)", r, w)
	}
	row := rawRow(t, client, opts.PendingTable, id)
	if got := getS(row, attrStatus); got != "pending" {
		t.Errorf("status after CreatePending = %q, want pending", got)
	}
	rec.take()

	if err := s.PutResponseChunk(ctx, id, 0, 1, body); err != nil {
		t.Fatalf("PutResponseChunk: %v", err)
	}
	if r, w := checkOps(t, s, rec, 0, 1); r != 0 || w != 1 {
		t.Errorf("PutResponseChunk cost (%d reads, %d writes), want (0, 1)", r, w)
	}
	got, err := s.WaitResponse(ctx, id, WaitOptions{})
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("WaitResponse = %q, %v; want %q", got, err, body)
	}
	if r, w := checkOps(t, s, rec, 0, 2); r != 1 || w != 0 {
		t.Errorf("WaitResponse of a stored response cost (%d reads, %d writes), want (1, 0)", r, w)
	}

	row = rawRow(t, client, opts.PendingTable, id)
	rec.take()
	names := slices.Sorted(maps.Keys(row))
	want := []string{"connectionId", "requestId", "responseData", "status", "ttl"}
	if !slices.Equal(names, want) {
		t.Errorf("request row attributes = %v, want %v", names, want)
	}
	if got := getS(row, "status"); got != "completed" {
		t.Errorf("status = %q, want completed", got)
	}
	if got := getS(row, "connectionId"); got != "conn-"+id {
		t.Errorf("connectionId = %q, want %q", got, "conn-"+id)
	}
	if b, ok := row["responseData"].(*types.AttributeValueMemberB); !ok || !bytes.Equal(b.Value, body) {
		t.Errorf("responseData = %#v, want Binary %q", row["responseData"], body)
	}
	ttl, ok := getN(row, "ttl")
	if lo, hi := before.Add(time.Minute).Unix(), time.Now().Add(time.Minute).Unix()+1; !ok || ttl < lo || ttl > hi {
		t.Errorf("ttl = %d, want within [%d, %d]", ttl, lo, hi)
	}

	if err := s.DeletePending(ctx, id); err != nil {
		t.Fatalf("DeletePending: %v", err)
	}
	if r, w := checkOps(t, s, rec, 1, 2); r != 0 || w != 1 {
		t.Errorf("DeletePending of an unchunked response cost (%d reads, %d writes), want (0, 1)", r, w)
	}
	if n := countRows(t, client, opts.PendingTable); n != 0 {
		t.Errorf("%d rows after DeletePending, want 0", n)
	}
}

// TestPendingOriginalStringResponse checks that a response an original
// writer stored, responseData as a String, is read as its bytes.
func TestPendingOriginalStringResponse(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	s, opts := newStore(t, client)
	id := randid.Hex(16)
	if _, err := client.PutItem(t.Context(), &dynamodb.PutItemInput{
		TableName: aws.String(opts.PendingTable),
		Item: item{
			"requestId": str(id), "connectionId": str("c1"), "status": str("completed"),
			"responseData": str(`{"status_code":204}`), "ttl": num(time.Now().Add(time.Minute).Unix()),
		},
	}); err != nil {
		t.Fatal(err)
	}
	got, err := s.WaitResponse(t.Context(), id, WaitOptions{})
	if err != nil || string(got) != `{"status_code":204}` {
		t.Errorf("WaitResponse = %q, %v", got, err)
	}
}

// TestPendingChunked stores a 1.5 MiB response in 40 chunks from several
// goroutines in random order while WaitResponse waits, and checks that it
// returns the exact bytes, in as many calls as documented.
func TestPendingChunked(t *testing.T) {
	t.Parallel()
	s, opts, client, rec := newRecordedStore(t)
	ctx := t.Context()
	id := randid.Hex(16)
	const (
		size    = 3 << 19 // 1.5 MiB
		count   = 40
		writers = 5
	)
	body := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range body {
		body[i] = byte(rng.Uint32())
	}
	piece := (size + count - 1) / count
	chunk := func(i int) []byte { return body[i*piece : min((i+1)*piece, size)] }

	mustCreatePending(t, s, id)
	rec.take()
	r0, w0 := s.PendingOps()

	type result struct {
		data []byte
		err  error
	}
	waited := make(chan result, 1)
	go func() {
		data, err := s.WaitResponse(ctx, id, WaitOptions{})
		waited <- result{data, err}
	}()

	order := rng.Perm(count)
	work := make(chan int)
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for i := range work {
				if err := s.PutResponseChunk(ctx, id, i, count, chunk(i)); err != nil {
					t.Errorf("PutResponseChunk(%d): %v", i, err)
				}
			}
		})
	}
	for _, i := range order {
		work <- i
	}
	close(work)
	wg.Wait()

	var res result
	select {
	case res = <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("WaitResponse did not return within 10 s of the last chunk")
	}
	if res.err != nil {
		t.Fatalf("WaitResponse: %v", res.err)
	}
	if !bytes.Equal(res.data, body) {
		t.Fatalf("WaitResponse returned %d bytes, not the %d stored", len(res.data), len(body))
	}

	inputs := rec.take()
	reads, writes, gets := opsOf(t, inputs)
	if r, w := s.PendingOps(); r-r0 != reads || w-w0 != writes {
		t.Errorf("PendingOps grew by (%d, %d), client sent (%d, %d)", r-r0, w-w0, reads, writes)
	}
	var batchGets, completes int
	for _, in := range inputs {
		switch in := in.(type) {
		case *dynamodb.BatchGetItemInput:
			batchGets++
			for _, ka := range in.RequestItems {
				if !aws.ToBool(ka.ConsistentRead) || ka.ProjectionExpression == nil {
					t.Error("BatchGetItem without ConsistentRead or projection")
				}
			}
		case *dynamodb.UpdateItemInput:
			if in.ExpressionAttributeValues[":st"] != nil {
				completes++
			}
		}
	}
	// Per chunk: GetItem, PutItem, UpdateItem; plus one UpdateItem for
	// status; the waiter's polls are GetItems too. BatchGetItem runs
	// more than once when the server leaves keys unprocessed (dynalite
	// caps a response at 1 MB).
	polls := gets - count
	if batchGets < 1 || completes != 1 || writes != 2*count+1 || polls < 1 {
		t.Errorf("calls: %d BatchGetItem, %d status updates, %d writes, %d polls; want ≥ 1, 1, %d, ≥ 1",
			batchGets, completes, writes, polls, 2*count+1)
	}

	row := rawRow(t, client, opts.PendingTable, id)
	if n, _ := getN(row, attrChunkCount); getS(row, "status") != "completed" || n != count {
		t.Errorf("request row status %q, chunkCount %d; want completed, %d", getS(row, "status"), n, count)
	}
	for _, i := range []int{0, count - 1} {
		c := rawRow(t, client, opts.PendingTable, id+"#"+strconv.Itoa(i))
		ttl, _ := getN(c, "ttl")
		want, _ := getN(row, "ttl")
		if ttl != want || !bytes.Equal(getBytes(c, "responseData"), chunk(i)) {
			t.Errorf("chunk row %d: ttl %d (want %d) or data differ", i, ttl, want)
		}
	}
	if n := countRows(t, client, opts.PendingTable); n != count+1 {
		t.Errorf("%d rows, want %d", n, count+1)
	}
}

// TestPendingNotFound checks that chunks and waits for a request without
// a live row are store.ErrNotFound, and store nothing.
func TestPendingNotFound(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	s, opts := newStore(t, client)
	ctx := t.Context()
	expired := randid.Hex(16)
	if _, err := client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(opts.PendingTable),
		Item: item{
			"requestId": str(expired), "connectionId": str("c1"), "status": str("pending"),
			"ttl": num(time.Now().Add(-time.Minute).Unix()),
		},
	}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{randid.Hex(16), expired} {
		for _, c := range []struct{ index, count int }{{0, 1}, {0, 3}, {2, 3}} {
			err := s.PutResponseChunk(ctx, id, c.index, c.count, []byte("x"))
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("PutResponseChunk(%s, %d of %d) = %v, want store.ErrNotFound", id, c.index, c.count, err)
			}
		}
		if _, err := s.WaitResponse(ctx, id, WaitOptions{}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("WaitResponse(%s) = %v, want store.ErrNotFound", id, err)
		}
	}
	if n := countRows(t, client, opts.PendingTable); n != 1 {
		t.Errorf("%d rows, want only the expired request's", n)
	}
}

// TestWaitResponseDeadline checks that a wait without a response ends
// with ctx's deadline, after polls whose delays start at 10 ms and double
// up to the cap.
func TestWaitResponseDeadline(t *testing.T) {
	t.Parallel()
	s, _, _, rec := newRecordedStore(t)
	id := randid.Hex(16)
	mustCreatePending(t, s, id)
	rec.take()

	var delays []time.Duration
	opts := WaitOptions{
		MaxDelay: 40 * time.Millisecond,
		sleep: func(ctx context.Context, d time.Duration) error {
			delays = append(delays, d)
			return sleep(ctx, d)
		},
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.WaitResponse(ctx, id, opts)
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "dynamostore: wait response: ") {
		t.Errorf("WaitResponse = %v, want a dynamostore error wrapping context.DeadlineExceeded", err)
	}
	if elapsed > 5*time.Second {
		t.Errorf("WaitResponse returned after %v, long after its 300 ms deadline", elapsed)
	}
	_, _, polls := opsOf(t, rec.take())
	if polls < 2 {
		t.Errorf("%d polls, want more than one", polls)
	}
	if len(delays) == 0 || delays[0] != DefaultWaitInitialDelay || delays[0] > 20*time.Millisecond {
		t.Fatalf("delays %v, want the first one %v", delays, DefaultWaitInitialDelay)
	}
	for i, d := range delays[1:] {
		if want := min(2*delays[i], opts.MaxDelay); d != want {
			t.Errorf("delay %d = %v, want %v (delays %v)", i+1, d, want, delays)
		}
	}
}

func TestWaitOptionsDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in               WaitOptions
		initial, maximum time.Duration
	}{
		{WaitOptions{}, 10 * time.Millisecond, 200 * time.Millisecond},
		{WaitOptions{InitialDelay: -1, MaxDelay: -1}, 10 * time.Millisecond, 200 * time.Millisecond},
		{WaitOptions{InitialDelay: 5 * time.Millisecond, MaxDelay: time.Second}, 5 * time.Millisecond, time.Second},
		{WaitOptions{InitialDelay: 50 * time.Millisecond, MaxDelay: time.Millisecond}, 50 * time.Millisecond, 50 * time.Millisecond},
	}
	for _, tt := range tests {
		got := tt.in.withDefaults()
		if got.InitialDelay != tt.initial || got.MaxDelay != tt.maximum || got.sleep == nil {
			t.Errorf("%+v.withDefaults() = %v, %v; want %v, %v", tt.in, got.InitialDelay, got.MaxDelay, tt.initial, tt.maximum)
		}
	}
}

// TestDeletePending checks that DeletePending removes a request row and
// every chunk row, over more than one BatchWriteItem, and leaves other
// requests alone.
func TestDeletePending(t *testing.T) {
	t.Parallel()
	s, opts, client, rec := newRecordedStore(t)
	ctx := t.Context()
	const count = 30
	id, other := randid.Hex(16), randid.Hex(16)
	mustCreatePending(t, s, id)
	mustCreatePending(t, s, other)
	for i := range count {
		if err := s.PutResponseChunk(ctx, id, i, count, []byte{byte(i)}); err != nil {
			t.Fatalf("PutResponseChunk(%d): %v", i, err)
		}
	}
	if err := s.PutResponseChunk(ctx, other, 0, 1, []byte("other")); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, client, opts.PendingTable); n != count+2 {
		t.Fatalf("%d rows before DeletePending, want %d", n, count+2)
	}
	r0, w0 := s.PendingOps()
	rec.take()

	if err := s.DeletePending(ctx, id); err != nil {
		t.Fatalf("DeletePending: %v", err)
	}
	if r, w := checkOps(t, s, rec, r0, w0); r != 0 || w != 3 {
		t.Errorf("DeletePending of %d chunks cost (%d reads, %d writes), want (0, 3)", count, r, w)
	}
	if n := countRows(t, client, opts.PendingTable); n != 1 {
		t.Errorf("%d rows after DeletePending, want 1 (the other request)", n)
	}
	if err := s.DeletePending(ctx, id); err != nil {
		t.Errorf("DeletePending again: %v", err)
	}
	if got, err := s.WaitResponse(ctx, other, WaitOptions{}); err != nil || string(got) != "other" {
		t.Errorf("WaitResponse(other) = %q, %v", got, err)
	}
}

func TestCreatePendingConflict(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	s, _ := newStore(t, client)
	id := randid.Hex(16)
	mustCreatePending(t, s, id)
	if err := s.CreatePending(t.Context(), id, "another", time.Minute); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second CreatePending = %v, want store.ErrConflict", err)
	}
}

// TestPendingInvalid checks the arguments the methods refuse before any
// request, and a chunk count that differs from the stored one.
func TestPendingInvalid(t *testing.T) {
	t.Parallel()
	s, _, _, rec := newRecordedStore(t)
	ctx := t.Context()
	id := randid.Hex(16)
	mustCreatePending(t, s, id)
	if err := s.PutResponseChunk(ctx, id, 0, 3, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutResponseChunk(ctx, id, 1, 4, []byte("b")); !errors.Is(err, ErrChunkCount) {
		t.Errorf("PutResponseChunk with another count = %v, want ErrChunkCount", err)
	}
	rec.take()

	tests := []struct {
		name string
		call func() error
	}{
		{"CreatePending empty ID", func() error { return s.CreatePending(ctx, "", "c", time.Minute) }},
		{"CreatePending # in ID", func() error { return s.CreatePending(ctx, "a#1", "c", time.Minute) }},
		{"CreatePending no connection", func() error { return s.CreatePending(ctx, "a", "", time.Minute) }},
		{"CreatePending zero ttl", func() error { return s.CreatePending(ctx, "a", "c", 0) }},
		{"chunk # in ID", func() error { return s.PutResponseChunk(ctx, id+"#1", 0, 1, nil) }},
		{"chunk zero count", func() error { return s.PutResponseChunk(ctx, id, 0, 0, nil) }},
		{"chunk index past count", func() error { return s.PutResponseChunk(ctx, id, 3, 3, nil) }},
		{"chunk negative index", func() error { return s.PutResponseChunk(ctx, id, -1, 3, nil) }},
		{"chunk too large", func() error { return s.PutResponseChunk(ctx, id, 0, 1, make([]byte, MaxChunkBytes+1)) }},
	}
	for _, tt := range tests {
		if err := tt.call(); err == nil || !strings.HasPrefix(err.Error(), "dynamostore: ") {
			t.Errorf("%s: %v, want a dynamostore error", tt.name, err)
		}
	}
	if _, err := s.WaitResponse(ctx, "a#1", WaitOptions{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("WaitResponse(a#1) = %v, want store.ErrNotFound", err)
	}
	if err := s.DeletePending(ctx, "a#1"); err != nil {
		t.Errorf("DeletePending(a#1) = %v, want nil", err)
	}
	if in := rec.take(); len(in) != 0 {
		t.Errorf("invalid arguments sent %d requests, want none", len(in))
	}
}

// TestPendingEmptyAndMaxChunk checks the bounds of a chunk's size: an
// empty unchunked response and a chunk of MaxChunkBytes.
func TestPendingEmptyAndMaxChunk(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	s, _ := newStore(t, client)
	ctx := t.Context()
	big := bytes.Repeat([]byte{0xa5}, MaxChunkBytes)
	tests := []struct {
		name   string
		chunks [][]byte
	}{
		{"empty", [][]byte{{}}},
		{"max unchunked", [][]byte{big}},
		{"max chunks", [][]byte{big, []byte("tail")}},
	}
	for _, tt := range tests {
		id := randid.Hex(16)
		mustCreatePending(t, s, id)
		for i, c := range tt.chunks {
			if err := s.PutResponseChunk(ctx, id, i, len(tt.chunks), c); err != nil {
				t.Fatalf("%s: PutResponseChunk(%d): %v", tt.name, i, err)
			}
		}
		got, err := s.WaitResponse(ctx, id, WaitOptions{})
		if want := bytes.Join(tt.chunks, nil); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: WaitResponse = %d bytes, %v; want %d bytes", tt.name, len(got), err, len(want))
		}
	}
}

func TestPendingCanceledContext(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	s, _ := newStore(t, client)
	id := randid.Hex(16)
	mustCreatePending(t, s, id)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name string
		call func() error
	}{
		{"CreatePending", func() error { return s.CreatePending(ctx, randid.Hex(16), "c", time.Minute) }},
		{"PutResponseChunk", func() error { return s.PutResponseChunk(ctx, id, 0, 1, []byte("x")) }},
		{"PutResponseChunk chunked", func() error { return s.PutResponseChunk(ctx, id, 0, 2, []byte("x")) }},
		{"WaitResponse", func() error { _, err := s.WaitResponse(ctx, id, WaitOptions{}); return err }},
		{"DeletePending", func() error { return s.DeletePending(ctx, id) }},
	}
	for _, tt := range tests {
		if err := tt.call(); !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "dynamostore: ") {
			t.Errorf("%s(canceled ctx) = %v, want a dynamostore error wrapping context.Canceled", tt.name, err)
		}
	}
}
