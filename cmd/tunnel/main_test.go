package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/internal/leakcheck"
)

// TestMain fails the package if a test leaves a goroutine running: every
// subcommand a test starts must have returned, and every client it used
// closed its connections.
//
// Run with pebbleEnv set, the binary is instead the ACME server of
// TestGatewayACME (see runPebble).
func TestMain(m *testing.M) {
	if os.Getenv(pebbleEnv) != "" {
		os.Exit(runPebble())
	}
	leakcheck.Main(m)
}

// waitTimeout bounds every wait of these tests for a subcommand's output
// or return. Loopback answers in milliseconds; this only matters when
// something is broken.
const waitTimeout = 10 * time.Second

// envMap returns a getenv that reads m, so that tests never depend on, or
// change, the process environment.
func envMap(m map[string]string) func(string) string {
	return func(name string) string { return m[name] }
}

// output is a subcommand's stdout or stderr that tests can wait on: every
// write wakes the waiters, so no test sleeps.
type output struct {
	mu      sync.Mutex
	buf     strings.Builder
	written chan struct{} // closed by the next write; nil when nobody waits
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	if o.written != nil {
		close(o.written)
		o.written = nil
	}
	return len(p), nil
}

// String returns everything written so far.
func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// find returns the first complete line containing substr, without its
// newline.
func (o *output) find(substr string) (string, bool) {
	for line := range strings.Lines(o.String()) {
		if strings.HasSuffix(line, "\n") && strings.Contains(line, substr) {
			return strings.TrimSuffix(line, "\n"), true
		}
	}
	return "", false
}

// line waits until a complete line containing substr has been written and
// returns it. It gives up when ended is closed (the subcommand returned:
// there will be no more output) or after waitTimeout.
func (o *output) line(substr string, ended <-chan struct{}) (string, bool) {
	var l string
	ok := o.until(func() bool {
		var found bool
		l, found = o.find(substr)
		return found
	}, ended)
	return l, ok
}

// until waits until done reports true of what has been written, and
// reports whether it did before ended was closed or waitTimeout passed.
// Every write wakes it, so no test sleeps.
func (o *output) until(done func() bool, ended <-chan struct{}) bool {
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		o.mu.Lock()
		if o.written == nil {
			o.written = make(chan struct{})
		}
		written := o.written
		o.mu.Unlock()
		if done() {
			return true
		}
		select {
		case <-written:
		case <-ended:
			return done()
		case <-timer.C:
			return false
		}
	}
}

// running is a subcommand running in a goroutine. The test's cleanup
// stops it if the test has not.
type running struct {
	name           string
	stdout, stderr *output
	cancel         context.CancelFunc
	done           chan struct{}
	err            error  // what the subcommand returned, once done is closed
	admin          string // a gateway's admin address (--admin-listen), if any
}

// start runs sub (command.gateway or command.agent) with args and env in
// a goroutine. hooks supplies the gateway's readiness hooks, if any; start
// fills in the rest of the command.
func start(t *testing.T, sub func(command, context.Context, []string) error, env map[string]string, hooks command, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{
		name:   strings.Join(args, " "),
		stdout: &output{},
		stderr: &output{},
		cancel: cancel,
		done:   make(chan struct{}),
	}
	c := hooks
	c.stdout, c.stderr, c.getenv = r.stdout, r.stderr, envMap(env)
	go func() {
		defer close(r.done)
		r.err = sub(c, ctx, args)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// wait waits for the subcommand to return by itself and returns its error.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(waitTimeout):
		t.Fatalf("%q did not return; stderr:\n%s", r.name, r.stderr)
		return nil
	}
}

// stop interrupts the subcommand, as SIGINT does, and returns its error.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	return r.wait(t)
}

// startGateway starts a gateway with args and returns it with the address
// it listens on; with --admin-listen, the admin address is in its admin
// field. args should include --listen 127.0.0.1:0.
func startGateway(t *testing.T, env map[string]string, args ...string) (*running, string) {
	t.Helper()
	addrs, admins := make(chan string, 1), make(chan string, 1)
	gw := start(t, command.gateway, env, command{
		listening:      func(a net.Addr) { addrs <- a.String() },
		adminListening: func(a net.Addr) { admins <- a.String() },
	}, args...)
	select {
	case addr := <-addrs:
		// The admin hook, if the gateway has an admin listener, ran
		// before the listening hook.
		select {
		case gw.admin = <-admins:
		default:
		}
		return gw, addr
	case <-gw.done:
		t.Fatalf("gateway %q returned before listening: %v\nstderr:\n%s", gw.name, gw.err, gw.stderr)
	case <-time.After(waitTimeout):
		t.Fatalf("gateway %q did not start; stderr:\n%s", gw.name, gw.stderr)
	}
	return nil, ""
}

// runAgent runs "tunnel agent" as command.agent does for run.
func runAgent(c command, ctx context.Context, args []string) error {
	return c.agent(ctx, "tunnel agent", args)
}

// startAgent starts an agent with args and returns it with the public URL
// of its forwarding line.
func startAgent(t *testing.T, env map[string]string, args ...string) (*running, string) {
	t.Helper()
	ag := start(t, runAgent, env, command{}, args...)
	line, ok := ag.stdout.line("Forwarding ", ag.done)
	fields := strings.Fields(line)
	if !ok || len(fields) != 4 || fields[2] != "->" {
		t.Fatalf("agent %q printed no forwarding line (returned: %v); stdout:\n%s\nstderr:\n%s", ag.name, ag.err, ag.stdout, ag.stderr)
	}
	return ag, fields[1]
}

// writeFile writes content to a new file in the test's directory and
// returns its path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testClient returns a client whose connections close with the test and
// whose dialer sends every name under localhost and example.test to
// 127.0.0.1, as browsers do for localhost and as DNS would for a gateway's
// domain. roots, if set, verify HTTPS servers instead of the system's.
func testClient(t *testing.T, roots *x509.CertPool) *http.Client {
	tr := &http.Transport{DialContext: loopbackDial, TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport: tr,
		Timeout:   waitTimeout,
		// The tests look at redirects themselves.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// loopbackDial dials 127.0.0.1 for hosts under localhost and example.test,
// and addr itself for others.
func loopbackDial(ctx context.Context, network, addr string) (net.Conn, error) {
	if host, port, err := net.SplitHostPort(addr); err == nil {
		for _, d := range []string{"localhost", "example.test"} {
			if host == d || strings.HasSuffix(host, "."+d) {
				addr = net.JoinHostPort("127.0.0.1", port)
			}
		}
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// get fetches url with a testClient, and returns the status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := testClient(t, nil).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}
