package serverless

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
)

// TestConcurrentRequestsOverOneTunnel sends 100 requests at once through
// one agent connection; every response must belong to its own request.
func TestConcurrentRequestsOverOneTunnel(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayConfig{})
	ln, _ := g.agent(t, echo)
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			payload := []byte(fmt.Sprintf("request %d", i))
			resp, body := g.do(t, http.MethodPost, fmt.Sprintf("%s/r?n=%d", ln.URL(), i), payload, nil)
			switch {
			case resp.StatusCode != http.StatusOK:
				errs <- fmt.Errorf("request %d: status %d %q", i, resp.StatusCode, body)
			case string(body) != string(payload):
				errs <- fmt.Errorf("request %d: got body %q", i, body)
			case resp.Header.Get("X-URI") != fmt.Sprintf("/r?n=%d", i):
				errs <- fmt.Errorf("request %d: answered for %q", i, resp.Header.Get("X-URI"))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
