package dynamostore

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/http-tunnel/tunnel/store/dynamostore/dynamotest"
)

// testTableInput is a table like the connections table: partition key id
// (S) and an index by-owner on owner (S).
func testTableInput(name string) *dynamodb.CreateTableInput {
	return &dynamodb.CreateTableInput{
		TableName:   aws.String(name),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("owner"), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName:  aws.String("by-owner"),
			KeySchema:  []types.KeySchemaElement{{AttributeName: aws.String("owner"), KeyType: types.KeyTypeHash}},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
		}},
	}
}

// TestCreateTable checks the shared table helper against dynalite: a new
// table comes back ACTIVE with its index, TTL is asked for on the given
// attribute (dynalite lacks UpdateTimeToLive, which must not be an
// error), and a second call keeps the table and its rows.
func TestCreateTable(t *testing.T) {
	t.Parallel()
	rec := &inputRecorder{}
	client := dynamotest.Client(t, rec.addTo)
	var desc *types.TableDescription
	name := dynamotest.Tables(t, client, func(ctx context.Context, names []string) error {
		var err error
		desc, err = CreateTable(ctx, client, testTableInput(names[0]), "expires")
		return err
	}, "test-table")[0]

	if desc.TableStatus != types.TableStatusActive || aws.ToString(desc.TableName) != name {
		t.Errorf("description: table %s %s, want %s ACTIVE", aws.ToString(desc.TableName), desc.TableStatus, name)
	}
	if len(desc.GlobalSecondaryIndexes) != 1 || desc.GlobalSecondaryIndexes[0].IndexStatus != types.IndexStatusActive {
		t.Errorf("indexes %+v, want by-owner ACTIVE", desc.GlobalSecondaryIndexes)
	}
	var ttl []string
	for _, in := range rec.take() {
		if u, ok := in.(*dynamodb.UpdateTimeToLiveInput); ok {
			ttl = append(ttl, aws.ToString(u.TableName)+" "+aws.ToString(u.TimeToLiveSpecification.AttributeName))
		}
	}
	if want := name + " expires"; len(ttl) != 1 || ttl[0] != want {
		t.Errorf("UpdateTimeToLive calls %q, want [%q]", ttl, want)
	}

	ctx := t.Context()
	key := item{"id": str("row")}
	if _, err := client.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(name), Item: key}); err != nil {
		t.Fatal(err)
	}
	if _, err := CreateTable(ctx, client, testTableInput(name), "expires"); err != nil {
		t.Fatalf("CreateTable of an existing table = %v, want nil", err)
	}
	out, err := client.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(name), Key: key, ConsistentRead: aws.Bool(true)})
	if err != nil || out.Item == nil {
		t.Errorf("row after the second CreateTable: %v, %v; want it kept", out.Item, err)
	}
}

// TestCreateTableSchemaMismatch checks that a table that exists with other
// keys is reported, not used and not changed.
func TestCreateTableSchemaMismatch(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	tests := []struct {
		name string
		edit func(in *dynamodb.CreateTableInput)
	}{
		{"OtherKeyName", func(in *dynamodb.CreateTableInput) {
			in.AttributeDefinitions[0].AttributeName = aws.String("key")
			in.KeySchema[0].AttributeName = aws.String("key")
		}},
		{"OtherKeyType", func(in *dynamodb.CreateTableInput) {
			in.AttributeDefinitions[0].AttributeType = types.ScalarAttributeTypeN
		}},
		{"SortKey", func(in *dynamodb.CreateTableInput) {
			in.AttributeDefinitions = append(in.AttributeDefinitions,
				types.AttributeDefinition{AttributeName: aws.String("at"), AttributeType: types.ScalarAttributeTypeN})
			in.KeySchema = append(in.KeySchema, types.KeySchemaElement{AttributeName: aws.String("at"), KeyType: types.KeyTypeRange})
		}},
		{"NoIndex", func(in *dynamodb.CreateTableInput) {
			in.AttributeDefinitions = in.AttributeDefinitions[:1]
			in.GlobalSecondaryIndexes = nil
		}},
		{"IndexOnOtherKey", func(in *dynamodb.CreateTableInput) {
			in.AttributeDefinitions[1].AttributeName = aws.String("node")
			in.GlobalSecondaryIndexes[0].KeySchema[0].AttributeName = aws.String("node")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			name := dynamotest.Tables(t, client, func(ctx context.Context, names []string) error {
				in := testTableInput(names[0])
				tt.edit(in)
				_, err := client.CreateTable(ctx, in)
				return err
			}, "test-other")[0]
			_, err := CreateTable(t.Context(), client, testTableInput(name), "")
			if !errors.Is(err, ErrTableSchema) || !strings.HasPrefix(err.Error(), "dynamostore: table "+name+": ") {
				t.Errorf("CreateTable over %s = %v, want a dynamostore error wrapping ErrTableSchema", tt.name, err)
			}
		})
	}
}

// ttlServer is a DynamoDB stand-in that answers the TTL calls only:
// DescribeTimeToLive with describe, UpdateTimeToLive with update, each a
// status and a JSON body. It records the UpdateTimeToLive bodies.
type ttlServer struct {
	describe, update ttlAnswer

	mu      sync.Mutex
	updates []string
}

type ttlAnswer struct {
	status int
	body   string
}

func (s *ttlServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var a ttlAnswer
	switch r.Header.Get("X-Amz-Target") {
	case "DynamoDB_20120810.DescribeTimeToLive":
		a = s.describe
	case "DynamoDB_20120810.UpdateTimeToLive":
		s.mu.Lock()
		s.updates = append(s.updates, string(body))
		s.mu.Unlock()
		a = s.update
	default:
		a = ttlAnswer{http.StatusBadRequest, `{"__type":"com.amazonaws.dynamodb.v20120810#UnknownOperationException"}`}
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

// TestEnableTTL checks the TTL step against the answers DynamoDB and its
// emulators give: TTL is turned on when off, left alone when on, an
// emulator's UnknownOperationException is recognised and tolerated, and
// any other refusal is an error.
func TestEnableTTL(t *testing.T) {
	t.Parallel()
	ok := func(body string) ttlAnswer { return ttlAnswer{http.StatusOK, body} }
	fail := func(typ string) ttlAnswer {
		return ttlAnswer{http.StatusBadRequest, `{"__type":"com.amazonaws.dynamodb.v20120810#` + typ + `","message":"no"}`}
	}
	var (
		disabled     = ok(`{"TimeToLiveDescription":{"TimeToLiveStatus":"DISABLED"}}`)
		enabled      = ok(`{"TimeToLiveDescription":{"TimeToLiveStatus":"ENABLED","AttributeName":"ttl"}}`)
		enabling     = ok(`{"TimeToLiveDescription":{"TimeToLiveStatus":"ENABLING","AttributeName":"ttl"}}`)
		enabledOther = ok(`{"TimeToLiveDescription":{"TimeToLiveStatus":"ENABLED","AttributeName":"expires"}}`)
		updated      = ok(`{"TimeToLiveSpecification":{"AttributeName":"ttl","Enabled":true}}`)
	)
	tests := []struct {
		name             string
		describe, update ttlAnswer
		wantUpdate       bool
		wantErr          bool
	}{
		{"Off", disabled, updated, true, false},
		{"On", enabled, updated, false, false},
		{"TurningOn", enabling, updated, false, false},
		{"OnOtherAttribute", enabledOther, updated, false, true},
		{"NoUpdateAPI", disabled, fail("UnknownOperationException"), true, false},
		{"NoTTLAPI", fail("UnknownOperationException"), updated, false, false},
		{"DescribeDenied", fail("AccessDeniedException"), updated, false, true},
		{"UpdateDenied", disabled, fail("AccessDeniedException"), true, true},
		{"UpdateInvalid", disabled, fail("ValidationException"), true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := &ttlServer{describe: tt.describe, update: tt.update}
			hs := httptest.NewServer(srv)
			t.Cleanup(hs.Close)
			client := dynamotest.ClientAt(t, hs.URL, func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 })

			err := enableTTL(t.Context(), client, "tbl", "ttl")
			if (err != nil) != tt.wantErr {
				t.Errorf("enableTTL = %v, want error %v", err, tt.wantErr)
			}
			srv.mu.Lock()
			updates := srv.updates
			srv.mu.Unlock()
			if (len(updates) > 0) != tt.wantUpdate || len(updates) > 1 {
				t.Fatalf("UpdateTimeToLive calls %q, want one: %v", updates, tt.wantUpdate)
			}
			if tt.wantUpdate {
				var in struct {
					TableName               string
					TimeToLiveSpecification struct {
						AttributeName string
						Enabled       bool
					}
				}
				if err := json.Unmarshal([]byte(updates[0]), &in); err != nil {
					t.Fatal(err)
				}
				if s := in.TimeToLiveSpecification; in.TableName != "tbl" || s.AttributeName != "ttl" || !s.Enabled {
					t.Errorf("UpdateTimeToLive %s, want TTL enabled on tbl's ttl", updates[0])
				}
			}
		})
	}
}
