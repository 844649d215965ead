package dynamostore

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/http-tunnel/tunnel/store"
)

// Default names of the tables and the index, as the original system names
// them. Deployments usually add a suffix per environment.
const (
	DefaultConnectionsTable = "http-tunnel-connections"
	DefaultPendingTable     = "http-tunnel-pending-requests"
	DefaultTunnelIndex      = "tunnel-id-index"
)

// Attribute names. The first group is the original system's and must not
// change: its handlers and dashboards read them. The rest are this
// package's additions, which original readers ignore.
const (
	attrConnectionID = "connectionId" // connections table partition key (S)
	attrTunnelID     = "tunnelId"     // connection rows only; the GSI key (S)
	attrPublicURL    = "publicUrl"    // S
	attrCreatedAt    = "createdAt"    // N, epoch seconds, as the original
	attrTTL          = "ttl"          // N, epoch seconds, DynamoDB's TTL attribute

	attrRequestID    = "requestId"    // pending table partition key (S)
	attrStatus       = "status"       // S, "pending" then "completed"
	attrResponseData = "responseData" // B (S when the original system wrote it)

	attrOwner       = "owner"           // S
	attrNode        = "node"            // S
	attrHolder      = "holder"          // claim rows only: the holder's connection ID (S)
	attrExpiresAt   = "expiresAt"       // N, epoch milliseconds; absent = never
	attrCreatedAtMs = "createdAtMs"     // N, epoch milliseconds; createdAt to the ms
	attrSubject     = "subject"         // S; absent in rows of older releases = ""
	attrVersion     = "protocolVersion" // N; absent in rows of older releases = 0
	attrReleased    = "released"        // claim rows only: BOOL true, or absent = not released
	attrAccess      = "access"          // claim rows, and pool members' connection rows: B, the Access bytes; absent = ""
	attrPool        = "pool"            // pool claim rows and members' connection rows: BOOL true; absent = plain
	attrMembers     = "members"         // pool claim rows only: M from connection ID to a member entry
	attrRev         = "rev"             // pool claim rows only: N, changed by every write to the row
)

// The attributes of a member entry, the value for a connection ID in a
// pool claim row's members map.
const (
	memberExpires  = "e" // N, epoch milliseconds; 0 = never
	memberReleased = "r" // BOOL true, or absent = not released
)

// claimPrefix starts the partition key of every claim row. Connection IDs
// never contain '#' (API Gateway's are base64 strings, the standalone
// gateway's are hex), and Put refuses one that does, so a claim row's key
// never equals a connection row's.
const claimPrefix = "tunnel#"

// Options names the tables and the index a Store uses. The zero value names
// the defaults. Options are copied by New; changing them later has no
// effect.
type Options struct {
	// ConnectionsTable holds connection rows and claim rows. Empty means
	// DefaultConnectionsTable.
	ConnectionsTable string
	// PendingTable holds the serverless adapter's pending requests. The
	// Store itself only cleans it up. Empty means DefaultPendingTable.
	PendingTable string
	// TunnelIndex is the global secondary index of ConnectionsTable on
	// tunnelId, which CreateTables creates for original-style lookups; the
	// Store's own lookups do not use it. Empty means DefaultTunnelIndex.
	TunnelIndex string
	// Bodies, if set, keeps the data of response chunks larger than
	// BodyThreshold (see BodyStore), and the pending rows hold its key
	// instead. Nil keeps every chunk in the pending table. Every Store
	// that reads the pending table must have it once any writer has.
	Bodies BodyStore
	// BodyThreshold is the size in bytes above which chunk data goes to
	// Bodies. Zero means DefaultBodyThreshold; it has no effect without
	// Bodies.
	BodyThreshold int
}

// withDefaults returns o with every empty field set to its default.
func (o Options) withDefaults() Options {
	if o.ConnectionsTable == "" {
		o.ConnectionsTable = DefaultConnectionsTable
	}
	if o.PendingTable == "" {
		o.PendingTable = DefaultPendingTable
	}
	if o.TunnelIndex == "" {
		o.TunnelIndex = DefaultTunnelIndex
	}
	if o.BodyThreshold <= 0 {
		o.BodyThreshold = DefaultBodyThreshold
	}
	return o
}

// item is one DynamoDB row.
type item = map[string]types.AttributeValue

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

// boolTrue is the value of a released attribute, shared by every request
// and never written to.
var boolTrue types.AttributeValue = &types.AttributeValueMemberBOOL{Value: true}

func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func claimKey(tunnelID string) item {
	return item{attrConnectionID: str(claimPrefix + tunnelID)}
}

func connKey(connectionID string) item {
	return item{attrConnectionID: str(connectionID)}
}

// ttlSeconds is the value of the ttl attribute for a row that expires at
// ms: rounded up, so that DynamoDB's TTL deletion never comes before the
// expiry the Store reports.
func ttlSeconds(ms int64) int64 {
	s := ms / 1000
	if ms%1000 > 0 {
		s++
	}
	return s
}

// setTimes adds the time attributes of r to it. Zero times are left out:
// an absent expiresAt (and ttl) means the row never expires, an absent
// createdAt means r.CreatedAt was zero.
func setTimes(it item, r store.Record) {
	if !r.CreatedAt.IsZero() {
		ms := r.CreatedAt.UnixMilli()
		it[attrCreatedAtMs] = num(ms)
		it[attrCreatedAt] = num(r.CreatedAt.Unix())
	}
	if !r.ExpiresAt.IsZero() {
		ms := r.ExpiresAt.UnixMilli()
		it[attrExpiresAt] = num(ms)
		it[attrTTL] = num(ttlSeconds(ms))
	}
}

// claimItem is the claim row for r: the authoritative record, as Put
// writes it, so never released whatever r.Released says (Release marks a
// row that exists). An empty Access is left out, as older releases' rows
// lack it.
func claimItem(r store.Record) item {
	it := item{
		attrConnectionID: str(claimPrefix + r.TunnelID),
		attrHolder:       str(r.ConnectionID),
		attrOwner:        str(r.Owner),
		attrNode:         str(r.Node),
		attrPublicURL:    str(r.PublicURL),
		attrSubject:      str(r.Subject),
		attrVersion:      num(int64(r.Version)),
	}
	if r.Access != "" {
		it[attrAccess] = &types.AttributeValueMemberB{Value: []byte(r.Access)}
	}
	setTimes(it, r)
	return it
}

// connItem is the connection row for r, in the original's shape plus this
// package's attributes. It has no released and no access attribute: those
// are the claim's alone.
func connItem(r store.Record) item {
	it := item{
		attrConnectionID: str(r.ConnectionID),
		attrTunnelID:     str(r.TunnelID),
		attrOwner:        str(r.Owner),
		attrNode:         str(r.Node),
		attrPublicURL:    str(r.PublicURL),
		attrSubject:      str(r.Subject),
		attrVersion:      num(int64(r.Version)),
	}
	setTimes(it, r)
	return it
}

// claimRecord decodes a claim row (or the projection of one that Get reads)
// for tunnelID. A row written by a release before Subject, Version,
// Released and Access has none of their attributes, and decodes with their
// zero values. An access attribute that is not binary is an error rather
// than "", which would open the tunnel to anyone.
func claimRecord(tunnelID string, it item) (store.Record, error) {
	r := store.Record{
		TunnelID:     tunnelID,
		ConnectionID: getS(it, attrHolder),
		Owner:        getS(it, attrOwner),
		Node:         getS(it, attrNode),
		PublicURL:    getS(it, attrPublicURL),
		Subject:      getS(it, attrSubject),
	}
	if v, ok := it[attrReleased].(*types.AttributeValueMemberBOOL); ok {
		r.Released = v.Value
	}
	switch v := it[attrAccess].(type) {
	case nil:
	case *types.AttributeValueMemberB:
		r.Access = string(v.Value)
	default:
		return store.Record{}, fmt.Errorf("attribute %s is not binary", attrAccess)
	}
	var err error
	if r.Version, err = getInt(it, attrVersion); err != nil {
		return store.Record{}, err
	}
	if r.CreatedAt, err = getMillis(it, attrCreatedAtMs); err != nil {
		return store.Record{}, err
	}
	if r.ExpiresAt, err = getMillis(it, attrExpiresAt); err != nil {
		return store.Record{}, err
	}
	return r, nil
}

// getS returns the string attribute name of it, or "" when it is absent or
// not a string.
func getS(it item, name string) string {
	if v, ok := it[name].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

// getInt decodes a number attribute that holds an int. An absent attribute
// is 0.
func getInt(it item, name string) (int, error) {
	v, ok := it[name]
	if !ok {
		return 0, nil
	}
	n, ok := v.(*types.AttributeValueMemberN)
	if !ok {
		return 0, fmt.Errorf("attribute %s is not a number", name)
	}
	i, err := strconv.Atoi(n.Value)
	if err != nil {
		return 0, fmt.Errorf("attribute %s: %w", name, err)
	}
	return i, nil
}

// getMillis decodes a number attribute of epoch milliseconds. An absent
// attribute is the zero time.
func getMillis(it item, name string) (time.Time, error) {
	v, ok := it[name]
	if !ok {
		return time.Time{}, nil
	}
	n, ok := v.(*types.AttributeValueMemberN)
	if !ok {
		return time.Time{}, fmt.Errorf("attribute %s is not a number", name)
	}
	ms, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("attribute %s: %w", name, err)
	}
	return time.UnixMilli(ms).UTC(), nil
}

// validConnectionID reports whether id can name a connection row: it must
// be a non-empty key that no claim row can have.
func validConnectionID(id string) bool {
	return id != "" && !strings.Contains(id, "#")
}
