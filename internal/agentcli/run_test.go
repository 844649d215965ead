package agentcli

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/leakcheck"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// TestMain fails the package if a test leaves a goroutine running: every
// agent a test starts must have returned, and every client it used closed
// its connections.
func TestMain(m *testing.M) {
	leakcheck.Main(m)
}

// waitTimeout bounds every wait of these tests. Loopback answers in
// milliseconds; this only matters when something is broken.
const waitTimeout = 10 * time.Second

// output is the agent's stdout or stderr that tests can wait on: every
// write wakes the waiters, so no test sleeps.
type output struct {
	mu      sync.Mutex
	buf     strings.Builder
	written chan struct{} // closed by the next write
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

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// lines returns the complete lines written so far.
func (o *output) lines() []string {
	s := o.String()
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return strings.Split(s[:i], "\n")
	}
	return nil
}

// wait waits until a complete line satisfies match, and returns it. It
// gives up when done is closed (no more output will come) or after
// waitTimeout.
func (o *output) wait(t *testing.T, done <-chan struct{}, match func(string) bool) string {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		o.mu.Lock()
		if o.written == nil {
			o.written = make(chan struct{})
		}
		written := o.written
		o.mu.Unlock()
		for _, l := range o.lines() {
			if match(l) {
				return l
			}
		}
		select {
		case <-written:
		case <-done:
			for _, l := range o.lines() {
				if match(l) {
					return l
				}
			}
			t.Fatalf("the agent returned without the line; output:\n%s", o)
		case <-timer.C:
			t.Fatalf("no such line within %v; output:\n%s", waitTimeout, o)
		}
	}
}

// agent is a Command running in a goroutine; the test's cleanup stops it.
type agent struct {
	stdout, stderr output
	cancel         context.CancelFunc
	done           chan struct{}
	err            error // once done is closed
}

// startAgent runs the agent command with args and env.
func startAgent(t *testing.T, env map[string]string, args ...string) *agent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a := &agent{cancel: cancel, done: make(chan struct{})}
	c := Command{Name: "tunnel-agent", Stdout: &a.stdout, Stderr: &a.stderr, Getenv: envMap(env)}
	go func() {
		defer close(a.done)
		a.err = c.Run(ctx, args)
	}()
	t.Cleanup(func() {
		cancel()
		<-a.done
	})
	return a
}

// stop interrupts the agent, as SIGINT does, and returns what it returned.
func (a *agent) stop(t *testing.T) error {
	t.Helper()
	a.cancel()
	select {
	case <-a.done:
		return a.err
	case <-time.After(waitTimeout):
		t.Fatalf("the agent did not return; stderr:\n%s", &a.stderr)
		return nil
	}
}

// event is one JSON line of the agent.
type event struct {
	Time       time.Time `json:"time"`
	Event      string    `json:"event"`
	URL        string    `json:"url"`
	TunnelID   string    `json:"tunnel_id"`
	Local      string    `json:"local"`
	Method     string    `json:"method"`
	Path       string    `json:"path"`
	Status     *int      `json:"status"`
	DurationMS *float64  `json:"duration_ms"`
	Error      string    `json:"error"`
	ID         uint64    `json:"id"`
	ReplayOf   uint64    `json:"replay_of"`
}

// waitEvent waits for a JSON line that match accepts and returns it.
func (a *agent) waitEvent(t *testing.T, match func(event) bool) event {
	t.Helper()
	var found event
	a.stdout.wait(t, a.done, func(l string) bool {
		var e event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("stdout line is not JSON: %q", l)
		}
		found = e
		return match(e)
	})
	return found
}

// client returns a client whose connections close with the test.
func client(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitTimeout}
}

// get fetches url and returns the status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := client(t).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// echo is a local service that answers with the protocol, method and path
// it received.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "%s %s %s", r.Proto, r.Method, r.URL.Path)
})

// TestRunJSON forwards a local service and checks the JSON lines: the
// forwarding line, a request line for a request the local service answers
// and one for a request it cannot answer (gone: 502), and the goodbye.
func TestRunJSON(t *testing.T) {
	t.Parallel()
	gw := tunneltest.NewGateway(t, nil)
	local := httptest.NewServer(echo)
	t.Cleanup(local.Close)

	a := startAgent(t, nil, "--gateway", gw.URL, "--name", "json-app", "--json", "--inspect", "127.0.0.1:0", local.URL)
	fwd := a.waitEvent(t, func(e event) bool { return e.Event == "forwarding" })
	if want := gw.URL + "/json-app"; fwd.URL != want || fwd.TunnelID != "json-app" || fwd.Local != local.URL || fwd.Time.IsZero() {
		t.Errorf("forwarding line %+v; want url %s, tunnel_id json-app, local %s", fwd, want, local.URL)
	}
	page := a.waitEvent(t, func(e event) bool { return e.Event == "inspector" })

	before := time.Now()
	if status, body := get(t, fwd.URL+"/hello?token=s3cret"); status != http.StatusOK || body != "HTTP/1.1 GET /hello" {
		t.Fatalf("GET through the tunnel = %d %q", status, body)
	}
	req := a.waitEvent(t, func(e event) bool { return e.Event == "request" })
	if req.ID != 1 || req.Method != "GET" || req.Path != "/hello" || req.Status == nil || *req.Status != 200 ||
		req.DurationMS == nil || *req.DurationMS <= 0 || req.Time.Before(before.Add(-time.Second)) {
		t.Errorf("request line %+v; want #1 GET /hello 200 with a duration", req)
	}

	// The inspector's page has it, and replays it to the local service:
	// the replay has a line of its own.
	if status, body := get(t, page.URL+"/api/exchanges/1"); status != http.StatusOK || !strings.Contains(body, `"/hello?token=s3cret"`) {
		t.Errorf("inspector: GET api/exchanges/1 = %d %q; want the request", status, body)
	}
	resp, err := client(t).Post(page.URL+"/api/exchanges/1/replay", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("inspector: replay = %d; want 200", resp.StatusCode)
	}
	replay := a.waitEvent(t, func(e event) bool { return e.Event == "request" && e.ReplayOf != 0 })
	if replay.ReplayOf != 1 || replay.Path != "/hello" || *replay.Status != 200 {
		t.Errorf("replay line %+v; want a replay of #1 answered 200", replay)
	}

	local.Close()
	if status, _ := get(t, fwd.URL+"/gone"); status != http.StatusBadGateway {
		t.Errorf("GET with the local service down = %d; want 502", status)
	}
	failed := a.waitEvent(t, func(e event) bool { return e.Event == "request" && e.Path == "/gone" })
	if failed.Status == nil || *failed.Status != http.StatusBadGateway {
		t.Errorf("request line %+v; want status 502", failed)
	}

	if err := a.stop(t); err != nil {
		t.Errorf("agent returned %v after interrupt; want nil", err)
	}
	lines := a.stdout.lines()
	if last := lines[len(lines)-1]; !strings.Contains(last, `"event":"closed"`) || strings.Contains(last, "error") {
		t.Errorf("last line %q; want a closed event without an error", last)
	}
	// The log, in JSON too, has the failed request's warning and nothing
	// below WARN.
	if resp, err := client(t).Get(page.URL + "/api/exchanges"); err == nil {
		resp.Body.Close()
		t.Errorf("the inspector answers %d after the agent returned; want it closed", resp.StatusCode)
	}
	for _, l := range a.stderr.lines() {
		var rec struct{ Level, Code string }
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.Level != "WARN" || rec.Code != string(tunnel.CodeLocalServiceUnavailable) {
			t.Errorf("stderr line %q; want only the warning about the local service (%v)", l, err)
		}
	}
}

// TestRunPool runs two agents with --pool under one name: both get its
// URL, requests reach both local services, and when one is interrupted
// the other serves every request; without --pool the second agent is
// refused the name.
func TestRunPool(t *testing.T) {
	t.Parallel()
	gw := tunneltest.NewGateway(t, nil)
	arrived := make(chan string, 2)
	release := make(chan struct{})
	serve := func(who string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/held" {
				arrived <- who
				<-release
			}
			io.WriteString(w, who)
		}))
		t.Cleanup(s.Close)
		return s
	}
	a := startAgent(t, nil, "--gateway", gw.URL, "--name", "pooled", "--pool", "--json", "--inspect", "off", serve("a").URL)
	b := startAgent(t, nil, "--gateway", gw.URL, "--name", "pooled", "--pool", "--json", "--inspect", "off", serve("b").URL)
	fa := a.waitEvent(t, func(e event) bool { return e.Event == "forwarding" })
	fb := b.waitEvent(t, func(e event) bool { return e.Event == "forwarding" })
	if fa.URL != fb.URL || fa.URL != gw.URL+"/pooled" {
		t.Fatalf("pooled agents got URLs %s and %s; want both %s/pooled", fa.URL, fb.URL, gw.URL)
	}

	// The gateway sends each request to the member with the fewest in
	// flight: while one request is held by one member, the next goes to
	// the other.
	var wg sync.WaitGroup
	held := func() {
		wg.Go(func() {
			if status, body := get(t, fa.URL+"/held"); status != http.StatusOK {
				t.Errorf("GET through the pool = %d %q", status, body)
			}
		})
	}
	held()
	first := <-arrived
	held()
	second := <-arrived
	close(release)
	wg.Wait()
	if first == second {
		t.Errorf("two requests in flight at once both went to agent %s; want one to each member", first)
	}

	// A third agent of the same token without --pool is refused the name,
	// with the advice the command gives.
	c := startAgent(t, nil, "--gateway", gw.URL, "--name", "pooled", "--json", "--inspect", "off", "3000")
	<-c.done
	if !errors.Is(c.err, tunnel.ErrNameInUse) {
		t.Errorf("an agent without --pool: Run = %v; want name_in_use", c.err)
	}

	if err := a.stop(t); err != nil {
		t.Errorf("agent a returned %v after interrupt; want nil", err)
	}
	for i := range 20 {
		if status, body := get(t, fb.URL+"/"); status != http.StatusOK || body != "b" {
			t.Fatalf("request %d after a stopped = %d %q; want 200 from b", i, status, body)
		}
	}
}

// TestRunRefused checks that a refused token ends the command with an
// error that says what to do, and that the token shows nowhere.
func TestRunRefused(t *testing.T) {
	t.Parallel()
	gw := tunneltest.NewGateway(t, &tunnel.Server{Authenticator: tunnel.NewStaticTokens("right-token")})
	const wrong = "wrong-token-5d1c"
	a := startAgent(t, map[string]string{EnvTTFToken: wrong}, "--gateway", gw.URL, "--inspect", "off", "3000")
	<-a.done
	if !errors.Is(a.err, tunnel.ErrUnauthorized) || !strings.Contains(a.err.Error(), "check --token") {
		t.Errorf("Run = %v; want an unauthorized error that names --token", a.err)
	}
	if strings.Contains(a.err.Error()+a.stdout.String()+a.stderr.String(), wrong) {
		t.Errorf("the token shows in the error or the output")
	}
	var out strings.Builder
	if code := Exit(&out, "tunnel-agent", a.err); code != 1 {
		t.Errorf("exit status %d; want 1", code)
	}
}

// TestRunLocalTLS forwards an HTTPS local service whose certificate no
// system trusts: refused by default (502), served with --local-ca naming
// its CA, and with --local-insecure.
func TestRunLocalTLS(t *testing.T) {
	t.Parallel()
	gw := tunneltest.NewGateway(t, nil)
	local := httptest.NewUnstartedServer(echo)
	local.EnableHTTP2 = true
	local.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake of the first case
	local.StartTLS()
	t.Cleanup(local.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: local.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name       string
		flags      []string
		wantStatus int
	}{
		{"verified by the system", nil, http.StatusBadGateway},
		{"--local-ca", []string{"--local-ca", ca}, http.StatusOK},
		{"--local-insecure", []string{"--local-insecure"}, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := startAgent(t, nil, append(append([]string{"--gateway", gw.URL, "--print-url", "--inspect", "off"}, tt.flags...), local.URL)...)
			url := a.stdout.wait(t, a.done, func(string) bool { return true })
			status, body := get(t, url+"/tls")
			if status != tt.wantStatus {
				t.Errorf("GET = %d %q; want %d", status, body, tt.wantStatus)
			}
			if status == http.StatusOK && body != "HTTP/2.0 GET /tls" {
				t.Errorf("the local service saw %q; want HTTP/2 over TLS", body)
			}
			if err := a.stop(t); err != nil {
				t.Errorf("agent: %v", err)
			}
		})
	}
}

// TestRunH2C forwards an h2c:// local service: it must be spoken to in
// HTTP/2 without TLS, as a gRPC server on a local port is.
func TestRunH2C(t *testing.T) {
	t.Parallel()
	gw := tunneltest.NewGateway(t, nil)
	local := httptest.NewUnstartedServer(echo)
	local.Config.Protocols = new(http.Protocols)
	local.Config.Protocols.SetUnencryptedHTTP2(true)
	local.Start()
	t.Cleanup(local.Close)

	a := startAgent(t, nil, "--gateway", gw.URL, "--print-url", "--inspect", "off", "h2c://"+local.Listener.Addr().String())
	url := a.stdout.wait(t, a.done, func(string) bool { return true })
	if status, body := get(t, url+"/grpc"); status != http.StatusOK || body != "HTTP/2.0 GET /grpc" {
		t.Errorf("GET = %d %q; want the local service to see HTTP/2", status, body)
	}
	if err := a.stop(t); err != nil {
		t.Errorf("agent: %v", err)
	}
}

// TestRunProxy connects through --proxy to a gateway whose name does not
// resolve: only the proxy, which sends every host to the gateway, can
// reach it.
func TestRunProxy(t *testing.T) {
	t.Parallel()
	gw := tunneltest.NewGateway(t, nil)
	gwAddr := strings.TrimPrefix(gw.URL, "http://")
	var proxied atomic.Int32
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, gwAddr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	proxy := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			proxied.Add(1)
			pr.Out.URL = pr.In.URL // absolute-form: the proxy's client names the target
			pr.Out.Host = pr.In.Host
		},
		Transport: tr,
	})
	t.Cleanup(proxy.Close)
	local := httptest.NewServer(echo)
	t.Cleanup(local.Close)

	_, port, _ := net.SplitHostPort(gwAddr)
	a := startAgent(t, nil, "--gateway", "http://gateway.invalid:"+port, "--proxy", proxy.URL, "--print-url", "--inspect", "off", local.URL)
	url := a.stdout.wait(t, a.done, func(string) bool { return true })
	if proxied.Load() == 0 {
		t.Errorf("the agent did not go through the proxy")
	}
	// The tunnel's URL names the gateway as the agent reached it.
	url = strings.Replace(url, "gateway.invalid", "127.0.0.1", 1)
	if status, body := get(t, url+"/via-proxy"); status != http.StatusOK || body != "HTTP/1.1 GET /via-proxy" {
		t.Errorf("GET = %d %q", status, body)
	}
	if err := a.stop(t); err != nil {
		t.Errorf("agent: %v", err)
	}

	// --proxy none connects directly: the name does not resolve.
	b := startAgent(t, nil, "--gateway", "http://gateway.invalid:"+port, "--proxy", "none", "--inspect", "off", local.URL)
	<-b.done
	if b.err == nil {
		t.Errorf("with --proxy none, the agent reached a gateway that does not resolve")
	}
}

// TestRunLocalCAMissing checks that an unreadable --local-ca stops the
// command before it connects.
func TestRunLocalCAMissing(t *testing.T) {
	t.Parallel()
	a := startAgent(t, nil, "--gateway", "http://127.0.0.1:1", "--inspect", "off", "--local-ca", filepath.Join(t.TempDir(), "none.pem"), "https://localhost:8443")
	<-a.done
	if a.err == nil || !strings.Contains(a.err.Error(), "--local-ca") {
		t.Errorf("Run = %v; want an error naming --local-ca", a.err)
	}
	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, []byte("no PEM here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := startAgent(t, nil, "--gateway", "http://127.0.0.1:1", "--inspect", "off", "--local-ca", empty, "https://localhost:8443")
	<-b.done
	if b.err == nil || !strings.Contains(b.err.Error(), "no PEM certificate") {
		t.Errorf("Run = %v; want an error saying the file has no certificate", b.err)
	}
}

// TestListenInspector checks where the inspector's page goes: the default
// address, or a free port when another agent holds it; an address given
// that is taken is an error.
func TestListenInspector(t *testing.T) {
	t.Parallel()
	first, err := listenInspector(DefaultInspect)
	if err != nil {
		t.Fatalf("default address: %v", err)
	}
	defer first.Close()
	second, err := listenInspector(DefaultInspect)
	if err != nil {
		t.Fatalf("default address taken: %v; want a free port instead", err)
	}
	defer second.Close()
	if first.Addr().String() == second.Addr().String() {
		t.Errorf("both pages on %s", first.Addr())
	}
	if ln, err := listenInspector(second.Addr().String()); err == nil || !strings.Contains(err.Error(), "--inspect") {
		if ln != nil {
			ln.Close()
		}
		t.Errorf("an address given that is taken: %v; want an error naming --inspect", err)
	}
	for addr, want := range map[string]string{"127.0.0.1:4040": "http://127.0.0.1:4040", "[::]:4041": "http://localhost:4041", "[::1]:4042": "http://[::1]:4042"} {
		tcp, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := pageURL(tcp); got != want {
			t.Errorf("pageURL(%s) = %q; want %q", addr, got, want)
		}
	}
}

// TestRunRequestLinesWithoutInspector checks that with --inspect off the
// command still prints a line per request (from tunnel.WithRequestLog,
// the relay's cheap log): numbered, the query left out, the status the
// local service answered and a 502 for one it cannot.
func TestRunRequestLinesWithoutInspector(t *testing.T) {
	t.Parallel()
	gw := tunneltest.NewGateway(t, nil)
	local := httptest.NewServer(echo)
	t.Cleanup(local.Close)

	a := startAgent(t, nil, "--gateway", gw.URL, "--name", "lines", "--json", "--inspect", "off", local.URL)
	fwd := a.waitEvent(t, func(e event) bool { return e.Event == "forwarding" })
	if status, body := get(t, fwd.URL+"/hello?token=s3cret"); status != http.StatusOK || body != "HTTP/1.1 GET /hello" {
		t.Fatalf("GET through the tunnel = %d %q", status, body)
	}
	req := a.waitEvent(t, func(e event) bool { return e.Event == "request" })
	if req.ID != 1 || req.Method != "GET" || req.Path != "/hello" || req.Status == nil || *req.Status != 200 ||
		req.DurationMS == nil || *req.DurationMS <= 0 {
		t.Errorf("request line %+v; want #1 GET /hello 200 with a duration", req)
	}
	local.Close()
	if status, _ := get(t, fwd.URL+"/gone"); status != http.StatusBadGateway {
		t.Fatalf("GET with the local service gone = %d, want 502", status)
	}
	failed := a.waitEvent(t, func(e event) bool { return e.Event == "request" && e.Path == "/gone" })
	if failed.ID != 2 || failed.Status == nil || *failed.Status != http.StatusBadGateway {
		t.Errorf("request line %+v; want #2 with status 502", failed)
	}
	for _, l := range a.stdout.lines() {
		if strings.Contains(l, "s3cret") {
			t.Errorf("stdout line %q shows the query", l)
		}
	}
	if err := a.stop(t); err != nil {
		t.Errorf("agent returned %v after interrupt; want nil", err)
	}
}

// With --inspect off the command's options keep Forward free of an
// inspector, which would send every request through the proxy instead of
// the byte relay; with the page on, Forward records.
func TestInspectOffKeepsForwardRelaying(t *testing.T) {
	t.Parallel()
	gw := tunneltest.NewGateway(t, nil)
	local := httptest.NewServer(echo)
	t.Cleanup(local.Close)
	for _, tt := range []struct {
		inspect   string
		recording bool
	}{{"off", false}, {"127.0.0.1:0", true}} {
		cfg, err := parseFlags("tunnel-agent", []string{"--gateway", gw.URL, "--inspect", tt.inspect, local.URL}, func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		ready := make(chan struct{})
		close(ready)
		opts, err := cfg.options(slog.New(slog.NewTextHandler(io.Discard, nil)), &printer{out: io.Discard, now: time.Now}, nil, ready)
		if err != nil {
			t.Fatal(err)
		}
		fw, err := tunnel.Forward(context.Background(), gw.URL, local.URL, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if got := fw.Inspector() != nil; got != tt.recording {
			t.Errorf("--inspect %s: Forward records: %v, want %v", tt.inspect, got, tt.recording)
		}
		fw.Close()
	}
}
