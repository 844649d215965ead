package dynamolimit

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/http-tunnel/tunnel/store/dynamostore"
)

// CreateTable creates table with the layout a Limiter needs, for
// development and tests; production tables belong in infrastructure code
// (on-demand capacity, partition key KeyAttribute of type S, TTL on
// TTLAttribute).
//
// It creates an on-demand (PAY_PER_REQUEST) table with partition key
// KeyAttribute (S), waits until it is ACTIVE, and enables TTL on
// TTLAttribute, through dynamostore.CreateTable, whose errors it returns.
// It is idempotent: an existing table with that key schema is not an
// error, while one with another key schema is (wrapping
// dynamostore.ErrTableSchema). A service without the TTL API (DynamoDB
// emulators such as dynalite) is accepted; its items simply never expire.
// ctx bounds the whole call, waiting included; without a deadline, it
// gives up after 5 minutes.
func CreateTable(ctx context.Context, client *dynamodb.Client, table string) error {
	_, err := dynamostore.CreateTable(ctx, client, &dynamodb.CreateTableInput{
		TableName: aws.String(table),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(KeyAttribute), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(KeyAttribute), KeyType: types.KeyTypeHash},
		},
		BillingMode: types.BillingModePayPerRequest,
	}, TTLAttribute)
	return err
}
