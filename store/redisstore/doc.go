// Package redisstore is a store.Store kept in Redis, for gateways that run
// as several nodes: every node creates a Store over a client to the same
// server with the same Options.Prefix, and they all see one set of tunnel
// records. Each record names the node that holds the agent's connection,
// which is how a node that receives a public request for a tunnel finds
// the node to forward it to. The Store is the source of truth; nodes put a
// store.Cache in front of it for lookups.
//
// # What is stored
//
// Each tunnel has two keys, shown here with the default prefix "tunnel:":
//
//	{tunnel:}t:<tunnel ID>      the record: connection ID, owner, node,
//	                            public URL, creation and expiry times,
//	                            in one compact binary string
//	{tunnel:}c:<connection ID>  the tunnel ID, so that GetByConnection is
//	                            one lookup rather than a scan
//
// The record's layout is a version byte (1), ExpiresAt and CreatedAt as
// 8-byte big-endian Unix milliseconds (an ExpiresAt of 0 meaning none),
// then ConnectionID, Owner, Node and PublicURL, each as a 2-byte
// big-endian length and its bytes; so no string field may be longer than
// 65535 bytes. A later layout gets a new version byte, which nodes that do
// not know it refuse rather than misread. Times are kept to the
// millisecond, truncated, and come back in UTC. With the default prefix, a
// record with 16-character IDs, a 48-character owner and a 40-character
// URL takes 232 bytes of server memory and its connection key 104, by
// MEMORY USAGE on Redis 7.0.
//
// # Expiry
//
// A record with a non-zero ExpiresAt is written with that absolute
// deadline as the TTL of both keys (SET ... PXAT), and Renew moves it
// (PEXPIREAT), so Redis frees abandoned tunnels itself; a zero ExpiresAt
// sets no TTL. A Put or Renew whose ExpiresAt has already passed deletes
// the keys and succeeds. Every operation also compares the stored ExpiresAt
// with the server's clock, so that a record stops being live at its
// millisecond whatever the timing of Redis's own expiry. Liveness is
// judged by the Redis server's clock, the one the TTLs run on, so every
// node agrees on it; a node whose clock is off by d writes deadlines that
// are off by d.
//
// # Atomicity
//
// Every method is one Lua script (EVALSHA, falling back to EVAL when the
// server does not have it cached), and Redis runs a script with no other
// command in between. Put checks the current holder and writes in one step,
// so of many nodes claiming a free tunnel ID at once exactly one wins and
// the rest get store.ErrConflict; a takeover by the same owner also deletes
// the previous connection's key. Renew and Delete act only if the record
// still names the caller's connection, so a connection that lost its
// tunnel to a reconnect cannot extend or remove the new one.
// GetByConnection follows the connection key to the record and checks that
// the record still names the connection, in one round trip.
//
// # Redis Cluster
//
// Every key of a Store has the same hash tag, the braces around the
// prefix, so all of them are in one slot and each script's keys are on the
// node that runs it. Cluster is supported; the cost is that one Store's
// records live on one shard, which is ample for records this small and
// operations this cheap. Cluster then gives failover through replicas,
// not write scaling for one Store.
//
// # Requirements
//
// Redis 6.2 or later (SET with PXAT), or a server compatible with it. The
// scripts read the server's clock before writing, which needs the effect
// replication that has been the default since Redis 5. Reads go to the
// primary, since they run as scripts.
package redisstore
