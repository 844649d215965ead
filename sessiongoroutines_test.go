package tunnel_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
)

// TestIdleSessionGoroutines pins what an idle tunnel costs the gateway in
// goroutines, on each transport: the session's reader and writer, yamux's
// keepalive, and the agent's request goroutine, which runs the session and
// reads its control streams; plus one for the whole Server, which renews
// the leases of its tunnels. A gateway holds one session per tunnel, so
// one goroutine more here is 10,000 more at 10,000 tunnels.
func TestIdleSessionGoroutines(t *testing.T) {
	const perSession, perServer = 4, 1
	for _, tr := range []tunnel.Transport{tunnel.TransportRaw, tunnel.TransportWebSocket} {
		t.Run(string(tr), func(t *testing.T) {
			const n = 3
			connected := make(chan tunnel.Tunnel, n)
			url, label := labelledGateway(t, &tunnel.Server{
				Routing: tunnel.RoutePath, Logger: quiet,
				OnConnect: func(tn tunnel.Tunnel) { connected <- tn },
			})
			for range n {
				ln, err := tunnel.Listen(context.Background(), url, tunnel.WithTransport(tr), tunnel.WithLogger(quiet))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
			}
			// OnConnect runs on the session's goroutine once the session
			// is up: every goroutine it needs has been started by then.
			for range n {
				next(t, connected, "a session")
			}
			if got, profile := gatewayGoroutines(t, label); got != n*perSession+perServer {
				t.Fatalf("%d idle sessions hold %d gateway goroutines, want %d (%d each, %d for the server):\n%s",
					n, got, n*perSession+perServer, perSession, perServer, profile)
			}
		})
	}
}

// gatewayLabels numbers the gateways of labelledGateway, so that each has
// a label of its own: the goroutines of an earlier gateway, still ending
// after its Shutdown, are never counted for a later one.
var gatewayLabels atomic.Int64

// labelledGateway serves srv on loopback so that its request goroutines,
// and the goroutines they start, carry a profiler label "side" of their
// own, and returns its URL and that label's value.
func labelledGateway(t *testing.T, srv *tunnel.Server) (url, label string) {
	t.Helper()
	label = "gateway-" + strconv.FormatInt(gatewayLabels.Add(1), 10)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pprof.Do(r.Context(), pprof.Labels("side", label), func(context.Context) { srv.ServeHTTP(w, r) })
	})}
	go hs.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		hs.Close()
	})
	return "http://" + ln.Addr().String(), label
}

// gatewayGoroutines counts the goroutines labelled side=label, and
// returns their profile.
func gatewayGoroutines(t *testing.T, label string) (int, string) {
	t.Helper()
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		t.Fatal(err)
	}
	// A header line, then records separated by blank lines; each begins
	// "N @ pcs" and names its labels on a line "# labels: {...}".
	_, records, _ := strings.Cut(b.String(), "\n")
	total := 0
	var profile strings.Builder
	for rec := range strings.SplitSeq(records, "\n\n") {
		if !strings.Contains(rec, `# labels: {"side":"`+label+`"}`) {
			continue
		}
		count, _, _ := strings.Cut(rec, " ")
		k, err := strconv.Atoi(count)
		if err != nil {
			first, _, _ := strings.Cut(rec, "\n")
			t.Fatalf("goroutine profile record %q: %v", first, err)
		}
		total += k
		profile.WriteString(rec + "\n\n")
	}
	return total, profile.String()
}
