package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/agentcli"
	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/store/dynamostore"
	"github.com/http-tunnel/tunnel/store/redisstore"
)

// gatewayConfig is the gateway's command line, checked.
type gatewayConfig struct {
	listen  string
	baseURL string
	domain  string
	routing tunnel.RoutingMode

	auth authOptions

	store           string // memory, redis or dynamodb
	redisAddr       string
	redisPrefix     string
	dynamo          dynamoConfig
	cleanupInterval time.Duration

	limiter           string // none, local, redis or dynamodb
	agentRate         rateFlag
	requestRate       rateFlag
	limiterFailClosed bool

	responseTimeout   time.Duration
	readHeaderTimeout time.Duration
	leaseTTL          time.Duration
	shutdownTimeout   time.Duration
	maxBodyBytes      int64
	maxURIBytes       int
	maxHeaderCount    int

	nodeURL    string
	nodeSecret string // secret: never logged
	// acceptNodeSecrets are further secrets accepted from other nodes,
	// for a rolling change of nodeSecret. Secret: never logged.
	acceptNodeSecrets []string
	trustProxy        bool

	adminListen      string // "" for no admin listener
	metricsPerTunnel bool

	tls tlsOptions
	// localhostDomain says that domain is "localhost" because the command
	// line named none: tunnels get <id>.localhost:PORT, which resolves to
	// this machine only.
	localhostDomain bool

	logJSON  bool
	logLevel slog.Level
}

// dynamoConfig is the DynamoDB part of the gateway's command line.
type dynamoConfig struct {
	endpoint         string
	region           string
	connectionsTable string
	pendingTable     string
	index            string
	ratelimitTable   string
	createTables     bool
}

// defaultRateLimitTable is the default name of the DynamoDB limiter's
// table, in the style of dynamostore's default table names.
const defaultRateLimitTable = "http-tunnel-rate-limits"

const gatewayUsage = `Usage: tunnel gateway [flags]

Runs a tunnel gateway: agents connect to it, and public requests reach
their local services through it. Agents present a token of
--tokens-file or $TUNNEL_TOKENS, or a JWT that --jwt-secret-file
($TUNNEL_JWT_SECRET), --jwt-key-file or --jwks-url verifies; without
either, the gateway refuses to start unless --insecure-no-auth is given.
A token's line, or a JWT's claims, may list the tunnel names it may take
and the client addresses its tunnels admit (see docs/security.md).

Without --domain or --base-url, tunnels get subdomains of localhost
(http://<id>.localhost:8080, for this machine) and paths
(http://host:8080/<id>/). --acme serves HTTPS with certificates from
Let's Encrypt for --domain and each live tunnel's subdomain; --tls-cert and
--tls-key with a certificate of your own.

Traces are exported over OTLP/HTTP when $OTEL_EXPORTER_OTLP_ENDPOINT or
$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, or $OTEL_TRACES_EXPORTER=otlp;
the other standard OTEL_* variables apply.

Flags:
`

// parseGatewayFlags parses and checks the gateway's arguments. getenv
// supplies the environment; output receives usage and flag errors.
func parseGatewayFlags(args []string, getenv func(string) string, output io.Writer) (*gatewayConfig, error) {
	cfg := &gatewayConfig{}
	fs := agentcli.NewFlagSet("gateway", gatewayUsage, output)

	fs.StringVar(&cfg.listen, "listen", ":8080", "`address` to listen on")
	fs.StringVar(&cfg.baseURL, "base-url", "", "public base `URL` of the gateway, such as https://tunnel.example.com; tunnel URLs are built from it (default: from each agent's gateway URL)")
	fs.StringVar(&cfg.domain, "domain", "", "`domain` under which tunnels get subdomains, <id>.<domain> (default: the host of --base-url)")
	routing := newChoice("auto", "auto", "subdomain", "path")
	fs.Var(routing, "routing", "`mode` by which a public request names its tunnel: auto, subdomain (<id>.<domain>) or path (/<id>/...)")

	cfg.auth.register(fs)

	storeKind := newChoice("memory", "memory", "redis", "dynamodb")
	fs.Var(storeKind, "store", "`backend` keeping tunnel records: memory (a single node), redis or dynamodb (shared by several nodes)")
	fs.StringVar(&cfg.redisAddr, "redis-addr", "127.0.0.1:6379", "Redis `address` for --store redis and --limiter redis: host:port, or a redis:// or rediss:// URL for a password, database or TLS")
	fs.StringVar(&cfg.redisPrefix, "redis-prefix", redisstore.DefaultPrefix, "key `prefix` of tunnel records in Redis, the same on every node")
	fs.StringVar(&cfg.dynamo.endpoint, "dynamodb-endpoint", "", "DynamoDB endpoint `URL` (default: AWS's endpoint for the region; set it for a local emulator)")
	fs.StringVar(&cfg.dynamo.region, "dynamodb-region", "", "AWS `region` (default $AWS_REGION, else us-east-1). Credentials: $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY (with $AWS_SESSION_TOKEN) if set, else the SDK's default chain ($AWS_PROFILE, SSO, web identity, container or instance role)")
	fs.StringVar(&cfg.dynamo.connectionsTable, "dynamodb-connections-table", dynamostore.DefaultConnectionsTable, "DynamoDB `table` of connections and tunnel claims")
	fs.StringVar(&cfg.dynamo.pendingTable, "dynamodb-pending-table", dynamostore.DefaultPendingTable, "DynamoDB `table` of the serverless adapter's pending requests (cleaned up here)")
	fs.StringVar(&cfg.dynamo.index, "dynamodb-index", dynamostore.DefaultTunnelIndex, "`name` of the connections table's index on tunnelId")
	fs.StringVar(&cfg.dynamo.ratelimitTable, "dynamodb-ratelimit-table", defaultRateLimitTable, "DynamoDB `table` of --limiter dynamodb")
	fs.BoolVar(&cfg.dynamo.createTables, "dynamodb-create-tables", false, "create the DynamoDB tables if missing (development only: production tables belong to infrastructure code, with TTL on the ttl attribute)")
	fs.DurationVar(&cfg.cleanupInterval, "cleanup-interval", 5*time.Minute, "how often to delete expired DynamoDB rows with --store dynamodb; 0 disables (one node of a cluster is enough)")

	limiter := newChoice("none", "none", "local", "redis", "dynamodb")
	fs.Var(limiter, "limiter", "rate-limiter `backend`: none, local (per node), redis or dynamodb (shared by every node)")
	fs.Var(&cfg.agentRate, "agent-rate", "agent connections allowed per client IP, as `N/unit` with unit s, m or h, such as 10/m (default: no limit)")
	fs.Var(&cfg.requestRate, "request-rate", "public requests allowed per tunnel, as `N/unit`, such as 600/m (default: no limit)")
	fs.BoolVar(&cfg.limiterFailClosed, "limiter-fail-closed", false, "answer 503 when the limiter's backend fails, instead of letting requests through")

	fs.DurationVar(&cfg.responseTimeout, "response-timeout", tunnel.DefaultResponseTimeout, "how long to wait for an agent's response headers before answering 504; negative means no limit")
	fs.Int64Var(&cfg.maxBodyBytes, "max-body-bytes", 0, "largest public request body, in `bytes`, before answering 413; 0 means no limit (bodies stream through)")
	fs.IntVar(&cfg.maxURIBytes, "max-uri-bytes", tunnel.DefaultMaxURIBytes, "longest public request target (path and query), in `bytes`, before answering 414")
	fs.IntVar(&cfg.maxHeaderCount, "max-header-count", tunnel.DefaultMaxHeaderCount, "largest `number` of header fields in a public request before answering 431")
	fs.DurationVar(&cfg.readHeaderTimeout, "read-header-timeout", tunnel.DefaultReadHeaderTimeout, "how long a client may take to send its request headers")
	fs.DurationVar(&cfg.leaseTTL, "lease-ttl", tunnel.DefaultLeaseTTL, "how long a tunnel record lives without renewal; after an unclean disconnect, its name stays reserved for its agent this long")

	fs.StringVar(&cfg.nodeURL, "node-url", "", "`URL` at which the other gateway nodes reach this one, such as http://10.0.0.5:8080, for several nodes on a shared --store")
	fs.StringVar(&cfg.nodeSecret, "node-secret", "", "`secret` the nodes of a cluster authenticate each other with, the same on every node; required with --node-url (default $"+envNodeSecret+", which keeps it out of the process list)")

	acceptNodeSecrets := fs.String("accept-node-secrets", "", "comma-separated `secrets` accepted from other nodes besides --node-secret, and never sent: for changing the node secret by a rolling restart (default $"+envAcceptNodeSecrets+")")

	fs.BoolVar(&cfg.trustProxy, "trust-proxy", false, "the gateway runs behind a proxy or load balancer (such as a Kubernetes ingress) that sets X-Forwarded-For, -Proto and -Host: client addresses and the public scheme come from them. Never set it when clients reach the gateway directly")

	fs.StringVar(&cfg.adminListen, "admin-listen", "", "`address` of a separate listener for operators, such as 127.0.0.1:9090: Prometheus /metrics, /healthz and /tunnels (default: none). Keep it off the public network: /tunnels lists every tunnel")
	fs.BoolVar(&cfg.metricsPerTunnel, "metrics-per-tunnel", false, "label request metrics with tunnel_id: one time series per tunnel, for gateways with few, long-lived tunnels")

	cfg.tls.register(fs)

	fs.DurationVar(&cfg.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long a graceful shutdown (on SIGINT, SIGTERM or SIGHUP) waits for requests in flight")
	verbose := fs.Bool("verbose", false, "log debug messages")
	logFormat := newChoice("text", "text", "json")
	fs.Var(logFormat, "log-format", "log `format`: text or json")

	if err := agentcli.ParseFlags(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, agentcli.Usagef("unexpected argument %q: the gateway takes flags only", fs.Arg(0))
	}

	cfg.routing = map[string]tunnel.RoutingMode{
		"auto":      tunnel.RouteAuto,
		"subdomain": tunnel.RouteSubdomain,
		"path":      tunnel.RoutePath,
	}[routing.value]
	cfg.store, cfg.limiter = storeKind.value, limiter.value
	cfg.logJSON = logFormat.value == "json"
	if *verbose {
		cfg.logLevel = slog.LevelDebug
	}
	if cfg.nodeSecret == "" {
		cfg.nodeSecret = getenv(envNodeSecret)
	}
	if *acceptNodeSecrets == "" {
		*acceptNodeSecrets = getenv(envAcceptNodeSecrets)
	}
	cfg.acceptNodeSecrets = splitList(*acceptNodeSecrets)
	if cfg.dynamo.region == "" {
		cfg.dynamo.region = envOr(getenv, "AWS_REGION", "us-east-1")
	}

	if cfg.baseURL != "" && !httpURL(cfg.baseURL) {
		return nil, agentcli.Usagef("--base-url %q: want an absolute http or https URL, such as https://tunnel.example.com", cfg.baseURL)
	}
	if cfg.routing == tunnel.RouteSubdomain && cfg.domain == "" && cfg.baseURL == "" {
		return nil, agentcli.Usagef("--routing subdomain needs --domain or --base-url")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := cfg.tls.check(cfg.publicDomain(), set); err != nil {
		return nil, err
	}
	if cfg.domain == "" && cfg.baseURL == "" && cfg.routing != tunnel.RoutePath {
		// Browsers and curl resolve every name under localhost to this
		// machine: subdomain routing works here without DNS.
		cfg.domain, cfg.localhostDomain = "localhost", true
	}

	if err := cfg.auth.check(getenv, set); err != nil {
		return nil, err
	}

	if cfg.nodeURL != "" {
		if !httpURL(cfg.nodeURL) {
			return nil, agentcli.Usagef("--node-url %q: want an absolute http or https URL, such as http://10.0.0.5:8080", cfg.nodeURL)
		}
		if cfg.store == "memory" {
			return nil, agentcli.Usagef("--node-url needs a shared --store, redis or dynamodb: nodes find each other's tunnels there")
		}
		if cfg.nodeSecret == "" {
			return nil, agentcli.Usagef("--node-url needs --node-secret or $%s", envNodeSecret)
		}
	}
	if len(cfg.acceptNodeSecrets) > 0 && cfg.nodeURL == "" {
		return nil, agentcli.Usagef("--accept-node-secrets needs --node-url: only nodes of a cluster send node secrets")
	}

	if cfg.metricsPerTunnel && cfg.adminListen == "" {
		return nil, agentcli.Usagef("--metrics-per-tunnel needs --admin-listen, which serves the metrics")
	}

	limited := !cfg.agentRate.limit.Unlimited() || !cfg.requestRate.limit.Unlimited()
	switch {
	case cfg.limiter == "none" && limited:
		return nil, agentcli.Usagef("--agent-rate and --request-rate need --limiter local, redis or dynamodb")
	case cfg.limiter != "none" && !limited:
		return nil, agentcli.Usagef("--limiter %s needs --agent-rate or --request-rate", cfg.limiter)
	}

	switch {
	case cfg.cleanupInterval < 0:
		return nil, agentcli.Usagef("--cleanup-interval must not be negative")
	case cfg.shutdownTimeout <= 0:
		return nil, agentcli.Usagef("--shutdown-timeout must be positive")
	case cfg.leaseTTL <= 0:
		return nil, agentcli.Usagef("--lease-ttl must be positive")
	case cfg.readHeaderTimeout <= 0:
		return nil, agentcli.Usagef("--read-header-timeout must be positive")
	case cfg.maxBodyBytes < 0:
		return nil, agentcli.Usagef("--max-body-bytes must not be negative")
	case cfg.maxURIBytes <= 0 || cfg.maxHeaderCount <= 0:
		return nil, agentcli.Usagef("--max-uri-bytes and --max-header-count must be positive")
	}
	return cfg, nil
}

// publicDomain returns the domain tunnels get subdomains of, normalized:
// --domain, else the host name of --base-url, else "".
func (cfg *gatewayConfig) publicDomain() string {
	d := cfg.domain
	if d == "" && cfg.baseURL != "" {
		if u, err := url.Parse(cfg.baseURL); err == nil {
			d = u.Hostname()
		}
	}
	return strings.TrimSuffix(strings.ToLower(d), ".")
}

// httpURL reports whether s is an absolute http or https URL with a host.
func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// gateway runs the gateway subcommand until ctx ends, then shuts the
// gateway down gracefully.
func (c command) gateway(ctx context.Context, args []string) error {
	cfg, err := parseGatewayFlags(args, c.getenv, c.stderr)
	if err != nil {
		return err
	}
	log := newLogger(c.stderr, cfg.logJSON, cfg.logLevel)
	if cfg.auth.insecureNoAuth {
		log.Warn("no agent tokens or JWT keys configured: every agent is admitted (--insecure-no-auth)")
	}
	auth, err := cfg.auth.authenticator(ctx, log)
	if err != nil {
		return err
	}

	tp, err := newTracerProvider(ctx, c.getenv, gatewayService)
	if err != nil {
		return err
	}
	if tp != nil {
		defer func() {
			if err := shutdownTelemetry(ctx, tp.Shutdown); err != nil {
				log.Warn("spans lost at exit", slog.Any("err", err))
			}
		}()
		log.Info("exporting traces over OTLP")
	}

	b, err := openBackends(ctx, cfg, c.getenv, log)
	if err != nil {
		return err
	}
	defer b.close()

	srv := &tunnel.Server{
		BaseURL:           cfg.baseURL,
		Domain:            cfg.domain,
		Routing:           cfg.routing,
		Store:             b.store,
		Authenticator:     auth,
		Logger:            log,
		ResponseTimeout:   cfg.responseTimeout,
		ReadHeaderTimeout: cfg.readHeaderTimeout,
		LeaseTTL:          cfg.leaseTTL,
		MaxBodyBytes:      cfg.maxBodyBytes,
		MaxURIBytes:       cfg.maxURIBytes,
		MaxHeaderCount:    cfg.maxHeaderCount,
		NodeURL:           cfg.nodeURL,
		NodeSecret:        cfg.nodeSecret,
		AcceptNodeSecrets: cfg.acceptNodeSecrets,
		TrustProxy:        cfg.trustProxy,
		AgentLimiter:      b.agentLimiter,
		RequestLimiter:    b.requestLimiter,
		LimiterFailClosed: cfg.limiterFailClosed,
		MetricsPerTunnel:  cfg.metricsPerTunnel,
		UnlistedNames:     cfg.auth.unlistedNames,
	}
	if tp != nil {
		// Only when set: a nil *TracerProvider in the interface field
		// would not be the "use the global" nil.
		srv.TracerProvider = tp
	}
	// The ACME host policy asks the store whether a tunnel is live: the
	// shared store knows every node's tunnels, the memory store this
	// node's, which are all there are. A record is written before the agent
	// hears it is connected, so a request right after finds it.
	if srv.Store == nil {
		srv.Store = store.NewMemory()
	}
	exists := storeHas(srv.Store)

	var adm *adminListener
	if cfg.adminListen != "" {
		res, err := newResource(ctx, c.getenv, gatewayService)
		if err != nil {
			return err
		}
		exp, registry, err := newPrometheusExporter()
		if err != nil {
			return err
		}
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
		// Deferred before the admin listener's stop, so it runs after it:
		// no scrape reads a provider that is shut down.
		defer shutdownTelemetry(ctx, mp.Shutdown)
		srv.MeterProvider = mp
		adm, err = listenAdmin(cfg.adminListen, &admin{gateway: srv, registry: registry}, log)
		if err != nil {
			return err
		}
		defer adm.stop(ctx)
	}

	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return err
	}
	defer ln.Close() // Serve does not close it if Shutdown came first.
	scheme := "http"
	var plain *plainListener
	if cfg.tls.on() {
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		if cfg.baseURL != "" {
			if u, err := url.Parse(cfg.baseURL); err == nil {
				port = u.Port()
			}
		}
		pt, err := newPublicTLS(&cfg.tls, cfg.publicDomain(), cfg.routing != tunnel.RoutePath, exists, port, log)
		if err != nil {
			return err
		}
		defer pt.close()
		ln = tls.NewListener(ln, pt.config)
		scheme = "https"
		if cfg.tls.httpListen != "" {
			plain, err = listenPlain(cfg.tls.httpListen, pt.http, log)
			if err != nil {
				return err
			}
			defer plain.stop(ctx)
		}
	}

	// With --hsts the gateway is mounted in an http.Server of this
	// command's, which adds the header; Serve's own http.Server takes no
	// wrapper. The settings are those Serve applies.
	var hs *http.Server
	if cfg.tls.hsts > 0 {
		hs = &http.Server{
			Handler:           withHSTS(srv, cfg.tls.hsts),
			ReadHeaderTimeout: cfg.readHeaderTimeout,
			IdleTimeout:       tunnel.DefaultIdleTimeout,
			MaxHeaderBytes:    tunnel.DefaultMaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
			Protocols:         new(http.Protocols),
		}
		hs.Protocols.SetHTTP1(true)
		hs.Protocols.SetHTTP2(true)
	}
	served := make(chan error, 1)
	go func() {
		if hs != nil {
			served <- hs.Serve(ln)
			return
		}
		served <- srv.Serve(ln)
	}()

	base := cfg.baseURL
	if base == "" {
		base = "from each agent's gateway URL (set --base-url)"
	}
	adminAddr := ""
	if adm != nil {
		adminAddr = adm.addr().String()
	}
	log.Info("gateway started",
		slog.String("addr", ln.Addr().String()),
		slog.String("scheme", scheme),
		slog.String("admin_addr", adminAddr),
		slog.String("base_url", cfg.baseURL),
		slog.String("domain", cfg.domain),
		slog.String("routing", cfg.routing.String()),
		slog.String("store", cfg.store),
		slog.String("limiter", cfg.limiter),
		slog.Int("tokens", cfg.auth.tokenCount),
		slog.Bool("jwt", cfg.auth.jwtOn()),
		slog.String("unlisted_names", cfg.auth.unlisted.value),
		slog.String("node_url", cfg.nodeURL),
		slog.Bool("metrics_per_tunnel", cfg.metricsPerTunnel))
	fmt.Fprintf(c.stdout, "gateway listening on %s (%s), base URL %s\n", ln.Addr(), scheme, base)
	if urls := tunnelURLs(cfg, scheme, ln.Addr()); urls != "" {
		fmt.Fprintf(c.stdout, "tunnels at %s\n", urls)
	}
	if plain != nil {
		fmt.Fprintf(c.stdout, "http listening on %s: ACME challenges, redirects to https\n", plain.addr())
		if c.httpListening != nil {
			c.httpListening(plain.addr())
		}
	}
	if adm != nil {
		fmt.Fprintf(c.stdout, "admin listening on %s: /metrics, /healthz, /tunnels\n", adminAddr)
		if c.adminListening != nil {
			c.adminListening(adm.addr())
		}
	}
	if c.listening != nil {
		c.listening(ln.Addr())
	}

	cleanupCtx, stopCleanup := context.WithCancel(ctx)
	defer stopCleanup()
	cleanupDone := make(chan struct{})
	if b.dynamo != nil && cfg.cleanupInterval > 0 {
		go func() {
			defer close(cleanupDone)
			runCleanup(cleanupCtx, b.dynamo, cfg.cleanupInterval, log)
		}()
	} else {
		close(cleanupDone)
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", slog.Duration("timeout", cfg.shutdownTimeout))
	case err := <-served:
		// Serve returns before Shutdown only when the listener fails.
		runErr = fmt.Errorf("serve: %w", err)
		served <- nil
	}
	if adm != nil {
		adm.drain()
	}
	stopCleanup()
	<-cleanupDone

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.shutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	if hs != nil {
		wg.Go(func() {
			if err := hs.Shutdown(sctx); err != nil {
				hs.Close()
			}
		})
	}
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("graceful shutdown cut short; open connections were closed", slog.Any("err", err))
	}
	wg.Wait()
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) && runErr == nil {
		runErr = fmt.Errorf("serve: %w", err)
	}
	if runErr == nil {
		log.Info("gateway stopped")
	}
	return runErr
}

// storeHas returns whether a tunnel is live according to s; nil for the
// memory store, which the gateway does not hold.
func storeHas(s store.Store) func(context.Context, string) (bool, error) {
	if s == nil {
		return nil
	}
	return func(ctx context.Context, id string) (bool, error) {
		_, err := s.Get(ctx, id)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, store.ErrNotFound):
			return false, nil
		}
		return false, err
	}
}

// tunnelURLs describes the URLs tunnels get, with <id> for the tunnel's
// ID, for the gateway's start line; "" when they depend on each agent's
// gateway URL.
func tunnelURLs(cfg *gatewayConfig, scheme string, addr net.Addr) string {
	var forms []string
	switch {
	case cfg.localhostDomain:
		_, port, _ := net.SplitHostPort(addr.String())
		host := addr.String()
		if ip := net.ParseIP(strings.Trim(strings.TrimSuffix(host, ":"+port), "[]")); ip == nil || ip.IsUnspecified() {
			host = net.JoinHostPort("localhost", port)
		}
		forms = append(forms,
			fmt.Sprintf("%s://<id>.localhost:%s (this machine)", scheme, port),
			fmt.Sprintf("%s://%s/<id>/", scheme, host))
	case cfg.baseURL != "":
		base := strings.TrimSuffix(cfg.baseURL, "/")
		if d := cfg.publicDomain(); d != "" && cfg.routing != tunnel.RoutePath {
			u, _ := url.Parse(base)
			port := ""
			if u.Port() != "" {
				port = ":" + u.Port()
			}
			forms = append(forms, u.Scheme+"://<id>."+d+port)
		}
		if cfg.routing != tunnel.RouteSubdomain {
			forms = append(forms, base+"/<id>/")
		}
	}
	return strings.Join(forms, " and ")
}

// plainListener is the gateway's plain-HTTP listener (--http-listen): ACME
// challenges and the redirect to https.
type plainListener struct {
	ln     net.Listener
	srv    *http.Server
	served chan struct{}
}

// listenPlain starts serving h on addr.
func listenPlain(addr string, h http.Handler, log *slog.Logger) (*plainListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http-listen: %w", err)
	}
	p := &plainListener{
		ln: ln,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: tunnel.DefaultReadHeaderTimeout,
			IdleTimeout:       tunnel.DefaultIdleTimeout,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		served: make(chan struct{}),
	}
	go func() {
		defer close(p.served)
		if err := p.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("http listener failed", slog.Any("err", err))
		}
	}()
	return p, nil
}

func (p *plainListener) addr() net.Addr { return p.ln.Addr() }

// stop closes the listener and its connections; nothing on it is long.
func (p *plainListener) stop(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), adminStopTimeout)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil {
		p.srv.Close()
	}
	<-p.served
}
