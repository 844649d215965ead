package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
)

// A BodyStore keeps the data of large response chunks outside the pending
// table (Options.Bodies): DynamoDB bills a write per KB of item and a
// strongly consistent read per 4 KB, an object store per request, so above
// a few KB a chunk is cheaper as an object. The serverless adapter has one
// for S3.
//
// Keys are the request ID, '/' and the chunk's decimal index. The Store
// never deletes a body: objects expire with a lifecycle rule of the store,
// as rows expire with the table's TTL. Implementations must be safe for
// concurrent use.
type BodyStore interface {
	// PutBody stores data under key, replacing what is there. ctx bounds
	// it. data must not be retained after PutBody returns.
	PutBody(ctx context.Context, key string, data []byte) error
	// GetBody returns the data stored under key. ctx bounds it.
	GetBody(ctx context.Context, key string) ([]byte, error)
}

// DefaultBodyThreshold is Options.BodyThreshold's default: 8 KiB, about
// where one S3 PUT and GET ($0.0054 per thousand) cost what DynamoDB's
// write and strongly consistent read of the same bytes cost ($0.625 per
// million write units of 1 KB, $0.125 per million read units of 4 KB).
const DefaultBodyThreshold = 8 << 10

// attrBodyRef (S) replaces responseData in a row whose data is in the
// BodyStore: the key it is stored under.
const attrBodyRef = "bodyRef"

// bodyGets bounds the concurrent GetBody calls of one read.
const bodyGets = 8

// errNoBodyStore is the error of a read that meets a body reference in a
// Store without a BodyStore.
var errNoBodyStore = errors.New("a response chunk is in a body store, but the Store has none (Options.Bodies)")

// offloads reports whether data goes to the BodyStore.
func (s *Store) offloads(data []byte) bool {
	return s.bodies != nil && len(data) > s.bodyThreshold
}

// putBody stores the data of chunk index of requestID in the BodyStore and
// returns its key.
func (s *Store) putBody(ctx context.Context, requestID string, index int, data []byte) (string, error) {
	key := requestID + "/" + strconv.Itoa(index)
	if err := s.bodies.PutBody(ctx, key, data); err != nil {
		return "", fmt.Errorf("body store: %w", err)
	}
	return key, nil
}

// getBody reads the body a row refers to.
func (s *Store) getBody(ctx context.Context, key string) ([]byte, error) {
	if s.bodies == nil {
		return nil, errNoBodyStore
	}
	b, err := s.bodies.GetBody(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("body store: %s: %w", key, err)
	}
	return b, nil
}

// getBodies reads the bodies of parts whose refs are set, concurrently,
// into parts.
func (s *Store) getBodies(ctx context.Context, parts [][]byte, refs []string) error {
	var (
		wg    sync.WaitGroup
		sem   = make(chan struct{}, bodyGets)
		mu    sync.Mutex
		first error
	)
	for i, ref := range refs {
		if ref == "" {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			b, err := s.getBody(ctx, ref)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = err
				}
				return
			}
			parts[i] = b
		})
	}
	wg.Wait()
	return first
}
