package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/store/redisstore"
	"github.com/http-tunnel/tunnel/store/redisstore/redistest"
)

// A pool across nodes on Redis: two members on node a, one on node b.
// Requests through both nodes reach all three, and each node sends some to
// the other node's members; when one of a's members
// stops (the lossless way: Listener.CloseWithContext, then the server's
// Shutdown) in the middle of 1,500 requests, none fails, and after its
// stop it answers nothing.
func TestPoolAcrossNodes(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	st := redisstore.New(rdb, redisstore.Options{Prefix: redistest.Prefix(t, rdb)})
	nodes := startCluster(t, st, 2)
	a, b := nodes[0], nodes[1]

	type member struct {
		ln      *tunnel.Listener
		srv     *http.Server
		served  chan struct{}
		answers atomic.Int64
		stopped atomic.Bool
		late    atomic.Int64
		hopped  atomic.Int64 // requests that came in through the other node
	}
	start := func(node *clusterNode, i int, other string) *member {
		m := &member{served: make(chan struct{})}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ln, err := tunnel.Listen(ctx, node.url, tunnel.WithLogger(quiet), tunnel.WithName("api"), tunnel.WithPool())
		if err != nil {
			t.Fatal(err)
		}
		m.ln = ln
		m.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if m.stopped.Load() {
				m.late.Add(1)
			}
			if r.Header.Get("X-Test-Via") == other {
				m.hopped.Add(1)
			}
			io.Copy(io.Discard, r.Body)
			m.answers.Add(1)
			fmt.Fprintf(w, "member-%d", i)
		})}
		go func() {
			defer close(m.served)
			m.srv.Serve(ln)
		}()
		t.Cleanup(func() {
			m.srv.Close()
			ln.Close()
			<-m.served
		})
		next(t, node.connected, fmt.Sprint("member ", i))
		return m
	}
	members := []*member{start(a, 0, "b"), start(a, 1, "b"), start(b, 2, "a")}
	path := "/" + members[0].ln.ID() + "/"

	const requests, workers, stopAt = 1500, 12, 500
	c := newClient(t)
	var (
		n, failed atomic.Int64
		mu        sync.Mutex
		firstErr  string
		once      sync.Once
		stopped   = make(chan struct{})
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for {
				i := n.Add(1)
				if i > requests {
					return
				}
				if i == stopAt {
					once.Do(func() {
						go func() {
							defer close(stopped)
							m := members[1]
							ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
							defer cancel()
							if err := m.ln.CloseWithContext(ctx); err != nil {
								t.Errorf("member 1: CloseWithContext: %v", err)
							}
							// Every request routed to it has been answered:
							// any later one is late.
							m.stopped.Store(true)
							m.srv.Shutdown(ctx)
						}()
					})
				}
				via := (int(i) + w) % 2
				node := []*clusterNode{a, b}[via]
				var req *http.Request
				if i%2 == 0 {
					req, _ = http.NewRequest(http.MethodGet, fmt.Sprintf("%s%sget/%d", node.url, path, i), nil)
				} else {
					req, _ = http.NewRequest(http.MethodPost, fmt.Sprintf("%s%spost/%d", node.url, path, i), strings.NewReader(strings.Repeat("y", 1024)))
				}
				req.Header.Set("X-Test-Via", []string{"a", "b"}[via])
				resp, err := c.Do(req)
				msg := ""
				if err != nil {
					msg = err.Error()
				} else {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "member-") {
						msg = fmt.Sprintf("%d %s", resp.StatusCode, body)
					}
				}
				if msg != "" {
					failed.Add(1)
					mu.Lock()
					if firstErr == "" {
						firstErr = fmt.Sprintf("request %d via %s: %s", i, node.url, msg)
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	<-stopped
	answers := []int64{members[0].answers.Load(), members[1].answers.Load(), members[2].answers.Load()}
	t.Logf("answers per member: %v (member 1 stopped at request %d)", answers, stopAt)
	if failed.Load() > 0 {
		t.Errorf("%d of %d requests failed; the first: %s", failed.Load(), requests, firstErr)
	}
	if late := members[1].late.Load(); late > 0 {
		t.Errorf("the stopped member answered %d requests after its stop", late)
	}
	for i, n := range answers {
		if n == 0 {
			t.Errorf("member %d answered nothing; requests through both nodes should reach every member", i)
		}
	}
	// Each node routes to the other's members, not only to its own.
	if fromB := members[0].hopped.Load() + members[1].hopped.Load(); fromB == 0 {
		t.Error("no request through node b reached a member on node a")
	}
	if fromA := members[2].hopped.Load(); fromA == 0 {
		t.Error("no request through node a reached the member on node b")
	}
}
