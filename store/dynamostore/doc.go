// Package dynamostore is a store.Store kept in Amazon DynamoDB, for
// gateways with several nodes and for the serverless adapter (AWS Lambda
// and API Gateway WebSocket), which share one set of tables. It uses the
// original system's table schema, extended compatibly, so that the
// original handlers, dashboards and queries keep working on the same
// tables.
//
// Create a Store with New from an aws-sdk-go-v2 client; CreateTables makes
// the tables for development and tests. Cleanup deletes expired rows.
//
// # Tables
//
// The connections table (DefaultConnectionsTable) has the partition key
// connectionId (S) and holds two kinds of rows for plain tunnels, and the
// same two, in other shapes, for pools (store.Record.Pool):
//
//   - A connection row per agent connection, keyed by the connection ID,
//     in the original's shape: tunnelId (S), publicUrl (S), createdAt (N,
//     epoch seconds) and ttl (N, epoch seconds, rounded up from the
//     expiry, for DynamoDB's TTL deletion); plus this package's owner (S),
//     node (S), subject (S, the Record's Subject), protocolVersion (N,
//     its Version), expiresAt (N, epoch milliseconds) and createdAtMs (N,
//     epoch milliseconds). A record that never expires has neither
//     expiresAt nor ttl, and a zero CreatedAt has neither createdAt nor
//     createdAtMs.
//   - A claim row per tunnel, keyed by "tunnel#" + the tunnel ID, holding
//     the record: holder (S, the connection ID that serves the tunnel),
//     owner, node, publicUrl, subject, protocolVersion, createdAt,
//     createdAtMs, expiresAt and ttl as above, released (BOOL, true while
//     the record is Released, absent otherwise), access (B, the Record's
//     Access, its bytes as they are; absent when it is empty), and no
//     tunnelId. Connection IDs never contain '#' (Put refuses one that
//     does), so the two kinds of keys never meet.
//   - A pool's claim row, keyed like a plain one, holding pool (BOOL
//     true), owner (S, the pool's), members (M: for each member's
//     connection ID, a map of e, N, its expiry in epoch milliseconds or 0
//     for none, and r, BOOL true while it is Released), rev (N, its
//     revision: random when the pool is made, one more on every write),
//     and expiresAt and ttl as above for the member that expires last
//     (neither while a member never expires), so that a pool claim row
//     lives exactly as long as one of its members, for Put's conditions,
//     Cleanup and DynamoDB's TTL deletion alike. It has no holder and no
//     record fields: its size grows by about 30 bytes per member (with
//     connection IDs of 17 characters), and every lookup of the pool
//     reads it.
//   - A member's connection row: a connection row as above, plus pool
//     (BOOL true) and access (B, the member's Access; absent when empty),
//     since the member's record lives there. Its expiresAt and ttl follow
//     the member's; the claim row's entry is the authoritative one.
//   - Rows this package does not write: the serverless adapter (package
//     serverless) keeps each agent's authenticated identity between its
//     $connect and its ready message in a row keyed "identity#" + the
//     connection ID, with expiresAt and ttl as above. No method of Store
//     reads it (lookups go by tunnel ID, or by connection ID, which never
//     contains '#'), and Cleanup deletes it once expired like any
//     connection row.
//
// Rows written by releases before subject, protocolVersion, released and
// access lack them, and read as a Record with Subject "", Version 0,
// Released false and Access "" (no policy, as in those releases); every
// method works on them as they are. The released mark and the access
// policy are on the claim row only: the connection row's copy of the
// record never has them, and lookups read them from the claim.
//
// The global secondary index tunnel-id-index (DefaultTunnelIndex, key
// tunnelId, projection ALL) is the original's. Claim rows lack tunnelId,
// so the sparse index holds connection rows only, and the original lookup
// (Query tunnelId = :id) finds connection IDs as before, a pool's members
// included. Its answers are eventually consistent and may include a
// connection row that a takeover has not yet removed (see below), or miss
// a member that has just joined; this package's lookups never use it:
// Members reads the member list from the claim row. Plain tunnels'
// connection rows have no access attribute, so the index holds no copy of
// their policies' credential hashes; pool members' rows do have one, and
// so the index holds theirs: restrict who may read the index as you
// restrict the table.
//
// access is binary rather than a string because a Record's Access is
// opaque bytes and a DynamoDB string must be valid UTF-8: the SDK's
// encoder replaces every invalid byte of an S with U+FFFD, silently. A B
// attribute keeps any bytes as they are and counts at their length
// toward the item's size, where base64 in an S would add a third. That
// size matters: a read is charged for the whole item, whatever it
// projects, so every lookup of a claim row pays for its policy (a strongly
// consistent read costs a unit per 4 KB of item; a claim with a policy of
// a few hundred bytes stays within one).
//
// Nodes and functions of a release before access do not know the
// attribute: they read such a claim as a record without a policy and
// serve its tunnel to anyone; their Renew and Release keep the attribute,
// and their Put (a reconnect through them) writes a claim without one.
// Until every node and function sharing the tables runs a release that
// knows access, policies hold only on the requests that new ones receive:
// upgrade them together, or give the new release tables of its own.
//
// Nodes and functions of a release before pools misread a pool's claim
// row as a plain record with no connection, node or policy, and their
// lookups by a member's connection find nothing: requests for a pool's
// tunnel that reach them fail, as for a tunnel whose agent has gone. Their
// Put honours a live pool against other owners (the claim row's owner and
// expiresAt are what their condition reads), but not against the pool's
// own owner: an agent of the pool's identity that registers without
// pooling through such a node replaces the pool's claim row, and the
// members lose the tunnel. Upgrade every node and function sharing the
// tables before agents use pools; the new release also needs
// dynamodb:BatchGetItem (see Permissions).
//
// The pending-requests table (DefaultPendingTable) has the partition key
// requestId (S) and the attributes connectionId (S), status (S, "pending"
// then "completed"), responseData (B; the original wrote S, which is read
// too), or instead bodyRef (S), the key of the data in Options.Bodies for
// a chunk over Options.BodyThreshold, and ttl (N, epoch seconds). The
// serverless adapter uses it through CreatePending, PutResponseChunk and
// WaitResponse, and leaves answered rows to their ttl (DeletePending
// removes a request's rows at once, for a caller that wants to): a
// response too large for one item is stored as chunk rows keyed
// "<requestId>#<index>", and the request row records which chunks have
// arrived. ttl is set once, when a request is created, and later updates
// are conditional on the row existing, so that a row Cleanup removed is not
// brought back half-written.
//
// # Claims
//
// DynamoDB keys make one row per key unique, but the connections table is
// keyed by connection, and two agents must never hold one tunnel ID.
// Transactions would pair the two rows atomically, but emulators lack
// them and they cost twice as much, so every operation is a short
// sequence of single-row writes, each conditional where it decides
// something. The claim row is authoritative: it alone says who holds a
// tunnel and until when, and every lookup reads it, strongly consistently.
// The connection row is an index from connection to tunnel and a copy of
// the record in the original's shape.
//
//   - Put writes the claim row, unreleased, with the condition that it is
//     absent, belongs to the same owner, or has expired (a row without
//     expiresAt never has), or, when the Put's Subject is not empty, is
//     released and has that subject (store.Replaces); it gets the
//     previous row back in the same request; a refusal is
//     store.ErrConflict. It then writes the connection row and deletes the
//     previous holder's connection row, if the holder changed. Because the
//     row written is unreleased, of several Puts racing to take a released
//     tunnel by its subject, DynamoDB's conditional write lets one succeed.
//   - Get reads the claim row, projecting only what a Record needs, and
//     checks expiry.
//   - GetByConnection reads the connection row for its tunnel ID, then the
//     claim row, and answers only if the claim is live and names the
//     connection.
//   - Renew updates the connection row's expiry (if the row still belongs
//     to the tunnel), then the claim row's, removing its released mark, on
//     condition that it is live and names the connection; a refusal is
//     store.ErrNotFound. If the connection row was missing, Renew writes
//     it again from the claim.
//   - Release sets released on the claim row, in one conditional update
//     with Renew's condition; a refusal is store.ErrNotFound. It writes
//     nothing else, so it leaves no intermediate state.
//   - Delete deletes the claim row on condition that it names the
//     connection (a refusal is not an error), then the connection row if
//     it still belongs to the tunnel.
//
// A plain Put's condition also requires that the claim row it replaces
// is not a live pool's (attribute_not_exists(pool), or expired), so a
// live pool blocks every plain claim, its owner's included. The writes of
// a pool are these:
//
//   - Put of a member (a join) reads the claim row, strongly
//     consistently, and decides by the rules of store.Store.Put: a live
//     plain record, or a live pool of another owner, is store.ErrConflict.
//     Otherwise it writes the claim row back: for a live pool of its
//     owner, with the member added (or replaced) and expired members
//     dropped, on condition that rev is still the one read; for a tunnel
//     that is free or whose record or members have all expired, as a new
//     pool, on the condition of a free tunnel (absent, or expiresAt
//     passed). A refused condition means another write came in between:
//     the join reads again and decides again, up to 100 times. Then it
//     writes the member's connection row, and deletes the rows of the
//     members or plain holder it made unreachable.
//   - Renew of a member extends its connection row (whose pool mark tells
//     Renew what it is renewing), then its entry and, when the new expiry
//     is the pool's latest (the usual case), the claim row's expiresAt,
//     in one update on condition that the member is live and the pool's
//     expiresAt is not later; otherwise it reads the claim row and writes
//     it back on condition of its rev, as a join does. Renewing to a time
//     that has passed removes the member, and the claim row with the last
//     one.
//   - Release of a member sets its entry's r, in one update on condition
//     that the member is live, after Release's update for a plain record
//     was refused.
//   - Delete of a member, once Delete's conditional delete for a plain
//     record was refused, reads the claim row and writes it back without
//     the member on condition of its rev (deletes it, without members
//     left), then deletes the connection row.
//   - Get reads the claim row, then the connection row of the live member
//     that expires last; Members reads the claim row, then the live
//     members' connection rows with BatchGetItem; GetByConnection reads
//     the connection row, which holds a member's record, then the claim
//     row, and answers only if it lists the connection as a live member.
//     Members whose connection rows are missing are left out.
//
// Every write of a pool's claim row changes rev, the single-row updates
// of Renew and Release included, so a write conditional on rev never
// undoes another.
//
// A crash, an error or a canceled ctx between two writes leaves one of
// these states, none of which breaks the contract, because lookups follow
// the claim row:
//
//   - Put stopped after the claim: the tunnel is held and Get finds it,
//     but GetByConnection does not until the holder's next Renew rewrites
//     the connection row. Put returned an error, so a gateway treats the
//     registration as failed; the agent's reconnect (same owner) takes
//     the claim over, or else the claim expires.
//   - Put stopped before removing the previous holder's row: that row
//     lingers, unreachable (its claim names another connection), until its
//     expiry; it may show in the index meanwhile. Put ignores a failure of
//     this last step for that reason.
//   - Renew stopped after the connection row: that row expires later than
//     its claim, which is harmless. The reverse, a connection row that
//     expires first, is what Cleanup must not meet; it arises only when
//     two Renews of one connection race or a Renew to a past time stops
//     halfway, and the next Renew repairs it (rewriting the row if
//     Cleanup removed it).
//   - Delete stopped after the claim: the tunnel is free at once, and the
//     connection row is unreachable until its expiry.
//   - A join stopped after the claim: the member holds its place in the
//     pool, so the name stays the pool's until the member expires, but no
//     lookup returns it and its Renew returns store.ErrNotFound (there is
//     no connection row to renew); the same connection's next Put repairs
//     it. A member's Delete stopped after the claim leaves an unreachable
//     connection row, as a plain Delete does.
//
// # Consistency
//
// Every read of the table is strongly consistent, so a node sees a claim,
// takeover or delete as soon as another node's write has returned; of N
// concurrent Puts for a free tunnel by different owners, DynamoDB's
// conditional write lets exactly one succeed. Reads of the index (the
// original lookup) are eventually consistent, which is why no method of
// the Store reads it.
//
// Racing Puts of a pool's members and of a plain record cannot mix,
// because every one of them is decided by one conditional write of the
// claim row, and each condition fails once another's write has changed
// the row: a plain record's write fails over a live pool, a new pool's
// write fails over anything live, and a join's write over a pool fails
// unless the row is still the revision it read. So the first write to
// land decides: after a plain record every join reads it and conflicts;
// after a member every other member's join is retried against the pool,
// and succeeds, while the plain claim conflicts.
//
// # Expiry
//
// A record expires at its ExpiresAt (milliseconds); a zero ExpiresAt never
// expires. Expired rows are invisible at once because every read compares
// expiresAt with the clock of the node that reads, and every condition
// compares it with the writer's clock: nodes' clocks should agree to well
// within the renewal period. Rows are removed in two ways, both
// optional for correctness: DynamoDB's TTL deletion on the ttl attribute,
// which the deployment should enable on both tables (CreateTables does; it
// is free, but it typically lags expiry by up to two days, and emulators
// lack it), and
// Cleanup, which scans both tables and deletes what has expired. A row is deleted only when expired:
// claim rows with a conditional delete (a Put may have taken an expired
// tunnel since the Scan), connection and pending rows in batches, which
// is safe because an expired connection row is unreachable (its claim
// names another connection or has expired, or its pool's entry for it
// has, since Renew extends the connection row first), and nothing but a
// new Put of that same connection ID can make it reachable again; pending
// rows' ttl never moves.
//
// A pool's members expire one by one, by their entries in its claim row;
// the claim row expires with the last of them, and goes as a plain claim
// row does. Entries of members that expired while others live stay in
// the claim row, invisible, until a write that rewrites the row (a join,
// a member's Delete, a Renew that is not the pool's latest) drops them.
//
// # Permissions
//
// The Store needs these IAM actions on the connections table:
// dynamodb:GetItem, dynamodb:PutItem, dynamodb:UpdateItem,
// dynamodb:DeleteItem and, for the members of pools, dynamodb:BatchGetItem
// (new with pools); dynamodb:Query on tunnel-id-index for original-style
// lookups; and for Cleanup, dynamodb:Scan and dynamodb:BatchWriteItem on
// both tables. CreateTables alone needs dynamodb:CreateTable,
// dynamodb:DescribeTable, dynamodb:DescribeTimeToLive and
// dynamodb:UpdateTimeToLive.
//
// # Testing
//
// The package's tests run against dynalite, an in-memory DynamoDB
// emulator without TTL deletion or transactions, at the address in
// TUNNEL_TEST_DYNAMODB_ENDPOINT (default http://127.0.0.1:8000); they skip
// when nothing answers there as DynamoDB and fail when CI=true. Package
// dynamotest gives any test its client and tables of its own.
package dynamostore
