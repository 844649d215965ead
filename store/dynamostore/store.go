package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/http-tunnel/tunnel/store"
)

// Store is a store.Store kept in DynamoDB, shared by every gateway node and
// serverless function that uses the same tables. The package documentation
// describes the rows it writes and the order it writes them in.
//
// Create one with New; the zero value is not usable. A Store is safe for
// concurrent use by multiple goroutines. It holds no state besides its
// configuration and the pending API's call counters, and no goroutine it
// starts outlives the call that
// started it (Cleanup's end before it returns), so there is nothing to
// close. Every method's ctx bounds all
// of its requests; a canceled ctx makes a method fail with an error
// wrapping context.Canceled, possibly after some of its writes were made
// (see the package documentation for why that is safe).
//
// Lookups return store.ErrNotFound itself and Put returns store.ErrConflict
// itself; backend failures are wrapped as "dynamostore: <op>: <cause>".
type Store struct {
	client  *dynamodb.Client
	conns   *string // connections table name, shared by every request
	pending *string // pending table name
	ops     pendingOps

	bodies        BodyStore // nil: every chunk in the pending table
	bodyThreshold int

	// scanned, when non-nil, is called by Cleanup after each page of a
	// Scan and before deleting what it found, so that tests can change a
	// row in between.
	scanned func(table string, keys []item)
	// scanLimit, when non-nil, caps the rows each Cleanup Scan page reads,
	// so that tests reach pagination with few rows.
	scanLimit *int32
}

var _ store.Store = (*Store)(nil)

// New returns a Store that uses client and the tables named by opts (see
// Options for the defaults). The tables must exist: see CreateTables for
// development and tests. client is used as it is; its retryer, timeouts
// and credentials apply to every request.
func New(client *dynamodb.Client, opts Options) *Store {
	opts = opts.withDefaults()
	return &Store{
		client:        client,
		conns:         aws.String(opts.ConnectionsTable),
		pending:       aws.String(opts.PendingTable),
		bodies:        opts.Bodies,
		bodyThreshold: opts.BodyThreshold,
	}
}

// Expression attribute names, one map per expression. They are shared by
// every request and never written after init: the SDK only reads them.
// Every attribute goes through a placeholder because several of the
// schema's names (owner, ttl, status, node, ...) are DynamoDB reserved words,
// and DynamoDB rejects placeholders an expression does not use, hence the
// separate maps.
var (
	// getProjection lists what a Record needs from a claim row, so that a
	// lookup reads neither key nor ttl nor createdAt again, and what a
	// pool's claim row holds instead (attributes a plain claim row lacks,
	// which cost nothing to ask for).
	getProjection = "#h, #o, #n, #u, #c, #e, #s, #v, #r, #a, #p, #m, #w"
	getNames      = map[string]string{
		"#h": attrHolder, "#o": attrOwner, "#n": attrNode,
		"#u": attrPublicURL, "#c": attrCreatedAtMs, "#e": attrExpiresAt,
		"#s": attrSubject, "#v": attrVersion, "#r": attrReleased,
		"#a": attrAccess, "#p": attrPool, "#m": attrMembers, "#w": attrRev,
	}

	// claimCondition lets Put of a plain record take a free tunnel, an
	// expired one, or its owner's own plain record, never a live pool. A
	// row without expiresAt never expires: the comparison with an absent
	// attribute is false; a pool claim row's expiresAt is its last
	// member's. claimBySubject adds, for a Put with a non-empty Subject,
	// a released plain claim of that subject (the rule of
	// store.Replaces); a row without released is not released. A Put with
	// an empty Subject uses claimCondition, so that ":subject" is never ""
	// and an empty subject never matches.
	claimCondition      = "attribute_not_exists(#k) OR #e <= :now OR (attribute_not_exists(#p) AND #o = :owner)"
	claimNames          = map[string]string{"#k": attrConnectionID, "#o": attrOwner, "#e": attrExpiresAt, "#p": attrPool}
	claimBySubject      = claimCondition + " OR (attribute_not_exists(#p) AND #r = :true AND #s = :subject)"
	claimBySubjectNames = map[string]string{
		"#k": attrConnectionID, "#o": attrOwner, "#e": attrExpiresAt, "#p": attrPool,
		"#r": attrReleased, "#s": attrSubject,
	}

	// sameTunnel guards writes to a connection row so that they never
	// touch the row of a connection ID that now serves another tunnel.
	sameTunnel      = "#t = :tunnel"
	sameTunnelNames = map[string]string{"#t": attrTunnelID}

	// holderLive is Renew's and Release's condition: the connection still
	// holds a live claim.
	holderLive = "#h = :conn AND (attribute_not_exists(#e) OR #e > :now)"

	// Release's update marks the claim; it leaves expiresAt and ttl.
	setReleased  = "SET #r = :true"
	releaseNames = map[string]string{"#h": attrHolder, "#e": attrExpiresAt, "#r": attrReleased}

	holderIs      = "#h = :conn"
	holderIsNames = map[string]string{"#h": attrHolder}

	absent      = "attribute_not_exists(#k)"
	absentNames = map[string]string{"#k": attrConnectionID}

	// Renew's updates set or remove both expiry attributes, and on the
	// claim also remove the released mark; each name map serves either
	// expression of its row.
	setExpiry         = "SET #e = :exp, #ttl = :ttl"
	removeExpiry      = "REMOVE #e, #ttl"
	setClaimExpiry    = "SET #e = :exp, #ttl = :ttl REMOVE #r"
	removeClaimExpiry = "REMOVE #e, #ttl, #r"
	renewConnNames    = map[string]string{"#t": attrTunnelID, "#e": attrExpiresAt, "#ttl": attrTTL}
	renewClaimNames   = map[string]string{"#h": attrHolder, "#e": attrExpiresAt, "#ttl": attrTTL, "#r": attrReleased}
)

// conditionFailed reports whether err is DynamoDB's refusal of a condition
// expression.
func conditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

// Put implements store.Store.Put. For a plain record: a conditional write
// of the claim row (unreleased, whatever r.Released says), then the
// connection row, then the removal of the previous holder's connection row
// (or the rows of a pool's expired members). An error after the claim
// write leaves the claim taken by r; it is released when r expires, by
// Delete, or by the owner's next Put. For a pool member: a consistent
// read of the claim row, and a write of it on condition that it is as
// read (again, when another write came in between), then the member's
// connection row; see the package documentation. Put refuses a
// ConnectionID that is empty or contains '#', and an empty TunnelID,
// since they cannot be keys of connection rows.
func (s *Store) Put(ctx context.Context, r store.Record) error {
	if r.TunnelID == "" || !validConnectionID(r.ConnectionID) {
		return fmt.Errorf("dynamostore: put: invalid tunnel ID %q or connection ID %q", r.TunnelID, r.ConnectionID)
	}
	if r.Pool {
		err := s.join(ctx, r)
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("dynamostore: put: %w", err)
		}
		return err
	}
	in := &dynamodb.PutItemInput{
		TableName:                s.conns,
		Item:                     claimItem(r),
		ConditionExpression:      &claimCondition,
		ExpressionAttributeNames: claimNames,
		ExpressionAttributeValues: item{
			":owner": str(r.Owner),
			":now":   num(time.Now().UnixMilli()),
		},
		ReturnValues: types.ReturnValueAllOld,
	}
	if r.Subject != "" {
		in.ConditionExpression = &claimBySubject
		in.ExpressionAttributeNames = claimBySubjectNames
		in.ExpressionAttributeValues[":true"] = boolTrue
		in.ExpressionAttributeValues[":subject"] = str(r.Subject)
	}
	out, err := s.client.PutItem(ctx, in)
	if conditionFailed(err) {
		return store.ErrConflict
	}
	if err != nil {
		return fmt.Errorf("dynamostore: put: %w", err)
	}
	if _, err := s.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: s.conns,
		Item:      connItem(r),
	}); err != nil {
		return fmt.Errorf("dynamostore: put: %w", err)
	}
	// The previous holder's row, or the rows of a lapsed pool's members,
	// are unreachable already (lookups by connection check the claim),
	// so a failure here is not the caller's: the rows stay until their
	// expiry and Cleanup.
	if isPoolRow(out.Attributes) {
		if p, err := decodePool(out.Attributes); err == nil {
			delete(p.members, r.ConnectionID)
			s.dropStale(ctx, r.TunnelID, slices.Collect(maps.Keys(p.members)))
		}
	} else if old := getS(out.Attributes, attrHolder); old != "" && old != r.ConnectionID {
		_ = s.deleteConn(ctx, old, r.TunnelID)
	}
	return nil
}

// deleteConn deletes the connection row of connectionID if it still belongs
// to tunnelID.
func (s *Store) deleteConn(ctx context.Context, connectionID, tunnelID string) error {
	_, err := s.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                 s.conns,
		Key:                       connKey(connectionID),
		ConditionExpression:       &sameTunnel,
		ExpressionAttributeNames:  sameTunnelNames,
		ExpressionAttributeValues: item{":tunnel": str(tunnelID)},
	})
	if err != nil && !conditionFailed(err) {
		return err
	}
	return nil
}

// Get implements store.Store.Get with one strongly consistent read of the
// claim row for a plain record. Of a pool it returns the live member that
// expires last, with one more such read, of its connection row.
func (s *Store) Get(ctx context.Context, tunnelID string) (store.Record, error) {
	recs, err := s.lookup(ctx, tunnelID, true)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.Record{}, fmt.Errorf("dynamostore: get: %w", err)
	}
	if err != nil {
		return store.Record{}, err
	}
	return recs[0], nil
}

// Members implements store.Store.Members with one strongly consistent
// read of the claim row, and for a pool strongly consistent
// BatchGetItems of its live members' connection rows (one per 100
// members). It does not use the tunnel-id-index, whose answers are
// eventually consistent: the claim row lists the members.
func (s *Store) Members(ctx context.Context, tunnelID string) ([]store.Record, error) {
	recs, err := s.lookup(ctx, tunnelID, false)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("dynamostore: members: %w", err)
	}
	return recs, err
}

// lookup returns the live records of tunnelID: its plain record, or the
// live members of its pool, only the one that expires last if first is
// set. It returns store.ErrNotFound itself when there is none, and
// backend errors unwrapped.
func (s *Store) lookup(ctx context.Context, tunnelID string, first bool) ([]store.Record, error) {
	it, err := s.readClaim(ctx, tunnelID)
	if err != nil {
		return nil, err
	}
	if len(it) == 0 {
		return nil, store.ErrNotFound
	}
	if isPoolRow(it) {
		p, err := decodePool(it)
		if err != nil {
			return nil, err
		}
		recs, err := s.members(ctx, tunnelID, p, first)
		if err == nil && len(recs) == 0 {
			err = store.ErrNotFound
		}
		return recs, err
	}
	r, err := claimRecord(tunnelID, it)
	if err != nil {
		return nil, err
	}
	if !r.Live(time.Now()) {
		return nil, store.ErrNotFound
	}
	return []store.Record{r}, nil
}

// readClaim reads the claim row of tunnelID, strongly consistently,
// projected to what a lookup or a pool write needs; nil when there is
// none.
func (s *Store) readClaim(ctx context.Context, tunnelID string) (item, error) {
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:                s.conns,
		Key:                      claimKey(tunnelID),
		ConsistentRead:           aws.Bool(true),
		ProjectionExpression:     &getProjection,
		ExpressionAttributeNames: getNames,
	})
	if err != nil {
		return nil, err
	}
	return out.Item, nil
}

// GetByConnection implements store.Store.GetByConnection with two strongly
// consistent reads: the connection row, for its tunnel ID (and, for a
// pool member, its record), then the claim row, which must still name
// connectionID, or list it as a live member. The second read is what
// hides a connection that was taken over or deleted while its row
// lingered (see the package documentation).
func (s *Store) GetByConnection(ctx context.Context, connectionID string) (store.Record, error) {
	r, err := s.getByConnection(ctx, connectionID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.Record{}, fmt.Errorf("dynamostore: get by connection: %w", err)
	}
	return r, err
}

func (s *Store) getByConnection(ctx context.Context, connectionID string) (store.Record, error) {
	if !validConnectionID(connectionID) {
		return store.Record{}, store.ErrNotFound
	}
	out, err := s.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:                s.conns,
		Key:                      connKey(connectionID),
		ConsistentRead:           aws.Bool(true),
		ProjectionExpression:     &memberProjection,
		ExpressionAttributeNames: memberNames,
	})
	if err != nil {
		return store.Record{}, err
	}
	row := out.Item
	tunnelID := getS(row, attrTunnelID)
	if tunnelID == "" {
		return store.Record{}, store.ErrNotFound
	}
	it, err := s.readClaim(ctx, tunnelID)
	switch {
	case err != nil:
		return store.Record{}, err
	case len(it) == 0:
		return store.Record{}, store.ErrNotFound
	case isPoolRow(it):
		p, err := decodePool(it)
		if err != nil {
			return store.Record{}, err
		}
		m, ok := p.members[connectionID]
		if !ok || !m.live(time.Now().UnixMilli()) || !isPoolRow(row) {
			return store.Record{}, store.ErrNotFound
		}
		return memberRecord(tunnelID, connectionID, row, m)
	}
	r, err := claimRecord(tunnelID, it)
	switch {
	case err != nil:
		return store.Record{}, err
	case !r.Live(time.Now()) || r.ConnectionID != connectionID:
		return store.Record{}, store.ErrNotFound
	}
	return r, nil
}

// expiryUpdate returns the update expressions that set a row's expiry to
// expiresAt, or remove it for the zero time: one for the connection row,
// one for the claim row that also clears its released mark; and the values
// both use.
func expiryUpdate(expiresAt time.Time) (conn, claim *string, values item) {
	if expiresAt.IsZero() {
		return &removeExpiry, &removeClaimExpiry, nil
	}
	ms := expiresAt.UnixMilli()
	return &setExpiry, &setClaimExpiry, item{":exp": num(ms), ":ttl": num(ttlSeconds(ms))}
}

// Renew implements store.Store.Renew. It extends the connection row first
// and the claim row second, so that a connection row never expires before
// the claim that names it; Cleanup relies on that. The claim update is
// conditional on connectionID holding a live claim; when it is refused,
// Renew returns store.ErrNotFound itself. The claim update also clears the
// released mark. When the connection row was missing (a Put that failed
// after its claim write), Renew writes it again from the claim.
func (s *Store) Renew(ctx context.Context, tunnelID, connectionID string, expiresAt time.Time) error {
	if !validConnectionID(connectionID) {
		return store.ErrNotFound
	}
	connUpdate, claimUpdate, values := expiryUpdate(expiresAt)
	connValues := item{":tunnel": str(tunnelID)}
	claimValues := item{":conn": str(connectionID), ":now": num(time.Now().UnixMilli())}
	for k, v := range values {
		connValues[k] = v
		claimValues[k] = v
	}
	connMissing := false
	conn, err := s.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 s.conns,
		Key:                       connKey(connectionID),
		UpdateExpression:          connUpdate,
		ConditionExpression:       &sameTunnel,
		ExpressionAttributeNames:  renewConnNames,
		ExpressionAttributeValues: connValues,
		ReturnValues:              types.ReturnValueAllOld, // says whether it is a member's
	})
	switch {
	case conditionFailed(err):
		connMissing = true
	case err != nil:
		return fmt.Errorf("dynamostore: renew: %w", err)
	case isPoolRow(conn.Attributes):
		err := s.renewMember(ctx, tunnelID, connectionID, expiresAt)
		if err == nil && !(store.Record{ExpiresAt: expiresAt}).Live(time.Now()) {
			// Renewed to the past: the member is gone, and so goes its row.
			err = s.deleteConn(ctx, connectionID, tunnelID)
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("dynamostore: renew: %w", err)
		}
		return err
	}

	in := &dynamodb.UpdateItemInput{
		TableName:                 s.conns,
		Key:                       claimKey(tunnelID),
		UpdateExpression:          claimUpdate,
		ConditionExpression:       &holderLive,
		ExpressionAttributeNames:  renewClaimNames,
		ExpressionAttributeValues: claimValues,
	}
	if connMissing {
		in.ReturnValues = types.ReturnValueAllNew
	}
	out, err := s.client.UpdateItem(ctx, in)
	switch {
	case conditionFailed(err):
		return store.ErrNotFound
	case err != nil:
		return fmt.Errorf("dynamostore: renew: %w", err)
	case !connMissing:
		return nil
	}

	// Repair: the claim names connectionID but its row is missing, or
	// belongs to another tunnel, which the condition leaves alone.
	r, err := claimRecord(tunnelID, out.Attributes)
	if err != nil {
		return fmt.Errorf("dynamostore: renew: %w", err)
	}
	_, err = s.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                s.conns,
		Item:                     connItem(r),
		ConditionExpression:      &absent,
		ExpressionAttributeNames: absentNames,
	})
	if err != nil && !conditionFailed(err) {
		return fmt.Errorf("dynamostore: renew: %w", err)
	}
	return nil
}

// Release implements store.Store.Release with one UpdateItem of the claim
// row, conditional on connectionID holding it live, that sets released and
// leaves the expiry alone. When the condition is refused, Release tries
// the same for a member of a pool (its entry in the claim row), and when
// that is refused too, returns store.ErrNotFound itself. The connection
// row is not touched: the mark is the claim's alone.
func (s *Store) Release(ctx context.Context, tunnelID, connectionID string) error {
	if !validConnectionID(connectionID) {
		return store.ErrNotFound
	}
	_, err := s.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                s.conns,
		Key:                      claimKey(tunnelID),
		UpdateExpression:         &setReleased,
		ConditionExpression:      &holderLive,
		ExpressionAttributeNames: releaseNames,
		ExpressionAttributeValues: item{
			":conn": str(connectionID),
			":now":  num(time.Now().UnixMilli()),
			":true": boolTrue,
		},
	})
	if conditionFailed(err) {
		err = s.releaseMember(ctx, tunnelID, connectionID)
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("dynamostore: release: %w", err)
	}
	return err
}

// Delete implements store.Store.Delete: a conditional delete of the claim
// row (refused unless it names connectionID), then of the connection row
// (unless it now serves another tunnel). When the claim delete is refused,
// Delete reads the claim row, and if it is a pool's with connectionID
// among its members, writes it back without that member (or deletes it,
// with no member left) on condition that it is as read. The connection
// row goes even when the claim names another connection, since such a row
// is unreachable garbage.
func (s *Store) Delete(ctx context.Context, tunnelID, connectionID string) error {
	if !validConnectionID(connectionID) {
		return nil
	}
	_, err := s.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                 s.conns,
		Key:                       claimKey(tunnelID),
		ConditionExpression:       &holderIs,
		ExpressionAttributeNames:  holderIsNames,
		ExpressionAttributeValues: item{":conn": str(connectionID)},
	})
	if conditionFailed(err) {
		err = s.changeMember(ctx, tunnelID, connectionID, func(members map[string]member) {
			delete(members, connectionID)
		})
		if errors.Is(err, store.ErrNotFound) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("dynamostore: delete: %w", err)
	}
	if err := s.deleteConn(ctx, connectionID, tunnelID); err != nil {
		return fmt.Errorf("dynamostore: delete: %w", err)
	}
	return nil
}

// isClaimKey reports whether a connections-table key is a claim row's.
func isClaimKey(key string) bool {
	return strings.HasPrefix(key, claimPrefix)
}
