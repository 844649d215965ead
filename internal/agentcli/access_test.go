package agentcli

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// writeTemp writes content to a new file of the test and returns its path.
func writeTemp(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAccessFlags parses the access flags: credentials from files (every
// one given) or, without them, from the environment; address lists
// repeated or comma-separated. Errors name the file and line, never a
// password or token.
func TestAccessFlags(t *testing.T) {
	t.Parallel()
	basic := writeTemp(t, "# who may see the app\nalice:pass-secret-1\n\n  bob:pass:with:colons-secret-2  \r\n")
	basic2 := writeTemp(t, "carol:pass-secret-3\n")
	bearer := writeTemp(t, "bearer-secret-4\n# rotated out: old-secret\nbearer-secret-5\n")
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    accessConfig
		wantErr string
	}{{
		name: "none",
	}, {
		name: "files",
		args: []string{"--basic-auth-file", basic, "--basic-auth-file", basic2, "--bearer-auth-file", bearer},
		env:  map[string]string{EnvBasicAuth: "env:ignored-secret", EnvBearerAuth: "ignored-secret"},
		want: accessConfig{
			basic:  []tunnel.BasicCredential{{User: "alice", Password: "pass-secret-1"}, {User: "bob", Password: "pass:with:colons-secret-2"}, {User: "carol", Password: "pass-secret-3"}},
			bearer: []tunnel.Token{"bearer-secret-4", "bearer-secret-5"},
		},
	}, {
		name: "environment",
		env:  map[string]string{EnvBasicAuth: "dave:env pass-secret-6", EnvBearerAuth: " bearer-secret-7 "},
		want: accessConfig{basic: []tunnel.BasicCredential{{User: "dave", Password: "env pass-secret-6"}}, bearer: []tunnel.Token{"bearer-secret-7"}},
	}, {
		name: "address lists",
		args: []string{"--allow-ip", "10.0.0.0/8, 192.0.2.7", "--allow-ip", "2001:db8::/32", "--deny-ip", "10.9.0.0/16"},
		want: accessConfig{allow: []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"}, deny: []string{"10.9.0.0/16"}},
	}, {
		name:    "not an address",
		args:    []string{"--allow-ip", "10.0.0.0/8,office"},
		wantErr: `--allow-ip "office": want an IP address or a CIDR prefix`,
	}, {
		name:    "a prefix too long",
		args:    []string{"--deny-ip", "10.0.0.0/33"},
		wantErr: `--deny-ip "10.0.0.0/33"`,
	}, {
		name:    "a line without a password",
		args:    []string{"--basic-auth-file", writeTemp(t, "alice:pass-secret-1\nbob-secret-8\n")},
		wantErr: "line 2: want user:password",
	}, {
		name:    "an empty password",
		args:    []string{"--basic-auth-file", writeTemp(t, "alice:\n")},
		wantErr: "line 1: want user:password",
	}, {
		name:    "an empty user",
		env:     map[string]string{EnvBasicAuth: ":pass-secret-9"},
		wantErr: "$TUNNEL_BASIC_AUTH: want user:password",
	}, {
		name:    "a bearer token with a space",
		args:    []string{"--bearer-auth-file", writeTemp(t, "bearer secret-10\n")},
		wantErr: "line 1: a token must not contain spaces",
	}, {
		name:    "no credential in the file",
		args:    []string{"--bearer-auth-file", writeTemp(t, "# none yet\n")},
		wantErr: "holds no credential",
	}, {
		name:    "a missing file",
		args:    []string{"--basic-auth-file", basic + ".missing"},
		wantErr: "--basic-auth-file: open",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out strings.Builder
			cfg, err := parseFlags("tunnel agent", append(tt.args, "3000"), envMap(tt.env), &out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v; want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "secret-") {
					t.Errorf("error %q shows a secret", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("error: %v\n%s", err, out.String())
			}
			got := cfg.access
			if !slices.Equal(got.basic, tt.want.basic) || !slices.Equal(got.bearer, tt.want.bearer) ||
				!slices.Equal(got.allow, tt.want.allow) || !slices.Equal(got.deny, tt.want.deny) {
				t.Errorf("access %+v; want %+v", got, tt.want)
			}
			if got.empty() != tt.want.empty() {
				t.Errorf("empty() = %v", got.empty())
			}
		})
	}
	// A mistake in an address list is the command line's: exit status 2.
	_, err := parseFlags("tunnel agent", []string{"--allow-ip", "office", "3000"}, envMap(nil), &strings.Builder{})
	var ue *UsageError
	if !errors.As(err, &ue) {
		t.Errorf("a bad --allow-ip: %v; want a usage error", err)
	}
}

// TestRunAccess forwards a local service through a tunnel whose agent
// asked the gateway to protect it, and checks what public clients get:
// 401 with WWW-Authenticate without the credentials, the local service's
// answer with them (the local service never sees them), 403 from an
// address the lists refuse. The agent says what it asked for, and shows no
// secret.
func TestRunAccess(t *testing.T) {
	t.Parallel()
	gw := tunneltest.NewGateway(t, nil)
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "authorization %q", r.Header.Get("Authorization"))
	}))
	t.Cleanup(local.Close)
	const password, token = "correct-horse-7b1e", "bearer-token-c02d"
	basicFile := writeTemp(t, "alice:"+password+"\n")

	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantLine string
		requests []accessRequest
	}{{
		name:     "basic auth from a file",
		args:     []string{"--basic-auth-file", basicFile},
		wantLine: "Protected   basic auth (alice)",
		requests: []accessRequest{
			{from: "127.0.0.1", want: http.StatusUnauthorized, wantChallenge: `Basic realm="tunnel"`},
			{from: "127.0.0.1", auth: basicAuth("alice", "wrong"), want: http.StatusUnauthorized},
			{from: "127.0.0.1", auth: basicAuth("alice", password), want: http.StatusOK},
		},
	}, {
		name:     "a bearer token from the environment, and an allow list",
		args:     []string{"--allow-ip", "127.0.0.1"},
		env:      map[string]string{EnvBearerAuth: token},
		wantLine: "Protected   bearer token, allow 127.0.0.1",
		requests: []accessRequest{
			{from: "127.0.0.1", want: http.StatusUnauthorized, wantChallenge: `Bearer realm="tunnel"`},
			{from: "127.0.0.1", auth: "Bearer " + token, want: http.StatusOK},
			{from: "127.0.0.2", auth: "Bearer " + token, want: http.StatusForbidden},
		},
	}, {
		name:     "a deny list",
		args:     []string{"--deny-ip", "127.0.0.2/32,10.0.0.0/8"},
		wantLine: "Protected   deny 127.0.0.2/32 10.0.0.0/8",
		requests: []accessRequest{
			{from: "127.0.0.2", want: http.StatusForbidden},
			{from: "127.0.0.1", want: http.StatusOK},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := startAgent(t, tt.env, append(append([]string{"--gateway", gw.URL, "--inspect", "off"}, tt.args...), local.URL)...)
			fwd := a.stdout.wait(t, a.done, func(l string) bool { return strings.HasPrefix(l, "Forwarding  ") })
			url := strings.Fields(fwd)[1]
			if got := a.stdout.wait(t, a.done, func(l string) bool { return strings.HasPrefix(l, "Protected") }); got != tt.wantLine {
				t.Errorf("agent printed %q; want %q", got, tt.wantLine)
			}
			for _, r := range tt.requests {
				r.check(t, url+"/private")
			}
			if err := a.stop(t); err != nil {
				t.Errorf("agent: %v", err)
			}
			if out := a.stdout.String() + a.stderr.String(); strings.Contains(out, password) || strings.Contains(out, token) {
				t.Errorf("the agent's output shows a secret:\n%s", out)
			}
		})
	}
}

// accessRequest is a public request to a protected tunnel and what it
// must get.
type accessRequest struct {
	from          string // the client's address, on loopback
	auth          string // Authorization, if any
	want          int
	wantChallenge string // in WWW-Authenticate, for a 401
}

func basicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

func (r accessRequest) check(t *testing.T, url string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.auth != "" {
		req.Header.Set("Authorization", r.auth)
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(r.from)}}
	tr := &http.Transport{DialContext: d.DialContext}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: waitTimeout}).Do(req)
	if err != nil {
		t.Fatalf("GET from %s: %v", r.from, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	body := string(b)
	if resp.StatusCode != r.want {
		t.Errorf("GET from %s with %q = %d %s; want %d", r.from, r.auth, resp.StatusCode, body, r.want)
	}
	if r.wantChallenge != "" && !strings.Contains(resp.Header.Get("WWW-Authenticate"), r.wantChallenge) {
		t.Errorf("WWW-Authenticate %q; want %q", resp.Header.Get("WWW-Authenticate"), r.wantChallenge)
	}
	if resp.StatusCode == http.StatusOK && body != `authorization ""` {
		t.Errorf("the local service saw %s; want no credentials", body)
	}
}
