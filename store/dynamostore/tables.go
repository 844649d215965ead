package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
)

// tableWait bounds how long CreateTable and CreateTables wait when ctx has
// no deadline. DynamoDB usually takes seconds to make a table ACTIVE.
const tableWait = 5 * time.Minute

// ErrTableSchema is wrapped by the error CreateTable returns when a table
// of the requested name exists with another key schema, so that writes
// with the keys the caller expects would fail.
var ErrTableSchema = errors.New("table exists with another key schema")

// CreateTables creates the connections table (partition key connectionId,
// with the tunnelId global secondary index, projection ALL) and the pending
// table (partition key requestId), both on-demand (PAY_PER_REQUEST), with
// the names in opts, through CreateTable: it waits until both tables and
// the index are ACTIVE and turns on DynamoDB TTL on the ttl attribute of
// both, where the service has the TTL API.
//
// It is for development and tests; production tables belong to the
// deployment's infrastructure code, which should also enable TTL on the
// ttl attribute of both tables. Tables that exist already are kept with
// their rows, so CreateTables is idempotent; one whose key schema or index
// differs is an error wrapping ErrTableSchema.
//
// ctx bounds the whole call; without a deadline, the call gives up after
// 5 minutes. It needs the dynamodb:CreateTable, dynamodb:DescribeTable,
// dynamodb:DescribeTimeToLive and dynamodb:UpdateTimeToLive permissions.
func CreateTables(ctx context.Context, client *dynamodb.Client, opts Options) error {
	opts = opts.withDefaults()
	tables := []*dynamodb.CreateTableInput{
		{
			TableName:   aws.String(opts.ConnectionsTable),
			BillingMode: types.BillingModePayPerRequest,
			AttributeDefinitions: []types.AttributeDefinition{
				{AttributeName: aws.String(attrConnectionID), AttributeType: types.ScalarAttributeTypeS},
				{AttributeName: aws.String(attrTunnelID), AttributeType: types.ScalarAttributeTypeS},
			},
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String(attrConnectionID), KeyType: types.KeyTypeHash},
			},
			GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
				IndexName: aws.String(opts.TunnelIndex),
				KeySchema: []types.KeySchemaElement{
					{AttributeName: aws.String(attrTunnelID), KeyType: types.KeyTypeHash},
				},
				Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
			}},
		},
		{
			TableName:   aws.String(opts.PendingTable),
			BillingMode: types.BillingModePayPerRequest,
			AttributeDefinitions: []types.AttributeDefinition{
				{AttributeName: aws.String(attrRequestID), AttributeType: types.ScalarAttributeTypeS},
			},
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String(attrRequestID), KeyType: types.KeyTypeHash},
			},
		},
	}
	ctx, cancel := withTableWait(ctx)
	defer cancel()
	for _, in := range tables {
		if _, err := CreateTable(ctx, client, in, attrTTL); err != nil {
			return err
		}
	}
	return nil
}

// CreateTable creates the table that in describes, for development and
// tests, and returns once it can be used. It is the one table-making
// helper of this module: CreateTables and dynamolimit.CreateTable use it.
//
// It sends CreateTable; a table of that name that exists already is kept
// as it is, rows included. It then polls DescribeTable until the table and
// every global secondary index are ACTIVE, and checks that the table's key
// schema, the key schema of each index that in names, and the types of
// their key attributes are those in asks for; otherwise it returns an
// error wrapping ErrTableSchema and changes nothing.
//
// If ttlAttribute is not "", it then turns on DynamoDB TTL on that
// attribute, unless TTL is on already (on another attribute, that is an
// error). A service without the TTL API is accepted: DynamoDB emulators
// answer a TTL call they lack with the error code
// UnknownOperationException (dynalite does so for UpdateTimeToLive, and
// reports TTL as DISABLED), and CreateTable, recognising that code and
// no other, leaves TTL off there; their rows simply never expire by TTL.
//
// It returns the description of the ACTIVE table. ctx bounds the whole
// call; without a deadline, it gives up after 5 minutes. It needs the
// dynamodb:CreateTable and dynamodb:DescribeTable permissions, and with a
// ttlAttribute dynamodb:DescribeTimeToLive and dynamodb:UpdateTimeToLive.
// Its errors begin "dynamostore: " and name the table.
func CreateTable(ctx context.Context, client *dynamodb.Client, in *dynamodb.CreateTableInput, ttlAttribute string) (*types.TableDescription, error) {
	name := aws.ToString(in.TableName)
	ctx, cancel := withTableWait(ctx)
	defer cancel()

	_, err := client.CreateTable(ctx, in)
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return nil, fmt.Errorf("dynamostore: create table %s: %w", name, err)
	}
	desc, err := waitActive(ctx, client, name)
	if err != nil {
		return nil, fmt.Errorf("dynamostore: wait for table %s: %w", name, err)
	}
	if err := checkSchema(in, desc); err != nil {
		return nil, fmt.Errorf("dynamostore: table %s: %w", name, err)
	}
	if ttlAttribute != "" {
		if err := enableTTL(ctx, client, name, ttlAttribute); err != nil {
			return nil, fmt.Errorf("dynamostore: enable TTL on table %s: %w", name, err)
		}
	}
	return desc, nil
}

// withTableWait gives ctx the default deadline tableWait if it has none.
func withTableWait(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, tableWait)
}

// waitActive polls until table and its indexes are ACTIVE or ctx ends,
// and returns the table's description. ctx must have a deadline.
func waitActive(ctx context.Context, client *dynamodb.Client, table string) (*types.TableDescription, error) {
	waiter := dynamodb.NewTableExistsWaiter(client, func(o *dynamodb.TableExistsWaiterOptions) {
		// The defaults (20 s to 120 s between polls) suit a production
		// deployment, not a test that an emulator serves at once.
		o.MinDelay = 100 * time.Millisecond
		o.MaxDelay = 2 * time.Second
		o.Retryable = tableNotReady
	})
	deadline, _ := ctx.Deadline()
	wait := time.Until(deadline)
	if wait <= 0 {
		return nil, context.DeadlineExceeded
	}
	out, err := waiter.WaitForOutput(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, wait)
	if cerr := ctx.Err(); err != nil && cerr != nil {
		// The waiter's error does not always wrap ctx's, which callers
		// branch on; ctx's end is the cause.
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	if out.Table == nil {
		return nil, errors.New("DescribeTable returned no table description")
	}
	return out.Table, nil
}

// tableNotReady is the waiter's test: retry until the table and every
// global secondary index are ACTIVE. The SDK's default test looks at the
// table only, and an index may still be building after its table is
// ACTIVE.
func tableNotReady(_ context.Context, _ *dynamodb.DescribeTableInput, out *dynamodb.DescribeTableOutput, err error) (bool, error) {
	var missing *types.ResourceNotFoundException
	switch {
	case errors.As(err, &missing):
		return true, nil
	case err != nil:
		return false, err
	case out.Table == nil || out.Table.TableStatus != types.TableStatusActive:
		return true, nil
	}
	for _, gsi := range out.Table.GlobalSecondaryIndexes {
		if gsi.IndexStatus != types.IndexStatusActive {
			return true, nil
		}
	}
	return false, nil
}

// checkSchema reports whether the table have has the key schema that in
// asks for, and each index of in with its key schema, with the same types
// for every key attribute. Other differences (billing mode, projections,
// further indexes) do not affect the keys a writer uses and are allowed.
func checkSchema(in *dynamodb.CreateTableInput, have *types.TableDescription) error {
	wantTypes := attrTypes(in.AttributeDefinitions)
	haveTypes := attrTypes(have.AttributeDefinitions)
	want, got := keySchema(in.KeySchema, wantTypes), keySchema(have.KeySchema, haveTypes)
	if want != got {
		return fmt.Errorf("%w: key %s, want %s", ErrTableSchema, got, want)
	}
	for _, gsi := range in.GlobalSecondaryIndexes {
		name := aws.ToString(gsi.IndexName)
		i := slices.IndexFunc(have.GlobalSecondaryIndexes, func(d types.GlobalSecondaryIndexDescription) bool {
			return aws.ToString(d.IndexName) == name
		})
		if i < 0 {
			return fmt.Errorf("%w: no index %s", ErrTableSchema, name)
		}
		want := keySchema(gsi.KeySchema, wantTypes)
		if got := keySchema(have.GlobalSecondaryIndexes[i].KeySchema, haveTypes); got != want {
			return fmt.Errorf("%w: index %s has key %s, want %s", ErrTableSchema, name, got, want)
		}
	}
	return nil
}

func attrTypes(defs []types.AttributeDefinition) map[string]types.ScalarAttributeType {
	m := make(map[string]types.ScalarAttributeType, len(defs))
	for _, d := range defs {
		m[aws.ToString(d.AttributeName)] = d.AttributeType
	}
	return m
}

// keySchema spells a key schema for comparison and messages:
// "connectionId (S, HASH)", "key (S, HASH), window (N, RANGE)".
func keySchema(ks []types.KeySchemaElement, attrTypes map[string]types.ScalarAttributeType) string {
	parts := make([]string, len(ks))
	for i, k := range ks {
		name := aws.ToString(k.AttributeName)
		parts[i] = fmt.Sprintf("%s (%s, %s)", name, attrTypes[name], k.KeyType)
	}
	return strings.Join(parts, ", ")
}

// enableTTL turns on TTL on attr unless it is already on (or being turned
// on); asking twice is an error in DynamoDB, hence the look first. A
// service without the TTL API is not an error (see CreateTable).
func enableTTL(ctx context.Context, client *dynamodb.Client, table, attr string) error {
	desc, err := client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if noTTLAPI(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if d := desc.TimeToLiveDescription; d != nil {
		switch d.TimeToLiveStatus {
		case types.TimeToLiveStatusEnabled, types.TimeToLiveStatusEnabling:
			if name := aws.ToString(d.AttributeName); name != attr {
				return fmt.Errorf("TTL is on attribute %q, want %q", name, attr)
			}
			return nil
		}
	}
	_, err = client.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName: aws.String(table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{
			AttributeName: aws.String(attr),
			Enabled:       aws.Bool(true),
		},
	})
	if noTTLAPI(err) {
		return nil
	}
	return err
}

// noTTLAPI reports whether err says the service does not implement the
// operation at all, as DynamoDB emulators answer for the TTL API. It looks
// at the error code the service returned, not at any message text.
func noTTLAPI(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "UnknownOperationException"
}
