package tunnel_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// wipeableStore is a shared store that can lose every record at once, as
// a Redis that restarts empty does.
type wipeableStore struct {
	mu sync.Mutex
	m  *store.Memory
}

func (w *wipeableStore) s() *store.Memory {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.m
}

func (w *wipeableStore) wipe() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.m = store.NewMemory()
}

func (w *wipeableStore) Put(ctx context.Context, r store.Record) error { return w.s().Put(ctx, r) }
func (w *wipeableStore) Get(ctx context.Context, id string) (store.Record, error) {
	return w.s().Get(ctx, id)
}
func (w *wipeableStore) Members(ctx context.Context, id string) ([]store.Record, error) {
	return w.s().Members(ctx, id)
}
func (w *wipeableStore) GetByConnection(ctx context.Context, c string) (store.Record, error) {
	return w.s().GetByConnection(ctx, c)
}
func (w *wipeableStore) Renew(ctx context.Context, id, c string, t time.Time) error {
	return w.s().Renew(ctx, id, c, t)
}
func (w *wipeableStore) Release(ctx context.Context, id, c string) error {
	return w.s().Release(ctx, id, c)
}
func (w *wipeableStore) Delete(ctx context.Context, id, c string) error {
	return w.s().Delete(ctx, id, c)
}

// A store that loses its records loses nothing else: the node holding a
// live tunnel writes its record again at once (a lookup that misses it
// does, and so does the node within about a second by itself), the tunnel
// keeps answering, and its name is not handed to another identity.
func TestStoreThatLosesItsRecords(t *testing.T) {
	t.Parallel()
	st := &wipeableStore{m: store.NewMemory()}
	gw, ev := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, Store: st, Cache: noCache{},
		Authenticator: tunnel.NewStaticTokens("alice", "mallory")})
	ln := listen(t, gw, tunnel.WithToken("alice"), tunnel.WithName("precious"))
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "alice's") }))
	next(t, ev.Connected, "connect")
	c := newClient(t)

	// A lookup that misses the record writes it again and is answered.
	st.wipe()
	if status, _, body := get(t, c, ln.URL()+"/"); status != 200 || body != "alice's" {
		t.Fatalf("right after the store lost its records: %d %q, want alice's tunnel", status, body)
	}
	if _, err := st.Get(context.Background(), "precious"); err != nil {
		t.Fatalf("the record was not written again: %v", err)
	}

	// Without any request, the node notices the loss by itself.
	st.wipe()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := st.Get(context.Background(), "precious"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the node did not write its tunnel's record again within 10 s of the loss")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// While the record is missing, another identity still cannot take the
	// live tunnel's name.
	st.wipe()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := tunnel.Listen(ctx, gw.URL, tunnel.WithLogger(quiet), tunnel.WithToken("mallory"), tunnel.WithName("precious")); !errors.Is(err, tunnel.ErrNameInUse) {
		t.Fatalf("another identity claiming a live tunnel's name after the loss: %v, want name_in_use", err)
	}
	if status, _, body := get(t, c, ln.URL()+"/"); status != 200 || body != "alice's" {
		t.Fatalf("after the claim: %d %q, want alice's tunnel still", status, body)
	}
}

// An agent told name_in_use when it comes back (another identity took the
// name while it was away) keeps asking, with backoff, instead of stopping;
// it gets the name back once the other agent leaves.
func TestAgentKeepsAskingForItsName(t *testing.T) {
	t.Parallel()
	gw, ev := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, LeaseTTL: 300 * time.Millisecond,
		Authenticator: tunnel.NewStaticTokens("alice", "mallory")})
	d := &cuttableDialer{}
	var refusals, reconnected = make(chan struct{}, 100), make(chan struct{}, 1)
	var away atomic.Bool // set while alice must stay away
	alice := listen(t, gw, tunnel.WithToken("alice"), tunnel.WithName("contested"), tunnel.WithBackoff(time.Millisecond, 20*time.Millisecond),
		tunnel.WithDialer(func(ctx context.Context, network, addr string) (net.Conn, error) {
			if away.Load() {
				return nil, &net.OpError{Op: "dial", Net: network, Err: errRefused}
			}
			return d.Dial(ctx, network, addr)
		}),
		tunnel.WithEvents(func(e tunnel.Event) {
			switch {
			case e.Kind == tunnel.EventReconnecting && e.Attempt > 1:
				select {
				case refusals <- struct{}{}:
				default:
				}
			case e.Kind == tunnel.EventConnected && e.Attempt > 0:
				reconnected <- struct{}{}
			}
		}))
	next(t, ev.Connected, "alice connects")
	away.Store(true)
	d.Cut()
	next(t, ev.Disconnected, "alice's connection ends")

	// Past the lease, mallory takes the name.
	var mallory *tunnel.Listener
	deadline := time.Now().Add(10 * time.Second)
	for mallory == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ln, err := tunnel.Listen(ctx, gw.URL, tunnel.WithLogger(quiet), tunnel.WithToken("mallory"), tunnel.WithName("contested"))
		cancel()
		switch {
		case err == nil:
			mallory = ln
		case !errors.Is(err, tunnel.ErrNameInUse) || time.Now().After(deadline):
			t.Fatalf("mallory's claim after alice's lease: %v", err)
		}
	}
	next(t, ev.Connected, "mallory connects")
	away.Store(false) // alice may reconnect now, and is told name_in_use
	for range 3 {
		select {
		case <-refusals:
		case <-time.After(30 * time.Second):
			t.Fatal("alice stopped asking for her name")
		}
	}
	select {
	case <-alice.Done():
		t.Fatalf("alice's listener stopped on name_in_use: %v", alice.Err())
	default:
	}
	mallory.Close()
	select {
	case <-reconnected:
	case <-time.After(30 * time.Second):
		t.Fatal("alice did not get her name back after mallory left")
	}
	if alice.ID() != "contested" {
		t.Errorf("alice's tunnel is %q", alice.ID())
	}
}
