// Package store defines where a gateway keeps its tunnel records: the Store
// that is the source of truth, shared by every gateway node, and the Cache
// that sits in front of it on each node.
//
// The interfaces live here, like database/sql's, so that backends
// (store/dynamostore, store/redisstore) import this package and never the
// root tunnel package. This package also provides the in-memory Store used
// by a single gateway and by tests (NewMemory), and the default Cache, an
// expirable LRU (NewLRU). Every Store implementation must pass the
// conformance suite in store/storetest.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned by Store lookups when no live (unexpired) record
// matches, and by Renew when the record is gone or now belongs to another
// connection. Callers branch on it with errors.Is.
var ErrNotFound = errors.New("store: record not found")

// ErrConflict is returned by Put when live records hold the tunnel ID and
// the rules of Store.Put let it neither replace nor join them: the
// requested name is in use, by another owner, or by its own owner as the
// other kind of tunnel (a pool where a plain record was asked for, or the
// reverse).
var ErrConflict = errors.New("store: tunnel ID in use")

// Record is what a gateway knows about one tunnel: which agent connection
// serves it and which node holds that connection.
//
// A Record is a value; stores copy it in and out and never retain a caller's
// pointer.
type Record struct {
	// TunnelID is the public identifier: the subdomain label and the first
	// path segment of public URLs. It is the key that owners claim.
	TunnelID string
	// ConnectionID identifies the agent connection that currently serves
	// the tunnel. It changes on every reconnect.
	ConnectionID string
	// Owner is an opaque identity (a hash of the agent's resume secret).
	// A live plain record may be replaced only by a Put with the same
	// Owner, or, once Released, by one with the same non-empty Subject; a
	// pool is joined only by Puts with its Owner (see Store.Put).
	Owner string
	// Node names the gateway node that holds the connection. Empty means
	// the local node in a single-node setup.
	Node string
	// PublicURL is the URL the tunnel was announced under.
	PublicURL string
	// Subject is the authenticated identity of the agent that claimed the
	// tunnel (tunnel.Identity's Subject): never a secret, shown in logs and
	// used by the takeover rule of Released records. Empty when the gateway
	// authenticates nobody.
	Subject string
	// Version is the protocol version agreed with the agent at its
	// handshake (protocol/spec.md): the lower of what the agent announced
	// and what the gateway speaks. Zero for records written by a release
	// that did not record it, which is also version 0's value.
	Version int
	// Access is the tunnel's access policy, opaque to the store: who may
	// reach its public URL (credentials hashed, IP lists), as the gateway
	// encoded it when it admitted the agent, checked by whichever node or
	// function receives a public request. Empty means none: the URL is
	// open. Stores keep it as they got it, byte for byte, whatever the
	// bytes; every Store keeps one of storetest.LargeAccess (16 KiB), and
	// a backend may refuse a longer one with an error from Put
	// (redisstore refuses more than 65535 bytes).
	Access string
	// Pool marks the record as one member of a pool: several agent
	// connections that share TunnelID, each with a record of its own
	// (keyed by TunnelID and ConnectionID), all with the same Owner (the
	// pool's, derived from its identity). Members lists them. A record
	// without Pool is a plain record: the one record of its tunnel ID.
	// Stores return every record with Pool as it was put.
	Pool bool
	// Released is set by Release: the connection named by ConnectionID was
	// seen to end without the agent leaving on purpose (a crash, a cut
	// connection). The record stays live until it expires, so that other
	// identities still cannot take the name, but a Put whose Subject equals
	// the record's non-empty Subject may replace it at once: the same
	// identity restarting its agent gets its name back without waiting for
	// the lease. That takeover is for plain records: a released pool member
	// only carries the mark (its pool's owner may join at any time anyway).
	// Put clears it (a record as written is never released).
	Released bool
	// CreatedAt is when the tunnel was first claimed by this owner.
	CreatedAt time.Time
	// ExpiresAt is when the record stops being live. A node that holds the
	// connection extends it with Renew. The zero value means it never
	// expires.
	ExpiresAt time.Time
}

// Replaces reports whether Put may replace old, a live plain record, with
// r, a plain record: the same owner, or old was released by a connection
// of the same (non-empty) subject. Stores that decide in their backend (a
// condition expression, a script) implement the same rule; this is its
// reference. It does not look at Pool: the rules for pools, under which
// no plain record and no pool replace each other while live, are Store.Put's.
func Replaces(r, old Record) bool {
	return r.Owner == old.Owner || (old.Released && old.Subject != "" && old.Subject == r.Subject)
}

// Live reports whether the record has not expired at now.
func (r Record) Live(now time.Time) bool {
	return r.ExpiresAt.IsZero() || now.Before(r.ExpiresAt)
}

// Store is the source of truth for tunnel records. Implementations are safe
// for concurrent use by multiple goroutines and, for shared backends, by
// multiple gateway nodes. Every method's ctx bounds the I/O it does.
//
// Expired records are invisible: no method returns one, and Put treats one
// as absent.
//
// A pool's members are records of their own: GetByConnection returns the
// member of a connection, and Renew, Release and Delete, given the tunnel
// ID and a member's connection ID, act on that member alone ("the record
// for tunnelID that names connectionID").
type Store interface {
	// Put claims r.TunnelID for r.Owner and stores r. If a live record
	// holds the tunnel ID that the rules below do not let r replace or
	// join, Put returns an error wrapping ErrConflict and changes nothing.
	// The stored record has Released false whatever r says, and Pool as r
	// has it.
	//
	// A Put without r.Pool stores r as the tunnel ID's plain record,
	// replacing any record for it that has expired, and a live plain
	// record whose Owner equals r.Owner (a reconnecting agent taking its
	// tunnel over) or that is Released with a non-empty Subject equal to
	// r.Subject. Live pool members are never replaced by it, even those of
	// r.Owner: they are a conflict.
	//
	// A Put with r.Pool set adds r as a member of the pool r.TunnelID,
	// replacing the member with r's ConnectionID if there is one and
	// keeping the other live members, if every live record of the tunnel
	// ID is a member with r.Owner (as every one is when there is none). A
	// live plain record, whatever its Owner, Subject or Released, and live
	// members of another owner are a conflict.
	//
	// Of concurrent Puts for a free tunnel ID, the ones that succeed are
	// exactly one plain record, or pool members of one owner: every member
	// of that owner succeeds, and every other Put fails with ErrConflict.
	// In particular, of N concurrent Puts of plain records by different
	// owners, exactly one succeeds.
	Put(ctx context.Context, r Record) error

	// Get returns the live record for tunnelID, or an error wrapping
	// ErrNotFound. For a pool it returns one of its live members.
	Get(ctx context.Context, tunnelID string) (Record, error)

	// Members returns the live records of tunnelID: its plain record, or
	// every live member of its pool, in no particular order; an error
	// wrapping ErrNotFound when there is none.
	Members(ctx context.Context, tunnelID string) ([]Record, error)

	// GetByConnection returns the live record whose ConnectionID is
	// connectionID, or an error wrapping ErrNotFound.
	GetByConnection(ctx context.Context, connectionID string) (Record, error)

	// Renew sets the expiry of the record for tunnelID that names
	// connectionID to expiresAt, if there is one and it is live. Otherwise
	// it returns an error wrapping ErrNotFound: the connection has lost
	// the tunnel (its record expired or was deleted, or a reconnect took
	// it over).
	Renew(ctx context.Context, tunnelID, connectionID string, expiresAt time.Time) error

	// Release marks the record for tunnelID that names connectionID as
	// Released if there is one and it is live, leaving its expiry as it
	// is. Otherwise it
	// returns an error wrapping ErrNotFound. Renew of a released record
	// clears the mark (the connection turned out to be alive after all).
	Release(ctx context.Context, tunnelID, connectionID string) error

	// Delete removes the record for tunnelID that names connectionID.
	// Deleting a record that is absent or that now names another
	// connection is not an error: it returns nil and leaves any newer
	// record, and the other members of a pool, alone.
	Delete(ctx context.Context, tunnelID, connectionID string) error
}

// Cache holds recently used records on one gateway node, in front of a
// Store. A Cache may return stale records; the gateway invalidates an entry
// when using it fails and reads the Store again once. Implementations are
// safe for concurrent use. ctx bounds any I/O a networked cache does.
type Cache interface {
	// Get returns the cached record for tunnelID and whether there was one.
	Get(ctx context.Context, tunnelID string) (Record, bool)
	// Add caches r under r.TunnelID, replacing any previous entry.
	Add(ctx context.Context, r Record)
	// Remove drops any entry for tunnelID.
	Remove(ctx context.Context, tunnelID string)
}
