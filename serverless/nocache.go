package serverless

import (
	"context"

	"github.com/http-tunnel/tunnel/store"
)

// NoCache is a store.Cache that caches nothing. Lambda runs many
// short-lived instances that share no memory: a record cached in one goes
// stale when its agent reconnects through another, so every request reads
// the record from DynamoDB (one GetItem). Its zero value is the cache; it
// holds no state and is safe for concurrent use.
type NoCache struct{}

var _ store.Cache = NoCache{}

// Get implements store.Cache: it finds nothing.
func (NoCache) Get(context.Context, string) (store.Record, bool) { return store.Record{}, false }

// Add implements store.Cache: it keeps nothing.
func (NoCache) Add(context.Context, store.Record) {}

// Remove implements store.Cache.
func (NoCache) Remove(context.Context, string) {}
