// Command benchproc measures the tunnel between real processes: the
// gateway (cmd/tunnel) and the agent (cmd/tunnel-agent), built from this
// repository, run as separate processes in front of an origin server
// (another process, this program run as one), and wrk (or, without it, a
// Go client in this process) loads them on loopback. Rounds alternate
// between the origin directly and the tunnel. For each target it prints
// requests/s, p50/p99 latency, MB/s, the ratio to direct with the spread
// of the rounds, and the CPU seconds each process spent per 10,000
// requests (per GB for bulk), read from /proc/<pid>/stat.
//
//	go run ./examples/benchproc                        # small, bulk, sequential; 10 s per target
//	go run ./examples/benchproc -profile-dir /tmp/prof # and CPU profiles of gateway and agent
//	go run ./examples/benchproc -memory 1000,10000     # memory per idle tunnel instead
//
// With -memory it measures memory at scale instead: one gateway process,
// and one agent-side process holding N tunnels opened with tunnel.Listen,
// each served by http.Serve; it prints goroutines, heap and RSS of both,
// empty and with N idle tunnels, and the difference per tunnel.
//
// The binaries are built with a file added to their main package (go
// build -overlay, see pprofhook.go) that serves net/http/pprof on a
// loopback port of the benchmark's choosing; the repository is not
// changed.
package main

import (
	"bufio"
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	role := flag.String("role", "", "internal: run as the origin server (origin) or the agent-side process of -memory (agents)")
	listen := flag.String("listen", "", "internal: the origin's address (with -role origin)")
	gatewayURL := flag.String("gateway", "", "internal: the gateway's URL (with -role agents)")
	transport := flag.String("transport", "", "internal: the agents' transport, as tunnel.WithTransport (with -role agents)")

	duration := flag.Duration("duration", 10*time.Second, "how long each scenario runs per target, split into -rounds rounds")
	nrounds := flag.Int("rounds", 5, "measured rounds per scenario and target, alternating between targets")
	scenarios := flag.String("scenarios", "small,bulk,sequential", "comma-separated scenarios to run")
	transports := flag.String("transports", "raw,websocket", "comma-separated agent transports to measure, one agent process each, passed as --<transport-flag>=<value> (with -memory, as tunnel.WithTransport); empty: the agent's default alone, for a build without --transport")
	transportFlag := flag.String("transport-flag", "transport", "the agent's flag that chooses its transport")
	loadgen := flag.String("load", "", "load generator: wrk or go (default wrk when installed)")
	profileDir := flag.String("profile-dir", "", "write CPU profiles of the gateway and agent during the tunnel rounds of the small scenario to this directory")
	memory := flag.String("memory", "", "measure memory per idle tunnel at these comma-separated tunnel counts instead, such as 1000,10000")
	settle := flag.Duration("settle", 5*time.Second, "with -memory: how long to let the processes settle before measuring")
	exchange := flag.Bool("exchange", true, "with -memory: measure again after one 256 KiB request and response through every tunnel")
	idle := flag.Duration("idle", 30*time.Second, "with -memory: how long to measure the CPU of idle tunnels (heartbeats, lease renewals)")
	repo := flag.String("repo", "", "root of the repository to build the binaries from (default: the directory of go.work)")
	rev := flag.String("rev", "", "build the binaries from this git revision of the repository (exported with git archive) instead of its working tree")
	binDir := flag.String("bin-dir", "", "use the binaries (tunnel, tunnel-agent, benchproc) in this directory, built by an earlier run with the same flag; build them there if absent (default: build into a temporary directory)")
	flag.Parse()

	var err error
	switch *role {
	case "origin":
		err = serveOrigin(*listen)
	case "agents":
		err = runAgents(*gatewayURL, *transport)
	case "":
		err = run(config{
			duration: *duration, rounds: *nrounds, scenarios: split(*scenarios),
			transports: split(*transports), transportFlag: *transportFlag,
			load: *loadgen, profileDir: *profileDir, repo: *repo, rev: *rev, binDir: *binDir,
			memory: *memory, settle: *settle, idle: *idle, exchange: *exchange,
		})
	default:
		err = fmt.Errorf("unknown -role %q", *role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchproc:", err)
		os.Exit(1)
	}
}

type config struct {
	duration      time.Duration
	rounds        int
	scenarios     []string
	transports    []string
	transportFlag string
	load          string
	profileDir    string
	repo          string
	rev           string
	binDir        string
	dir           string // temporary: binaries unless binDir, and the processes' logs
	memory        string
	settle        time.Duration
	idle          time.Duration
	exchange      bool
}

func split(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func run(c config) error {
	root := c.repo
	if root == "" && c.binDir == "" {
		var err error
		if root, err = repoRoot(); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "benchproc")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// An interrupted run leaves no binaries (about 80 MB) or logs behind;
	// the child processes die with benchproc (procAttr).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; ok {
			os.RemoveAll(dir)
			os.Exit(130)
		}
	}()
	c.dir = dir
	bins, err := binariesIn(root, c.rev, cmp.Or(c.binDir, dir))
	if err != nil {
		return err
	}
	if c.memory != "" {
		var counts []int
		for _, s := range split(c.memory) {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				return fmt.Errorf("-memory: %q is not a tunnel count", s)
			}
			counts = append(counts, n)
		}
		return runMemory(context.Background(), bins, counts, c)
	}
	return runSpeed(bins, c)
}

// runAgents is the agent-side process of -memory. It reads commands on
// stdin, one a line: "open N" opens N more tunnels; "exchange" sends a
// request and its response, 256 KiB each, through every tunnel; "stats"
// does nothing more. After each it writes one line, "ok", once the tunnels are up. Its
// runtime statistics are served by pprofhook.go. At the end of stdin it
// closes every tunnel and exits.
func runAgents(gateway, transport string) error {
	a := newAgents(gateway, transport)
	defer a.close()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 2 && f[0] == "open":
			n, err := strconv.Atoi(f[1])
			if err != nil {
				return fmt.Errorf("open: %w", err)
			}
			if err := a.open(n); err != nil {
				return err
			}
		case len(f) == 1 && f[0] == "exchange":
			if err := a.exchange(); err != nil {
				return err
			}
		case len(f) == 1 && f[0] == "stats":
		default:
			return fmt.Errorf("unknown command %q", in.Text())
		}
		fmt.Println("ok")
	}
	return in.Err()
}

// haveWrk reports whether wrk is installed.
func haveWrk() bool {
	_, err := exec.LookPath("wrk")
	return err == nil
}
