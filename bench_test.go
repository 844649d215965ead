package tunnel_test

import (
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// benchTargets serves h directly on loopback and through a tunnel, and
// returns both base URLs: the baseline and the tunnel run under one
// benchmark, so their numbers compare.
func benchTargets(b *testing.B, h http.Handler) map[string]string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	tunneltest.Serve(b, l, h)
	gw := tunneltest.NewGateway(b, nil)
	ln := gw.Listen(b)
	tunneltest.Serve(b, ln, h)
	// A pool of one: the same tunnel, with a stream per request.
	pool := gw.Listen(b, tunnel.WithName("pool"), tunnel.WithPool())
	tunneltest.Serve(b, pool, h)
	return map[string]string{"direct": "http://" + l.Addr().String(), "tunnel": ln.URL(), "pool": pool.URL()}
}

// BenchmarkSmallRequests measures small GETs, in parallel, direct, through
// the tunnel, and through a pool (a stream per request). The full comparison, with latency percentiles, is
// go run ./examples/bench.
func BenchmarkSmallRequests(b *testing.B) {
	body := []byte("hello, world\n")
	targets := benchTargets(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	for _, name := range []string{"direct", "tunnel", "pool"} {
		b.Run(name, func(b *testing.B) {
			c := newClient(b)
			url := targets[name] + "/small"
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			parallelGets(b, c, url)
		})
	}
}

// BenchmarkBulkDownload measures 4 MiB downloads, direct and through the
// tunnel; MB/s is the figure to compare.
func BenchmarkBulkDownload(b *testing.B) {
	const size = 4 << 20
	data := make([]byte, size)
	targets := benchTargets(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(data) }))
	for _, name := range []string{"direct", "tunnel"} {
		b.Run(name, func(b *testing.B) {
			c := newClient(b)
			url := targets[name] + "/bulk"
			b.ReportAllocs()
			b.SetBytes(size)
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
