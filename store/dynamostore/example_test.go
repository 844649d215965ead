package dynamostore_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/store/dynamostore"
)

// The example talks to a local emulator, so it has no output to check; it
// shows the calls a gateway makes over a tunnel's life.
func Example() {
	ctx := context.Background()
	client := dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String("http://127.0.0.1:8000"),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	opts := dynamostore.Options{} // the default table and index names
	if err := dynamostore.CreateTables(ctx, client, opts); err != nil {
		log.Fatal(err)
	}
	s := dynamostore.New(client, opts)

	// An agent connects to node-a and claims "myapp" for a minute.
	rec := store.Record{
		TunnelID:     "myapp",
		ConnectionID: "conn-1",
		Owner:        "alice",
		Node:         "node-a",
		PublicURL:    "https://myapp.tunnel.example",
		CreatedAt:    time.Now(),
		ExpiresAt:    time.Now().Add(time.Minute),
	}
	if err := s.Put(ctx, rec); errors.Is(err, store.ErrConflict) {
		log.Fatal("the name is in use")
	} else if err != nil {
		log.Fatal(err)
	}

	// Any node resolves a public request for myapp.tunnel.example.
	got, err := s.Get(ctx, "myapp")
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("forward to %s on %s", got.ConnectionID, got.Node)

	// node-a keeps the claim alive while the agent stays connected...
	if err := s.Renew(ctx, "myapp", "conn-1", time.Now().Add(time.Minute)); errors.Is(err, store.ErrNotFound) {
		log.Print("lost the tunnel: close the agent connection")
	}
	// ...deletes it when the agent leaves on purpose, or, when the
	// connection is cut, releases it: the name stays taken until it
	// expires, except for the same Subject's next agent.
	if err := s.Delete(ctx, "myapp", "conn-1"); err != nil {
		log.Fatal(err)
	}

	// Somewhere, periodically: reclaim the space of expired rows.
	stats, err := s.Cleanup(ctx)
	if err != nil {
		log.Print(err)
	}
	log.Printf("cleanup deleted %d rows", stats.Deleted)
}

// CreateTable makes a table for development or tests and waits until it
// can be used, here one keyed by id with TTL on expiresAt. Against an
// emulator without the TTL API the TTL step is left out, not an error.
func ExampleCreateTable() {
	ctx := context.Background()
	client := dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String("http://127.0.0.1:8000"),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
	})
	desc, err := dynamostore.CreateTable(ctx, client, &dynamodb.CreateTableInput{
		TableName:   aws.String("sessions"),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash},
		},
	}, "expiresAt")
	if errors.Is(err, dynamostore.ErrTableSchema) {
		log.Fatal("a sessions table with other keys is in the way")
	} else if err != nil {
		log.Fatal(err)
	}
	log.Printf("table %s is %s", aws.ToString(desc.TableName), desc.TableStatus)
}
