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
// Each plain tunnel has two keys, shown here with the default prefix
// "tunnel:":
//
//	{tunnel:}t:<tunnel ID>      the record: connection ID, owner, node,
//	                            public URL, subject, protocol version,
//	                            access policy, the released mark,
//	                            creation and expiry times, in one compact
//	                            binary string
//	{tunnel:}c:<connection ID>  the tunnel ID, so that GetByConnection is
//	                            one lookup rather than a scan
//
// A pool (store.Record.Pool) has three keys, and a connection key per
// member:
//
//	{tunnel:}t:<tunnel ID>      the pool marker: layout version 4 and the
//	                            pool's owner, which says that the tunnel
//	                            ID is a pool's, and whose
//	{tunnel:}m:<tunnel ID>      a hash from each member's connection ID to
//	                            its record, as a plain record's value
//	                            (layout 3)
//	{tunnel:}e:<tunnel ID>      a sorted set of the members' connection
//	                            IDs, scored by their expiry in Unix
//	                            milliseconds (+inf for none)
//	{tunnel:}c:<connection ID>  the tunnel ID, as for a plain record
//
// A hash field cannot expire on its own, so the sorted set is what
// expires members: every script judges a member live by its score (which
// its value's expiry always equals), and every write to a pool first
// deletes the members whose score has passed, with their connection keys.
// The marker, the hash and the set share one TTL, the expiry of the member
// that expires last (none while a member never expires), so an abandoned
// pool vanishes from Redis like a plain record; a member's connection key
// has the member's own expiry. The marker lives exactly as long as the
// pool has a live member: a Put finds the tunnel's state in the record key
// alone.
//
// The record's layout (record.go has it byte by byte) is a layout version
// byte (3), ExpiresAt and CreatedAt as 8-byte big-endian Unix milliseconds
// (an ExpiresAt of 0 meaning none), a flags byte whose bit 0 is Released,
// Version as a 2-byte big-endian number, then ConnectionID, Owner, Node,
// PublicURL, Subject and Access, each as a 2-byte big-endian length and
// its bytes, Access's kept as they are whatever they hold; so no string
// field, Access included, may be longer than 65535 bytes (Put refuses
// one), and Version must be from 0 to 65535. Times are kept to the
// millisecond, truncated, and come back in UTC.
//
// With the default prefix, a record with a 16-character tunnel ID, a
// 17-character connection ID, a 48-character owner, a 6-character node, a
// 39-character URL, a 17-character subject, Version 1 and no Access takes
// 264 bytes of server memory, and its connection key 104, by MEMORY USAGE
// on Redis 7.0. An Access of 200 bytes, the size of a policy with a
// credential and a few address ranges, brings the record to 456 bytes,
// and one of 4 KiB to 5192: beyond the fixed part, a record takes its
// value's length and up to a quarter more for the allocator's size
// classes. Every lookup reads the whole value, Access included.
//
// A pool of three such members, under the same measure, takes 1520 bytes:
// 136 for the marker, 904 for the hash (the values are longer than 64
// bytes, so Redis keeps it as a table), 168 for the sorted set (short
// enough to stay a listpack) and 104 per connection key; three plain
// tunnels take 1104. With the 200-byte Access, the pool takes 2096
// bytes and three plain tunnels 1680. Each member past the first few adds
// about what a plain record and its connection key take.
//
// # Layout versions
//
// A later layout gets a new version byte, which nodes that do not know it
// refuse rather than misread. This release writes records in version 3,
// writes the pool marker as version 4 (a record key holds one or the
// other), and still reads records in versions 2 and 1. Version 2, the layout of the release before
// Access, reads as a record with Access "" (no policy: the URL is open,
// as it was in that release); Renew and Release work on it in place and
// leave it in version 2. Version 1, the layout of releases before Subject,
// Version and Released, also reads as having Subject "", Version 0 and
// Released false; Renew and Delete work on it in place, and Release
// rewrites it in version 3. Every Put, a reconnect's included, writes
// version 3.
//
// The reverse does not hold: a node of an older release fails every
// operation on a record of a later version with an error (not
// store.ErrNotFound), and that is deliberate, since a node that ignored
// the policy would serve a protected tunnel openly. While nodes of both
// releases share a Prefix, requests for tunnels that new nodes registered
// (agents re-registering through them included) fail on old nodes, and an
// agent that reconnects through an old node cannot take such a tunnel
// back: its Put fails too. To upgrade from the release that wrote
// version 2, either stop every node sharing a Prefix and start them on
// the new release together, or give the new release a new Prefix and
// move traffic to it (agents register again when they reconnect; the old
// Prefix's records expire by their TTL, or can be deleted). Rolling back
// needs the same: the older release cannot read what this one wrote.
//
// Pools are new in this release, and so is the marker. A node of the
// release before pools reads plain records (version 3) as this one
// writes them, so the two can share a Prefix while no agent joins a pool.
// A pool's record key holds the marker, which the older node refuses like
// any later layout: every operation it attempts on a pool's tunnel ID
// fails with an error (requests for the tunnel that reach it fail, and
// its Puts neither serve the name as a plain record nor claim it as
// free); it never reads the members' keys. Upgrade every node sharing a
// Prefix before agents use pools; rolling back while pools exist leaves
// their tunnel IDs failing on the older nodes until the pools' keys
// expire or are deleted.
//
// # Expiry
//
// A record with a non-zero ExpiresAt is written with that absolute
// deadline as the TTL of both keys (SET ... PXAT), and Renew moves it
// (PEXPIREAT), so Redis frees abandoned tunnels itself; a zero ExpiresAt
// sets no TTL. A Put or Renew whose ExpiresAt has already passed deletes
// the keys and succeeds. A pool's keys expire with its last member (see
// above). Every operation also compares the stored ExpiresAt
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
// the rest get store.ErrConflict; a takeover (by the same owner, or of a
// released record by the same subject, the rule of store.Replaces) also
// deletes the previous connection's key. A Put always writes its record
// unreleased, so of several takeovers of one released record by its
// subject, exactly one wins too. Renew, Release and Delete act only if the
// record still names the caller's connection, so a connection that lost
// its tunnel to a reconnect cannot extend, release or remove the new one.
// Renew clears the released mark; Release sets it in place (SETRANGE of
// the flags byte), leaving the record's expiry and TTL as they were.
// GetByConnection follows the connection key to the record and checks that
// the record still names the connection, in one round trip.
//
// Pools are decided in the same steps. A Put of a member (the join
// script) and a Put of a plain record (the put script) both read the
// record key first, and settle a pool there (dropping its expired
// members) before deciding: the plain Put conflicts with a pool that has
// a live member, the join with a live plain record or a pool of another
// owner; either replaces what has expired. So of Puts racing for a free
// tunnel ID, the first that Redis runs decides what the record key holds,
// and every later one is judged against it: members of the same owner as
// a first member all join, and everything else conflicts; after a plain
// record, every member conflicts. Renew, Release and Delete of a member
// change its field of the hash (and its score) alone, and Delete of the
// last member deletes the pool. Get of a pool returns the live member that
// expires last, Members every live member, each in one round trip; Get of
// a plain record still reads its one key.
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
