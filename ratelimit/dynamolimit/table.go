package dynamolimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
)

// tableWait bounds how long CreateTable waits for a new table to become
// ACTIVE when ctx has no earlier deadline. DynamoDB usually takes seconds.
const tableWait = 5 * time.Minute

// CreateTable creates table with the layout a Limiter needs, for
// development and tests; production tables belong in infrastructure code
// (on-demand capacity, partition key KeyAttribute of type S, TTL on
// TTLAttribute).
//
// It creates an on-demand (PAY_PER_REQUEST) table with partition key
// KeyAttribute (S), waits until it is ACTIVE, and enables TTL on
// TTLAttribute. It is idempotent: an existing table with that key schema is
// not an error, while one with another key schema is. A service without the
// TTL API (DynamoDB emulators such as dynalite) is accepted; its items
// simply never expire. ctx bounds the whole call, waiting included.
func CreateTable(ctx context.Context, client *dynamodb.Client, table string) error {
	_, err := client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String(table),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(KeyAttribute), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(KeyAttribute), KeyType: types.KeyTypeHash},
		},
		BillingMode: types.BillingModePayPerRequest,
	})
	var exists *types.ResourceInUseException
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("dynamolimit: create table %q: %w", table, err)
	}

	// Poll briskly: the SDK's default first delay of 20s would dominate
	// every test and development start.
	waiter := dynamodb.NewTableExistsWaiter(client, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay = 100 * time.Millisecond
		o.MaxDelay = 5 * time.Second
	})
	desc, err := waiter.WaitForOutput(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, tableWait)
	if err != nil {
		return fmt.Errorf("dynamolimit: wait for table %q: %w", table, err)
	}
	if err := checkSchema(desc.Table); err != nil {
		return fmt.Errorf("dynamolimit: table %q: %w", table, err)
	}
	if err := enableTTL(ctx, client, table); err != nil {
		return fmt.Errorf("dynamolimit: table %q: enable TTL: %w", table, err)
	}
	return nil
}

// checkSchema reports whether an existing table has the key schema a
// Limiter writes: a lone partition key KeyAttribute of type S.
func checkSchema(t *types.TableDescription) error {
	if t == nil {
		return errors.New("DescribeTable returned no table description")
	}
	ok := len(t.KeySchema) == 1 &&
		aws.ToString(t.KeySchema[0].AttributeName) == KeyAttribute &&
		t.KeySchema[0].KeyType == types.KeyTypeHash
	if ok {
		ok = false
		for _, a := range t.AttributeDefinitions {
			if aws.ToString(a.AttributeName) == KeyAttribute {
				ok = a.AttributeType == types.ScalarAttributeTypeS
			}
		}
	}
	if !ok {
		return fmt.Errorf("exists with another key schema; want partition key %q of type S and no sort key", KeyAttribute)
	}
	return nil
}

// enableTTL turns on TTL on TTLAttribute unless it is already on (or being
// turned on); asking twice is an error in DynamoDB, hence the look first.
func enableTTL(ctx context.Context, client *dynamodb.Client, table string) error {
	desc, err := client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if unsupported(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if d := desc.TimeToLiveDescription; d != nil {
		switch d.TimeToLiveStatus {
		case types.TimeToLiveStatusEnabled, types.TimeToLiveStatusEnabling:
			if name := aws.ToString(d.AttributeName); name != TTLAttribute {
				return fmt.Errorf("TTL is on attribute %q, want %q", name, TTLAttribute)
			}
			return nil
		}
	}
	_, err = client.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName: aws.String(table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{
			AttributeName: aws.String(TTLAttribute),
			Enabled:       aws.Bool(true),
		},
	})
	if unsupported(err) {
		return nil
	}
	return err
}

// unsupported reports whether err says the service does not implement the
// operation at all, as DynamoDB emulators answer for the TTL API. It looks
// at the error code the service returned, not at any message text.
func unsupported(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "UnknownOperationException"
}
