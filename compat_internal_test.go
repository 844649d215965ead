package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// An agent of protocol version 1 reads HTTP from the first byte of every
// stream: the gateway sends it no PROXY header, requests work, and the
// agent reports the unspecified address as the client's.
func TestVersionOneAgentGetsNoProxyHeader(t *testing.T) {
	t.Parallel()
	ln := startListener(t, startGateway(t, nil), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.RemoteAddr)
	}), withVersion(1))
	ln.mu.Lock()
	v := ln.current.est.Version
	ln.mu.Unlock()
	if v != 1 {
		t.Fatalf("agreed version %d, want 1", v)
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	for range 3 {
		resp, err := (&http.Client{Transport: tr}).Get(ln.URL() + "/x")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != "0.0.0.0:0" {
			t.Fatalf("version 1 agent: %s %q, want 200 and 0.0.0.0:0", resp.Status, b)
		}
		if _, _, err := net.SplitHostPort(string(b)); err != nil {
			t.Fatal(err)
		}
	}
}

// An agent that asks for a protected URL refuses a gateway too old to
// protect it (below version 3), rather than serve an open URL.
func TestProtectedURLNeedsVersionThree(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Listen(ctx, startGateway(t, nil), WithLogger(quietLog), withVersion(2), WithBasicAuth("u", "p"))
	if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), "version 2") {
		t.Fatalf("Listen with access against version 2: %v, want a refusal naming the version", err)
	}
}
