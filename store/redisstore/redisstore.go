package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/http-tunnel/tunnel/store"
)

// DefaultPrefix is the key prefix of a Store whose Options.Prefix is empty.
const DefaultPrefix = "tunnel:"

// Options configures a Store. The zero value is ready to use.
type Options struct {
	// Prefix starts the name of every key the Store writes, inside the
	// hash tag: keys are "{" + Prefix + "}" followed by "t:", "m:" or "e:"
	// and a tunnel ID, or by "c:" and a connection ID (see the package
	// doc). Gateway nodes that share
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
	// tag is the hash tag, "{prefix}". recordPrefix, membersPrefix,
	// expiriesPrefix and connPrefix are the key names without the ID:
	// tag + "t:", "m:", "e:" and "c:".
	tag            string
	recordPrefix   string
	membersPrefix  string
	expiriesPrefix string
	connPrefix     string
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
		client:         client,
		tag:            tag,
		recordPrefix:   tag + "t:",
		membersPrefix:  tag + "m:",
		expiriesPrefix: tag + "e:",
		connPrefix:     tag + "c:",
	}
}

func (s *Store) connKey(connectionID string) string { return s.connPrefix + connectionID }

// keys returns the keys of tunnelID in the order the scripts take them
// (see scripts.go): its record key and its pool's expiries and members
// keys. The names share one string, so that a lookup of a plain record,
// which needs the pool's keys only to declare them, allocates no more
// than one record key did.
func (s *Store) keys(tunnelID string) []string {
	return s.buildKeys(tunnelID, "", false)
}

// connKeys is keys followed by the connection key of connectionID.
func (s *Store) connKeys(tunnelID, connectionID string) []string {
	return s.buildKeys(tunnelID, connectionID, true)
}

func (s *Store) buildKeys(tunnelID, connectionID string, withConn bool) []string {
	k := len(s.tag) + 2 + len(tunnelID) // each tunnel key's length
	var b strings.Builder
	b.Grow(3*k + len(s.connPrefix) + len(connectionID))
	for _, p := range [...]string{s.recordPrefix, s.expiriesPrefix, s.membersPrefix} {
		b.WriteString(p)
		b.WriteString(tunnelID)
	}
	if withConn {
		b.WriteString(s.connPrefix)
		b.WriteString(connectionID)
	}
	all := b.String()
	keys := make([]string, 3, 4)
	keys[0], keys[1], keys[2] = all[:k], all[k:2*k], all[2*k:3*k]
	if withConn {
		keys = append(keys, all[3*k:])
	}
	return keys
}

// Put implements store.Store.Put in one round trip. A record whose
// ExpiresAt has passed by the Redis server's clock replaces what it may
// replace but is not kept. A string field longer than 65535 bytes, Access
// included, or a Version outside 0 to 65535, is an error. A conflict
// returns store.ErrConflict.
// The record is written in layout version 3, and a pool's record key holds
// its marker, layout version 4 (see the package doc).
func (s *Store) Put(ctx context.Context, r store.Record) error {
	r.Released = false // the contract, and what the scripts' rules rely on
	v, err := encode(r)
	if err != nil {
		return fmt.Errorf("redisstore: put: %w", err)
	}
	keys := s.connKeys(r.TunnelID, r.ConnectionID)
	expiry := strconv.FormatInt(expiryMillis(r.ExpiresAt), 10)
	var n int64
	if r.Pool {
		n, err = joinScript.Run(ctx, s.client, keys, r.TunnelID, v, expiry, s.connPrefix, encodePoolMarker(r.Owner)).Int64()
	} else {
		n, err = putScript.Run(ctx, s.client, keys, r.TunnelID, v, expiry, s.connPrefix).Int64()
	}
	switch {
	case err != nil:
		return fmt.Errorf("redisstore: put: %w", err)
	case n == 0:
		return store.ErrConflict
	}
	return nil
}

// Get implements store.Store.Get in one round trip, which reads one key
// for a plain record. A miss returns store.ErrNotFound. Of a pool it
// returns the member that expires last.
func (s *Store) Get(ctx context.Context, tunnelID string) (store.Record, error) {
	res, err := getScript.Run(ctx, s.client, s.keys(tunnelID)).Result()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return store.Record{}, store.ErrNotFound
		}
		return store.Record{}, fmt.Errorf("redisstore: get: %w", err)
	}
	v, ok := res.(string)
	pool := false
	if a, isArray := res.([]any); isArray && len(a) == 1 {
		v, ok = a[0].(string)
		pool = true
	}
	if !ok {
		return store.Record{}, fmt.Errorf("redisstore: get: tunnel %q: reply of type %T: %w", tunnelID, res, errCorrupt)
	}
	rec, err := decodeAs(tunnelID, v, pool)
	if err != nil {
		return store.Record{}, fmt.Errorf("redisstore: get: tunnel %q: %w", tunnelID, err)
	}
	return rec, nil
}

// Members implements store.Store.Members in one round trip. A miss
// returns store.ErrNotFound. The records share the reply's memory, and
// the slice is the caller's.
func (s *Store) Members(ctx context.Context, tunnelID string) ([]store.Record, error) {
	res, err := membersScript.Run(ctx, s.client, s.keys(tunnelID)).Slice()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return nil, store.ErrNotFound
		}
		return nil, fmt.Errorf("redisstore: members: %w", err)
	}
	kind, ok := int64(-1), len(res) >= 2
	if ok {
		kind, ok = res[0].(int64)
	}
	if !ok || kind < 0 || kind > 1 || (kind == 0 && len(res) != 2) {
		return nil, fmt.Errorf("redisstore: members: tunnel %q: unexpected reply: %w", tunnelID, errCorrupt)
	}
	recs := make([]store.Record, 0, len(res)-1)
	for _, x := range res[1:] {
		v, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("redisstore: members: tunnel %q: reply of type %T: %w", tunnelID, x, errCorrupt)
		}
		rec, err := decodeAs(tunnelID, v, kind == 1)
		if err != nil {
			return nil, fmt.Errorf("redisstore: members: tunnel %q: %w", tunnelID, err)
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

// GetByConnection implements store.Store.GetByConnection in one round
// trip. A miss, including a connection whose tunnel has since been taken
// over, returns store.ErrNotFound.
func (s *Store) GetByConnection(ctx context.Context, connectionID string) (store.Record, error) {
	res, err := getByConnectionScript.Run(ctx, s.client, []string{s.connKey(connectionID)}, connectionID, s.recordPrefix, s.membersPrefix).Slice()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			return store.Record{}, store.ErrNotFound
		}
		return store.Record{}, fmt.Errorf("redisstore: get by connection: %w", err)
	}
	var id, v string
	ok := len(res) == 2 || len(res) == 3
	if ok {
		id, ok = res[0].(string)
	}
	if ok {
		v, ok = res[1].(string)
	}
	if !ok {
		return store.Record{}, fmt.Errorf("redisstore: get by connection: connection %q: unexpected reply: %w", connectionID, errCorrupt)
	}
	rec, err := decodeAs(id, v, len(res) == 3)
	if err != nil {
		return store.Record{}, fmt.Errorf("redisstore: get by connection: tunnel %q: %w", id, err)
	}
	return rec, nil
}

// Renew implements store.Store.Renew in one round trip. It moves the TTL of
// the record's keys to expiresAt, or removes the TTL if expiresAt is zero;
// a member's pool keys get the expiry of the member that expires last.
// Renewing to a time that has passed succeeds and deletes the record, since
// no method could return it any more. A connection that has lost the
// tunnel gets store.ErrNotFound.
func (s *Store) Renew(ctx context.Context, tunnelID, connectionID string, expiresAt time.Time) error {
	keys := s.connKeys(tunnelID, connectionID)
	expiry := strconv.FormatInt(expiryMillis(expiresAt), 10)
	n, err := renewScript.Run(ctx, s.client, keys, tunnelID, connectionID, expiry, s.connPrefix).Int64()
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
// package doc) is rewritten in version 3. A connection that has lost the
// tunnel gets store.ErrNotFound.
func (s *Store) Release(ctx context.Context, tunnelID, connectionID string) error {
	n, err := releaseScript.Run(ctx, s.client, s.keys(tunnelID), connectionID).Int64()
	switch {
	case err != nil:
		return fmt.Errorf("redisstore: release: %w", err)
	case n == 0:
		return store.ErrNotFound
	}
	return nil
}

// Delete implements store.Store.Delete in one round trip. Deleting the
// last member of a pool deletes the pool's keys.
func (s *Store) Delete(ctx context.Context, tunnelID, connectionID string) error {
	keys := s.connKeys(tunnelID, connectionID)
	if err := deleteScript.Run(ctx, s.client, keys, tunnelID, connectionID, s.connPrefix).Err(); err != nil {
		return fmt.Errorf("redisstore: delete: %w", err)
	}
	return nil
}
