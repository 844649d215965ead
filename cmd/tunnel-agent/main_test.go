package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/internal/leakcheck"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// binary is the tunnel-agent built for these tests: signals, exit status
// and the process environment are a process's.
var binary string

// TestMain builds the command once, then runs the tests and fails the
// package if one leaves a goroutine running.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tunnel-agent-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "tunnel-agent")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	leakcheck.Main(m)
}

// waitTimeout bounds every wait of these tests.
const waitTimeout = 10 * time.Second

// process is a running tunnel-agent whose stdout lines a test reads.
type process struct {
	cmd    *exec.Cmd
	lines  chan string // stdout, closed at its end
	stderr strings.Builder
}

// startAgent runs the binary with args and the environment env (alone:
// not the test's).
func startAgent(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(binary, args...), lines: make(chan string, 100)}
	p.cmd.Env = env
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	})
	return p
}

// next returns the next stdout line, or fails the test.
func (p *process) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("stdout ended; stderr:\n%s", p.stderr.String())
		}
		return l
	case <-time.After(waitTimeout):
		t.Fatalf("no output within %v; stderr:\n%s", waitTimeout, p.stderr.String())
		return ""
	}
}

// wait waits for the process to exit and returns its exit status.
func (p *process) wait(t *testing.T) int {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		for range p.lines { // drain, so that Wait can finish copying
		}
		done <- p.cmd.Wait()
	}()
	select {
	case <-done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(waitTimeout):
		t.Fatalf("the agent did not exit; stderr:\n%s", p.stderr.String())
		return -1
	}
}

func localService(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "local answered %s", r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: waitTimeout}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestSignals checks that the agent leaves cleanly on each signal a
// terminal or a supervisor sends: exit status 0, a goodbye, and the
// tunnel gone from the gateway.
func TestSignals(t *testing.T) {
	t.Parallel()
	gw := tunneltest.NewGateway(t, nil)
	local := localService(t)
	for name, sig := range map[string]syscall.Signal{"sigint": syscall.SIGINT, "sigterm": syscall.SIGTERM, "sighup": syscall.SIGHUP} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := startAgent(t, nil, "--gateway", gw.URL, "--name", name, local.URL)
			url := gw.URL + "/" + name
			if l := p.next(t); l != "Forwarding  "+url+" -> "+local.URL {
				t.Fatalf("first line %q; want the forwarding line", l)
			}
			// The inspector, on 127.0.0.1:4040 or, for all but one of
			// these agents, a free port.
			if l := p.next(t); !strings.HasPrefix(l, "Inspector   http://127.0.0.1:") {
				t.Errorf("second line %q; want the inspector's address", l)
			}
			if status, body := get(t, url+"/x"); status != http.StatusOK || body != "local answered /x" {
				t.Fatalf("GET = %d %q", status, body)
			}
			if l := p.next(t); !strings.Contains(l, "GET     /x  200  ") {
				t.Errorf("third line %q; want the request line", l)
			}
			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if l := p.next(t); l != "Tunnel closed. Goodbye." {
				t.Errorf("last line %q; want the goodbye", l)
			}
			if code := p.wait(t); code != 0 {
				t.Errorf("exit status %d after %v; want 0; stderr:\n%s", code, sig, p.stderr.String())
			}
			// A graceful close frees the name at once.
			if status, _ := get(t, url+"/x"); status != http.StatusNotFound {
				t.Errorf("after the agent left, GET = %d; want 404", status)
			}
		})
	}
}

// TestProxyFromEnvironment checks that the agent honours HTTP_PROXY by
// default: the gateway's name resolves nowhere, and only the proxy, which
// sends every request to the gateway, can reach it.
func TestProxyFromEnvironment(t *testing.T) {
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
			pr.Out.URL = pr.In.URL
			pr.Out.Host = pr.In.Host
		},
		Transport: tr,
	})
	t.Cleanup(proxy.Close)

	_, port, _ := net.SplitHostPort(gwAddr)
	p := startAgent(t, []string{"HTTP_PROXY=" + proxy.URL}, "--gateway", "http://gateway.invalid:"+port, "--print-url", localService(t).URL)
	if l := p.next(t); !strings.HasPrefix(l, "http://gateway.invalid:"+port+"/") {
		t.Errorf("stdout %q; want the public URL alone", l)
	}
	if proxied.Load() == 0 {
		t.Error("the agent did not go through $HTTP_PROXY")
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("exit status %d; want 0", code)
	}
}

// TestUsage checks the exit statuses of -h and of a mistake.
func TestUsage(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-h"}, 0, "Usage: tunnel-agent [flags] <port|host:port|URL>"},
		{nil, 2, "tunnel-agent: missing the local service"},
		{[]string{"--gateway", "ftp://gw", "3000"}, 1, "tunnel-agent: tunnel: listen: gateway URL"},
	} {
		out, err := exec.Command(binary, tt.args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != tt.code || !strings.Contains(string(out), tt.want) {
			t.Errorf("tunnel-agent %q: exit %d, output:\n%s\nwant %d and %q", tt.args, code, out, tt.code, tt.want)
		}
	}
}

// TestLeanDependencies checks what makes tunnel-agent worth having: it
// links none of the gateway's backends and exporters, and nothing of the
// repository outside the root module.
func TestLeanDependencies(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{.Path}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	modules := map[string]bool{}
	for m := range strings.FieldsSeq(string(out)) {
		modules[m] = true
	}
	if !modules["github.com/http-tunnel/tunnel"] {
		t.Fatalf("go list found no dependency on the root module:\n%s", out)
	}
	for m := range modules {
		if strings.HasPrefix(m, "github.com/http-tunnel/tunnel/") ||
			strings.Contains(m, "aws") || strings.Contains(m, "redis") || strings.Contains(m, "prometheus") ||
			strings.Contains(m, "grpc") || strings.HasPrefix(m, "google.golang.org/") ||
			strings.HasPrefix(m, "go.opentelemetry.io/otel/sdk") || strings.HasPrefix(m, "go.opentelemetry.io/otel/exporters") {
			t.Errorf("tunnel-agent links %s", m)
		}
	}
}
