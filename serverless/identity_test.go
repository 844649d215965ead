package serverless

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/coder/websocket"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/logbuf"
	"github.com/http-tunnel/tunnel/protocol"
	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/store/dynamostore/dynamotest"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// The tests below check that the Lambda path admits agents under the
// identity they authenticated as at $connect, as the standalone gateway
// does (the root package's access_test.go and admission_test.go): names
// bound to identities, access imposed by identities, the resume secret
// bound to the subject, and a clean refusal when the identity is not known.

// listenAs opens a tunnel on g with token and name (empty: none), and
// returns Listen's error. The tunnel closes with the test.
func (g *gateway) listenAs(t *testing.T, token, name string, opts ...tunnel.Option) (*tunnel.Listener, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	base := []tunnel.Option{tunnel.WithLogger(quiet), tunnel.WithBackoff(10*time.Millisecond, 50*time.Millisecond)}
	if token != "" {
		base = append(base, tunnel.WithToken(token))
	}
	if name != "" {
		base = append(base, tunnel.WithName(name))
	}
	ln, err := tunnel.Listen(ctx, g.emu.WebSocketURL(), append(base, opts...)...)
	if err == nil {
		t.Cleanup(func() { ln.Close() })
	}
	return ln, err
}

// parseTokens is tunnel.ParseStaticTokens of a literal file.
func parseTokens(t *testing.T, file string) *tunnel.StaticTokens {
	t.Helper()
	a, err := tunnel.ParseStaticTokens(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Names belong to identities on the Lambda path too: a token's list
// decides which names it may take, an identity without a list follows
// UnlistedNames, an empty list allows generated names only, and a refused
// name is answered forbidden, naming the name.
func TestIdentityNames(t *testing.T) {
	t.Parallel()
	tokens := parseTokens(t, `
# a team's tokens
alice-token subject=alice names=alice,alice-*
bob-token   subject=bob
`)
	genOnly := tunnel.NewStaticTokenSet(tunnel.StaticToken{Token: "gen-only", Identity: tunnel.Identity{Subject: "g", Names: []string{}}})
	for _, rule := range []tunnel.NameRule{tunnel.AnyName, tunnel.GeneratedNamesOnly} {
		t.Run(map[tunnel.NameRule]string{tunnel.AnyName: "AnyName", tunnel.GeneratedNamesOnly: "GeneratedNamesOnly"}[rule], func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, gatewayConfig{auth: tunnel.Authenticators(tokens, genOnly), unlisted: rule})
			for _, tt := range []struct {
				token, name string
				ok          bool
			}{
				{"alice-token", "alice", true},
				{"alice-token", "alice-dev", true},
				{"alice-token", "bob", false},
				{"alice-token", "", true}, // generated
				{"bob-token", "bobs", rule == tunnel.AnyName},
				{"bob-token", "", true},
				{"gen-only", "", true},
				{"gen-only", "chosen", false},
			} {
				ln, err := g.listenAs(t, tt.token, tt.name)
				switch {
				case tt.ok && err != nil:
					t.Errorf("%s taking %q: %v", tt.token, tt.name, err)
				case tt.ok && tt.name != "" && ln.ID() != tt.name:
					t.Errorf("%s taking %q got %q", tt.token, tt.name, ln.ID())
				case !tt.ok && !errors.Is(err, tunnel.ErrForbidden):
					t.Errorf("%s taking %q: %v, want forbidden", tt.token, tt.name, err)
				case !tt.ok && !strings.Contains(err.Error(), tt.name):
					t.Errorf("the refusal does not say which name: %v", err)
				}
				if !tt.ok {
					if _, err := g.h.Store.Get(t.Context(), tt.name); !errors.Is(err, store.ErrNotFound) {
						t.Errorf("refused name %q: Get = %v, want no record", tt.name, err)
					}
				}
			}
		})
	}
}

// The record carries the subject the agent authenticated as, and so does
// its owner: a tunnel resumed under another subject is refused with
// name_in_use, as on the standalone gateway, and the same subject resumes
// it. The handshakes are written against the wire to hold the resume
// token.
func TestIdentityBindsResume(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayConfig{auth: parseTokens(t, "alice-token subject=alice\nbob-token subject=bob\n")})
	est := rawHandshake(t, g, "alice-token", `{"type":"ready","version":1,"name":"alice-app"}`)
	if est["type"] != "connection_established" || est["tunnel_id"] != "alice-app" {
		t.Fatalf("alice's ready: %v", est)
	}
	rec, err := g.h.Store.Get(t.Context(), "alice-app")
	if err != nil || rec.Subject != "alice" {
		t.Fatalf("record %+v, %v: want subject alice", rec, err)
	}
	resume := est["resume_token"].(string)
	resumeReady := `{"type":"ready","version":1,"tunnel_id":"alice-app","resume_token":` + strconv.Quote(resume) + `}`

	got := rawHandshake(t, g, "bob-token", resumeReady)
	if got["type"] != "error" || got["code"] != string(tunnel.CodeNameInUse) {
		t.Errorf("bob resuming alice's tunnel with her resume token: %v, want name_in_use", got)
	}
	got = rawHandshake(t, g, "alice-token", resumeReady)
	if got["type"] != "connection_established" || got["tunnel_id"] != "alice-app" {
		t.Errorf("alice resuming her tunnel: %v", got)
	}
}

// rawHandshake connects to g with token, sends ready, and returns the
// first message of the gateway. The connection closes with the test.
func rawHandshake(t *testing.T, g *gateway, token, ready string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	hdr := http.Header{}
	hdr.Set("Authorization", "Bearer "+token)
	conn, _, err := websocket.Dial(ctx, g.emu.WebSocketURL(), &websocket.DialOptions{
		HTTPHeader: hdr, Subprotocols: []string{protocol.SubprotocolJSON}, CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	if err := conn.Write(ctx, websocket.MessageText, []byte(ready)); err != nil {
		t.Fatalf("write ready: %v", err)
	}
	_, b, err := conn.Read(ctx)
	if err != nil {
		t.Fatalf("read the answer to ready: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("answer %q: %v", b, err)
	}
	return m
}

// authEcho answers with what the agent sees of the request's credentials.
var authEcho = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "authorization="+r.Header.Get("Authorization"))
})

// get sends a GET to url with the given Authorization, through the
// emulated HTTP API: the client address the function sees is 127.0.0.1.
func (g *gateway) get(t *testing.T, url, authorization string) (*http.Response, []byte) {
	t.Helper()
	hdr := http.Header{}
	if authorization != "" {
		hdr.Set("Authorization", authorization)
	}
	return g.do(t, http.MethodGet, url, nil, hdr)
}

func basicAuth(user, password string) string {
	r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	r.SetBasicAuth(user, password)
	return r.Header.Get("Authorization")
}

func newIdentityKey(t *testing.T) []byte {
	t.Helper()
	key := make([]byte, IdentityKeySize)
	rand.Read(key)
	return key
}

// An identity's Access applies to its tunnels' public side through the
// Lambda HTTP path: its credentials (401 with WWW-Authenticate without
// them, 200 with them, the agent never seeing them, the agent's own
// replaced), its deny list (403), and its allow list on top of the
// agent's (both must admit the client).
func TestIdentityImposesAccess(t *testing.T) {
	t.Parallel()
	basic := tunnel.NewStaticTokenSet(tunnel.StaticToken{Token: "basic-token", Identity: tunnel.Identity{
		Subject: "basic", Access: &tunnel.Access{BasicAuth: []tunnel.BasicCredential{{User: "alice", Password: "correct horse"}}},
	}})
	ips := parseTokens(t, `
deny-token        subject=deny        deny_ips=127.0.0.0/8
allow-token       subject=allow       allow_ips=127.0.0.1,2001:db8::/32
allow-other-token subject=allow-other allow_ips=10.0.0.0/8
`)
	g := newGateway(t, gatewayConfig{auth: tunnel.Authenticators(basic, ips), identityKey: newIdentityKey(t)})

	t.Run("basic auth", func(t *testing.T) {
		ln, err := g.listenAs(t, "basic-token", "")
		if err != nil {
			t.Fatal(err)
		}
		tunneltest.Serve(t, ln, authEcho)
		resp, body := g.get(t, ln.URL()+"/", "")
		wantError(t, resp, body, http.StatusUnauthorized, tunnel.CodeUnauthorized)
		if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("WWW-Authenticate %q, want a Basic challenge", resp.Header.Get("WWW-Authenticate"))
		}
		resp, body = g.get(t, ln.URL()+"/", basicAuth("alice", "wrong"))
		wantError(t, resp, body, http.StatusUnauthorized, tunnel.CodeUnauthorized)
		if resp, body := g.get(t, ln.URL()+"/", basicAuth("alice", "correct horse")); resp.StatusCode != 200 || string(body) != "authorization=" {
			t.Errorf("right credentials: %d %q, want 200 and no credentials at the agent", resp.StatusCode, body)
		}
	})

	t.Run("the identity's credentials replace the agent's", func(t *testing.T) {
		ln, err := g.listenAs(t, "basic-token", "", tunnel.WithBasicAuth("agent", "agents-own"))
		if err != nil {
			t.Fatal(err)
		}
		tunneltest.Serve(t, ln, authEcho)
		resp, body := g.get(t, ln.URL()+"/", basicAuth("agent", "agents-own"))
		wantError(t, resp, body, http.StatusUnauthorized, tunnel.CodeUnauthorized)
		if resp, body := g.get(t, ln.URL()+"/", basicAuth("alice", "correct horse")); resp.StatusCode != 200 {
			t.Errorf("the identity's credentials: %d %q, want 200", resp.StatusCode, body)
		}
	})

	t.Run("deny list", func(t *testing.T) {
		ln, err := g.listenAs(t, "deny-token", "")
		if err != nil {
			t.Fatal(err)
		}
		tunneltest.Serve(t, ln, authEcho)
		resp, body := g.get(t, ln.URL()+"/", "")
		wantError(t, resp, body, http.StatusForbidden, tunnel.CodeForbidden)
	})

	t.Run("allow lists of the identity and the agent", func(t *testing.T) {
		for _, tt := range []struct {
			token, agentList string
			want             int
		}{
			{"allow-other-token", "", http.StatusForbidden}, // the identity's list refuses
			{"allow-token", "", http.StatusOK},
			{"allow-token", "127.0.0.0/8", http.StatusOK},       // both admit
			{"allow-token", "10.0.0.0/8", http.StatusForbidden}, // the agent's list refuses
		} {
			var opts []tunnel.Option
			if tt.agentList != "" {
				opts = append(opts, tunnel.WithAllowIPs(tt.agentList))
			}
			ln, err := g.listenAs(t, tt.token, "", opts...)
			if err != nil {
				t.Fatal(err)
			}
			tunneltest.Serve(t, ln, authEcho)
			resp, body := g.get(t, ln.URL()+"/", "")
			if tt.want == http.StatusForbidden {
				wantError(t, resp, body, http.StatusForbidden, tunnel.CodeForbidden)
			} else if resp.StatusCode != tt.want {
				t.Errorf("%s with the agent's list %q: %d %q, want %d", tt.token, tt.agentList, resp.StatusCode, body, tt.want)
			}
		}
	})
}

// Credentials an identity imposes are sealed in its row with the
// Handler's IdentityKey: the row shows the subject but not the password,
// and without a key the agent is refused rather than its credentials
// written in clear.
func TestIdentityCredentialsSealed(t *testing.T) {
	t.Parallel()
	const password = "sealed-horse-battery"
	auth := tunnel.NewStaticTokenSet(tunnel.StaticToken{Token: "basic-token", Identity: tunnel.Identity{
		Subject: "sealed-subject", Access: &tunnel.Access{
			BasicAuth:    []tunnel.BasicCredential{{User: "alice", Password: password}},
			BearerTokens: []tunnel.Token{"bearer-" + password},
		},
	}})

	t.Run("with a key", func(t *testing.T) {
		t.Parallel()
		rows := make(chan map[string]types.AttributeValue, 1)
		var g *gateway
		g = newGateway(t, gatewayConfig{auth: auth, identityKey: newIdentityKey(t),
			afterConnect: func(ev events.APIGatewayWebsocketProxyRequest) {
				out, err := g.h.Identities.Client.GetItem(context.Background(), &dynamodb.GetItemInput{
					TableName: g.h.Identities.table(), Key: identityKey(ev.RequestContext.ConnectionID), ConsistentRead: aws.Bool(true)})
				if err != nil {
					t.Errorf("read the identity row: %v", err)
					rows <- nil
					return
				}
				rows <- out.Item
			}})
		if _, err := g.listenAs(t, "basic-token", ""); err != nil {
			t.Fatal(err)
		}
		row := <-rows
		data, _ := row[identityAttrIdentity].(*types.AttributeValueMemberB)
		if data == nil || !bytes.Contains(data.Value, []byte("sealed-subject")) {
			t.Fatalf("identity row %v does not hold the subject", row)
		}
		var kept keptIdentity
		if err := json.Unmarshal(data.Value, &kept); err != nil || kept.Access == nil || len(kept.Access.Sealed) == 0 {
			t.Fatalf("identity row %s keeps no sealed credentials (%v)", data.Value, err)
		}
		if bytes.Contains(data.Value, []byte("horse")) || bytes.Contains(kept.Access.Sealed, []byte("horse")) {
			t.Errorf("identity row shows a credential: %s", data.Value)
		}
	})

	t.Run("without a key", func(t *testing.T) {
		t.Parallel()
		logs := &logbuf.Buffer{}
		g := newGateway(t, gatewayConfig{auth: auth, logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		_, err := g.listenAs(t, "basic-token", "")
		if !errors.Is(err, tunnel.ErrInternal) {
			t.Fatalf("Listen: %v, want internal (refused, not admitted)", err)
		}
		if !strings.Contains(logs.String(), "IdentityKey") {
			t.Errorf("the log does not say what is missing:\n%s", logs)
		}
		if strings.Contains(logs.String(), "horse") || strings.Contains(err.Error(), "horse") {
			t.Errorf("a credential shows in the log or the agent's error:\n%s\n%v", logs, err)
		}
	})
}

// A ready message on a connection whose identity is not kept (its row
// deleted, or expired) is refused with unauthorized, with an error ID
// that the log line repeats; the function goes on serving.
func TestReadyWithoutIdentity(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		spoil func(g *gateway, connID string) error
	}{
		{"missing", func(g *gateway, connID string) error {
			return g.h.Identities.delete(context.Background(), connID)
		}},
		{"expired", func(g *gateway, connID string) error {
			data, err := encodeIdentity(tunnel.Identity{Subject: "agent"}, connID, nil)
			if err != nil {
				return err
			}
			return g.h.Identities.put(context.Background(), connID, data, time.Now().Add(-time.Second))
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logs := &logbuf.Buffer{}
			var spoiled atomic.Bool
			spoilErr := make(chan error, 1)
			var g *gateway
			g = newGateway(t, gatewayConfig{tokens: []string{"s3cret"},
				logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
				afterConnect: func(ev events.APIGatewayWebsocketProxyRequest) {
					if spoiled.CompareAndSwap(false, true) {
						spoilErr <- tt.spoil(g, ev.RequestContext.ConnectionID)
					}
				}})
			_, err := g.listenAs(t, "s3cret", "")
			if err := <-spoilErr; err != nil {
				t.Fatal(err)
			}
			if !errors.Is(err, tunnel.ErrUnauthorized) || !strings.Contains(err.Error(), "identity") {
				t.Fatalf("Listen: %v, want unauthorized about the identity", err)
			}
			m := regexp.MustCompile(`error id ([0-9a-f]+)`).FindStringSubmatch(err.Error())
			if m == nil {
				t.Fatalf("the refusal %q has no error id", err)
			}
			logged := logs.String()
			if !regexp.MustCompile(`ready refused.*connection_id=\S+.*error_id=` + m[1]).MatchString(logged) {
				t.Errorf("no log line of the refusal with the connection and error %s:\n%s", m[1], logged)
			}
			// The next agent is served.
			if _, err := g.listenAs(t, "s3cret", ""); err != nil {
				t.Errorf("an agent after the refusal: %v", err)
			}
		})
	}
}

// The identity row lives as long as the connection may, and goes at
// $disconnect.
func TestIdentityRowLifetime(t *testing.T) {
	t.Parallel()
	connIDs := make(chan string, 1)
	g := newGateway(t, gatewayConfig{tokens: []string{"s3cret"}, afterConnect: func(ev events.APIGatewayWebsocketProxyRequest) {
		connIDs <- ev.RequestContext.ConnectionID
	}})
	before := time.Now().Truncate(time.Millisecond) // the row keeps milliseconds
	ln, err := g.listenAs(t, "s3cret", "")
	if err != nil {
		t.Fatal(err)
	}
	connID := <-connIDs
	out, err := g.h.Identities.Client.GetItem(t.Context(), &dynamodb.GetItemInput{
		TableName: g.h.Identities.table(), Key: identityKey(connID), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	exp, _ := out.Item[identityAttrExpires].(*types.AttributeValueMemberN)
	ttl, _ := out.Item[identityAttrTTL].(*types.AttributeValueMemberN)
	if exp == nil || ttl == nil {
		t.Fatalf("identity row %v has no expiresAt or ttl", out.Item)
	}
	ms, _ := strconv.ParseInt(exp.Value, 10, 64)
	s, _ := strconv.ParseInt(ttl.Value, 10, 64)
	if at := time.UnixMilli(ms); at.Before(before.Add(DefaultConnectionTTL)) || at.After(time.Now().Add(DefaultConnectionTTL)) {
		t.Errorf("identity row expires at %v, want the connection's TTL %v from its $connect", at, DefaultConnectionTTL)
	}
	if s*1000 < ms || s*1000-ms >= 1000 {
		t.Errorf("ttl %d s does not round expiresAt %d ms up", s, ms)
	}

	ln.Close()
	g.waitDisconnect(t, connID)
	if _, err := g.h.Identities.get(t.Context(), connID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("identity row after $disconnect: %v, want gone", err)
	}
}

// connectEvent is a $connect event with a bearer token.
func connectEvent(connID, token string) events.APIGatewayWebsocketProxyRequest {
	return events.APIGatewayWebsocketProxyRequest{
		Headers: map[string]string{"Authorization": "Bearer " + token},
		RequestContext: events.APIGatewayWebsocketProxyRequestContext{
			RouteKey: "$connect", ConnectionID: connID,
			Identity: events.APIGatewayRequestIdentity{SourceIP: "192.0.2.1"},
		},
	}
}

// $connect fails closed: an identity that cannot be kept (its table
// down, no table configured, or too large to keep) refuses the agent with
// 500 and an error ID in its log line, never admits it.
func TestConnectWithoutIdentityStorage(t *testing.T) {
	t.Parallel()
	down := dynamotest.ClientAt(t, "http://127.0.0.1:1", func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 })
	huge := make([]string, 2000)
	for i := range huge {
		huge[i] = "name-" + strconv.Itoa(i) + "-*"
	}
	auth := tunnel.NewStaticTokenSet(
		tunnel.StaticToken{Token: "tok"},
		tunnel.StaticToken{Token: "huge", Identity: tunnel.Identity{Subject: "huge", Names: huge}},
	)
	for _, tt := range []struct {
		name, token string
		ids         *IdentityTable
		want        string
	}{
		{"table down", "tok", &IdentityTable{Client: down, Table: "conns"}, "keeping the agent's identity failed"},
		{"no table", "tok", nil, "Handler.Identities is required"},
		{"too large", "huge", &IdentityTable{Client: down, Table: "conns"}, "over the"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logs := &logbuf.Buffer{}
			h := &Handler{Server: &tunnel.Server{Authenticator: auth}, Identities: tt.ids,
				Logger: slog.New(slog.NewTextHandler(logs, nil))}
			resp, err := h.WebSocket(t.Context(), connectEvent("c1", tt.token))
			if err != nil {
				t.Fatal(err)
			}
			var body struct {
				Error   string `json:"error"`
				ErrorID string `json:"error_id"`
			}
			json.Unmarshal([]byte(resp.Body), &body)
			if resp.StatusCode != http.StatusInternalServerError || body.Error != string(tunnel.CodeInternal) || body.ErrorID == "" {
				t.Fatalf("$connect: %d %s, want 500 internal with an error_id", resp.StatusCode, resp.Body)
			}
			if l := logs.String(); !strings.Contains(l, tt.want) || !strings.Contains(l, "error_id="+body.ErrorID) || !strings.Contains(l, "connection_id=c1") {
				t.Errorf("log %q: want %q with the error and connection IDs", l, tt.want)
			}
		})
	}
}

// An identity row keeps every field of tunnel.Identity and tunnel.Access:
// a field added to either must be added to the row, or this fails.
func TestIdentityRowKeepsEveryField(t *testing.T) {
	t.Parallel()
	fields := func(v any) []string {
		var names []string
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			names = append(names, typ.Field(i).Name)
		}
		return names
	}
	if got, want := fields(tunnel.Identity{}), []string{"Subject", "Names", "Access"}; !slices.Equal(got, want) {
		t.Errorf("tunnel.Identity has fields %v; the identity row keeps %v", got, want)
	}
	if got, want := fields(tunnel.Access{}), []string{"BasicAuth", "BearerTokens", "AllowIPs", "DenyIPs"}; !slices.Equal(got, want) {
		t.Errorf("tunnel.Access has fields %v; the identity row keeps %v", got, want)
	}

	key := newIdentityKey(t)
	for _, id := range []tunnel.Identity{
		{Subject: "no list"},
		{Subject: "empty list", Names: []string{}},
		{Subject: "full", Names: []string{"a", "b-*"}, Access: &tunnel.Access{
			BasicAuth:    []tunnel.BasicCredential{{User: "u", Password: "p"}},
			BearerTokens: []tunnel.Token{"t1", "t2"},
			AllowIPs:     []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")},
			DenyIPs:      []netip.Prefix{netip.MustParsePrefix("10.1.2.3/32")},
		}},
		{Subject: "ips only", Access: &tunnel.Access{DenyIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}},
	} {
		data, err := encodeIdentity(id, "conn1", key)
		if err != nil {
			t.Fatalf("%s: %v", id.Subject, err)
		}
		got, err := decodeIdentity(data, "conn1", key)
		if err != nil {
			t.Fatalf("%s: %v", id.Subject, err)
		}
		if !reflect.DeepEqual(got, id) {
			t.Errorf("%s: kept %#v, read back %#v", id.Subject, id, got)
		}
		if id.Access != nil && len(id.Access.BasicAuth) > 0 {
			if _, err := decodeIdentity(data, "conn2", key); err == nil {
				t.Error("sealed credentials opened in another connection's row")
			}
			if _, err := decodeIdentity(data, "conn1", newIdentityKey(t)); err == nil {
				t.Error("sealed credentials opened with another key")
			}
			if _, err := encodeIdentity(id, "conn1", key[:16]); err == nil {
				t.Error("a 16-byte key sealed credentials")
			}
		}
	}
}
