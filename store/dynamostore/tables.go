package dynamostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// tableWait bounds how long CreateTables waits for a table to become
// ACTIVE when ctx has no earlier deadline. DynamoDB usually takes seconds.
const tableWait = 5 * time.Minute

// CreateTables creates the connections table (partition key connectionId,
// with the tunnelId global secondary index, projection ALL) and the pending
// table (partition key requestId), both on-demand (PAY_PER_REQUEST), with
// the names in opts, and waits until both tables and the index are ACTIVE.
//
// It is for development and tests; production tables belong to the
// deployment's infrastructure code, which should also enable DynamoDB's
// TTL on the ttl attribute of both tables (CreateTables does not, since
// emulators lack the TTL API). A table that exists already is left as it
// is, so CreateTables is idempotent, but it does not check that an
// existing table has the right key schema.
//
// ctx bounds the whole call; without a deadline, the call gives up after
// 5 minutes. It needs the dynamodb:CreateTable and dynamodb:DescribeTable
// permissions.
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
	for _, in := range tables {
		_, err := client.CreateTable(ctx, in)
		var inUse *types.ResourceInUseException
		if err != nil && !errors.As(err, &inUse) {
			return fmt.Errorf("dynamostore: create table %s: %w", *in.TableName, err)
		}
	}
	waiter := dynamodb.NewTableExistsWaiter(client, func(o *dynamodb.TableExistsWaiterOptions) {
		// The defaults (20 s to 120 s between polls) suit a production
		// deployment, not a test that an emulator serves at once.
		o.MinDelay = 100 * time.Millisecond
		o.MaxDelay = 2 * time.Second
		o.Retryable = tableNotReady
	})
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, tableWait)
		defer cancel()
	}
	for _, in := range tables {
		deadline, _ := ctx.Deadline()
		wait := time.Until(deadline)
		if wait <= 0 {
			return fmt.Errorf("dynamostore: wait for table %s: %w", *in.TableName, context.DeadlineExceeded)
		}
		err := waiter.Wait(ctx, &dynamodb.DescribeTableInput{TableName: in.TableName}, wait)
		if cerr := ctx.Err(); err != nil && cerr != nil {
			// The waiter's error does not always wrap ctx's, which
			// callers branch on; ctx's end is the cause.
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("dynamostore: wait for table %s: %w", *in.TableName, err)
		}
	}
	return nil
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
