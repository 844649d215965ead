package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/store/dynamostore"
	"github.com/http-tunnel/tunnel/store/dynamostore/dynamotest"
	"github.com/http-tunnel/tunnel/store/redisstore"
	"github.com/http-tunnel/tunnel/store/redisstore/redistest"
	"github.com/http-tunnel/tunnel/tunneltest"
)

const nodeSecret = "cluster-secret"

// clusterNode is one gateway node of a test cluster.
type clusterNode struct {
	srv       *tunnel.Server
	url       string
	connected chan tunnel.Tunnel
	stopped   bool
}

// startCluster starts n gateway nodes on loopback sharing st. configure,
// if given, adjusts node i's Server before it starts.
func startCluster(t *testing.T, st store.Store, n int, configure ...func(i int, s *tunnel.Server)) []*clusterNode {
	t.Helper()
	nodes := make([]*clusterNode, n)
	for i := range nodes {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		nd := &clusterNode{url: "http://" + l.Addr().String(), connected: make(chan tunnel.Tunnel, 16)}
		nd.srv = &tunnel.Server{
			Routing:    tunnel.RoutePath,
			BaseURL:    "http://tunnel.test", // one public name, as behind a load balancer
			Store:      st,
			NodeURL:    nd.url,
			NodeSecret: nodeSecret,
			Logger:     debugLog(t),
			OnConnect:  func(tn tunnel.Tunnel) { nd.connected <- tn },
		}
		for _, f := range configure {
			f(i, nd.srv)
		}
		go nd.srv.Serve(l)
		t.Cleanup(func() { nd.stop(t) })
		nodes[i] = nd
	}
	return nodes
}

// stop shuts the node down; its agents are told to go away.
func (nd *clusterNode) stop(t *testing.T) {
	if nd.stopped {
		return
	}
	nd.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := nd.srv.Shutdown(ctx); err != nil {
		t.Errorf("shutdown %s: %v", nd.url, err)
	}
}

// testCluster runs the multi-node scenario on a shared store: every node
// serves every tunnel, the owner of one dies, its agent resumes on another
// node, and no response ever comes from the wrong agent.
func testCluster(t *testing.T, st store.Store) {
	nodes := startCluster(t, st, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	client := newClient(t)

	type agent struct {
		name string
		ln   *tunnel.Listener
	}
	newAgent := func(name string, first *clusterNode, others ...*clusterNode) agent {
		var fallbacks []string
		for _, o := range others {
			fallbacks = append(fallbacks, o.url)
		}
		ln, err := tunnel.Listen(context.Background(), first.url, tunnel.WithLogger(quiet),
			tunnel.WithFallbackGateways(fallbacks...), tunnel.WithBackoff(10*time.Millisecond, 100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s %s", name, r.URL.Path, r.URL.RawQuery)
		}))
		next(t, first.connected, name+" connecting")
		return agent{name, ln}
	}
	one := newAgent("agent-one", a, b, c)
	two := newAgent("agent-two", b, c, a)

	n := 0
	check := func(via *clusterNode, ag agent) {
		t.Helper()
		n++
		path := fmt.Sprintf("/%s/req-%d", ag.ln.ID(), n)
		status, _, body := get(t, client, via.url+path+"?n="+fmt.Sprint(n))
		want := fmt.Sprintf("%s /req-%d n=%d", ag.name, n, n)
		if status != 200 || body != want {
			t.Fatalf("via %s: %d %q, want %q", via.url, status, body, want)
		}
	}
	for _, via := range nodes {
		for _, ag := range []agent{one, two} {
			check(via, ag)
		}
	}

	// A request that claims to come from a node needs the secret.
	req, _ := http.NewRequest("GET", a.url+"/"+one.ln.ID()+"/x", nil)
	req.Header.Set("X-Tunnel-Node-Secret", "wrong")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantError(t, resp.StatusCode, resp.Header, string(body), http.StatusForbidden, tunnel.CodeForbidden)

	// The node holding agent one dies; the agent resumes on its fallback.
	url := one.ln.URL()
	a.stop(t)
	moved := next(t, b.connected, "agent one resuming on node b")
	if moved.ID != one.ln.ID() || one.ln.URL() != url {
		t.Fatalf("resumed as %q at %q, want %q at %q", moved.ID, one.ln.URL(), one.ln.ID(), url)
	}
	// Node c still has node a cached for agent one: one failed hop, then
	// a fresh read, inside the same request.
	for _, via := range []*clusterNode{b, c, c, b} {
		for _, ag := range []agent{one, two} {
			check(via, ag)
		}
	}
}

func TestClusterOnRedis(t *testing.T) {
	t.Parallel()
	rdb := redistest.Client(t)
	testCluster(t, redisstore.New(rdb, redisstore.Options{Prefix: redistest.Prefix(t, rdb)}))
}

func TestClusterOnDynamoDB(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	names := dynamotest.Tables(t, client, func(ctx context.Context, n []string) error {
		return dynamostore.CreateTables(ctx, client, dynamostore.Options{ConnectionsTable: n[0], PendingTable: n[1]})
	}, "cluster-connections", "cluster-pending")
	testCluster(t, dynamostore.New(client, dynamostore.Options{ConnectionsTable: names[0], PendingTable: names[1]}))
}

func TestNodeSecretRequired(t *testing.T) {
	t.Parallel()
	// A single node without a secret refuses every node-to-node request.
	gw, _ := gateway(t, nil)
	req, _ := http.NewRequest("GET", gw.URL+"/anything/x", nil)
	req.Header.Set("X-Tunnel-Node-Secret", "")
	resp, err := newClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantError(t, resp.StatusCode, resp.Header, strings.TrimSpace(string(body))+"\n", http.StatusForbidden, tunnel.CodeForbidden)
}

// TestHopIsCheckedAgainstTheStore: a node that receives a hop while its own
// cache names another node for the tunnel (stale around a takeover) reads
// the store before answering 421, so the request is served rather than
// failing after the sender's one retry.
func TestHopIsCheckedAgainstTheStore(t *testing.T) {
	t.Parallel()
	st := store.NewMemory()
	staleCache := store.NewLRU(0, 0)
	nodes := startCluster(t, st, 2, func(i int, s *tunnel.Server) {
		if i == 1 {
			s.Cache = staleCache
		}
	})
	a, b := nodes[0], nodes[1]
	ln, err := tunnel.Listen(context.Background(), b.url, tunnel.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "served by the agent") }))
	next(t, b.connected, "agent connecting to b")

	rec, err := st.Get(context.Background(), ln.ID())
	if err != nil || rec.Node != b.url {
		t.Fatalf("record %+v, %v; want one naming node b", rec, err)
	}
	stale := rec
	stale.Node, stale.ConnectionID = a.url, "an-old-connection"
	staleCache.Add(context.Background(), stale)

	status, _, body := get(t, newClient(t), a.url+"/"+ln.ID()+"/x")
	if status != 200 || body != "served by the agent" {
		t.Fatalf("via node a: %d %q, want the agent's answer", status, body)
	}
	if got, ok := staleCache.Get(context.Background(), ln.ID()); !ok || got.Node != b.url {
		t.Errorf("node b's cache after the hop: %+v %v, want the fresh record", got, ok)
	}
}
