package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/backendtest"
	"github.com/http-tunnel/tunnel/internal/leakcheck"
	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/store/dynamostore"
	"github.com/http-tunnel/tunnel/store/dynamostore/dynamotest"
	"github.com/http-tunnel/tunnel/tunneltest"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func noEnv(string) string { return "" }

// started is a run of the command in this process.
type started struct {
	agentURL, publicURL string
	// stop ends the run and returns its error.
	stop func() error
}

// start runs the command with args until the test ends, and returns the
// URLs it printed.
func start(t *testing.T, args ...string) *started {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, args, pw, io.Discard, noEnv)
		pw.Close()
		done <- err
	}()
	s := &started{}
	var once bool
	s.stop = func() error {
		if once {
			return nil
		}
		once = true
		cancel()
		return <-done
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	})

	// The URLs, then whatever else it prints, drained so that it never
	// blocks on stdout.
	lines := bufio.NewScanner(pr)
	for (s.agentURL == "" || s.publicURL == "") && lines.Scan() {
		line := lines.Text()
		if u, ok := strings.CutPrefix(line, "agent URL:"); ok {
			s.agentURL = strings.TrimSpace(u)
		}
		if u, ok := strings.CutPrefix(line, "public URL:"); ok {
			s.publicURL, _, _ = strings.Cut(strings.TrimSpace(u), " ")
		}
	}
	go io.Copy(io.Discard, pr)
	if s.agentURL == "" || s.publicURL == "" {
		t.Fatalf("run printed no URLs: %v", s.stop())
	}
	return s
}

// TestRun serves a real agent through the command: the agent connects to
// the printed agent URL, and a public request to its tunnel, under the
// printed public URL, reaches it.
func TestRun(t *testing.T) {
	for _, format := range []string{"2.0", "1.0"} {
		t.Run("payload "+format, func(t *testing.T) {
			t.Parallel()
			testRun(t, format)
		})
	}
}

func testRun(t *testing.T, format string) {
	client := dynamotest.Client(t)
	// The command creates the tables; the test only names them and drops
	// them at the end.
	tables := dynamotest.Names(t, client, "local-connections", "local-pending")
	s := start(t, "--dynamodb-endpoint", backendtest.DynamoEndpoint(t),
		"--connections-table", tables[0], "--pending-table", tables[1],
		"--tokens", "s3cret", "--payload-format", format)
	for _, name := range tables {
		if _, err := client.DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String(name)}); err != nil {
			t.Fatalf("table %s: %v", name, err)
		}
	}
	if !strings.HasPrefix(s.agentURL, "ws://127.0.0.1:") || !strings.HasSuffix(s.agentURL, "/local") {
		t.Errorf("agent URL %q, want ws://127.0.0.1:<port>/local", s.agentURL)
	}

	if _, err := tunnel.Listen(t.Context(), s.agentURL, tunnel.WithLogger(quiet), tunnel.WithToken("wrong")); !errors.Is(err, tunnel.ErrUnauthorized) {
		t.Fatalf("Listen with a wrong token: %v, want ErrUnauthorized", err)
	}
	ln, err := tunnel.Listen(t.Context(), s.agentURL, tunnel.WithLogger(quiet), tunnel.WithToken("s3cret"))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Path", r.URL.Path)
		io.WriteString(w, "hello from the agent")
	}))
	if !strings.HasPrefix(ln.URL(), s.publicURL+"/") {
		t.Fatalf("tunnel URL %q is not under the public URL %q", ln.URL(), s.publicURL)
	}

	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, ln.URL()+"/hi", nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "hello from the agent" || resp.Header.Get("X-Path") != "/hi" {
		t.Fatalf("GET %s/hi: %d %q, X-Path %q", ln.URL(), resp.StatusCode, body, resp.Header.Get("X-Path"))
	}

	// Stopping closes the agent's connection: its $disconnect deletes the
	// record.
	if err := s.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	st := dynamostore.New(client, dynamostore.Options{ConnectionsTable: tables[0], PendingTable: tables[1]})
	if _, err := st.Get(t.Context(), ln.ID()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("record after the command stopped: Get = %v, want ErrNotFound", err)
	}
}

func TestRunErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		args  []string
		usage bool
	}{
		{"unknown flag", []string{"--nope"}, true},
		{"payload format", []string{"--payload-format", "3.0"}, true},
		{"response timeout", []string{"--response-timeout", "0s"}, true},
		{"argument", []string{"extra"}, true},
		// Nothing listens on port 1: the tables cannot be made.
		{"no DynamoDB", []string{"--dynamodb-endpoint", "http://127.0.0.1:1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			var stdout strings.Builder
			err := run(ctx, tt.args, &stdout, io.Discard, noEnv)
			var ue usageError
			if err == nil || errors.As(err, &ue) != tt.usage {
				t.Fatalf("run(%q) = %v, want a usage error: %v", tt.args, err, tt.usage)
			}
			if stdout.Len() != 0 {
				t.Errorf("printed %q before failing", stdout.String())
			}
		})
	}
	var help strings.Builder
	env := func(name string) string {
		if name == "TUNNEL_TOKENS" {
			return "env-s3cret"
		}
		return ""
	}
	if err := run(t.Context(), []string{"-h"}, io.Discard, &help, env); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(help.String(), "-dynamodb-endpoint") || strings.Contains(help.String(), "env-s3cret") {
		t.Errorf("-h printed %q: want the flags, without the tokens of $TUNNEL_TOKENS", help.String())
	}
}

func TestTokensFromEnv(t *testing.T) {
	t.Parallel()
	env := func(name string) string {
		if name == "TUNNEL_TOKENS" {
			return "a, b,"
		}
		return ""
	}
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"a", "b"}},
		{[]string{"--tokens", "c"}, []string{"c"}},
	} {
		c, err := parseFlags(tt.args, io.Discard, env)
		if err != nil || strings.Join(c.tokens, ",") != strings.Join(tt.want, ",") {
			t.Errorf("parseFlags(%q) tokens %q, %v; want %q", tt.args, c.tokens, err, tt.want)
		}
	}
}
