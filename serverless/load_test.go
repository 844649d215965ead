package serverless

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/serverless/apigwtest"
)

// TestLoadSeparatedFunctions puts the HTTP side at its concurrency limit:
// as many public requests as the public function has instances, all
// waiting for their agent, and one more. With two functions (the
// template's design: the WebSocket routes on reserved concurrency of
// their own) the agent's answers still get an instance and every waiting
// request completes; the one more is throttled, 503. With one function
// for both, the answers find no free instance, are lost, and every
// waiting request ends in 504: the outage the separation prevents.
func TestLoadSeparatedFunctions(t *testing.T) {
	t.Parallel()
	const limit = 4
	for _, tt := range []struct {
		name       string
		separate   bool
		wantStatus int
	}{
		{"two functions", true, http.StatusOK},
		{"one function", false, http.StatusGatewayTimeout},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := gatewayConfig{responseTimeout: 5 * time.Second}
			if tt.separate {
				// Enough reserved instances for the answers of a full HTTP side.
				cfg.httpConcurrency, cfg.wsConcurrency = apigwtest.NewConcurrency(limit), apigwtest.NewConcurrency(limit)
			} else {
				shared := apigwtest.NewConcurrency(limit)
				cfg.httpConcurrency, cfg.wsConcurrency = shared, shared
			}
			g := newGateway(t, cfg)

			// The agent answers only once every public request waits.
			var mu sync.Mutex
			arrived := 0
			all, release := make(chan struct{}), make(chan struct{})
			ln, _ := g.agent(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				if arrived++; arrived == limit {
					close(all)
				}
				mu.Unlock()
				select {
				case <-release:
				case <-r.Context().Done():
				}
				w.Write([]byte("ok"))
			}))

			statuses := make(chan int, limit)
			for range limit {
				go func() {
					resp, _ := g.do(t, http.MethodGet, ln.URL()+"/wait", nil, nil)
					statuses <- resp.StatusCode
				}()
			}
			select {
			case <-all:
			case <-time.After(10 * time.Second):
				t.Fatal("the public requests did not all reach the agent")
			}
			// The HTTP side is at its limit: one more is throttled.
			resp, body := g.do(t, http.MethodGet, ln.URL()+"/more", nil, nil)
			if resp.StatusCode != http.StatusServiceUnavailable || string(body) != `{"message":"Service Unavailable"}` {
				t.Errorf("request beyond the limit: %d %s, want API Gateway's 503", resp.StatusCode, body)
			}
			close(release)
			for range limit {
				if got := <-statuses; got != tt.wantStatus {
					t.Errorf("waiting request: status %d, want %d", got, tt.wantStatus)
				}
			}
			s := g.emu.Stats()
			t.Logf("%s: %d throttled invocations, %d $default invocations", tt.name, s.Throttles, s.DefaultInvocations)
			if !tt.separate && s.Throttles < limit+1 {
				t.Errorf("%d throttles, want the extra request's and every answer's", s.Throttles)
			}
		})
	}
}
