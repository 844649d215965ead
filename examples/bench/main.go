// Command bench measures the tunnel against a direct loopback baseline, in
// one process: the same handler is served directly and through a gateway
// and tunnel, over each of the agent's transports (the raw upgrade,
// "tunnel", and WebSocket, "tunnel-ws"), and the same load is run against
// each, in alternating rounds. It prints requests/s, p50/p99 latency and
// MB/s for each, and each tunnel's ratio to direct with the spread of the
// rounds.
//
//	go run ./examples/bench                  # all scenarios, 5 s each
//	go run ./examples/bench -duration 10s -scenarios small
//	go run ./examples/bench -transport raw   # one transport only
//
// Scenarios:
//
//	small       64 concurrent connections, GET of a 13-byte body
//	bulk        4 concurrent connections, GET of a 16 MiB body
//	sequential  one connection, one request at a time (added latency)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/examples/benchkit"
)

const rounds = 5

var only *string

// tunnelTargets maps -transport to the tunnels it measures.
var tunnelTargets = map[string][]tunnel.Transport{
	"both":      {tunnel.TransportRaw, tunnel.TransportWebSocket},
	"raw":       {tunnel.TransportRaw},
	"websocket": {tunnel.TransportWebSocket},
}

func main() {
	duration := flag.Duration("duration", 5*time.Second, "how long each scenario runs per target")
	scenarios := flag.String("scenarios", "small,bulk,sequential", "comma-separated scenarios to run")
	only = flag.String("only", "", "run only this target (direct, tunnel or tunnel-ws), for profiling")
	transport := flag.String("transport", "both", "the agent's transports to measure: both, raw (target tunnel) or websocket (target tunnel-ws)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	memprofile := flag.String("memprofile", "", "write an allocation profile of the whole run to this file")
	flag.Parse()

	if *memprofile != "" {
		runtime.MemProfileRate = 64 << 10
		defer func() {
			f, err := os.Create(*memprofile)
			if err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}

	transports, ok := tunnelTargets[*transport]
	if !ok {
		fmt.Fprintf(os.Stderr, "bench: -transport %q: want both, raw or websocket\n", *transport)
		os.Exit(2)
	}
	if err := run(*duration, strings.Split(*scenarios, ","), transports); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(d time.Duration, scenarios []string, transports []tunnel.Transport) error {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := benchkit.Handler()

	// Direct: the handler on a loopback port.
	dl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	direct := &http.Server{Handler: h}
	go direct.Serve(dl)
	defer direct.Close()

	// Tunnel: a gateway on loopback, and the handler behind a tunnel.
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	gw := &tunnel.Server{Logger: quiet}
	go gw.Serve(gl)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		gw.Shutdown(ctx)
	}()
	targets := []struct{ name, base string }{
		{"direct", "http://" + dl.Addr().String()},
	}
	for _, tr := range transports {
		ln, err := tunnel.Listen(context.Background(), "http://"+gl.Addr().String(), tunnel.WithLogger(quiet), tunnel.WithTransport(tr))
		if err != nil {
			return err
		}
		defer ln.Close()
		go http.Serve(ln, h)
		name := "tunnel"
		if tr == tunnel.TransportWebSocket {
			name = "tunnel-ws"
		}
		targets = append(targets, struct{ name, base string }{name, ln.URL()})
	}
	fmt.Printf("GOMAXPROCS=%d, %v per target and scenario\n\n", runtime.GOMAXPROCS(0), d)
	fmt.Printf("%-11s %-9s %12s %10s %10s %10s\n", "scenario", "target", "req/s", "p50", "p99", "MB/s")
	for _, sc := range scenarios {
		var conc int
		var path string
		switch sc {
		case "small":
			conc, path = 64, "/small"
		case "bulk":
			conc, path = 4, "/bulk"
		case "sequential":
			conc, path = 1, "/small"
		default:
			return fmt.Errorf("unknown scenario %q", sc)
		}
		// Warm up connections and caches, then measure in alternating
		// rounds, so that a slow spell of the machine weighs on every
		// target alike.
		res := make([]result, len(targets))
		perRound := make([][]float64, len(targets)) // requests/s of each round
		for _, tg := range targets {
			if *only == "" || *only == tg.name {
				load(tg.base+path, conc, d/10)
			}
		}
		for round := 0; round < rounds; round++ {
			for i, tg := range targets {
				if *only != "" && *only != tg.name {
					continue
				}
				r := load(tg.base+path, conc, d/rounds)
				res[i].add(r)
				perRound[i] = append(perRound[i], r.rps())
			}
		}
		for i, tg := range targets {
			if *only != "" && *only != tg.name {
				continue
			}
			slices.Sort(res[i].latencies)
			if res[i].errors > 0 {
				return fmt.Errorf("%s %s: %d failed requests", sc, tg.name, res[i].errors)
			}
			fmt.Printf("%-11s %-9s %12.0f %10s %10s %10.1f\n", sc, tg.name, res[i].rps(), fmtDur(res[i].p(50)), fmtDur(res[i].p(99)), res[i].mbps())
		}
		if *only != "" {
			continue
		}
		// The spread of the rounds' ratios shows how much the machine
		// drifted during the run.
		for i := 1; i < len(targets); i++ {
			lo, hi := 0.0, 0.0
			for r := range perRound[0] {
				ratio := 100 * perRound[i][r] / perRound[0][r]
				if r == 0 || ratio < lo {
					lo = ratio
				}
				hi = max(hi, ratio)
			}
			fmt.Printf("%-11s %-9s %11.1f%% %10s %10s %9.1f%%   added p50 %s, rounds %.0f-%.0f%%\n", sc, "ratio"+strings.TrimPrefix(targets[i].name, "tunnel"),
				100*res[i].rps()/res[0].rps(), "", "", 100*res[i].mbps()/res[0].mbps(), fmtDur(res[i].p(50)-res[0].p(50)), lo, hi)
		}
		fmt.Println()
	}
	return nil
}

// result is what one load run measured.
type result struct {
	elapsed   time.Duration
	requests  int
	bytes     int64
	errors    int
	latencies []time.Duration // sorted
}

// add merges another run's measurements into r.
func (r *result) add(o result) {
	r.elapsed += o.elapsed
	r.requests += o.requests
	r.bytes += o.bytes
	r.errors += o.errors
	r.latencies = append(r.latencies, o.latencies...)
}

func (r result) rps() float64  { return float64(r.requests) / r.elapsed.Seconds() }
func (r result) mbps() float64 { return float64(r.bytes) / r.elapsed.Seconds() / 1e6 }

// p returns the q-th percentile latency.
func (r result) p(q int) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[min(len(r.latencies)-1, len(r.latencies)*q/100)]
}

// load runs benchkit's Go client against url.
func load(url string, conc int, d time.Duration) result {
	r := benchkit.Load(url, conc, d)
	return result{elapsed: r.Elapsed, requests: r.Requests, bytes: r.Bytes, errors: r.Errors, latencies: r.Latencies}
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}
