package serverless

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/store/dynamostore"
)

// identityKeyPrefix starts the key of an identity row. Connection IDs
// never contain '#', and dynamostore's claim rows start with "tunnel#",
// so an identity row's key meets neither kind of dynamostore's rows.
const identityKeyPrefix = "identity#"

// maxIdentityBytes bounds an identity as a row keeps it (its JSON, sealed
// credentials included), far below DynamoDB's 400 KB item limit: an
// Authenticator whose identity is larger refuses the agent at $connect.
const maxIdentityBytes = 16 << 10

// IdentityKeySize is the size of Handler.IdentityKey: an AES-256 key.
const IdentityKeySize = 32

// Attributes of an identity row. connectionId, expiresAt and ttl are
// dynamostore's (its partition key, its expiry in epoch milliseconds, and
// DynamoDB's TTL attribute in epoch seconds), so that its Cleanup and
// DynamoDB's TTL deletion remove expired identity rows as they remove
// expired connection rows.
const (
	identityAttrKey      = "connectionId"
	identityAttrIdentity = "identity"
	identityAttrExpires  = "expiresAt"
	identityAttrTTL      = "ttl"
)

// IdentityTable keeps the identity each agent connection authenticated as
// at $connect, for the $default invocation that admits its ready message:
// the two are different invocations, often of different instances, and a
// $default event carries none of the upgrade request's headers. Each
// identity is one row of the connections table (dynamostore's), keyed
// "identity#" + the connection ID, written at $connect, read strongly
// consistently at ready, deleted at $disconnect, and expiring with the
// connection (Handler.ConnectionTTL) in case $disconnect never runs. The
// rows use the calls the Store already needs on that table (GetItem,
// PutItem, DeleteItem).
//
// A row holds the identity's Subject, its Names and the IP lists of its
// Access in clear, since none is a secret, and the credentials its Access
// imposes (BasicAuth, BearerTokens), if any, sealed with
// Handler.IdentityKey; see there.
type IdentityTable struct {
	// Client reaches the table.
	Client *dynamodb.Client
	// Table is the connections table. Empty means
	// dynamostore.DefaultConnectionsTable.
	Table string
}

func (t *IdentityTable) table() *string {
	if t.Table == "" {
		return aws.String(dynamostore.DefaultConnectionsTable)
	}
	return aws.String(t.Table)
}

func identityKey(connID string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{identityAttrKey: &types.AttributeValueMemberS{Value: identityKeyPrefix + connID}}
}

// put writes the identity row of connection connID.
func (t *IdentityTable) put(ctx context.Context, connID string, data []byte, expiresAt time.Time) error {
	ms := expiresAt.UnixMilli()
	item := identityKey(connID)
	item[identityAttrIdentity] = &types.AttributeValueMemberB{Value: data}
	item[identityAttrExpires] = &types.AttributeValueMemberN{Value: strconv.FormatInt(ms, 10)}
	item[identityAttrTTL] = &types.AttributeValueMemberN{Value: strconv.FormatInt((ms+999)/1000, 10)}
	_, err := t.Client.PutItem(ctx, &dynamodb.PutItemInput{TableName: t.table(), Item: item})
	if err != nil {
		return fmt.Errorf("put identity row: %w", err)
	}
	return nil
}

// get reads the identity row of connection connID: store.ErrNotFound when
// there is none or it has expired.
func (t *IdentityTable) get(ctx context.Context, connID string) ([]byte, error) {
	out, err := t.Client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      t.table(),
		Key:            identityKey(connID),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, fmt.Errorf("get identity row: %w", err)
	}
	data, ok := out.Item[identityAttrIdentity].(*types.AttributeValueMemberB)
	if !ok {
		return nil, store.ErrNotFound
	}
	exp, ok := out.Item[identityAttrExpires].(*types.AttributeValueMemberN)
	if !ok {
		return nil, store.ErrNotFound
	}
	ms, err := strconv.ParseInt(exp.Value, 10, 64)
	if err != nil || time.Now().UnixMilli() >= ms {
		// DynamoDB's TTL deletion lags: an expired row is no row.
		return nil, store.ErrNotFound
	}
	return data.Value, nil
}

// delete deletes the identity row of connection connID, if any.
func (t *IdentityTable) delete(ctx context.Context, connID string) error {
	_, err := t.Client.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: t.table(), Key: identityKey(connID)})
	if err != nil {
		return fmt.Errorf("delete identity row: %w", err)
	}
	return nil
}

// keptIdentity is an identity as a row keeps it. Names keeps the
// difference between nil (no list: the Server's UnlistedNames decides)
// and empty (generated names only): null and [] in JSON.
type keptIdentity struct {
	Subject string      `json:"subject"`
	Names   []string    `json:"names"`
	Access  *keptAccess `json:"access,omitempty"`
}

// keptAccess is an Identity's Access: the IP lists in clear, the
// credentials sealed.
type keptAccess struct {
	AllowIPs []netip.Prefix `json:"allow_ips,omitempty"`
	DenyIPs  []netip.Prefix `json:"deny_ips,omitempty"`
	// Sealed is the JSON of keptCredentials, sealed with AES-256-GCM
	// under Handler.IdentityKey: a 12-byte nonce, then the ciphertext.
	// The additional data is the row's key, so that a sealed value copied
	// to another connection's row does not open.
	Sealed []byte `json:"sealed,omitempty"`
}

// keptCredentials are the credentials an Access imposes.
type keptCredentials struct {
	Basic  []keptBasic `json:"basic,omitempty"`
	Bearer []string    `json:"bearer,omitempty"`
}

type keptBasic struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// errNoIdentityKey refuses to keep credentials without a key to seal them.
var errNoIdentityKey = errors.New("the identity imposes credentials on its tunnels, which Handler.IdentityKey must seal, and it is not set")

// encodeIdentity returns id as an identity row of connection connID keeps
// it, its credentials sealed with key. Its errors show no credential.
func encodeIdentity(id tunnel.Identity, connID string, key []byte) ([]byte, error) {
	k := keptIdentity{Subject: id.Subject, Names: id.Names}
	if a := id.Access; a != nil {
		k.Access = &keptAccess{AllowIPs: a.AllowIPs, DenyIPs: a.DenyIPs}
		if len(a.BasicAuth)+len(a.BearerTokens) > 0 {
			var c keptCredentials
			for _, b := range a.BasicAuth {
				c.Basic = append(c.Basic, keptBasic{User: b.User, Password: string(b.Password)})
			}
			for _, t := range a.BearerTokens {
				c.Bearer = append(c.Bearer, string(t))
			}
			plain, err := json.Marshal(c)
			if err != nil {
				return nil, fmt.Errorf("encode the identity's credentials: %w", err)
			}
			if k.Access.Sealed, err = seal(key, plain, identityKeyPrefix+connID); err != nil {
				return nil, err
			}
		}
	}
	b, err := json.Marshal(k)
	if err != nil {
		return nil, fmt.Errorf("encode the identity: %w", err)
	}
	if len(b) > maxIdentityBytes {
		return nil, fmt.Errorf("the identity takes %d bytes, over the %d an identity row keeps", len(b), maxIdentityBytes)
	}
	return b, nil
}

// decodeIdentity is the inverse of encodeIdentity.
func decodeIdentity(data []byte, connID string, key []byte) (tunnel.Identity, error) {
	var k keptIdentity
	if err := json.Unmarshal(data, &k); err != nil {
		return tunnel.Identity{}, fmt.Errorf("decode the identity row: %w", err)
	}
	id := tunnel.Identity{Subject: k.Subject, Names: k.Names}
	if k.Access == nil {
		return id, nil
	}
	id.Access = &tunnel.Access{AllowIPs: k.Access.AllowIPs, DenyIPs: k.Access.DenyIPs}
	if len(k.Access.Sealed) > 0 {
		plain, err := open(key, k.Access.Sealed, identityKeyPrefix+connID)
		if err != nil {
			return tunnel.Identity{}, err
		}
		var c keptCredentials
		if err := json.Unmarshal(plain, &c); err != nil {
			return tunnel.Identity{}, errors.New("decode the identity's credentials: malformed")
		}
		for _, b := range c.Basic {
			id.Access.BasicAuth = append(id.Access.BasicAuth, tunnel.BasicCredential{User: b.User, Password: tunnel.Token(b.Password)})
		}
		for _, t := range c.Bearer {
			id.Access.BearerTokens = append(id.Access.BearerTokens, tunnel.Token(t))
		}
	}
	return id, nil
}

func identityAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) == 0 {
		return nil, errNoIdentityKey
	}
	if len(key) != IdentityKeySize {
		return nil, fmt.Errorf("the identity key has %d bytes, want %d", len(key), IdentityKeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func seal(key, plain []byte, ad string) ([]byte, error) {
	aead, err := identityAEAD(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	rand.Read(nonce)
	return aead.Seal(nonce, nonce, plain, []byte(ad)), nil
}

func open(key, sealed []byte, ad string) ([]byte, error) {
	aead, err := identityAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize() {
		return nil, errors.New("the identity's sealed credentials are truncated")
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(ad))
	if err != nil {
		return nil, errors.New("the identity's sealed credentials do not open with the identity key (another key, or another connection's row)")
	}
	return plain, nil
}
