package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/backendtest"
	"github.com/http-tunnel/tunnel/store/dynamostore"
	"github.com/http-tunnel/tunnel/store/dynamostore/dynamotest"
	"github.com/http-tunnel/tunnel/store/redisstore"
	"github.com/http-tunnel/tunnel/store/redisstore/redistest"
)

// localService starts the service an agent forwards to: it answers with
// the method and path it received.
func localService(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "local answered %s %s", r.Method, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// checkForwarded GETs publicURL/hello and checks that the local service
// answered it.
func checkForwarded(t *testing.T, publicURL string) {
	t.Helper()
	status, body := get(t, publicURL+"/hello")
	if status != http.StatusOK || body != "local answered GET /hello" {
		t.Fatalf("GET %s/hello = %d %q; want 200 from the local service", publicURL, status, body)
	}
}

// tunnelID returns the ID of a tunnel from its URL: the subdomain of
// http://<id>.localhost:PORT, or the path segment of http://host/<id>.
func tunnelID(t *testing.T, publicURL string) string {
	t.Helper()
	u, err := url.Parse(publicURL)
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := strings.CutSuffix(u.Hostname(), ".localhost"); ok {
		return id
	}
	return strings.Trim(u.Path, "/")
}

// TestGatewayAndAgent runs a gateway with no domain and an agent in front
// of a local service: the tunnel gets a subdomain of localhost, which the
// gateway announces and the agent prints, and answers at its path URL too.
func TestGatewayAndAgent(t *testing.T) {
	t.Parallel()
	const token = "e2e-token-3c9f1a"
	tokens := writeFile(t, "# test agents\n\n"+token+"\n")
	gw, addr := startGateway(t, nil,
		"--listen", "127.0.0.1:0", "--tokens-file", tokens, "--log-format", "json",
		"--limiter", "local", "--agent-rate", "100/m", "--request-rate", "100/s",
		"--max-body-bytes", "1048576", "--shutdown-timeout", "5s")
	local := localService(t)
	_, port, _ := strings.Cut(addr, ":")

	ag, publicURL := startAgent(t, nil, "--gateway", "http://"+addr, "--token", token, "--name", "e2e-app", "--inspect", "127.0.0.1:0", local.URL)
	if want := "http://e2e-app.localhost:" + port; publicURL != want {
		t.Errorf("agent printed %q; want %q", publicURL, want)
	}
	checkForwarded(t, publicURL)
	checkForwarded(t, "http://"+addr+"/e2e-app")
	// The request lines come as the requests end, and the test has read
	// both responses: wait for the second.
	if _, ok := ag.stdout.line("/hello  200", ag.done); !ok {
		t.Errorf("agent printed no request line; stdout:\n%s", ag.stdout)
	}

	if err := ag.stop(t); err != nil {
		t.Errorf("agent returned %v after interrupt; want nil", err)
	}
	if err := gw.stop(t); err != nil {
		t.Errorf("gateway returned %v after interrupt; want nil", err)
	}

	if line, ok := gw.stdout.find("gateway listening on " + addr); !ok {
		t.Errorf("gateway stdout lacks its start line:\n%s", gw.stdout)
	} else if !strings.Contains(line, "base URL") {
		t.Errorf("start line %q does not give the base URL", line)
	}
	wantURLs := "tunnels at http://<id>.localhost:" + port + " (this machine) and http://" + addr + "/<id>/"
	if _, ok := gw.stdout.find(wantURLs); !ok {
		t.Errorf("gateway stdout lacks %q:\n%s", wantURLs, gw.stdout)
	}
	// The agent's stdout: the forwarding line, the inspector's address, a
	// line per request, the goodbye.
	lines := strings.Split(strings.TrimSuffix(ag.stdout.String(), "\n"), "\n")
	request := regexp.MustCompile(`^\d\d:\d\d:\d\d  GET +/hello  200  [0-9.]+(µs|ms|s)$`)
	if len(lines) != 5 || lines[0] != "Forwarding  "+publicURL+" -> "+local.URL || !strings.HasPrefix(lines[1], "Inspector   http://127.0.0.1:") ||
		!request.MatchString(lines[2]) || !request.MatchString(lines[3]) || lines[4] != "Tunnel closed. Goodbye." {
		t.Errorf("agent stdout:\n%s\nwant the forwarding line, the inspector, two request lines and the goodbye", ag.stdout)
	}
	for line := range strings.Lines(gw.stderr.String()) {
		if !json.Valid([]byte(line)) {
			t.Errorf("gateway log line is not JSON: %q", line)
		}
	}
	for name, out := range map[string]*output{
		"gateway stdout": gw.stdout, "gateway stderr": gw.stderr,
		"agent stdout": ag.stdout, "agent stderr": ag.stderr,
	} {
		if strings.Contains(out.String(), token) {
			t.Errorf("%s shows the token", name)
		}
	}
}

// TestHTTPCommand runs the agent as "tunnel http" with the original
// agent's flag and variables: -p for the port, TTF_ENDPOINT and TTF_TOKEN.
func TestHTTPCommand(t *testing.T) {
	t.Parallel()
	const token = "ttf-token-77e0b2"
	gw, addr := startGateway(t, nil, "--listen", "127.0.0.1:0", "--tokens-file", writeFile(t, token+"\n"), "--routing", "path")
	local := localService(t)
	_, port, _ := strings.Cut(strings.TrimPrefix(local.URL, "http://"), ":")

	env := map[string]string{"TTF_ENDPOINT": "http://" + addr, "TTF_TOKEN": token}
	ag := start(t, func(c command, ctx context.Context, args []string) error {
		if code := run(ctx, args, c); code != 0 {
			return fmt.Errorf("exit status %d", code)
		}
		return nil
	}, env, command{}, "http", "-p", port, "--host", "127.0.0.1", "--print-url", "--name", "ttf-app")
	url, ok := ag.stdout.line("http", ag.done)
	if want := "http://" + addr + "/ttf-app"; !ok || url != want {
		t.Fatalf("tunnel http printed %q; want %q alone; stderr:\n%s", url, want, ag.stderr)
	}
	checkForwarded(t, url)
	if err := ag.stop(t); err != nil {
		t.Errorf("tunnel http: %v; stderr:\n%s", err, ag.stderr)
	}
	if got := ag.stdout.String(); got != url+"\n" {
		t.Errorf("stdout with --print-url = %q; want the URL alone", got)
	}
	if _, ok := ag.stderr.find("Forwarding  " + url + " -> http://127.0.0.1:" + port); !ok {
		t.Errorf("with --print-url, the forwarding line is not on stderr:\n%s", ag.stderr)
	}
	if err := gw.stop(t); err != nil {
		t.Errorf("gateway: %v", err)
	}
}

func TestAgentBadToken(t *testing.T) {
	t.Parallel()
	const wrong = "wrong-token-81d2e7"
	gw, addr := startGateway(t, nil, "--listen", "127.0.0.1:0", "--tokens-file", writeFile(t, "right-token\n"))

	var stdout, stderr output
	c := command{stdout: &stdout, stderr: &stderr, getenv: envMap(nil)}
	err := runAgent(c, t.Context(), []string{"--gateway", "http://" + addr, "--token", wrong, "3000"})
	if !errors.Is(err, tunnel.ErrUnauthorized) || !strings.Contains(err.Error(), "unauthorized") {
		t.Errorf("agent with a wrong token: %v; want an error mentioning unauthorized", err)
	}
	if err != nil && strings.Contains(err.Error(), wrong) {
		t.Errorf("error shows the token: %v", err)
	}
	if stdout.String() != "" {
		t.Errorf("agent printed %q; want nothing on stdout", stdout.String())
	}
	if err := gw.stop(t); err != nil {
		t.Errorf("gateway: %v", err)
	}
	for name, out := range map[string]string{"agent stderr": stderr.String(), "gateway stderr": gw.stderr.String()} {
		if strings.Contains(out, wrong) {
			t.Errorf("%s shows the token:\n%s", name, out)
		}
	}
}

// TestAgentExitsWhenRefused replaces the gateway with one that no longer
// accepts the agent's token: the agent's reconnect is refused for good,
// and it must exit with an error instead of retrying forever, after
// printing the reconnect attempt and why it ended.
func TestAgentExitsWhenRefused(t *testing.T) {
	t.Parallel()
	gw1, addr := startGateway(t, nil, "--listen", "127.0.0.1:0", "--tokens-file", writeFile(t, "old-token\n"))
	ag, _ := startAgent(t, nil, "--gateway", "http://"+addr, "--token", "old-token", localService(t).URL)

	if err := gw1.stop(t); err != nil {
		t.Fatalf("first gateway: %v", err)
	}
	gw2, _ := startGateway(t, nil, "--listen", addr, "--tokens-file", writeFile(t, "new-token\n"))

	err := ag.wait(t)
	if !errors.Is(err, tunnel.ErrUnauthorized) || !strings.Contains(err.Error(), "tunnel stopped") {
		t.Errorf("agent returned %v; want a tunnel stopped error for an unauthorized reconnect", err)
	}
	for _, want := range []string{"connection lost: ", "reconnecting in ", "(attempt 1)", "tunnel closed: tunnel stopped: "} {
		if _, ok := ag.stdout.find(want); !ok {
			t.Errorf("agent stdout lacks %q:\n%s", want, ag.stdout)
		}
	}
	if err := gw2.stop(t); err != nil {
		t.Errorf("second gateway: %v", err)
	}
}

func TestGatewayRedis(t *testing.T) {
	t.Parallel()
	client := redistest.Client(t)
	prefix := redistest.Prefix(t, client)
	gw, addr := startGateway(t, nil,
		"--listen", "127.0.0.1:0", "--insecure-no-auth",
		"--store", "redis", "--redis-addr", client.Options().Addr, "--redis-prefix", prefix,
		"--limiter", "redis", "--agent-rate", "100/m", "--request-rate", "1000/s")
	if _, ok := gw.stderr.find("every agent is admitted"); !ok {
		t.Errorf("no warning about --insecure-no-auth in:\n%s", gw.stderr)
	}

	ag, publicURL := startAgent(t, nil, "--gateway", "http://"+addr, localService(t).URL)
	checkForwarded(t, publicURL)

	// The tunnel's record is in Redis, under the gateway's prefix.
	rec, err := redisstore.New(client, redisstore.Options{Prefix: prefix}).Get(t.Context(), tunnelID(t, publicURL))
	if err != nil || rec.PublicURL != publicURL {
		t.Errorf("record in Redis: %+v, %v; want one for %s", rec, err, publicURL)
	}

	if err := ag.stop(t); err != nil {
		t.Errorf("agent: %v", err)
	}
	if err := gw.stop(t); err != nil {
		t.Errorf("gateway: %v", err)
	}
}

func TestGatewayDynamoDB(t *testing.T) {
	t.Parallel()
	endpoint := backendtest.DynamoEndpoint(t)
	client := dynamotest.Client(t)
	names := dynamotest.Names(t, client, "connections", "pending", "limits")
	opts := dynamostore.Options{ConnectionsTable: names[0], PendingTable: names[1]}

	env := map[string]string{"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
	gw, addr := startGateway(t, env,
		"--listen", "127.0.0.1:0", "--insecure-no-auth", "--verbose",
		"--store", "dynamodb", "--dynamodb-endpoint", endpoint, "--dynamodb-create-tables",
		"--dynamodb-connections-table", opts.ConnectionsTable, "--dynamodb-pending-table", opts.PendingTable,
		"--limiter", "dynamodb", "--dynamodb-ratelimit-table", names[2], "--agent-rate", "100/m",
		"--cleanup-interval", "50ms")

	ag, publicURL := startAgent(t, nil, "--gateway", "http://"+addr, localService(t).URL)
	checkForwarded(t, publicURL)

	rec, err := dynamostore.New(client, opts).Get(t.Context(), tunnelID(t, publicURL))
	if err != nil || rec.PublicURL != publicURL {
		t.Errorf("record in DynamoDB: %+v, %v; want one for %s", rec, err, publicURL)
	}
	if _, ok := gw.stderr.line(`msg="dynamodb cleanup"`, gw.done); !ok {
		t.Errorf("the cleanup loop did not run; stderr:\n%s", gw.stderr)
	}
	if _, err := client.DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String(names[2])}); err != nil {
		t.Errorf("rate-limit table not created: %v", err)
	}

	if err := ag.stop(t); err != nil {
		t.Errorf("agent: %v", err)
	}
	if err := gw.stop(t); err != nil {
		t.Errorf("gateway: %v", err)
	}
}

// noAWSEnv is an environment in which the SDK's default credential chain
// finds nothing: no shared files, no instance metadata.
func noAWSEnv(t *testing.T) map[string]string {
	dir := t.TempDir()
	return map[string]string{
		"AWS_CONFIG_FILE":             filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED":   "true",
	}
}

// TestGatewayDynamoDBNeedsCredentials checks that a gateway without AWS
// credentials says what to set at startup, rather than failing at the
// first request.
func TestGatewayDynamoDBNeedsCredentials(t *testing.T) {
	t.Parallel()
	var stdout, stderr output
	c := command{stdout: &stdout, stderr: &stderr, getenv: envMap(noAWSEnv(t))}
	err := c.gateway(t.Context(), []string{"--insecure-no-auth", "--listen", "127.0.0.1:0", "--store", "dynamodb"})
	if err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") || !strings.Contains(err.Error(), "AWS_PROFILE") {
		t.Errorf("gateway without AWS credentials: %v; want an error naming AWS_ACCESS_KEY_ID and AWS_PROFILE", err)
	}
	if stdout.String() != "" {
		t.Errorf("gateway printed %q; it must not have started", stdout.String())
	}
}

// TestGatewayDynamoDBProfileCredentials runs the gateway with credentials
// from a profile in a shared credentials file, through the SDK's default
// chain, instead of static variables.
func TestGatewayDynamoDBProfileCredentials(t *testing.T) {
	t.Parallel()
	endpoint := backendtest.DynamoEndpoint(t)
	client := dynamotest.Client(t)
	names := dynamotest.Names(t, client, "connections", "pending")
	opts := dynamostore.Options{ConnectionsTable: names[0], PendingTable: names[1]}
	env := noAWSEnv(t)
	creds := "[tunnel-test]\naws_access_key_id = profilekey\naws_secret_access_key = profilesecret\n"
	if err := os.WriteFile(env["AWS_SHARED_CREDENTIALS_FILE"], []byte(creds), 0o600); err != nil {
		t.Fatal(err)
	}
	env["AWS_PROFILE"] = "tunnel-test"
	checkDynamoGateway(t, env, client, opts,
		"--listen", "127.0.0.1:0", "--insecure-no-auth",
		"--store", "dynamodb", "--dynamodb-endpoint", endpoint, "--dynamodb-create-tables",
		"--dynamodb-connections-table", opts.ConnectionsTable, "--dynamodb-pending-table", opts.PendingTable,
		"--cleanup-interval", "0")

	// A profile that is not in the file is an error at startup.
	env["AWS_PROFILE"] = "missing"
	var stdout, stderr output
	c := command{stdout: &stdout, stderr: &stderr, getenv: envMap(env)}
	if err := c.gateway(t.Context(), []string{"--insecure-no-auth", "--listen", "127.0.0.1:0", "--store", "dynamodb", "--dynamodb-endpoint", endpoint}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("gateway with an unknown profile: %v; want an error naming it", err)
	}
}

// TestGatewayDynamoDBCABundle reaches DynamoDB through a TLS endpoint whose
// certificate only the file in AWS_CA_BUNDLE vouches for, as behind a
// TLS-intercepting proxy. Without the bundle the gateway refuses the
// endpoint at startup; with a file that holds no certificate it says so.
func TestGatewayDynamoDBCABundle(t *testing.T) {
	t.Parallel()
	client := dynamotest.Client(t)
	target, err := url.Parse(backendtest.DynamoEndpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	proxy.Transport = tr
	tlsEndpoint := httptest.NewTLSServer(proxy)
	t.Cleanup(tlsEndpoint.Close)

	names := dynamotest.Names(t, client, "connections", "pending")
	opts := dynamostore.Options{ConnectionsTable: names[0], PendingTable: names[1]}
	args := []string{"--listen", "127.0.0.1:0", "--insecure-no-auth",
		"--store", "dynamodb", "--dynamodb-endpoint", tlsEndpoint.URL, "--dynamodb-create-tables",
		"--dynamodb-connections-table", opts.ConnectionsTable, "--dynamodb-pending-table", opts.PendingTable,
		"--cleanup-interval", "0"}
	dir := t.TempDir()
	env := map[string]string{"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}

	// Without the bundle, the endpoint's certificate is not trusted.
	var stdout, stderr output
	c := command{stdout: &stdout, stderr: &stderr, getenv: envMap(env)}
	if err := c.gateway(t.Context(), args); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("gateway without AWS_CA_BUNDLE: %v; want a certificate error", err)
	}

	// A bundle without a certificate in it is an error that names it.
	env["AWS_CA_BUNDLE"] = filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(env["AWS_CA_BUNDLE"], []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.gateway(t.Context(), args); err == nil || !strings.Contains(err.Error(), "AWS_CA_BUNDLE") {
		t.Errorf("gateway with an empty AWS_CA_BUNDLE: %v; want an error naming it", err)
	}

	env["AWS_CA_BUNDLE"] = filepath.Join(dir, "ca.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsEndpoint.Certificate().Raw})
	if err := os.WriteFile(env["AWS_CA_BUNDLE"], cert, 0o600); err != nil {
		t.Fatal(err)
	}
	checkDynamoGateway(t, env, client, opts, args...)
}

// checkDynamoGateway starts a gateway with env and args and an agent in
// front of a local service, checks that a request reaches the service and
// that the tunnel's record is in the tables of opts, and stops both.
func checkDynamoGateway(t *testing.T, env map[string]string, client *dynamodb.Client, opts dynamostore.Options, args ...string) {
	t.Helper()
	gw, addr := startGateway(t, env, args...)
	ag, publicURL := startAgent(t, nil, "--gateway", "http://"+addr, localService(t).URL)
	checkForwarded(t, publicURL)
	if rec, err := dynamostore.New(client, opts).Get(t.Context(), tunnelID(t, publicURL)); err != nil || rec.PublicURL != publicURL {
		t.Errorf("record in DynamoDB: %+v, %v; want one for %s", rec, err, publicURL)
	}
	if err := ag.stop(t); err != nil {
		t.Errorf("agent: %v", err)
	}
	if err := gw.stop(t); err != nil {
		t.Errorf("gateway: %v", err)
	}
}
