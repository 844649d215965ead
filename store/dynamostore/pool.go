package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/http-tunnel/tunnel/store"
)

// Pools: the package documentation describes the rows. In short, a
// pool's claim row holds its owner and, in its members map, the expiry
// and released mark of every member, authoritative as a plain claim row
// is; each member's connection row holds the rest of its record. Writes
// that change the map as a whole read the row and write it back on
// condition that its rev is still the one read (optimistic concurrency),
// so that every decision about a pool is one conditional write of one row,
// as for a plain claim.

// maxAttempts bounds the read-and-write rounds of one pool write. Each
// round that fails does so because another write to the row succeeded, so
// this many rounds fail only under a stream of writes to one pool.
const maxAttempts = 100

// errContention is returned, wrapped, by a pool write that lost
// maxAttempts rounds in a row.
var errContention = errors.New("too many concurrent writes to the pool's claim row")

// member is a pool member's entry in its pool's claim row.
type member struct {
	expires  int64 // epoch milliseconds; 0: never
	released bool
}

func (m member) live(nowMs int64) bool { return m.expires == 0 || nowMs < m.expires }

// pool is a pool's claim row, decoded.
type pool struct {
	owner   string
	members map[string]member
	// rev is the row's revision: a random number when the pool is made,
	// so that a pool made again after one lapsed never has the revision
	// a write read from the earlier one, then one more on every write.
	rev int64
}

// lease returns the expiry of the member of members that expires last,
// which is the pool's: 0 when one never expires. members must not be
// empty.
func lease(members map[string]member) int64 {
	var last int64
	for _, m := range members {
		if m.expires == 0 {
			return 0
		}
		last = max(last, m.expires)
	}
	return last
}

// livePool reports whether a pool with members has a live member at nowMs.
func livePool(members map[string]member, nowMs int64) bool {
	for _, m := range members {
		if m.live(nowMs) {
			return true
		}
	}
	return false
}

// poolItem is the claim row of p, a pool for tunnelID with at least one
// member: its expiresAt and ttl are its lease, absent when a member never
// expires, so that conditions and Cleanup treat it as they treat a plain
// claim.
func poolItem(tunnelID string, p pool) item {
	members := make(item, len(p.members))
	for c, m := range p.members {
		entry := item{memberExpires: num(m.expires)}
		if m.released {
			entry[memberReleased] = boolTrue
		}
		members[c] = &types.AttributeValueMemberM{Value: entry}
	}
	it := item{
		attrConnectionID: str(claimPrefix + tunnelID),
		attrPool:         boolTrue,
		attrOwner:        str(p.owner),
		attrMembers:      &types.AttributeValueMemberM{Value: members},
		attrRev:          num(p.rev),
	}
	if l := lease(p.members); l != 0 {
		it[attrExpiresAt] = num(l)
		it[attrTTL] = num(ttlSeconds(l))
	}
	return it
}

// isPoolRow reports whether a row of the connections table is a pool's:
// its claim row, or a member's connection row.
func isPoolRow(it item) bool {
	v, ok := it[attrPool].(*types.AttributeValueMemberBOOL)
	return ok && v.Value
}

// decodePool decodes a pool claim row.
func decodePool(it item) (pool, error) {
	p := pool{owner: getS(it, attrOwner), members: make(map[string]member)}
	rev, ok := getN(it, attrRev)
	if !ok {
		return pool{}, fmt.Errorf("pool claim row without a numeric %s", attrRev)
	}
	p.rev = rev
	m, ok := it[attrMembers].(*types.AttributeValueMemberM)
	if !ok {
		return pool{}, fmt.Errorf("pool claim row without a %s map", attrMembers)
	}
	for c, v := range m.Value {
		entry, ok := v.(*types.AttributeValueMemberM)
		if !ok {
			return pool{}, fmt.Errorf("member %q of a pool claim row is not a map", c)
		}
		e, ok := getN(entry.Value, memberExpires)
		if !ok {
			return pool{}, fmt.Errorf("member %q of a pool claim row has no expiry", c)
		}
		r, _ := entry.Value[memberReleased].(*types.AttributeValueMemberBOOL)
		p.members[c] = member{expires: e, released: r != nil && r.Value}
	}
	return p, nil
}

// memberItem is the connection row of r, a pool member: connItem's
// attributes, the pool mark, and r's Access, which a member's row holds
// since the claim row holds no member's fields but its expiry and mark.
func memberItem(r store.Record) item {
	it := connItem(r)
	it[attrPool] = boolTrue
	if r.Access != "" {
		it[attrAccess] = &types.AttributeValueMemberB{Value: []byte(r.Access)}
	}
	return it
}

// memberRecord assembles the record of the member of connectionID in the
// pool of tunnelID from its connection row and its entry in the claim
// row, which has the final word on its expiry and released mark.
func memberRecord(tunnelID, connectionID string, row item, m member) (store.Record, error) {
	r, err := claimRecord(tunnelID, row)
	if err != nil {
		return store.Record{}, err
	}
	r.ConnectionID = connectionID
	r.Pool = true
	r.Released = m.released
	r.ExpiresAt = time.Time{}
	if m.expires != 0 {
		r.ExpiresAt = time.UnixMilli(m.expires).UTC()
	}
	return r, nil
}

// memberRow reports whether row is the connection row of a member of the
// pool of tunnelID. A row that is missing (a join that stopped after its
// claim write) or that now serves something else is not.
func memberRow(row item, tunnelID string) bool {
	return isPoolRow(row) && getS(row, attrTunnelID) == tunnelID
}

// Expressions of pools; see the note on the name maps in store.go.
var (
	// revIs guards a write of a whole pool claim row: it must still be
	// the revision read.
	revIs      = "#v = :rev"
	revIsNames = map[string]string{"#v": attrRev}

	// freeCondition lets a Put make a new pool: the tunnel has no claim
	// row, or one whose record or members have all expired. It is Put's
	// own rule for that case (claimCondition without the owner's).
	freeCondition = "attribute_not_exists(#k) OR #e <= :now"
	freeNames     = map[string]string{"#k": attrConnectionID, "#e": attrExpiresAt}

	// renewMemberFast moves a member's expiry and the pool's lease to
	// :exp in one write, when :exp is the pool's new lease: the member is
	// live, and every member expires by :exp (#e <= :exp), so the lease,
	// the latest expiry, becomes :exp. Other renewals read and write the
	// row.
	renewMemberFast          = "SET #m.#c.#x = :exp, #e = :exp, #ttl = :ttl REMOVE #m.#c.#r ADD #v :one"
	renewMemberFastCondition = "#p = :true AND #m.#c.#x > :now AND #e <= :exp"
	// releaseMember marks a live member, leaving the lease.
	releaseMember          = "SET #m.#c.#r = :true ADD #v :one"
	releaseMemberCondition = "#p = :true AND (#m.#c.#x > :now OR #m.#c.#x = :zero)"

	// memberProjection is what a record needs from a member's connection
	// row, and what tells one (pool, tunnelId).
	memberProjection = "#k, #t, #p, #o, #n, #u, #c, #s, #v, #a"
	memberNames      = map[string]string{
		"#k": attrConnectionID, "#t": attrTunnelID, "#p": attrPool,
		"#o": attrOwner, "#n": attrNode, "#u": attrPublicURL,
		"#c": attrCreatedAtMs, "#s": attrSubject, "#v": attrVersion,
		"#a": attrAccess,
	}
)

// newRev returns the revision of a new pool claim row: random, with room
// for increments.
func newRev() int64 { return rand.Int64N(1 << 62) }

// writeClaim sends one write of a pool claim row: a PutItem of it, or a
// DeleteItem when del, on condition cond. It reports whether the condition
// held.
func (s *Store) writeClaim(ctx context.Context, tunnelID string, it item, del bool, cond string, names map[string]string, values item) (bool, error) {
	var err error
	if del {
		_, err = s.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
			TableName:                 s.conns,
			Key:                       claimKey(tunnelID),
			ConditionExpression:       &cond,
			ExpressionAttributeNames:  names,
			ExpressionAttributeValues: values,
		})
	} else {
		_, err = s.client.PutItem(ctx, &dynamodb.PutItemInput{
			TableName:                 s.conns,
			Item:                      it,
			ConditionExpression:       &cond,
			ExpressionAttributeNames:  names,
			ExpressionAttributeValues: values,
		})
	}
	switch {
	case conditionFailed(err):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// rewritePool writes p back as the claim row of tunnelID, or deletes the
// row when p has no member left, on condition that the row is still at
// the revision rev that p was read at.
func (s *Store) rewritePool(ctx context.Context, tunnelID string, p pool, rev int64) (bool, error) {
	values := item{":rev": num(rev)}
	if len(p.members) == 0 {
		return s.writeClaim(ctx, tunnelID, nil, true, revIs, revIsNames, values)
	}
	p.rev = rev + 1
	return s.writeClaim(ctx, tunnelID, poolItem(tunnelID, p), false, revIs, revIsNames, values)
}

// retry waits before round attempt+1 of a pool write, a few milliseconds
// at random so that racing writers spread out, or returns errContention
// after maxAttempts rounds, or ctx's error.
func retry(ctx context.Context, attempt int) error {
	if attempt+1 >= maxAttempts {
		return errContention
	}
	return sleep(ctx, rand.N(time.Duration(min(attempt+1, 10))*time.Millisecond))
}

// join implements Put for r, a pool member: one consistent read of the
// claim row and one conditional write of it, again while another write
// got in between; then the member's connection row. It returns
// store.ErrConflict itself, other errors unwrapped.
func (s *Store) join(ctx context.Context, r store.Record) error {
	var (
		stale []string // connection rows the write made unreachable
		kept  bool     // whether r was live when written
	)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := retry(ctx, attempt-1); err != nil {
				return err
			}
		}
		old, err := s.readClaim(ctx, r.TunnelID)
		if err != nil {
			return err
		}
		now := time.Now()
		nowMs := now.UnixMilli()
		var (
			p   pool
			ok  bool
			rev int64
		)
		stale, kept = stale[:0], r.Live(now)
		switch {
		case len(old) > 0 && isPoolRow(old):
			p, err = decodePool(old)
			if err != nil {
				return err
			}
			rev = p.rev
			if livePool(p.members, nowMs) {
				if p.owner != r.Owner {
					return store.ErrConflict
				}
				break
			}
			// Lapsed: a new pool replaces it.
			for c := range p.members {
				stale = append(stale, c)
			}
			p, rev = pool{}, 0
		case len(old) > 0:
			plain, err := claimRecord(r.TunnelID, old)
			if err != nil {
				return err
			}
			if plain.Live(now) {
				return store.ErrConflict
			}
			stale = append(stale, plain.ConnectionID)
		}

		if p.members == nil {
			// A new pool, over nothing or what has expired.
			if !kept {
				s.dropStale(ctx, r.TunnelID, append(stale, r.ConnectionID))
				return nil
			}
			p = pool{owner: r.Owner, members: map[string]member{r.ConnectionID: {expires: expiryMs(r)}}, rev: newRev()}
			ok, err = s.writeClaim(ctx, r.TunnelID, poolItem(r.TunnelID, p), false, freeCondition, freeNames,
				item{":now": num(nowMs)})
		} else {
			// A live pool of r's owner: r joins, expired members go.
			next := pool{owner: p.owner, members: make(map[string]member, len(p.members)+1)}
			for c, m := range p.members {
				switch {
				case c == r.ConnectionID:
				case m.live(nowMs):
					next.members[c] = m
				default:
					stale = append(stale, c)
				}
			}
			if kept {
				next.members[r.ConnectionID] = member{expires: expiryMs(r)}
			}
			ok, err = s.rewritePool(ctx, r.TunnelID, next, rev)
		}
		if err != nil {
			return err
		}
		if ok {
			break
		}
	}
	if !kept {
		s.dropStale(ctx, r.TunnelID, append(stale, r.ConnectionID))
		return nil
	}
	if _, err := s.client.PutItem(ctx, &dynamodb.PutItemInput{TableName: s.conns, Item: memberItem(r)}); err != nil {
		return err
	}
	s.dropStale(ctx, r.TunnelID, slices.DeleteFunc(stale, func(c string) bool { return c == r.ConnectionID }))
	return nil
}

// dropStale deletes the connection rows of conns that still belong to
// tunnelID. Those rows are unreachable already, so a failure is left to
// their expiry and Cleanup.
func (s *Store) dropStale(ctx context.Context, tunnelID string, conns []string) {
	for _, c := range conns {
		if validConnectionID(c) {
			_ = s.deleteConn(ctx, c, tunnelID)
		}
	}
}

// expiryMs returns r's expiry as a member entry holds it.
func expiryMs(r store.Record) int64 {
	if r.ExpiresAt.IsZero() {
		return 0
	}
	return max(r.ExpiresAt.UnixMilli(), 1)
}

// renewMember implements Renew for a member, once its connection row has
// been extended: one conditional update when the new expiry is the pool's
// new lease (the usual renewal: the latest one), otherwise reads and
// writes of the claim row. It returns store.ErrNotFound itself, other
// errors unwrapped.
func (s *Store) renewMember(ctx context.Context, tunnelID, connectionID string, expiresAt time.Time) error {
	nowMs := time.Now().UnixMilli()
	if exp := expiresAt.UnixMilli(); !expiresAt.IsZero() && exp > nowMs {
		_, err := s.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:           s.conns,
			Key:                 claimKey(tunnelID),
			UpdateExpression:    &renewMemberFast,
			ConditionExpression: &renewMemberFastCondition,
			ExpressionAttributeNames: map[string]string{
				"#p": attrPool, "#m": attrMembers, "#c": connectionID, "#x": memberExpires,
				"#r": memberReleased, "#e": attrExpiresAt, "#ttl": attrTTL, "#v": attrRev,
			},
			ExpressionAttributeValues: item{
				":true": boolTrue, ":now": num(nowMs), ":exp": num(exp),
				":ttl": num(ttlSeconds(exp)), ":one": num(1),
			},
		})
		if !conditionFailed(err) {
			return err
		}
	}
	m := member{expires: expiryMs(store.Record{ExpiresAt: expiresAt})}
	return s.changeMember(ctx, tunnelID, connectionID, func(members map[string]member) {
		if m.live(time.Now().UnixMilli()) {
			members[connectionID] = m
		} else {
			delete(members, connectionID)
		}
	})
}

// changeMember applies change to the live members of the pool of
// tunnelID, of which connectionID must be one, and writes them back (the
// expired ones dropped), on condition that no other write came in
// between, again until none did. It returns store.ErrNotFound itself when
// connectionID is not a live member, other errors unwrapped.
func (s *Store) changeMember(ctx context.Context, tunnelID, connectionID string, change func(members map[string]member)) error {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := retry(ctx, attempt-1); err != nil {
				return err
			}
		}
		it, err := s.readClaim(ctx, tunnelID)
		if err != nil {
			return err
		}
		if !isPoolRow(it) {
			return store.ErrNotFound
		}
		p, err := decodePool(it)
		if err != nil {
			return err
		}
		nowMs := time.Now().UnixMilli()
		if m, ok := p.members[connectionID]; !ok || !m.live(nowMs) {
			return store.ErrNotFound
		}
		rev := p.rev
		maps.DeleteFunc(p.members, func(_ string, m member) bool { return !m.live(nowMs) })
		change(p.members)
		ok, err := s.rewritePool(ctx, tunnelID, p, rev)
		if err != nil || ok {
			return err
		}
	}
}

// releaseMember implements Release for a member: one conditional update
// of the claim row. It returns store.ErrNotFound itself when connectionID
// is not a live member of a pool of tunnelID.
func (s *Store) releaseMember(ctx context.Context, tunnelID, connectionID string) error {
	_, err := s.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           s.conns,
		Key:                 claimKey(tunnelID),
		UpdateExpression:    &releaseMember,
		ConditionExpression: &releaseMemberCondition,
		ExpressionAttributeNames: map[string]string{
			"#p": attrPool, "#m": attrMembers, "#c": connectionID, "#x": memberExpires, "#r": memberReleased, "#v": attrRev,
		},
		ExpressionAttributeValues: item{
			":true": boolTrue, ":now": num(time.Now().UnixMilli()), ":zero": num(0), ":one": num(1),
		},
	})
	if conditionFailed(err) {
		return store.ErrNotFound
	}
	return err
}

// members returns the live members of p, the pool of tunnelID, from their
// connection rows, read strongly consistently in batches; the one that
// expires last first when first is set, which is all Get needs: then it
// stops at the first member whose row it finds. Members whose rows are
// missing are left out.
func (s *Store) members(ctx context.Context, tunnelID string, p pool, first bool) ([]store.Record, error) {
	nowMs := time.Now().UnixMilli()
	var conns []string
	for c, m := range p.members {
		if m.live(nowMs) {
			conns = append(conns, c)
		}
	}
	// Latest expiry first; never-expiring members (0) before all.
	slices.SortFunc(conns, func(a, b string) int {
		ea, eb := p.members[a].expires, p.members[b].expires
		switch {
		case ea == eb:
			return 0
		case ea == 0:
			return -1
		case eb == 0:
			return 1
		case ea > eb:
			return -1
		}
		return 1
	})
	if first {
		for _, c := range conns {
			out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
				TableName:                s.conns,
				Key:                      connKey(c),
				ConsistentRead:           aws.Bool(true),
				ProjectionExpression:     &memberProjection,
				ExpressionAttributeNames: memberNames,
			})
			if err != nil {
				return nil, err
			}
			if memberRow(out.Item, tunnelID) {
				r, err := memberRecord(tunnelID, c, out.Item, p.members[c])
				return []store.Record{r}, err
			}
		}
		return nil, nil
	}
	rows, err := s.batchGet(ctx, conns)
	if err != nil {
		return nil, err
	}
	recs := make([]store.Record, 0, len(conns))
	for _, c := range conns {
		if row, ok := rows[c]; ok && memberRow(row, tunnelID) {
			r, err := memberRecord(tunnelID, c, row, p.members[c])
			if err != nil {
				return nil, err
			}
			recs = append(recs, r)
		}
	}
	return recs, nil
}

// batchGet reads the connection rows of conns with strongly consistent
// BatchGetItems of up to 100 keys, resending unprocessed keys after a
// jittered, doubling wait, and returns them by connection ID.
func (s *Store) batchGet(ctx context.Context, conns []string) (map[string]item, error) {
	rows := make(map[string]item, len(conns))
	for len(conns) > 0 {
		n := min(batchGetSize, len(conns))
		keys := make([]item, 0, n)
		for _, c := range conns[:n] {
			if validConnectionID(c) {
				keys = append(keys, connKey(c))
			}
		}
		conns = conns[n:]
		for attempt := 0; len(keys) > 0; attempt++ {
			if attempt > 0 {
				if err := sleep(ctx, backoff(attempt-1)); err != nil {
					return nil, err
				}
			}
			out, err := s.client.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{
				RequestItems: map[string]types.KeysAndAttributes{*s.conns: {
					Keys:                     keys,
					ConsistentRead:           aws.Bool(true),
					ProjectionExpression:     &memberProjection,
					ExpressionAttributeNames: memberNames,
				}},
			})
			if err != nil {
				return nil, err
			}
			for _, it := range out.Responses[*s.conns] {
				rows[getS(it, attrConnectionID)] = it
			}
			keys = out.UnprocessedKeys[*s.conns].Keys
		}
	}
	return rows, nil
}
