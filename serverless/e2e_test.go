package serverless

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/randid"
	"github.com/http-tunnel/tunnel/ratelimit"
	"github.com/http-tunnel/tunnel/serverless/apigwtest"
	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/store/dynamostore"
	"github.com/http-tunnel/tunnel/store/dynamostore/dynamotest"
	"github.com/http-tunnel/tunnel/tunneltest"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// gateway is the serverless gateway on the emulated API Gateway, with
// DynamoDB in dynalite.
type gateway struct {
	emu    *apigwtest.Emulator
	h      *Handler
	relay  *Relay
	mgmt   *apigatewaymanagementapi.Client
	client *http.Client
	// ddbClient is the handlers' DynamoDB client.
	ddbClient *dynamodb.Client

	// disconnected receives the connection ID of every $disconnect
	// invocation once the handler has returned, that is once the
	// connection's record is gone.
	disconnected chan string
}

type gatewayConfig struct {
	responseTimeout time.Duration
	requestLimiter  ratelimit.Limiter
	tokens          []string // agent tokens; none means no authentication
	v1              bool     // HTTP API payload format 1.0
	agentLimiter    ratelimit.Limiter

	auth        tunnel.Authenticator // instead of tokens
	unlisted    tunnel.NameRule      // Server.UnlistedNames
	identityKey []byte               // Handler.IdentityKey
	logger      *slog.Logger         // the Handler's and the Server's; nil: quiet
	// afterConnect, if set, runs after every $connect invocation that
	// accepted the agent, before API Gateway answers the upgrade.
	afterConnect func(ev events.APIGatewayWebsocketProxyRequest)

	// limits, the concurrency of the two functions and active tracing
	// go to the emulator's Config.
	limits          apigwtest.Limits
	wsConcurrency   *apigwtest.Concurrency
	httpConcurrency *apigwtest.Concurrency
	activeTracing   bool
	// ddbOptions adjust the DynamoDB client's options (a middleware).
	ddbOptions func(*dynamodb.Options)
	// mgmtResponse, if set, sees every Management API response the
	// handlers receive.
	mgmtResponse func(*http.Response)
	// tracer is the Server's TracerProvider; nil means none.
	tracer trace.TracerProvider
	// meter is the Server's MeterProvider; nil means the global one.
	meter metric.MeterProvider
	// onHTTP, if set, sees the context of every HTTP API invocation.
	onHTTP func(context.Context)
	// bodies is the Store's BodyStore (dynamostore.Options.Bodies), with
	// bodyThreshold; nil keeps every chunk in the pending table.
	bodies        dynamostore.BodyStore
	bodyThreshold int
	// afterMessage, if set, runs after every $default invocation.
	afterMessage func(ev events.APIGatewayWebsocketProxyRequest)
}

// newTables gives t a connections table and a pending table of its own in
// dynalite, and returns the store on them, its client, and the store's
// options (the tables' names).
func newTables(t *testing.T, optFns ...func(*dynamodb.Options)) (*dynamostore.Store, *dynamodb.Client, dynamostore.Options) {
	t.Helper()
	ddb := dynamotest.Client(t, optFns...)
	var opts dynamostore.Options
	dynamotest.Tables(t, ddb, func(ctx context.Context, names []string) error {
		opts = dynamostore.Options{ConnectionsTable: names[0], PendingTable: names[1]}
		return dynamostore.CreateTables(ctx, ddb, opts)
	}, "lambda-connections", "lambda-pending")
	return dynamostore.New(ddb, opts), ddb, opts
}

func newGateway(t *testing.T, cfg gatewayConfig) *gateway {
	t.Helper()
	var ddbOpts []func(*dynamodb.Options)
	if cfg.ddbOptions != nil {
		ddbOpts = append(ddbOpts, cfg.ddbOptions)
	}
	st, ddb, storeOpts := newTables(t, ddbOpts...)
	if cfg.bodies != nil {
		storeOpts.Bodies, storeOpts.BodyThreshold = cfg.bodies, cfg.bodyThreshold
		st = dynamostore.New(ddb, storeOpts)
	}
	table := storeOpts.ConnectionsTable
	logger := cfg.logger
	if logger == nil {
		logger = quiet
	}
	g := &gateway{
		h: &Handler{Store: st, Logger: logger, Limiter: cfg.agentLimiter, IdentityKey: cfg.identityKey,
			Identities: &IdentityTable{Client: ddb, Table: table}},
		disconnected: make(chan string, 64),
		ddbClient:    ddb,
	}
	ws := func(ctx context.Context, ev events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
		resp, err := g.h.WebSocket(ctx, ev)
		if ev.RequestContext.RouteKey == "$connect" && resp.StatusCode == http.StatusOK && cfg.afterConnect != nil {
			cfg.afterConnect(ev)
		}
		if ev.RequestContext.RouteKey == "$default" && cfg.afterMessage != nil {
			cfg.afterMessage(ev)
		}
		if ev.RequestContext.RouteKey == "$disconnect" {
			select {
			case g.disconnected <- ev.RequestContext.ConnectionID:
			default:
			}
		}
		return resp, err
	}
	httpFn := g.h.HTTP
	if cfg.onHTTP != nil {
		httpFn = func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
			cfg.onHTTP(ctx)
			return g.h.HTTP(ctx, ev)
		}
	}
	apiCfg := apigwtest.Config{WebSocket: ws, HTTP: httpFn, WebSocketStage: "prod", HTTPStage: "live",
		Limits: cfg.limits, WebSocketConcurrency: cfg.wsConcurrency, HTTPConcurrency: cfg.httpConcurrency, ActiveTracing: cfg.activeTracing}
	if cfg.v1 {
		apiCfg.HTTP, apiCfg.HTTPV1 = nil, g.h.HTTPV1
	}
	emu, err := apigwtest.Start(apiCfg)
	if err != nil {
		t.Fatalf("apigwtest.Start: %v", err)
	}
	t.Cleanup(func() { emu.Close() })
	g.emu = emu

	mtr := &http.Transport{}
	t.Cleanup(mtr.CloseIdleConnections)
	var rt http.RoundTripper = mtr
	if cfg.mgmtResponse != nil {
		rt = observedTransport{mtr, cfg.mgmtResponse}
	}
	g.mgmt = apigatewaymanagementapi.New(apigatewaymanagementapi.Options{
		Region:       dynamotest.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(dynamotest.AccessKeyID, dynamotest.SecretAccessKey, ""),
		BaseEndpoint: aws.String(emu.ManagementURL()),
		HTTPClient:   &http.Client{Transport: rt},
	})
	g.relay = &Relay{Store: st, Mgmt: g.mgmt, ResponseTimeout: cfg.responseTimeout}
	g.h.Mgmt = g.mgmt
	g.h.Server = &tunnel.Server{
		BaseURL:        emu.HTTPURL(),
		Routing:        tunnel.RoutePath,
		Store:          st,
		Cache:          NoCache{},
		Logger:         logger,
		Relay:          g.relay,
		RequestLimiter: cfg.requestLimiter,
		UnlistedNames:  cfg.unlisted,
		Authenticator:  cfg.auth,
		TracerProvider: cfg.tracer,
		MeterProvider:  cfg.meter,
	}
	if len(cfg.tokens) > 0 {
		g.h.Server.Authenticator = tunnel.NewStaticTokens(cfg.tokens...)
	}
	ctr := &http.Transport{}
	t.Cleanup(ctr.CloseIdleConnections)
	g.client = &http.Client{Transport: ctr}
	return g
}

// observedTransport shows every response to a function before passing it
// on.
type observedTransport struct {
	http.RoundTripper
	see func(*http.Response)
}

func (o observedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := o.RoundTripper.RoundTrip(r)
	if err == nil {
		o.see(resp)
	}
	return resp, err
}

// waitDisconnect waits until the $disconnect invocation of connection
// connID has returned; other connections' are skipped.
func (g *gateway) waitDisconnect(t *testing.T, connID string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case id := <-g.disconnected:
			if id == connID {
				return
			}
		case <-timeout:
			t.Fatalf("no $disconnect of connection %s in 10s", connID)
		}
	}
}

// agent connects an agent serving h and returns its listener and its
// connection events.
func (g *gateway) agent(t *testing.T, h http.Handler, opts ...tunnel.Option) (*tunnel.Listener, <-chan tunnel.Event) {
	t.Helper()
	events := make(chan tunnel.Event, 64)
	ln, err := tunnel.Listen(t.Context(), g.emu.WebSocketURL(), append([]tunnel.Option{
		tunnel.WithLogger(quiet),
		tunnel.WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		tunnel.WithEvents(func(e tunnel.Event) {
			select {
			case events <- e:
			default:
			}
		})}, opts...)...)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	tunneltest.Serve(t, ln, h)
	if !strings.HasPrefix(ln.URL(), g.emu.HTTPURL()+"/") {
		t.Fatalf("tunnel URL %q is not under %q", ln.URL(), g.emu.HTTPURL())
	}
	return ln, events
}

func (g *gateway) do(t *testing.T, method, url string, body []byte, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := g.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, b
}

// echo answers with what it received.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Method", r.Method)
	w.Header().Set("X-URI", r.RequestURI)
	w.Header()["X-Multi"] = r.Header.Values("X-Multi")
	w.Header().Add("Set-Cookie", "a=1; Path=/")
	w.Header().Add("Set-Cookie", "b=2; Path=/")
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(b)
})

// checkEcho checks a response of echo: status, method, request URI, body
// and its two cookies.
func checkEcho(t *testing.T, resp *http.Response, body []byte, method, uri string, sent []byte) {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, body %q", resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Method"); got != method {
		t.Errorf("X-Method = %q, want %q", got, method)
	}
	if got := resp.Header.Get("X-URI"); got != uri {
		t.Errorf("X-URI = %q, want %q", got, uri)
	}
	if !bytes.Equal(body, sent) {
		t.Errorf("body: got %d bytes, want %d", len(body), len(sent))
	}
	if got := resp.Header.Values("Set-Cookie"); len(got) != 2 || got[0] != "a=1; Path=/" || got[1] != "b=2; Path=/" {
		t.Errorf("Set-Cookie = %q, want two cookies", got)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestForward(t *testing.T) {
	t.Parallel()
	for _, v1 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v1=%v", v1), func(t *testing.T) {
			t.Parallel()
			testForward(t, v1)
		})
	}
}

func testForward(t *testing.T, v1 bool) {
	g := newGateway(t, gatewayConfig{v1: v1})
	ln, _ := g.agent(t, echo)
	big := randomBytes(1536 << 10)

	tests := []struct {
		name    string
		method  string
		path    string
		body    []byte
		wantURI string
	}{
		{"get", http.MethodGet, "/hello?x=1", nil, "/hello?x=1"},
		{"repeated query keys", http.MethodGet, "/q?tag=a&tag=b%2Fc&tag=%20+&empty=", nil, "/q?tag=a&tag=b%2Fc&tag=%20+&empty="},
		{"named tunnel path", http.MethodGet, "/a/b/", nil, "/a/b/"},
		{"post", http.MethodPost, "/form", []byte("hello, tunnel"), "/form"},
		{"post 1.5 MiB", http.MethodPost, "/upload", big, "/upload"},
	}
	for _, tt := range tests {
		if v1 && tt.name == "repeated query keys" {
			// Format 1.0 has no raw query string: the handler rebuilds it
			// from the parsed parameters (sorted and re-encoded).
			tt.wantURI = "/q?empty=&tag=a&tag=b%2Fc&tag=++"
		}
		t.Run(tt.name, func(t *testing.T) {
			resp, body := g.do(t, tt.method, ln.URL()+tt.path, tt.body, nil)
			checkEcho(t, resp, body, tt.method, tt.wantURI, tt.body)
		})
	}
}

func TestPublicErrors(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayConfig{})

	t.Run("unknown tunnel", func(t *testing.T) {
		resp, body := g.do(t, http.MethodGet, g.emu.HTTPURL()+"/nosuchtunnel/x", nil, nil)
		wantError(t, resp, body, http.StatusNotFound, tunnel.CodeTunnelNotFound)
	})

	t.Run("gone connection", func(t *testing.T) {
		// A record whose connection API Gateway no longer knows: its
		// $disconnect has not run yet.
		rec := store.Record{TunnelID: "stale" + randid.Hex(4), ConnectionID: "gone" + randid.Hex(8), Owner: "o",
			CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
		if err := g.h.Store.Put(t.Context(), rec); err != nil {
			t.Fatal(err)
		}
		resp, body := g.do(t, http.MethodGet, g.emu.HTTPURL()+"/"+rec.TunnelID+"/x", nil, nil)
		wantError(t, resp, body, http.StatusBadGateway, tunnel.CodeAgentUnavailable)
		if _, err := g.h.Store.Get(t.Context(), rec.TunnelID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("record of the gone connection: Get = %v, want ErrNotFound", err)
		}
	})

	t.Run("agent closed", func(t *testing.T) {
		ln, _ := g.agent(t, echo)
		id := ln.ID()
		rec, err := g.h.Store.Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		// $disconnect deletes the record; from then on the tunnel is
		// unknown (before, the request would meet a gone connection: 502).
		g.waitDisconnect(t, rec.ConnectionID)
		if _, err := g.h.Store.Get(t.Context(), id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("record after $disconnect: Get = %v, want ErrNotFound", err)
		}
		resp, body := g.do(t, http.MethodGet, g.emu.HTTPURL()+"/"+id+"/x", nil, nil)
		wantError(t, resp, body, http.StatusNotFound, tunnel.CodeTunnelNotFound)
	})

	t.Run("local service error", func(t *testing.T) {
		ln, _ := g.agent(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			panic(http.ErrAbortHandler)
		}))
		resp, body := g.do(t, http.MethodGet, ln.URL()+"/x", nil, nil)
		wantError(t, resp, body, http.StatusBadGateway, tunnel.CodeLocalServiceUnavailable)
	})
}

func TestAgentAuthentication(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayConfig{tokens: []string{"s3cret"}})

	_, err := tunnel.Listen(t.Context(), g.emu.WebSocketURL(), tunnel.WithLogger(quiet), tunnel.WithToken("wrong"))
	if !errors.Is(err, tunnel.ErrUnauthorized) {
		t.Fatalf("Listen with a wrong token: %v, want ErrUnauthorized", err)
	}
	ln, _ := g.agent(t, echo, tunnel.WithToken("s3cret"))
	if resp, body := g.do(t, http.MethodGet, ln.URL()+"/x", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, body %q", resp.StatusCode, body)
	}
}

func TestAgentConnectionLimit(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayConfig{agentLimiter: ratelimit.NewLocal(ratelimit.Limit{Events: 1, Period: time.Hour, Burst: 1}, nil)})
	g.agent(t, echo)
	_, err := tunnel.Listen(t.Context(), g.emu.WebSocketURL(), tunnel.WithLogger(quiet))
	if !errors.Is(err, tunnel.ErrRateLimited) {
		t.Fatalf("second agent from one IP: %v, want ErrRateLimited", err)
	}
}

func TestSlowAgent(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayConfig{responseTimeout: 500 * time.Millisecond})
	release := make(chan struct{})
	ln, _ := g.agent(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	start := time.Now()
	resp, body := g.do(t, http.MethodGet, ln.URL()+"/slow", nil, nil)
	wantError(t, resp, body, http.StatusGatewayTimeout, tunnel.CodeGatewayTimeout)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("504 after %v, want about 500ms", d)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayConfig{requestLimiter: ratelimit.NewLocal(ratelimit.Limit{Events: 1, Period: time.Hour, Burst: 1}, nil)})
	ln, _ := g.agent(t, echo)
	if resp, body := g.do(t, http.MethodGet, ln.URL()+"/1", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("first request: status %d, body %q", resp.StatusCode, body)
	}
	resp, body := g.do(t, http.MethodGet, ln.URL()+"/2", nil, nil)
	wantError(t, resp, body, http.StatusTooManyRequests, tunnel.CodeRateLimited)
}

// A reconnecting agent keeps its tunnel: its resume token, under the
// subject it authenticates as again (the anonymous one without tokens),
// proves it owns the tunnel.
func TestReconnectKeepsURL(t *testing.T) {
	t.Parallel()
	for _, tokens := range [][]string{nil, {"s3cret"}} {
		t.Run("tokens="+strings.Join(tokens, ","), func(t *testing.T) {
			t.Parallel()
			testReconnectKeepsURL(t, tokens)
		})
	}
}

func testReconnectKeepsURL(t *testing.T, tokens []string) {
	g := newGateway(t, gatewayConfig{tokens: tokens})
	var opts []tunnel.Option
	if len(tokens) > 0 {
		opts = append(opts, tunnel.WithToken(tokens[0]))
	}
	ln, events := g.agent(t, echo, opts...)
	url := ln.URL()
	rec, err := g.h.Store.Get(t.Context(), ln.ID())
	if err != nil {
		t.Fatal(err)
	}
	if want := "anonymous"; len(tokens) == 0 && rec.Subject != want || len(tokens) > 0 && !strings.HasPrefix(rec.Subject, "token:") {
		t.Errorf("record's subject %q, want the agent's (anonymous without tokens, token:... with)", rec.Subject)
	}
	if _, err := g.mgmt.DeleteConnection(t.Context(), &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: aws.String(rec.ConnectionID)}); err != nil {
		t.Fatalf("DeleteConnection: %v", err)
	}
	timeout := time.After(10 * time.Second)
	for resumed := false; !resumed; {
		select {
		case e := <-events:
			resumed = e.Kind == tunnel.EventConnected && e.Attempt > 0
		case <-timeout:
			t.Fatal("the agent did not reconnect")
		}
	}
	if ln.URL() != url {
		t.Fatalf("URL after reconnect %q, want %q", ln.URL(), url)
	}
	// The old connection's $disconnect may run after the new ready; it
	// must not take the tunnel down.
	g.waitDisconnect(t, rec.ConnectionID)
	resp, body := g.do(t, http.MethodGet, url+"/again", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after reconnect: status %d, body %q", resp.StatusCode, body)
	}
	now, err := g.h.Store.Get(t.Context(), ln.ID())
	if err != nil || now.ConnectionID == rec.ConnectionID {
		t.Errorf("record after reconnect: %+v, %v; want a new connection", now, err)
	}
}

// wantError checks a public error response.
func wantError(t *testing.T, resp *http.Response, body []byte, status int, code tunnel.Code) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %q", resp.StatusCode, status, body)
	}
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error != string(code) {
		t.Fatalf("body %q: want JSON error %q (%v)", body, code, err)
	}
}
