package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/http-tunnel/tunnel/store"
)

func ExampleNewMemory() {
	ctx := context.Background()
	s := store.NewMemory()

	// An agent connects and claims "myapp".
	rec := store.Record{
		TunnelID:     "myapp",
		ConnectionID: "conn-1",
		Owner:        "alice",
		ExpiresAt:    time.Now().Add(time.Minute),
	}
	if err := s.Put(ctx, rec); err != nil {
		fmt.Println(err)
		return
	}

	// Another owner cannot take the name while the record is live.
	err := s.Put(ctx, store.Record{TunnelID: "myapp", ConnectionID: "conn-2", Owner: "bob"})
	fmt.Println("bob:", errors.Is(err, store.ErrConflict))

	// The same owner reconnecting takes the tunnel over, and the old
	// connection loses it.
	rec.ConnectionID = "conn-3"
	if err := s.Put(ctx, rec); err != nil {
		fmt.Println(err)
		return
	}
	got, _ := s.Get(ctx, "myapp")
	fmt.Println("served by:", got.ConnectionID)
	err = s.Renew(ctx, "myapp", "conn-1", time.Now().Add(time.Minute))
	fmt.Println("old connection renews:", errors.Is(err, store.ErrNotFound))
	// Output:
	// bob: true
	// served by: conn-3
	// old connection renews: true
}

// An agent's connection drops without a goodbye. The gateway releases its
// tunnel: the name stays taken until the lease ends, except for the same
// identity, whose restarted agent (a new resume secret, so a new Owner)
// gets it back at once.
func ExampleMemory_Release() {
	ctx := context.Background()
	s := store.NewMemory()
	rec := store.Record{
		TunnelID:     "myapp",
		ConnectionID: "conn-1",
		Owner:        "secret-hash-1",
		Subject:      "alice@example.com",
		ExpiresAt:    time.Now().Add(time.Minute),
	}
	if err := s.Put(ctx, rec); err != nil {
		fmt.Println(err)
		return
	}
	if err := s.Release(ctx, "myapp", "conn-1"); err != nil {
		fmt.Println(err)
		return
	}

	err := s.Put(ctx, store.Record{TunnelID: "myapp", ConnectionID: "conn-2", Owner: "h2", Subject: "bob@example.com"})
	fmt.Println("bob:", errors.Is(err, store.ErrConflict))
	err = s.Put(ctx, store.Record{TunnelID: "myapp", ConnectionID: "conn-3", Owner: "h3", Subject: "alice@example.com"})
	fmt.Println("alice restarted:", err)
	got, _ := s.Get(ctx, "myapp")
	fmt.Println("served by:", got.ConnectionID, "released:", got.Released)
	// Output:
	// bob: true
	// alice restarted: <nil>
	// served by: conn-3 released: false
}

// Three agents of one identity serve "myapp" together as a pool: each
// connection has a record of its own, and each leaves on its own.
func ExampleMemory_Members() {
	ctx := context.Background()
	s := store.NewMemory()
	for _, conn := range []string{"conn-1", "conn-2", "conn-3"} {
		err := s.Put(ctx, store.Record{TunnelID: "myapp", ConnectionID: conn, Owner: "alice", Pool: true})
		if err != nil {
			fmt.Println(err)
			return
		}
	}
	// The name is the pool's: neither another owner nor a plain record
	// of its own owner can take it.
	err := s.Put(ctx, store.Record{TunnelID: "myapp", ConnectionID: "conn-4", Owner: "bob", Pool: true})
	fmt.Println("bob joins:", errors.Is(err, store.ErrConflict))
	err = s.Put(ctx, store.Record{TunnelID: "myapp", ConnectionID: "conn-5", Owner: "alice"})
	fmt.Println("alice, not pooled:", errors.Is(err, store.ErrConflict))

	if err := s.Delete(ctx, "myapp", "conn-2"); err != nil {
		fmt.Println(err)
		return
	}
	members, _ := s.Members(ctx, "myapp")
	var conns []string
	for _, m := range members {
		conns = append(conns, m.ConnectionID)
	}
	slices.Sort(conns) // Members has no order
	fmt.Println("members:", conns)
	// Output:
	// bob joins: true
	// alice, not pooled: true
	// members: [conn-1 conn-3]
}

func ExampleNewLRU() {
	ctx := context.Background()
	s := store.NewMemory()
	cache := store.NewLRU(1000, 10*time.Second)

	// lookup is how a gateway resolves a public request: the cache first,
	// the store on a miss.
	lookup := func(tunnelID string) (store.Record, error) {
		if r, ok := cache.Get(ctx, tunnelID); ok {
			return r, nil
		}
		r, err := s.Get(ctx, tunnelID)
		if err != nil {
			return store.Record{}, err
		}
		cache.Add(ctx, r)
		return r, nil
	}

	s.Put(ctx, store.Record{TunnelID: "myapp", ConnectionID: "conn-1", Owner: "alice"})
	for range 3 {
		r, err := lookup("myapp")
		fmt.Println(r.ConnectionID, err)
	}
	// When forwarding to the cached connection fails, the gateway drops the
	// entry so that the next lookup reads the store again.
	cache.Remove(ctx, "myapp")
	lookup("myapp")
	fmt.Printf("%+v\n", cache.Stats())
	// Output:
	// conn-1 <nil>
	// conn-1 <nil>
	// conn-1 <nil>
	// {Hits:2 Misses:2}
}
