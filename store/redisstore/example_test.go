package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/store/redisstore"
)

// Two gateway nodes share tunnel records through one Redis server. The
// example needs a server at localhost:6379, so it is compiled but not run.
func ExampleNew() {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer client.Close()

	// Each node makes its own Store; the same Prefix makes them share.
	nodeA := redisstore.New(client, redisstore.Options{Prefix: "tunnel:"})
	nodeB := redisstore.New(client, redisstore.Options{Prefix: "tunnel:"})

	// An agent connected to node A claims "myapp" for a minute; node A
	// renews the record while the connection lasts.
	rec := store.Record{
		TunnelID:     "myapp",
		ConnectionID: "conn-1",
		Owner:        "alice",
		Node:         "node-a",
		PublicURL:    "https://myapp.tunnel.example",
		CreatedAt:    time.Now(),
		ExpiresAt:    time.Now().Add(time.Minute),
	}
	if err := nodeA.Put(ctx, rec); err != nil {
		log.Fatal(err)
	}

	// A public request for myapp reaches node B, which finds the node to
	// forward it to.
	got, err := nodeB.Get(ctx, "myapp")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("forward to:", got.Node)

	// Another owner cannot take the name while the record is live.
	err = nodeB.Put(ctx, store.Record{TunnelID: "myapp", ConnectionID: "conn-2", Owner: "bob"})
	fmt.Println("name in use:", errors.Is(err, store.ErrConflict))
}
