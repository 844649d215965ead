package apigwtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/http-tunnel/tunnel/internal/randid"
)

// WebSocketHandler is a Lambda function behind the WebSocket API. It serves
// the three routes $connect, $default and $disconnect; the route is in
// ev.RequestContext.RouteKey and the event type ("CONNECT", "MESSAGE",
// "DISCONNECT") in ev.RequestContext.EventType.
type WebSocketHandler func(ctx context.Context, ev events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error)

// HTTPHandler is a Lambda function behind the HTTP API with payload format
// version 2.0.
type HTTPHandler func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error)

// HTTPHandlerV1 is a Lambda function behind the HTTP API with payload
// format version 1.0.
type HTTPHandlerV1 func(ctx context.Context, ev events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error)

// Defaults of Limits, the quotas of API Gateway and Lambda.
const (
	DefaultMaxMessageBytes    = 128 << 10
	DefaultMaxFrameBytes      = 32 << 10
	DefaultIdleTimeout        = 10 * time.Minute
	DefaultMaxConnectionLife  = 2 * time.Hour
	DefaultIntegrationTimeout = 29 * time.Second
	DefaultFunctionTimeout    = 30 * time.Second
	DefaultClientBufferBytes  = 1 << 20
)

// Fixed limits, not configurable because no deployment can change them.
const (
	// MaxHTTPPayloadBytes is the HTTP API's request body limit (10 MB);
	// a larger body is answered 413 without an invocation.
	MaxHTTPPayloadBytes = 10 << 20

	// MaxInvokeRequestBytes is Lambda's limit on a synchronous
	// invocation's event, measured on the JSON document (a base64 body
	// counts at its encoded size). A larger event is answered 413.
	MaxInvokeRequestBytes = 6291456

	// MaxInvokeResponseBytes is Lambda's limit on a synchronous
	// invocation's result, measured on the JSON document. Lambda's own
	// error message names this figure, 100 bytes over 6 MiB.
	MaxInvokeResponseBytes = 6291556
)

// Limits are the quotas the emulator enforces. The zero value of every
// field means the real quota; tests shorten the timeouts to exercise them.
type Limits struct {
	// MaxMessageBytes caps one WebSocket message from a client and one
	// @connections post. A larger client message closes the connection
	// with 1009; a larger post is answered 413 PayloadTooLargeException.
	// Zero means DefaultMaxMessageBytes (128 KiB).
	MaxMessageBytes int

	// MaxFrameBytes caps the payload of one WebSocket frame from a
	// client; a larger frame closes the connection with 1009 even when
	// its message would fit. Messages to clients are split into frames
	// of this size. Zero means DefaultMaxFrameBytes (32 KiB).
	MaxFrameBytes int

	// IdleTimeout closes a connection with 1001 "Going away" after this
	// long without a data message in either direction (client messages
	// and messages delivered to the client both count; pings do not).
	// Zero means DefaultIdleTimeout (10 minutes).
	IdleTimeout time.Duration

	// MaxConnectionLife closes a connection with 1001 "Going away" this
	// long after its upgrade, whatever its activity. Zero means
	// DefaultMaxConnectionLife (2 hours).
	MaxConnectionLife time.Duration

	// IntegrationTimeout is how long API Gateway waits for a handler.
	// Past it the HTTP API answers 503 {"message":"Service Unavailable"},
	// a $connect is refused with 504, and a $default message's result is
	// dropped and the client is sent an "Endpoint request timed out"
	// notice. The handler keeps running (its context is not cancelled),
	// as a Lambda function does. Zero means DefaultIntegrationTimeout
	// (29 s).
	IntegrationTimeout time.Duration

	// FunctionTimeout is the deadline of the context each handler
	// receives, the Lambda function's configured timeout. Zero means
	// DefaultFunctionTimeout (30 s).
	FunctionTimeout time.Duration

	// ClientBufferBytes is how many bytes of messages to one client may
	// wait for the client to read them, beyond what the TCP connection
	// holds: a post that would pass it is answered 429
	// LimitExceededException ("the WebSocket client side buffer is
	// full"), unless nothing waits at all (a single message always
	// fits). A client that reads again drains it. AWS does not publish
	// its figure. Zero means DefaultClientBufferBytes (1 MiB).
	ClientBufferBytes int
}

// withDefaults returns l with every zero field set to its default.
func (l Limits) withDefaults() Limits {
	if l.MaxMessageBytes == 0 {
		l.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if l.MaxFrameBytes == 0 {
		l.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.MaxConnectionLife == 0 {
		l.MaxConnectionLife = DefaultMaxConnectionLife
	}
	if l.IntegrationTimeout == 0 {
		l.IntegrationTimeout = DefaultIntegrationTimeout
	}
	if l.FunctionTimeout == 0 {
		l.FunctionTimeout = DefaultFunctionTimeout
	}
	if l.ClientBufferBytes == 0 {
		l.ClientBufferBytes = DefaultClientBufferBytes
	}
	return l
}

func (l Limits) validate() error {
	if l.MaxMessageBytes < 0 || l.MaxFrameBytes < 0 || l.ClientBufferBytes < 0 {
		return errors.New("apigw: negative size limit")
	}
	if l.IdleTimeout < 0 || l.MaxConnectionLife < 0 || l.IntegrationTimeout < 0 || l.FunctionTimeout < 0 {
		return errors.New("apigw: negative timeout")
	}
	return nil
}

// DefaultStage is the stage served at the root of an API's URL.
const DefaultStage = "$default"

// Config describes the emulated deployment: one WebSocket API and one HTTP
// API, each with one stage, and the Lambda functions behind them.
type Config struct {
	// WebSocket handles the WebSocket API's $connect, $default and
	// $disconnect routes; every message goes to $default (no route
	// selection). Nil means a WebSocket API without integrations:
	// upgrades are accepted, and each message is answered with a
	// {"message": "Forbidden", ...} notice, as API Gateway answers a
	// message no route matches. The @connections API works either way.
	WebSocket WebSocketHandler

	// HTTP handles every request to the HTTP API (route $default) with
	// payload format 2.0. At most one of HTTP and HTTPV1 may be set;
	// with neither, the HTTP API answers 404 {"message":"Not Found"}.
	HTTP HTTPHandler

	// HTTPV1 handles every request to the HTTP API with payload format
	// 1.0, as a route "ANY /{proxy+}" that also takes the root path.
	HTTPV1 HTTPHandlerV1

	// WebSocketStage names the WebSocket API's stage: the first path
	// segment of the WebSocket and @connections URLs, and
	// requestContext.stage. Empty means DefaultStage, served at the root
	// of the URL. (Deployments, the original's included, name their
	// WebSocket stage; name one here to test handlers against the URLs
	// they will see.)
	WebSocketStage string

	// HTTPStage names the HTTP API's stage. Empty means DefaultStage:
	// requests at the root, paths without a stage segment. A named stage
	// serves only paths under "/<stage>", and the event's path (rawPath,
	// requestContext.http.path; path and requestContext.path in format
	// 1.0) keeps that prefix, as on AWS; pathParameters.proxy does not.
	HTTPStage string

	// RouteResponse makes $default a two-way route: a non-empty body in
	// the handler's response is sent to the client as a message (binary
	// when IsBase64Encoded). False (the zero value) drops it, as API
	// Gateway does for a route without a route response.
	RouteResponse bool

	// Limits are the enforced quotas; the zero value means AWS's.
	Limits Limits

	// WebSocketConcurrency and HTTPConcurrency are the concurrency of the
	// functions behind the two APIs (see Concurrency). Nil means
	// unlimited. The same Concurrency in both models one function
	// serving every route: public requests that wait for their agent
	// then hold the instances that the agent's answers need. Different
	// ones model two functions, each with its reserved concurrency.
	//
	// A throttled invocation is answered as API Gateway answers a Lambda
	// invoke refused with 429: the HTTP API with 503 {"message":"Service
	// Unavailable"}, a $connect by refusing the upgrade with 500, and a
	// $default message with the {"message":"Internal server error"}
	// notice, the message itself lost; a throttled $disconnect is lost
	// (API Gateway retries none of them). Stats.Throttles counts them.
	WebSocketConcurrency, HTTPConcurrency *Concurrency

	// ActiveTracing models Lambda's active tracing: each invocation's
	// context carries a trace header of its own, "Root=...;Parent=...;
	// Sampled=1", under the context key "x-amzn-trace-id", where
	// github.com/aws/aws-lambda-go puts the header Lambda gives the
	// invocation (it also sets _X_AMZN_TRACE_ID in the process
	// environment; the emulator, which runs invocations concurrently in
	// one process, does not). The Root is a new trace's: an HTTP API does
	// not pass its X-Amzn-Trace-Id on to Lambda.
	ActiveTracing bool

	// Logger receives the emulator's own log lines (connections,
	// handler failures, malformed responses). Nil discards them.
	Logger *slog.Logger
}

var stageName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// Emulator serves an emulated WebSocket API (with its @connections
// management API on the same host, as on AWS) and an emulated HTTP API on
// two loopback listeners, and invokes the configured handlers.
//
// Its methods are safe for concurrent use. Handlers run concurrently: one
// goroutine per invocation, with no ordering between the invocations of
// one connection's messages (API Gateway gives none either).
type Emulator struct {
	cfg    Config // copied, defaults filled in
	limits Limits
	log    *slog.Logger

	wsSrv, httpSrv *http.Server
	wsDomain       string // host:port, requestContext.domainName of the WebSocket API
	httpDomain     string // host:port, requestContext.domainName of the HTTP API
	wsBase         string // "" or "/<stage>"
	httpBase       string // "" or "/<stage>"
	wsAPIID        string
	httpAPIID      string
	functionARN    string

	ctx    context.Context // parent of every handler context; cancelled by Close
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	conns  map[string]*wsConn // by connection ID, from $connect until the end

	// wg counts every goroutine the emulator starts or serves in; connWG
	// the WebSocket connections, so Close can let them run $disconnect
	// before it cancels handler contexts.
	wg     sync.WaitGroup
	connWG sync.WaitGroup

	stats statsCounter
	hooks hooks

	closeOnce sync.Once
	closeErr  error
}

// hooks are observation points for this package's tests; nil members do
// nothing.
type hooks struct {
	// dispatched runs when a $default message has been fully handled,
	// its route response or notice (if any) sent.
	dispatched func()
}

// Start validates cfg, listens on two loopback ports and serves until
// Close. cfg is copied; later changes to it have no effect.
func Start(cfg Config) (*Emulator, error) { return start(cfg, hooks{}) }

func start(cfg Config, h hooks) (*Emulator, error) {
	if cfg.HTTP != nil && cfg.HTTPV1 != nil {
		return nil, errors.New("apigw: both HTTP and HTTPV1 are set; an integration has one payload format")
	}
	if err := cfg.Limits.validate(); err != nil {
		return nil, err
	}
	wsBase, err := stagePath(cfg.WebSocketStage)
	if err != nil {
		return nil, err
	}
	httpBase, err := stagePath(cfg.HTTPStage)
	if err != nil {
		return nil, err
	}
	if cfg.WebSocketStage == "" {
		cfg.WebSocketStage = DefaultStage
	}
	if cfg.HTTPStage == "" {
		cfg.HTTPStage = DefaultStage
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	wsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("apigw: listen: %w", err)
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		wsLn.Close()
		return nil, fmt.Errorf("apigw: listen: %w", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	e := &Emulator{
		cfg:         cfg,
		limits:      cfg.Limits.withDefaults(),
		log:         log,
		wsDomain:    wsLn.Addr().String(),
		httpDomain:  httpLn.Addr().String(),
		wsBase:      wsBase,
		httpBase:    httpBase,
		wsAPIID:     randid.TunnelID()[:10],
		httpAPIID:   randid.TunnelID()[:10],
		functionARN: "arn:aws:lambda:us-east-1:" + accountID + ":function:apigw-emulator",
		ctx:         ctx,
		cancel:      cancel,
		conns:       make(map[string]*wsConn),
		hooks:       h,
	}
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	e.wsSrv = &http.Server{
		Handler:           e.tracked(e.serveWebSocketAPI),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          errLog,
	}
	e.httpSrv = &http.Server{
		Handler:           e.tracked(e.serveHTTPAPI),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          errLog,
	}
	e.wg.Add(2)
	go e.serve(e.wsSrv, wsLn)
	go e.serve(e.httpSrv, httpLn)
	return e, nil
}

// accountID is the AWS account the emulated APIs belong to.
const accountID = "123456789012"

func stagePath(stage string) (string, error) {
	switch {
	case stage == "" || stage == DefaultStage:
		return "", nil
	case stageName.MatchString(stage):
		return "/" + stage, nil
	}
	return "", fmt.Errorf("apigw: invalid stage name %q", stage)
}

func (e *Emulator) serve(srv *http.Server, ln net.Listener) {
	defer e.wg.Done()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		e.log.Error("apigw: serve", "addr", ln.Addr().String(), "err", err)
	}
}

// tracked wraps h so that Close waits for it, and so that requests
// arriving after Close began are answered 503 without reaching h.
func (e *Emulator) tracked(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !e.enter() {
			writeJSONMessage(w, http.StatusServiceUnavailable, "Service Unavailable")
			return
		}
		defer e.wg.Done()
		h(w, r)
	})
}

// enter adds one to wg unless Close has begun. Work started from outside
// a tracked goroutine (requests, timers) must go through it; a tracked
// goroutine may call wg.Add directly, since the count cannot be zero then.
func (e *Emulator) enter() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.wg.Add(1)
	return true
}

// WebSocketURL returns the URL agents dial: ws://127.0.0.1:PORT, followed
// by "/<stage>" for a named WebSocketStage.
func (e *Emulator) WebSocketURL() string { return "ws://" + e.wsDomain + e.wsBase }

// ManagementURL returns the endpoint of the @connections API, to use as
// the Management API client's BaseEndpoint: the WebSocket URL with the
// http scheme, as on AWS (https://{api-id}.execute-api.{region}.amazonaws.com/{stage}).
func (e *Emulator) ManagementURL() string { return "http://" + e.wsDomain + e.wsBase }

// HTTPURL returns the HTTP API's invoke URL: http://127.0.0.1:PORT,
// followed by "/<stage>" for a named HTTPStage.
func (e *Emulator) HTTPURL() string { return "http://" + e.httpDomain + e.httpBase }

// Close closes every WebSocket connection with 1001 "Going away" (each
// runs its $disconnect invocation), then cancels the contexts of handlers
// still running, stops both listeners and waits for every goroutine it
// started, handlers included: a handler that ignores its context delays
// Close until it returns, and a $connect still running delays it up to
// the integration timeout. Calls after the first return the first result.
func (e *Emulator) Close() error {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closed = true
		conns := make([]*wsConn, 0, len(e.conns))
		for _, c := range e.conns {
			conns = append(conns, c)
		}
		e.mu.Unlock()

		for _, c := range conns {
			c.close(statusGoingAway, "Going away", false)
		}
		e.connWG.Wait()
		e.cancel()

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var errs []error
		for _, srv := range []*http.Server{e.wsSrv, e.httpSrv} {
			if err := srv.Shutdown(ctx); err != nil {
				errs = append(errs, srv.Close())
			}
		}
		e.wg.Wait()
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}

// domainPrefix returns the first label of a domain name, as API Gateway
// reports it in requestContext.domainPrefix.
func domainPrefix(domain string) string {
	host, _, err := net.SplitHostPort(domain)
	if err != nil {
		host = domain
	}
	prefix, _, _ := strings.Cut(host, ".")
	return prefix
}
