package tunnel_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/ratelimit"
	"github.com/http-tunnel/tunnel/store"
)

// fakeRelay stands in for the serverless adapter's relay: it records what
// it was asked to deliver and answers as the agent would, or fails.
type fakeRelay struct {
	mu    sync.Mutex
	calls []store.Record
	paths []string
	fail  error
}

func (f *fakeRelay) Forward(w http.ResponseWriter, r *http.Request, rec store.Record) error {
	f.mu.Lock()
	f.calls = append(f.calls, rec)
	f.paths = append(f.paths, r.URL.RequestURI())
	err := f.fail
	f.mu.Unlock()
	if err != nil {
		return err
	}
	w.Header().Add("Set-Cookie", "a=1")
	w.Header().Add("Set-Cookie", "b=2")
	fmt.Fprintf(w, "relayed to %s", rec.ConnectionID)
	return nil
}

func TestRelayDeliversThroughTheGatewaysRouting(t *testing.T) {
	t.Parallel()
	st := &countingStore{Store: store.NewMemory()}
	relay := &fakeRelay{}
	lim := ratelimit.NewLocal(ratelimit.Limit{Events: 3, Period: time.Hour}, nil)
	gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, Store: st, Relay: relay, RequestLimiter: lim})
	// An agent behind API Gateway: only a record, no session here.
	if err := st.Put(context.Background(), store.Record{TunnelID: "apigwtunnel", ConnectionID: "conn-1=", Owner: "o", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	c := newClient(t)

	status, hdr, body := get(t, c, gw.URL+"/apigwtunnel/p/a%2Fb?x=1&x=2")
	if status != 200 || body != "relayed to conn-1=" || len(hdr.Values("Set-Cookie")) != 2 {
		t.Fatalf("relayed request: %d %q %v", status, body, hdr)
	}
	relay.mu.Lock()
	if got := relay.paths[0]; got != "/p/a%2Fb?x=1&x=2" {
		t.Errorf("relay got %q, want the stripped path and the raw query", got)
	}
	relay.mu.Unlock()

	// Unknown tunnels never reach the relay.
	status, hdr, body = get(t, c, gw.URL+"/nosuchtunnel/")
	wantError(t, status, hdr, body, http.StatusNotFound, tunnel.CodeTunnelNotFound)

	// A gone connection: 502, and the cached record is dropped, so the
	// next request reads the store again.
	relay.mu.Lock()
	relay.fail = &tunnel.Error{Code: tunnel.CodeAgentUnavailable, Message: "gone"}
	relay.mu.Unlock()
	before := st.gets.Load()
	status, hdr, body = get(t, c, gw.URL+"/apigwtunnel/")
	wantError(t, status, hdr, body, http.StatusBadGateway, tunnel.CodeAgentUnavailable)
	relay.mu.Lock()
	relay.fail = &tunnel.Error{Code: tunnel.CodeGatewayTimeout, Message: "slow"}
	relay.mu.Unlock()
	status, hdr, body = get(t, c, gw.URL+"/apigwtunnel/")
	wantError(t, status, hdr, body, http.StatusGatewayTimeout, tunnel.CodeGatewayTimeout)
	if st.gets.Load() == before {
		t.Error("the record stayed cached after the relay reported the agent gone")
	}

	// The gateway's rate limit applies before the relay: the fourth request
	// for this tunnel.
	status, hdr, body = get(t, c, gw.URL+"/apigwtunnel/")
	wantError(t, status, hdr, body, http.StatusTooManyRequests, tunnel.CodeRateLimited)
	relay.mu.Lock()
	defer relay.mu.Unlock()
	if len(relay.calls) != 3 {
		t.Errorf("relay called %d times, want 3", len(relay.calls))
	}
}
