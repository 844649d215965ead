package dynamostore

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/http-tunnel/tunnel/internal/randid"
	"github.com/http-tunnel/tunnel/store/dynamostore/dynamotest"
)

// mapBodies is a BodyStore in memory.
type mapBodies struct {
	mu      sync.Mutex
	m       map[string][]byte
	failPut error
}

func (b *mapBodies) PutBody(_ context.Context, key string, data []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failPut != nil {
		return b.failPut
	}
	if b.m == nil {
		b.m = map[string][]byte{}
	}
	b.m[key] = bytes.Clone(data)
	return nil
}

func (b *mapBodies) GetBody(_ context.Context, key string) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.m[key]
	if !ok {
		return nil, errors.New("no such body")
	}
	return bytes.Clone(d), nil
}

// TestPendingBodies checks Options.Bodies: chunk data over the threshold
// is stored in the BodyStore under <request ID>/<index>, its row holding
// the key instead of the data, and WaitResponse returns it all the same.
func TestPendingBodies(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	_, opts := newStore(t, client)
	bodies := &mapBodies{}
	opts.Bodies, opts.BodyThreshold = bodies, 100
	s := New(client, opts)
	ctx := t.Context()
	wait := func(id string) []byte {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		b, err := s.WaitResponse(wctx, id, WaitOptions{})
		if err != nil {
			t.Fatalf("WaitResponse: %v", err)
		}
		return b
	}
	row := func(key string) item {
		t.Helper()
		out, err := client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(opts.PendingTable), Key: pendingKey(key), ConsistentRead: aws.Bool(true)})
		if err != nil {
			t.Fatal(err)
		}
		return out.Item
	}
	data := func(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }

	t.Run("unchunked", func(t *testing.T) {
		for _, n := range []int{100, 101} {
			id := randid.Hex(8)
			if err := s.CreatePending(ctx, id, "c", time.Minute); err != nil {
				t.Fatal(err)
			}
			if err := s.PutResponseChunk(ctx, id, 0, 1, data(n, 'u')); err != nil {
				t.Fatal(err)
			}
			r := row(id)
			_, inline := r[attrResponseData]
			if ref := getS(r, attrBodyRef); (n > 100) != (ref == id+"/0") || inline == (n > 100) {
				t.Errorf("%d bytes: row has bodyRef %q, responseData %v", n, ref, inline)
			}
			if got := wait(id); !bytes.Equal(got, data(n, 'u')) {
				t.Errorf("%d bytes: WaitResponse returned %d bytes", n, len(got))
			}
		}
	})

	t.Run("chunked", func(t *testing.T) {
		id := randid.Hex(8)
		if err := s.CreatePending(ctx, id, "c", time.Minute); err != nil {
			t.Fatal(err)
		}
		parts := [][]byte{data(50, 'a'), data(500, 'b'), data(300, 'c')}
		for i := len(parts) - 1; i >= 0; i-- {
			if err := s.PutResponseChunk(ctx, id, i, len(parts), parts[i]); err != nil {
				t.Fatal(err)
			}
		}
		for i, wantRef := range []bool{false, true, true} {
			r := row(id + "#" + string(rune('0'+i)))
			if ref := getS(r, attrBodyRef); (ref != "") != wantRef {
				t.Errorf("chunk %d: bodyRef %q", i, ref)
			}
		}
		if got := wait(id); !bytes.Equal(got, bytes.Join(parts, nil)) {
			t.Errorf("WaitResponse returned %q", got)
		}
		// A Store without the BodyStore cannot read it, and says why.
		plain := New(client, Options{ConnectionsTable: opts.ConnectionsTable, PendingTable: opts.PendingTable})
		if _, err := plain.WaitResponse(ctx, id, WaitOptions{}); !errors.Is(err, errNoBodyStore) {
			t.Errorf("WaitResponse without Bodies: %v, want errNoBodyStore", err)
		}
	})

	t.Run("body store fails", func(t *testing.T) {
		failing := New(client, Options{ConnectionsTable: opts.ConnectionsTable, PendingTable: opts.PendingTable,
			Bodies: &mapBodies{failPut: errors.New("bucket gone")}, BodyThreshold: 10})
		id := randid.Hex(8)
		if err := failing.CreatePending(ctx, id, "c", time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := failing.PutResponseChunk(ctx, id, 0, 1, data(11, 'x')); err == nil {
			t.Fatal("PutResponseChunk succeeded with a failing body store")
		}
		if st := getS(row(id), attrStatus); st != statusPending {
			t.Errorf("status %q after a failed put, want pending", st)
		}
	})
}
