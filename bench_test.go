package tunnel_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// benchTargets serves h directly on loopback and through tunnels, and
// returns their base URLs: the baseline and the tunnels run under one
// benchmark, so their numbers compare. "tunnel" serves h on the Listener
// itself, over the raw transport, and "tunnel-ws" over WebSocket;
// "forward" is a Forwarder to the direct server, as the agent command
// runs with --inspect off (the byte relay), and "forward-ws" the same over
// WebSocket; "pool" is a pool of one.
func benchTargets(b *testing.B, h http.Handler) map[string]string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	tunneltest.Serve(b, l, h)
	gw := tunneltest.NewGateway(b, nil)
	ln := gw.Listen(b, tunnel.WithTransport(tunnel.TransportRaw))
	tunneltest.Serve(b, ln, h)
	ws := gw.Listen(b, tunnel.WithTransport(tunnel.TransportWebSocket))
	tunneltest.Serve(b, ws, h)
	// A pool of one: the same tunnel, with a stream per request.
	pool := gw.Listen(b, tunnel.WithName("pool"), tunnel.WithPool())
	tunneltest.Serve(b, pool, h)
	direct := "http://" + l.Addr().String()
	fw, err := tunnel.Forward(context.Background(), gw.URL, direct, tunnel.WithName("forward"), tunnel.WithTransport(tunnel.TransportRaw))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fw.Close() })
	fws, err := tunnel.Forward(context.Background(), gw.URL, direct, tunnel.WithName("forward-ws"), tunnel.WithTransport(tunnel.TransportWebSocket))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fws.Close() })
	return map[string]string{"direct": direct, "tunnel": ln.URL(), "tunnel-ws": ws.URL(), "forward": fw.URL(), "forward-ws": fws.URL(), "pool": pool.URL()}
}

// reportCPU reports the CPU time the process spent per operation of the
// benchmark so far, client, gateway and agent together (all three run in
// it): on a machine shared with other work, a steadier figure than ns/op.
// Call it at the start of the measured loop; it reports when b ends.
func reportCPU(b *testing.B) {
	start, ok := processCPU()
	if !ok {
		return
	}
	b.Cleanup(func() {
		if end, _ := processCPU(); b.N > 0 {
			b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
		}
	})
}

// BenchmarkSmallRequests measures small GETs, in parallel, direct, through
// the tunnel and a Forwarder on each transport, and through a pool (a
// stream per request). The full comparison, with latency percentiles, is go run
// ./examples/bench.
func BenchmarkSmallRequests(b *testing.B) {
	body := []byte("hello, world\n")
	targets := benchTargets(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	for _, name := range []string{"direct", "tunnel", "tunnel-ws", "forward", "forward-ws", "pool"} {
		b.Run(name, func(b *testing.B) {
			c := newClient(b)
			url := targets[name] + "/small"
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			reportCPU(b)
			parallelGets(b, c, url)
		})
	}
}

// BenchmarkBulkDownload measures 4 MiB downloads, direct and through the
// tunnel and a Forwarder on each transport; MB/s is the figure to compare.
func BenchmarkBulkDownload(b *testing.B) {
	const size = 4 << 20
	data := make([]byte, size)
	targets := benchTargets(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(data) }))
	for _, name := range []string{"direct", "tunnel", "tunnel-ws", "forward", "forward-ws"} {
		b.Run(name, func(b *testing.B) {
			c := newClient(b)
			url := targets[name] + "/bulk"
			b.ReportAllocs()
			b.SetBytes(size)
			reportCPU(b)
			for b.Loop() {
				resp, err := c.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if n != size {
					b.Fatalf("got %d bytes", n)
				}
			}
		})
	}
}
