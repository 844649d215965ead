package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/redis/go-redis/v9"

	"github.com/http-tunnel/tunnel/ratelimit"
	"github.com/http-tunnel/tunnel/ratelimit/dynamolimit"
	"github.com/http-tunnel/tunnel/ratelimit/redislimit"
	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/store/dynamostore"
	"github.com/http-tunnel/tunnel/store/redisstore"
)

// Redis key prefixes of the two limiters: different Limits on one Redis
// need different prefixes (see redislimit.Options.Prefix).
const (
	agentLimitPrefix   = redislimit.DefaultPrefix + "agent:"
	requestLimitPrefix = redislimit.DefaultPrefix + "request:"
)

// Item key prefixes of the two limiters in the DynamoDB limiter table, for
// the same reason.
const (
	dynamoAgentLimitPrefix   = "agent:"
	dynamoRequestLimitPrefix = "request:"
)

// backendCheckTimeout bounds the start-up checks of the backends (a Redis
// PING, creating DynamoDB tables), so that a gateway pointed at an absent
// server fails with a message instead of hanging.
const backendCheckTimeout = 30 * time.Second

// backends are the store and limiters a gateway runs with, and the
// clients behind them, which close releases.
type backends struct {
	store          store.Store        // nil: the Server's in-memory default
	dynamo         *dynamostore.Store // set with --store dynamodb, for Cleanup
	agentLimiter   ratelimit.Limiter  // nil: no limit
	requestLimiter ratelimit.Limiter  // nil: no limit

	redis     *redis.Client
	transport *http.Transport // of the DynamoDB client
}

// openBackends creates the clients cfg asks for and checks that their
// servers answer. ctx bounds those checks.
func openBackends(ctx context.Context, cfg *gatewayConfig, getenv func(string) string, log *slog.Logger) (_ *backends, err error) {
	b := &backends{}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, backendCheckTimeout)
	defer cancel()

	if cfg.store == "redis" || cfg.limiter == "redis" {
		opts, err := redisOptions(cfg.redisAddr)
		if err != nil {
			return nil, err
		}
		b.redis = redis.NewClient(opts)
		if err := b.redis.Ping(ctx).Err(); err != nil {
			return nil, fmt.Errorf("redis at %s: %w", opts.Addr, err)
		}
		log.Info("connected to redis", slog.String("addr", opts.Addr))
	}
	var ddb *dynamodb.Client
	if cfg.store == "dynamodb" || cfg.limiter == "dynamodb" {
		ddb, err = b.dynamoClient(ctx, cfg.dynamo, getenv)
		if err != nil {
			return nil, err
		}
	}

	switch cfg.store {
	case "redis":
		b.store = redisstore.New(b.redis, redisstore.Options{Prefix: cfg.redisPrefix})
	case "dynamodb":
		opts := dynamostore.Options{
			ConnectionsTable: cfg.dynamo.connectionsTable,
			PendingTable:     cfg.dynamo.pendingTable,
			TunnelIndex:      cfg.dynamo.index,
		}
		if cfg.dynamo.createTables {
			if err := dynamostore.CreateTables(ctx, ddb, opts); err != nil {
				return nil, err
			}
			log.Info("dynamodb store tables ready", slog.String("connections_table", cfg.dynamo.connectionsTable), slog.String("pending_table", cfg.dynamo.pendingTable))
		}
		b.dynamo = dynamostore.New(ddb, opts)
		b.store = b.dynamo
	}

	agent, request := cfg.agentRate.limit, cfg.requestRate.limit
	switch cfg.limiter {
	case "local":
		b.agentLimiter = limiterFor(agent, func(l ratelimit.Limit) ratelimit.Limiter { return ratelimit.NewLocal(l, nil) })
		b.requestLimiter = limiterFor(request, func(l ratelimit.Limit) ratelimit.Limiter { return ratelimit.NewLocal(l, nil) })
	case "redis":
		b.agentLimiter = limiterFor(agent, func(l ratelimit.Limit) ratelimit.Limiter {
			return redislimit.New(b.redis, l, &redislimit.Options{Prefix: agentLimitPrefix})
		})
		b.requestLimiter = limiterFor(request, func(l ratelimit.Limit) ratelimit.Limiter {
			return redislimit.New(b.redis, l, &redislimit.Options{Prefix: requestLimitPrefix})
		})
	case "dynamodb":
		table := cfg.dynamo.ratelimitTable
		if cfg.dynamo.createTables {
			if err := dynamolimit.CreateTable(ctx, ddb, table); err != nil {
				return nil, err
			}
			log.Info("dynamodb rate-limit table ready", slog.String("table", table))
		}
		b.agentLimiter = limiterFor(agent, func(l ratelimit.Limit) ratelimit.Limiter {
			return dynamolimit.New(ddb, table, l, &dynamolimit.Options{Prefix: dynamoAgentLimitPrefix})
		})
		b.requestLimiter = limiterFor(request, func(l ratelimit.Limit) ratelimit.Limiter {
			return dynamolimit.New(ddb, table, l, &dynamolimit.Options{Prefix: dynamoRequestLimitPrefix})
		})
	}
	return b, nil
}

// limiterFor returns newLimiter(l), or nil for an unlimited l, so that the
// Server skips the limiter entirely instead of asking one that always
// allows. The result is a nil interface, never an interface holding a nil
// pointer.
func limiterFor(l ratelimit.Limit, newLimiter func(ratelimit.Limit) ratelimit.Limiter) ratelimit.Limiter {
	if l.Unlimited() {
		return nil
	}
	return newLimiter(l)
}

// redisOptions accepts host:port, or a redis:// or rediss:// URL for a
// password, a database number or TLS. Errors never repeat the URL, which
// may hold a password.
func redisOptions(addr string) (*redis.Options, error) {
	if !strings.Contains(addr, "://") {
		return &redis.Options{Addr: addr}, nil
	}
	opts, err := redis.ParseURL(addr)
	if err != nil {
		return nil, errors.New("--redis-addr: invalid redis:// or rediss:// URL")
	}
	return opts, nil
}

// dynamoClient returns a DynamoDB client for cfg. Static credentials in
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (with AWS_SESSION_TOKEN) are
// used as given. Without them the SDK's default chain applies: shared
// config and credentials files (AWS_PROFILE), SSO, web identity (EKS), and
// container (ECS) and instance (EC2) roles. ctx bounds a first retrieval,
// so that a gateway without credentials fails at startup rather than at
// its first request. AWS_CA_BUNDLE, if set, names the PEM file of CA
// certificates that verify the endpoint instead of the system's roots.
func (b *backends) dynamoClient(ctx context.Context, cfg dynamoConfig, getenv func(string) string) (*dynamodb.Client, error) {
	b.transport = http.DefaultTransport.(*http.Transport).Clone()
	b.transport.MaxIdleConnsPerHost = 64
	var bundle []byte
	if f := getenv("AWS_CA_BUNDLE"); f != "" {
		pool, pem, err := caBundle(f)
		if err != nil {
			return nil, fmt.Errorf("dynamodb: %w", err)
		}
		b.transport.TLSClientConfig = &tls.Config{RootCAs: pool}
		bundle = pem
	}
	httpClient := &http.Client{Transport: b.transport}
	opts := dynamodb.Options{Region: cfg.region, HTTPClient: httpClient}
	if cfg.endpoint != "" {
		opts.BaseEndpoint = aws.String(cfg.endpoint)
	}
	if id, secret := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"); id != "" && secret != "" {
		opts.Credentials = credentials.NewStaticCredentialsProvider(id, secret, getenv("AWS_SESSION_TOKEN"))
		return dynamodb.New(opts), nil
	}
	sdkOpts := sdkConfigOptions(cfg.region, getenv)
	if bundle != nil {
		sdkOpts = append(sdkOpts, config.WithCustomCABundle(bytes.NewReader(bundle)))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, sdkOpts...)
	if err != nil {
		return nil, fmt.Errorf("dynamodb: loading the AWS configuration: %w", err)
	}
	if awsCfg.Credentials == nil {
		return nil, errors.New("dynamodb: " + noCredentials)
	}
	if _, err := awsCfg.Credentials.Retrieve(ctx); err != nil {
		return nil, fmt.Errorf("dynamodb: %s: %w", noCredentials, err)
	}
	opts.Credentials = awsCfg.Credentials
	return dynamodb.New(opts), nil
}

// caBundle reads the PEM certificates in file, for AWS_CA_BUNDLE: as in
// the AWS SDKs and CLI, they replace the system's roots for verifying AWS
// endpoints (a TLS-intercepting proxy, or a private endpoint).
func caBundle(file string) (*x509.CertPool, []byte, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, fmt.Errorf("AWS_CA_BUNDLE: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("AWS_CA_BUNDLE: no PEM certificate in %s", file)
	}
	return pool, pem, nil
}

const noCredentials = "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE for a shared config or SSO profile, or run with a web identity, container or instance role"

// sdkConfigOptions makes the SDK's default chain read the variables that
// choose files, profile and instance metadata through getenv, like the
// rest of the gateway's configuration. The chain's own requests (STS, SSO,
// instance metadata) use the SDK's HTTP client; dynamoClient passes it the
// AWS_CA_BUNDLE that getenv gives.
func sdkConfigOptions(region string, getenv func(string) string) []func(*config.LoadOptions) error {
	opts := []func(*config.LoadOptions) error{config.WithRegion(region)}
	if f := getenv("AWS_CONFIG_FILE"); f != "" {
		opts = append(opts, config.WithSharedConfigFiles([]string{f}))
	}
	if f := getenv("AWS_SHARED_CREDENTIALS_FILE"); f != "" {
		opts = append(opts, config.WithSharedCredentialsFiles([]string{f}))
	}
	if p := getenv("AWS_PROFILE"); p != "" {
		opts = append(opts, config.WithSharedConfigProfile(p))
	}
	if strings.EqualFold(getenv("AWS_EC2_METADATA_DISABLED"), "true") {
		opts = append(opts, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	return opts
}

// close releases the clients' connections.
func (b *backends) close() {
	if b.redis != nil {
		b.redis.Close()
	}
	if b.transport != nil {
		b.transport.CloseIdleConnections()
	}
}

// minCleanupTimeout is the least time a cleanup run may take.
const minCleanupTimeout = time.Minute

// runCleanup runs the DynamoDB store's Cleanup every interval until ctx
// ends. Each run may take the longer of one interval and
// minCleanupTimeout: runs never overlap (a late one delays the next), and a
// bound as short as a short interval would cut every run of a slow table
// short, so that none ever finished.
func runCleanup(ctx context.Context, s *dynamostore.Store, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, max(interval, minCleanupTimeout))
		stats, err := s.Cleanup(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		attrs := []slog.Attr{
			slog.Int("scanned", stats.Scanned),
			slog.Int("expired", stats.Expired),
			slog.Int("deleted", stats.Deleted),
			slog.Int("skipped", stats.Skipped),
		}
		switch {
		case err != nil:
			log.LogAttrs(ctx, slog.LevelWarn, "dynamodb cleanup failed", append(attrs, slog.Any("err", err))...)
		case stats.Deleted > 0:
			log.LogAttrs(ctx, slog.LevelInfo, "dynamodb cleanup", attrs...)
		default:
			log.LogAttrs(ctx, slog.LevelDebug, "dynamodb cleanup", attrs...)
		}
	}
}
