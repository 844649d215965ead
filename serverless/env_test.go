package serverless

import (
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/protocol"
	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/store/dynamostore"
)

// awsRequest is what a fake AWS endpoint saw of one call.
type awsRequest struct {
	path, target, auth, body string
}

// fakeAWS answers every DynamoDB call with ResourceNotFoundException and
// every @connections call with GoneException (neither is retried), and
// records what it was sent.
type fakeAWS struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []awsRequest
}

func newFakeAWS(t *testing.T) *fakeAWS {
	t.Helper()
	f := &fakeAWS{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.seen = append(f.seen, awsRequest{r.URL.Path, r.Header.Get("X-Amz-Target"), r.Header.Get("Authorization"), string(body)})
		f.mu.Unlock()
		if strings.Contains(r.URL.Path, "/@connections/") {
			w.Header().Set("X-Amzn-ErrorType", "GoneException")
			w.WriteHeader(http.StatusGone)
			io.WriteString(w, `{"message":"gone"}`)
			return
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException","message":"no such table"}`)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// last returns the last request recorded, failing t if there is none.
func (f *fakeAWS) last(t *testing.T) awsRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) == 0 {
		t.Fatal("no request reached the endpoint")
	}
	return f.seen[len(f.seen)-1]
}

func TestFromEnvRequired(t *testing.T) {
	t.Parallel()
	full := map[string]string{
		"AWS_REGION":                 "eu-west-1",
		"TUNNEL_MANAGEMENT_ENDPOINT": "https://abc.execute-api.eu-west-1.amazonaws.com/prod",
		"TUNNEL_BASE_URL":            "https://def.execute-api.eu-west-1.amazonaws.com",
	}
	if _, err := FromEnv(func(k string) string { return full[k] }, quiet); err != nil {
		t.Fatalf("with the required variables: %v", err)
	}
	for name := range full {
		t.Run("without "+name, func(t *testing.T) {
			if _, err := FromEnv(func(k string) string {
				if k == name {
					return ""
				}
				return full[k]
			}, quiet); err == nil {
				t.Errorf("FromEnv without %s succeeded", name)
			}
		})
	}
}

// TestFromEnv checks that every variable reaches the part it configures:
// requests of the built Handler's clients go to the configured endpoints,
// tables and region, signed with the configured credentials.
func TestFromEnv(t *testing.T) {
	t.Parallel()
	f := newFakeAWS(t)
	env := map[string]string{
		"AWS_REGION":                 "eu-west-1",
		"AWS_ACCESS_KEY_ID":          "AKIDFROMENV",
		"AWS_SECRET_ACCESS_KEY":      "secret",
		"TUNNEL_MANAGEMENT_ENDPOINT": f.srv.URL + "/prod",
		"TUNNEL_BASE_URL":            "https://tunnels.example.com",
		"TUNNEL_DOMAIN":              "tunnels.example.com",
		"TUNNEL_CONNECTIONS_TABLE":   "conns-fromenv",
		"TUNNEL_PENDING_TABLE":       "pending-fromenv",
		"TUNNEL_RATELIMIT_TABLE":     "limits-fromenv",
		"TUNNEL_TOKENS":              "tok-a,tok-b",
		"TUNNEL_DYNAMODB_ENDPOINT":   f.srv.URL,
	}
	h, err := FromEnv(func(k string) string { return env[k] }, quiet)
	if err != nil {
		t.Fatal(err)
	}

	srv := h.Server
	if srv.BaseURL != env["TUNNEL_BASE_URL"] || srv.Domain != env["TUNNEL_DOMAIN"] {
		t.Errorf("Server BaseURL %q, Domain %q", srv.BaseURL, srv.Domain)
	}
	if _, ok := srv.Cache.(NoCache); !ok {
		t.Errorf("Server.Cache is %T, want NoCache", srv.Cache)
	}
	relay, ok := srv.Relay.(*Relay)
	if !ok || relay.Store != h.Store || relay.Mgmt != h.Mgmt || srv.Store != h.Store {
		t.Errorf("Server.Relay %T: not a *Relay on the Handler's Store and Mgmt", srv.Relay)
	}
	if srv.Logger != quiet || h.Logger != quiet {
		t.Error("the logger did not reach the Server and the Handler")
	}

	t.Run("tokens", func(t *testing.T) {
		for tok, ok := range map[string]bool{"tok-a": true, "tok-b": true, "tok-c": false} {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			if _, err := srv.Authenticator.Authenticate(t.Context(), r); (err == nil) != ok {
				t.Errorf("token %s: Authenticate = %v, want accepted %v", tok, err, ok)
			}
		}
	})

	checkCall := func(t *testing.T, target, table string) {
		t.Helper()
		got := f.last(t)
		if got.target != "DynamoDB_20120810."+target || !strings.Contains(got.body, `"TableName":"`+table+`"`) {
			t.Errorf("call %s on %s, want %s on table %s", got.target, got.body, target, table)
		}
		if !strings.Contains(got.auth, "Credential=AKIDFROMENV/") || !strings.Contains(got.auth, "/eu-west-1/dynamodb/") {
			t.Errorf("signed %q, want the environment's key and region", got.auth)
		}
	}
	t.Run("store", func(t *testing.T) {
		h.Store.Get(t.Context(), "abc")
		checkCall(t, "GetItem", env["TUNNEL_CONNECTIONS_TABLE"])
		h.Store.CreatePending(t.Context(), "req1", "conn1", DefaultPendingTTL)
		checkCall(t, "PutItem", env["TUNNEL_PENDING_TABLE"])
	})
	t.Run("limiters", func(t *testing.T) {
		if srv.RequestLimiter == nil || h.Limiter == nil {
			t.Fatalf("RequestLimiter %v, agent Limiter %v; want both", srv.RequestLimiter, h.Limiter)
		}
		srv.RequestLimiter.Allow(t.Context(), "tunnel:abc")
		checkCall(t, "UpdateItem", env["TUNNEL_RATELIMIT_TABLE"])
		h.Limiter.Allow(t.Context(), "agent:192.0.2.1")
		checkCall(t, "UpdateItem", env["TUNNEL_RATELIMIT_TABLE"])
	})
	t.Run("management API", func(t *testing.T) {
		h.Mgmt.PostToConnection(t.Context(), &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String("conn1"), Data: []byte("{}")})
		got := f.last(t)
		if got.path != "/prod/@connections/conn1" || !strings.Contains(got.auth, "/eu-west-1/execute-api/") {
			t.Errorf("post to %s signed %q, want /prod/@connections/conn1 in eu-west-1", got.path, got.auth)
		}
	})

	t.Run("body bucket", func(t *testing.T) {
		env := maps.Clone(env)
		env["TUNNEL_BODY_BUCKET"] = "bodies-fromenv"
		env["TUNNEL_S3_ENDPOINT"] = f.srv.URL
		h, err := FromEnv(func(k string) string { return env[k] }, quiet)
		if err != nil {
			t.Fatal(err)
		}
		// A chunk over the threshold goes to the bucket (the fake
		// endpoint refuses it, which is not what is checked here).
		h.Store.PutResponseChunk(t.Context(), "req-body", 0, 1, make([]byte, 2*dynamostore.DefaultBodyThreshold))
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, r := range f.seen {
			if strings.HasPrefix(r.path, "/bodies-fromenv/") {
				if !strings.Contains(r.auth, "Credential=AKIDFROMENV/") || !strings.Contains(r.auth, "/eu-west-1/s3/") {
					t.Errorf("S3 request signed %q; want the environment's key and region", r.auth)
				}
				return
			}
		}
		t.Errorf("no request reached bucket bodies-fromenv; TUNNEL_BODY_BUCKET did not reach the store")
	})

	t.Run("optional parts off", func(t *testing.T) {
		delete(env, "TUNNEL_TOKENS")
		delete(env, "TUNNEL_RATELIMIT_TABLE")
		h, err := FromEnv(func(k string) string { return env[k] }, nil)
		if err != nil {
			t.Fatal(err)
		}
		if h.Server.Authenticator != nil || h.Server.RequestLimiter != nil || h.Limiter != nil {
			t.Errorf("Authenticator %v, RequestLimiter %v, Limiter %v; want none", h.Server.Authenticator, h.Server.RequestLimiter, h.Limiter)
		}
	})
}

// TestFromEnvTunnelURLs checks the URLs agents are given: under
// TUNNEL_BASE_URL by path, since an execute-api host has no subdomains,
// and under TUNNEL_DOMAIN by subdomain when it is set.
func TestFromEnvTunnelURLs(t *testing.T) {
	t.Parallel()
	const base = "https://def456.execute-api.eu-west-1.amazonaws.com"
	tests := []struct {
		domain string
		want   string
	}{
		{"", base + "/mytunnel"},
		{"tunnels.example.com", "https://mytunnel.tunnels.example.com"},
	}
	for _, tt := range tests {
		t.Run("domain "+tt.domain, func(t *testing.T) {
			env := map[string]string{
				"AWS_REGION":                 "eu-west-1",
				"TUNNEL_MANAGEMENT_ENDPOINT": "https://abc123.execute-api.eu-west-1.amazonaws.com/prod",
				"TUNNEL_BASE_URL":            base,
				"TUNNEL_DOMAIN":              tt.domain,
			}
			h, err := FromEnv(func(k string) string { return env[k] }, quiet)
			if err != nil {
				t.Fatal(err)
			}
			// The Server as FromEnv configured it, on a store that needs
			// no DynamoDB.
			h.Server.Store = store.NewMemory()
			_, est, err := h.Server.Admit(t.Context(), tunnel.Admission{Ready: &protocol.Ready{Name: "mytunnel"}, ConnectionID: "c1"})
			if err != nil {
				t.Fatal(err)
			}
			if est.PublicURL != tt.want {
				t.Errorf("public URL %q, want %q", est.PublicURL, tt.want)
			}
		})
	}
}
