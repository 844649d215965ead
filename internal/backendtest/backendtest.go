// Package backendtest finds the real servers that backend tests run
// against (Redis, and DynamoDB through dynalite), and decides what their
// absence means: a skipped test on a developer's machine, a failed test in
// CI (CI=true), where .ci/run has started every server.
//
// A server counts as present only when it answers as the backend: Redis
// must reply +PONG to PING, and DynamoDB must answer a signed ListTables
// call with DynamoDB's JSON. Something else listening on the port (say
// python3 -m http.server on 8000) makes the tests skip with a message that
// says what answered, rather than fail against the wrong server. Each
// address is probed once per test binary; every later test reuses the
// answer.
//
// The package uses the standard library only, so that the root module's
// tests and every backend module can import it without adding a
// dependency.
package backendtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// Environment variables naming the servers, and their defaults (the
// addresses .ci/run starts them on).
const (
	RedisAddrEnv          = "TUNNEL_TEST_REDIS_ADDR"
	DefaultRedisAddr      = "127.0.0.1:6390"
	DynamoEndpointEnv     = "TUNNEL_TEST_DYNAMODB_ENDPOINT"
	DefaultDynamoEndpoint = "http://127.0.0.1:8000"
)

// probeTimeout bounds one probe, connecting included. Loopback servers
// answer in microseconds; the bound matters when something accepts the
// connection and then says nothing.
const probeTimeout = 2 * time.Second

// RedisAddr returns the host:port of the test Redis server: the value of
// TUNNEL_TEST_REDIS_ADDR, or DefaultRedisAddr when that is unset or empty.
// The server must answer PING with +PONG.
//
// When it does not, RedisAddr calls Unavailable, which skips the test or,
// in CI, fails it, with a message naming what went wrong; it returns ""
// if Unavailable returns (only a non-standard testing.TB lets it).
func RedisAddr(t testing.TB) string {
	t.Helper()
	return find(t, &probes, redis)
}

// DynamoEndpoint returns the endpoint URL of the test DynamoDB (dynalite):
// the value of TUNNEL_TEST_DYNAMODB_ENDPOINT, or DefaultDynamoEndpoint when
// that is unset or empty. The server must answer a ListTables call, signed
// with dummy credentials, with DynamoDB's JSON: a table list or an error
// of DynamoDB's shape.
//
// When it does not, DynamoEndpoint calls Unavailable, as RedisAddr does.
func DynamoEndpoint(t testing.TB) string {
	t.Helper()
	return find(t, &probes, dynamo)
}

// Unavailable reports that a server a test needs is absent: it skips the
// test, unless the environment variable CI is "true", where it fails it,
// because in CI a skipped backend test would pass without testing anything.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
		return
	}
	t.Skipf(format, args...)
}

// backend is a kind of server the tests need, and how to recognise it.
type backend struct {
	// name is the server's name in messages: "Redis", "DynamoDB".
	name string
	// env names the environment variable that holds the address; fallback
	// is the address when it is unset or empty.
	env, fallback string
	// want says what env should name, for messages.
	want string
	// probe returns nil if addr answers as the backend, or else a
	// *probeError; ctx bounds it.
	probe func(ctx context.Context, addr string) error
}

var (
	redis = backend{
		name: "Redis", env: RedisAddrEnv, fallback: DefaultRedisAddr,
		want: "the host:port of a Redis server", probe: probeRedis,
	}
	dynamo = backend{
		name: "DynamoDB", env: DynamoEndpointEnv, fallback: DefaultDynamoEndpoint,
		want: "the URL of a DynamoDB endpoint such as dynalite", probe: probeDynamo,
	}
)

// probeError says why an address is not a usable backend.
type probeError struct {
	// backend is what was looked for: "Redis" or "DynamoDB".
	backend string
	// addr is the host:port probed.
	addr string
	// answered is whether a connection was accepted there: whether
	// something other than the backend (or a broken one) holds the port,
	// rather than nothing.
	answered bool
	// err is what went wrong: the dial error, or what the answer was.
	err error
}

func (e *probeError) Error() string {
	if !e.answered {
		return fmt.Sprintf("no %s at %s: %v", e.backend, e.addr, e.err)
	}
	return fmt.Sprintf("%s answered, but not as %s: %v", e.addr, e.backend, e.err)
}

func (e *probeError) Unwrap() error { return e.err }

// probeCache remembers the outcome of each probe, so that a test binary
// probes each address once however many tests ask. The zero value is
// empty and ready to use.
type probeCache struct {
	mu      sync.Mutex
	results map[probeKey]*probeResult
}

type probeKey struct{ backend, addr string }

type probeResult struct {
	once sync.Once
	err  error
}

// probes is the test binary's cache.
var probes probeCache

// check returns b.probe's verdict on addr, probing only the first time.
// Concurrent callers for one address wait for the same probe.
func (c *probeCache) check(b backend, addr string) error {
	c.mu.Lock()
	if c.results == nil {
		c.results = make(map[probeKey]*probeResult)
	}
	k := probeKey{b.name, addr}
	r := c.results[k]
	if r == nil {
		r = new(probeResult)
		c.results[k] = r
	}
	c.mu.Unlock()
	r.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		r.err = b.probe(ctx, addr)
	})
	return r.err
}

// find returns b's address from the environment if it answers as b, and
// otherwise calls Unavailable and returns "".
func find(t testing.TB, c *probeCache, b backend) string {
	t.Helper()
	addr := os.Getenv(b.env)
	if addr == "" {
		addr = b.fallback
	}
	if err := c.check(b, addr); err != nil {
		Unavailable(t, "%v (%s=%q; set it to %s)", err, b.env, addr, b.want)
		return ""
	}
	return addr
}
