package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// poolAgent is one agent of a pool, serving through its own http.Server,
// and counting what it answered.
type poolAgent struct {
	ln      *tunnel.Listener
	srv     *http.Server
	served  chan struct{}
	answers atomic.Int64
	stopped atomic.Bool // set once Shutdown returned
	late    atomic.Int64
}

func startPoolAgent(t *testing.T, gw *tunneltest.Gateway, i int, opts ...tunnel.Option) *poolAgent {
	t.Helper()
	a := &poolAgent{served: make(chan struct{})}
	a.ln = gw.Listen(t, append([]tunnel.Option{tunnel.WithName("api"), tunnel.WithPool()}, opts...)...)
	a.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.stopped.Load() {
			a.late.Add(1)
		}
		io.Copy(io.Discard, r.Body)
		a.answers.Add(1)
		fmt.Fprintf(w, "agent-%d", i)
	})}
	go func() {
		defer close(a.served)
		a.srv.Serve(a.ln)
	}()
	t.Cleanup(func() {
		a.srv.Close()
		<-a.served
	})
	return a
}

// stop stops the agent as a program does on SIGTERM, the lossless way
// (Listener.CloseWithContext): the Listener first, so that the gateway
// routes nothing new here and the server answers what it had routed, then
// the server.
func (a *poolAgent) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.ln.CloseWithContext(ctx); err != nil {
		t.Errorf("CloseWithContext: %v", err)
	}
	if err := a.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	a.stopped.Store(true)
}

// Three agents of one identity serve one name together. Requests are
// spread over them; when one stops gracefully in the middle of 3,000
// requests (GETs and POSTs with bodies, 16 at a time), not one request
// fails, and the stopped agent answers nothing after its stop returned.
func TestPoolSpreadsAndSurvivesAStop(t *testing.T) {
	t.Parallel()
	eachTransport(t, testPoolSpreadsAndSurvivesAStop)
}

func testPoolSpreadsAndSurvivesAStop(t *testing.T, tr tunnel.Option) {
	gw, _ := gateway(t, &tunnel.Server{Logger: debugLog(t)})
	agents := []*poolAgent{startPoolAgent(t, gw, 0, tr), startPoolAgent(t, gw, 1, tr), startPoolAgent(t, gw, 2, tr)}
	url := agents[0].ln.URL()
	for _, a := range agents[1:] {
		if a.ln.URL() != url {
			t.Fatalf("pool members got different URLs: %s and %s", url, a.ln.URL())
		}
	}

	const requests, workers, stopAt = 3000, 16, 1000
	c := newClient(t)
	var (
		next     atomic.Int64
		failures atomic.Int64
		mu       sync.Mutex
		firstErr error
		stopOnce sync.Once
		stopped  = make(chan struct{})
		before   [3]int64 // answers per agent when the stop began
	)
	do := func(n int64) error {
		var resp *http.Response
		var err error
		if n%2 == 0 {
			resp, err = c.Get(fmt.Sprintf("%s/get/%d", url, n))
		} else {
			resp, err = c.Post(fmt.Sprintf("%s/post/%d", url, n), "text/plain", strings.NewReader(strings.Repeat("x", 2048)))
		}
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(b), "agent-") {
			return fmt.Errorf("request %d: %d %q", n, resp.StatusCode, b)
		}
		return nil
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				n := next.Add(1)
				if n > requests {
					return
				}
				if n == stopAt {
					stopOnce.Do(func() {
						go func() {
							for i, a := range agents {
								before[i] = a.answers.Load()
							}
							agents[1].stop(t)
							close(stopped)
						}()
					})
				}
				if err := do(n); err != nil {
					failures.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	<-stopped
	answers := [3]int64{agents[0].answers.Load(), agents[1].answers.Load(), agents[2].answers.Load()}
	t.Logf("answers per agent: %v (agent 1 stopped after %d requests; %v answered before)", answers, stopAt, before)
	if failures.Load() > 0 {
		t.Errorf("%d of %d requests failed; the first: %v", failures.Load(), requests, firstErr)
	}
	if late := agents[1].late.Load(); late > 0 {
		t.Errorf("the stopped agent answered %d requests after its stop returned", late)
	}
	// Before the stop, each of the three had a fair share (least in
	// flight over three equal agents: about a third each).
	for i, n := range before {
		if n < stopAt/3/3 {
			t.Errorf("agent %d answered %d of the first %d requests; want a share of them", i, n, stopAt)
		}
	}
	if answers[0]+answers[2]-before[0]-before[2] < requests-stopAt-workers {
		t.Errorf("after the stop, agents 0 and 2 answered %d requests; want the rest", answers[0]+answers[2]-before[0]-before[2])
	}
}

// Who may share a name: agents of one identity that all ask for a pool.
func TestPoolRules(t *testing.T) {
	t.Parallel()
	auth := tunnel.AuthenticatorFunc(func(_ context.Context, r *http.Request) (tunnel.Identity, error) {
		switch tok := tunnel.TokenFromRequest(r); tok {
		case "alice-1", "alice-2":
			return tunnel.Identity{Subject: "alice"}, nil
		case "bob":
			return tunnel.Identity{Subject: "bob"}, nil
		}
		return tunnel.Identity{}, tunnel.ErrUnauthorized
	})
	gw, _ := gateway(t, &tunnel.Server{Logger: quiet, Authenticator: auth})
	listen := func(token, name string, pool bool) (*tunnel.Listener, error) {
		opts := []tunnel.Option{tunnel.WithLogger(quiet), tunnel.WithToken(token), tunnel.WithName(name)}
		if pool {
			opts = append(opts, tunnel.WithPool())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ln, err := tunnel.Listen(ctx, gw.URL, opts...)
		if err == nil {
			t.Cleanup(func() { ln.Close() })
		}
		return ln, err
	}
	mustListen := func(token, name string, pool bool) *tunnel.Listener {
		t.Helper()
		ln, err := listen(token, name, pool)
		if err != nil {
			t.Fatalf("%s, %s, pool %v: %v", token, name, pool, err)
		}
		return ln
	}
	wantInUse := func(token, name string, pool bool) {
		t.Helper()
		if _, err := listen(token, name, pool); !errors.Is(err, tunnel.ErrNameInUse) {
			t.Errorf("%s asking for %s (pool %v): %v; want ErrNameInUse", token, name, pool, err)
		}
	}

	// Two tokens of alice's join one pool.
	mustListen("alice-1", "api", true)
	mustListen("alice-2", "api", true)
	// Bob may not join it, with or without a pool; alice's single agent
	// may not take it either.
	wantInUse("bob", "api", true)
	wantInUse("bob", "api", false)
	wantInUse("alice-1", "api", false)
	// A name one agent holds alone is not a pool's, even its owner's.
	mustListen("alice-1", "web", false)
	wantInUse("alice-1", "web", true)

	// A pool needs a name.
	if _, err := tunnel.Listen(context.Background(), gw.URL, tunnel.WithToken("alice-1"), tunnel.WithPool()); err == nil || !strings.Contains(err.Error(), "WithName") {
		t.Errorf("WithPool without WithName: %v", err)
	}
}

// When the last member of a pool leaves, the name is free again; a member
// that stays keeps it.
func TestPoolNameFreedByTheLastMember(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, &tunnel.Server{Logger: quiet})
	a := startPoolAgent(t, gw, 0)
	b := startPoolAgent(t, gw, 1)
	a.stop(t)
	code, _, body := get(t, newClient(t), b.ln.URL()+"/")
	if code != http.StatusOK || body != "agent-1" {
		t.Fatalf("after one member left: %d %q", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := tunnel.Listen(ctx, gw.URL, tunnel.WithLogger(quiet), tunnel.WithName("api")); !errors.Is(err, tunnel.ErrNameInUse) {
		t.Fatalf("a single agent took the name of a pool with a member: %v", err)
	}
	b.stop(t)
	ln, err := tunnel.Listen(ctx, gw.URL, tunnel.WithLogger(quiet), tunnel.WithName("api"))
	if err != nil {
		t.Fatalf("the name of a pool whose members all left: %v", err)
	}
	ln.Close()
}
