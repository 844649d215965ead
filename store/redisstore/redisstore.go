package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/http-tunnel/tunnel/store"
)

// DefaultPrefix is the key prefix of a Store whose Options.Prefix is empty.
const DefaultPrefix = "tunnel:"

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// Prefix starts the name of every key the Store writes, inside the
	// hash tag: keys are "{" + Prefix + "}t:<tunnel ID>" and
	// "{" + Prefix + "}c:<connection ID>". Gateway nodes that share
	// records must use the same Prefix; stores with different prefixes
	// on one server are independent. Empty means DefaultPrefix.
	//
	// On Redis Cluster the text up to the Prefix's first '}' is the hash
	// tag, so a Prefix that begins with '}' leaves the tag empty, spreads
	// a Store's keys over slots, and makes every operation fail there.
	Prefix string
}

// Store is a store.Store kept in Redis, shared by every gateway node that
// uses the same server and Prefix. Create one with New; the zero value is
// not usable.
//
// A Store is safe for concurrent use by multiple goroutines. It holds no
// connections of its own and starts no goroutines: it uses the client it
// was given, which the caller keeps and closes.
//
// Errors from Redis, the network or ctx are returned wrapped with the
// method's name, "redisstore: get: ...", so that errors.Is finds
// context.Canceled and the like. The contract's outcomes are
// store.ErrNotFound and store.ErrConflict themselves, not wrapped, so that
// the common miss on a public request costs no allocation.
type Store struct {
	client redis.UniversalClient
	// recordPrefix and connPrefix are the key names without the ID:
	// "{prefix}t:" and "{prefix}c:".
	recordPrefix string
	connPrefix   string
}

var _ store.Store = (*Store)(nil)

// New returns a Store that keeps its records in Redis through client,
// which must not be nil: a *redis.Client, a *redis.ClusterClient or a
// failover client. A *redis.Ring works too, since it shards by hash tag
// and so keeps a Store on one shard, but a change to its set of shards may
// move the Store to a shard where its records are not. New does no I/O.
func New(client redis.UniversalClient, opts Options) *Store {
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	tag := "{" + prefix + "}"
	return &Store{
		client:       client,
		recordPrefix: tag + "t:",
		connPrefix:   tag + "c:",
	}
}

func (s *Store) recordKey(tunnelID string) string   { return s.recordPrefix + tunnelID }
func (s *Store) connKey(connectionID string) string { return s.connPrefix + connectionID }

// Put implements store.Store.Put in one round trip. A record whose
// ExpiresAt has passed by the Redis server's clock replaces what it may
// replace but is not kept. A string field longer than 65535 bytes, Access
// included, or a Version outside 0 to 65535, is an error. A conflict
// returns store.ErrConflict. The record is written in layout version 3
// (see the package doc), which nodes of older releases cannot read.
func (s *Store) Put(ctx context.Context, r store.Record) error {
	r.Released = false // the contract, and what the script's rule relies on
	v, err := encode(r)
	if err != nil {
		return fmt.Errorf("redisstore: put: %w", err)
	}
	keys := []string{s.recordKey(r.TunnelID), s.connKey(r.ConnectionID)}
	expiry := strconv.FormatInt(expiryMillis(r.ExpiresAt), 10)
	n, err := putScript.Run(ctx, s.client, keys, r.TunnelID, v, expiry, s.connPrefix).Int64()
	switch {
	case err != nil:
		return fmt.Errorf("redisstore: put: %w", err)
	case n == 0:
		return store.ErrConflict
	}
	return nil
}

// Get implements store.Store.Get in one round trip. A miss returns
// store.ErrNotFound.
func (s *Store) Get(ctx context.Context, tunnelID string) (store.Record, error) {
	res, err := getScript.Run(ctx, s.client, []string{s.recordKey(tunnelID)}).Result()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return store.Record{}, store.ErrNotFound
		}
		return store.Record{}, fmt.Errorf("redisstore: get: %w", err)
	}
	v, ok := res.(string)
	if !ok {
		return store.Record{}, fmt.Errorf("redisstore: get: tunnel %q: reply of type %T: %w", tunnelID, res, errCorrupt)
	}
	rec, err := decode(tunnelID, v)
	if err != nil {
		return store.Record{}, fmt.Errorf("redisstore: get: tunnel %q: %w", tunnelID, err)
	}
	return rec, nil
}

// GetByConnection implements store.Store.GetByConnection in one round
// trip. A miss, including a connection whose tunnel has since been taken
// over, returns store.ErrNotFound.
func (s *Store) GetByConnection(ctx context.Context, connectionID string) (store.Record, error) {
	res, err := getByConnectionScript.Run(ctx, s.client, []string{s.connKey(connectionID)}, connectionID, s.recordPrefix).Slice()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return store.Record{}, store.ErrNotFound
		}
		return store.Record{}, fmt.Errorf("redisstore: get by connection: %w", err)
	}
	var id, v string
	ok := len(res) == 2
	if ok {
		id, ok = res[0].(string)
	}
	if ok {
		v, ok = res[1].(string)
	}
	if !ok {
		return store.Record{}, fmt.Errorf("redisstore: get by connection: connection %q: unexpected reply: %w", connectionID, errCorrupt)
	}
	rec, err := decode(id, v)
	if err != nil {
		return store.Record{}, fmt.Errorf("redisstore: get by connection: tunnel %q: %w", id, err)
	}
	return rec, nil
}

// Renew implements store.Store.Renew in one round trip. It moves the TTL of
// the record's keys to expiresAt, or removes the TTL if expiresAt is zero.
// Renewing to a time that has passed succeeds and deletes the record, since
// no method could return it any more. A connection that has lost the
// tunnel gets store.ErrNotFound.
func (s *Store) Renew(ctx context.Context, tunnelID, connectionID string, expiresAt time.Time) error {
	keys := []string{s.recordKey(tunnelID), s.connKey(connectionID)}
	expiry := strconv.FormatInt(expiryMillis(expiresAt), 10)
	n, err := renewScript.Run(ctx, s.client, keys, tunnelID, connectionID, expiry).Int64()
	switch {
	case err != nil:
		return fmt.Errorf("redisstore: renew: %w", err)
	case n == 0:
		return store.ErrNotFound
	}
	return nil
}

// Release implements store.Store.Release in one round trip. The record
// keeps its TTL, and its Access. A record in layout version 1 (see the
// package doc) is rewritten in version 3. A connection that has lost the tunnel gets
// store.ErrNotFound.
func (s *Store) Release(ctx context.Context, tunnelID, connectionID string) error {
	n, err := releaseScript.Run(ctx, s.client, []string{s.recordKey(tunnelID)}, connectionID).Int64()
	switch {
	case err != nil:
		return fmt.Errorf("redisstore: release: %w", err)
	case n == 0:
		return store.ErrNotFound
	}
	return nil
}

// Delete implements store.Store.Delete in one round trip.
func (s *Store) Delete(ctx context.Context, tunnelID, connectionID string) error {
	keys := []string{s.recordKey(tunnelID), s.connKey(connectionID)}
	if err := deleteScript.Run(ctx, s.client, keys, tunnelID, connectionID).Err(); err != nil {
		return fmt.Errorf("redisstore: delete: %w", err)
	}
	return nil
}
