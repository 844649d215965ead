// Command tunnel runs a tunnel gateway, or an agent that forwards a local
// HTTP service through one.
//
//	go install github.com/http-tunnel/tunnel/cmd/tunnel@latest
//
//	tunnel gateway [flags]
//	tunnel agent [flags] <port|host:port|URL>
//	tunnel http [flags] <port|host:port|URL>    (the same as agent)
//
// Run a subcommand with -h for its flags. docs/configuration.md lists them
// all, docs/operations.md shows how to run the gateway, on one machine or
// on several (deploy/ has a Dockerfile and Kubernetes manifests). The
// agent alone, without the gateway's backends, is cmd/tunnel-agent.
//
// # Try it on one machine
//
//	tunnel gateway --insecure-no-auth &
//	tunnel http 3000
//
// The gateway, started without --domain or --base-url, gives tunnels URLs
// under localhost, http://<id>.localhost:8080, which browsers and curl
// resolve to this machine; path URLs, http://127.0.0.1:8080/<id>/, work
// too.
//
// # A gateway with its own certificates
//
// With --acme the gateway gets certificates from Let's Encrypt (or another
// ACME CA, --acme-directory) for its domain and for each tunnel's
// subdomain when it is first visited, for names of live tunnels only, at
// most --acme-rate new ones; it answers the ACME HTTP-01 challenge on
// --http-listen (:80) and redirects everything else there to https:
//
//	TUNNEL_TOKENS=s3cret tunnel gateway --domain tunnel.example.com \
//	    --listen :443 --acme --acme-email ops@example.com \
//	    --acme-cache /var/lib/tunnel/acme
//
// --tls-cert and --tls-key serve a certificate of your own instead (a
// wildcard one for *.tunnel.example.com, say).
//
// Behind a TLS-terminating proxy that sends tunnel.example.com and
// *.tunnel.example.com to it, with tokens in a file (one a line, # for
// comments; see below for what a line may add) and JSON logs:
//
//	tunnel gateway --base-url https://tunnel.example.com \
//	    --tokens-file /etc/tunnel/tokens --log-format json
//
// # A gateway for a team
//
// Each person gets a token of their own in the token file, which says
// whose it is and which tunnel names it may take (exact names, and
// prefixes ending in *), and may restrict who reaches its tunnels; JWTs
// from the team's identity provider are admitted besides, their claims
// saying the same. --unlisted-names generated gives an identity that
// lists no names generated names only:
//
//	# /etc/tunnel/tokens: token, then optional fields
//	4c1f9e2b7d3a6f08e5b1  subject=alice names=alice,alice-*
//	93e07a5c2f6d1b8e4a0c  subject=ci    names=ci-* allow_ips=10.0.0.0/8
//
//	tunnel gateway --base-url https://tunnel.example.com \
//	    --tokens-file /etc/tunnel/tokens --unlisted-names generated \
//	    --jwks-url https://login.example.com/.well-known/jwks.json \
//	    --jwt-issuer https://login.example.com/ --jwt-audience tunnel
//
// --jwt-secret-file (or $TUNNEL_JWT_SECRET) admits JWTs signed with a
// shared secret, --jwt-key-file those signed by the private halves of PEM
// public keys. An agent that asks for a name its identity may not take is
// refused (403 forbidden), and says so. docs/security.md has the threat
// model, how to rotate each secret, and a worked example.
//
// # Three nodes sharing Redis
//
// Every node uses the same Redis, the same tokens and the same node
// secret, and names the URL at which the others reach it; a public request
// that arrives at the wrong node is proxied to the node holding the
// tunnel. Limits are shared through Redis too:
//
//	export TUNNEL_TOKENS=... TUNNEL_NODE_SECRET=...
//	tunnel gateway --base-url https://tunnel.example.com \
//	    --store redis --redis-addr redis.internal:6379 \
//	    --limiter redis --agent-rate 100/h --request-rate 600/m \
//	    --node-url http://10.0.0.1:8080      # on 10.0.0.1
//	# the same on 10.0.0.2 and 10.0.0.3, each with its own --node-url
//
// Agents list the nodes, so that they come back on a live one with the
// same URL when theirs goes away:
//
//	tunnel agent --gateway http://10.0.0.1:8080,http://10.0.0.2:8080,http://10.0.0.3:8080 3000
//
// # DynamoDB
//
// --store dynamodb keeps records in the tables of store/dynamostore (the
// original system's schema), and --limiter dynamodb counts in a table of
// ratelimit/dynamolimit. Credentials come from AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN when they are set, else from
// the SDK's default chain: AWS_PROFILE (shared files, SSO), web identity,
// and container and instance roles. Every node deletes expired rows every
// --cleanup-interval; set it to 0 on all nodes but one.
//
//	AWS_REGION=eu-west-1 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \
//	tunnel gateway --store dynamodb \
//	    --dynamodb-connections-table prod-http-tunnel-connections \
//	    --dynamodb-pending-table prod-http-tunnel-pending-requests \
//	    --limiter dynamodb --dynamodb-ratelimit-table prod-http-tunnel-rate-limits \
//	    --agent-rate 100/h
//
// For development against a local emulator, --dynamodb-endpoint
// http://127.0.0.1:8000 --dynamodb-create-tables creates the tables.
//
// # Metrics, health and traces
//
// --admin-listen starts a second listener, for operators only, serving
// Prometheus metrics at /metrics, a health check at /healthz (503 once a
// shutdown has begun) and the tunnels of this node as JSON at /tunnels.
// grafana-dashboard.json, next to this file, is a dashboard for those
// metrics. --metrics-per-tunnel labels request metrics with tunnel_id, for
// gateways with few tunnels.
//
// Traces are exported with OTLP over HTTP when the standard OpenTelemetry
// variables ask for them, by the gateway (service.name
// http-tunnel-gateway) and by the agent (http-tunnel-agent):
//
//	OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4318 \
//	tunnel gateway --admin-listen 127.0.0.1:9090
//
// docs/observability.md lists the metrics, spans and log fields.
//
// # The agent
//
// The agent forwards a local HTTP service and prints a forwarding line
// (public URL -> local URL), then one line per request and what happens
// to its connection; --json prints the same as JSON lines, --print-url the
// public URL alone on stdout. The inspector, on http://127.0.0.1:4040,
// shows every request and replays it (--inspect). It reconnects by itself, and exits 0 when
// interrupted, non-zero when the gateway refuses it for good. It also
// takes the original agent's -p/--port, -e/--endpoint, $TTF_ENDPOINT and
// $TTF_TOKEN.
//
//	TUNNEL_TOKEN=s3cret tunnel http --gateway https://tunnel.example.com 3000
//	tunnel agent --name myapp --rewrite-host localhost:5173
//	tunnel http --local-ca "$(mkcert -CAROOT)/rootCA.pem" https://localhost:8443
//
// The agent may ask the gateway to protect its public URL, which checks
// every public request before it reaches the agent: HTTP Basic
// authentication with the user:password lines of --basic-auth-file (or
// $TUNNEL_BASIC_AUTH), a bearer token of --bearer-auth-file (or
// $TUNNEL_BEARER_AUTH), client addresses with --allow-ip and --deny-ip:
//
//	TUNNEL_BASIC_AUTH=alice:correct-horse tunnel http --name alice-demo 3000
//	tunnel http --name alice-admin --allow-ip 203.0.113.0/24,2001:db8::/32 8080
//
// Exit status: 0 on success, on -h, or after SIGINT, SIGTERM or SIGHUP; 1
// on an error; 2 on a mistake in the command line.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"go.opentelemetry.io/otel/trace"

	"github.com/http-tunnel/tunnel/internal/agentcli"
)

// Environment variables the gateway reads; the agent's are agentcli's.
const (
	envTokens     = "TUNNEL_TOKENS"      // agent tokens, comma-separated
	envNodeSecret = "TUNNEL_NODE_SECRET" // default of --node-secret
	envJWTSecret  = "TUNNEL_JWT_SECRET"  // default of --jwt-secret-file's content

	envAcceptNodeSecrets = "TUNNEL_ACCEPT_NODE_SECRETS" // default of --accept-node-secrets
)

const usage = `Usage:
  tunnel gateway [flags]                       run a tunnel gateway
  tunnel http [flags] <port|host:port|URL>     forward a local service through a gateway
  tunnel agent [flags] <port|host:port|URL>    the same as http

Run "tunnel <command> -h" for the flags of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	code := run(ctx, os.Args[1:], command{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(code)
}

// command is what a subcommand takes from its process. Tests supply their
// own writers, environment and hooks.
type command struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	// listening, if set, is called with the gateway's address once it
	// accepts connections.
	listening func(net.Addr)
	// adminListening and httpListening, if set, are called with the
	// address of the gateway's admin listener (--admin-listen) and of its
	// plain-HTTP listener (--http-listen, with TLS) once they accept
	// connections, before listening is called.
	adminListening, httpListening func(net.Addr)
}

// run dispatches args to a subcommand and returns the exit status.
func run(ctx context.Context, args []string, c command) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, usage)
		return 2
	}
	name := args[0]
	var err error
	switch name {
	case "gateway":
		err = c.gateway(ctx, args[1:])
	case "agent", "http":
		err = c.agent(ctx, "tunnel "+name, args[1:])
	case "help", "-h", "-help", "--help":
		fmt.Fprint(c.stdout, usage)
		return 0
	default:
		fmt.Fprintf(c.stderr, "tunnel: unknown command %q\n\n%s", name, usage)
		return 2
	}
	return agentcli.Exit(c.stderr, "tunnel "+name, err)
}

// agent runs the agent subcommand, named name in its usage, with traces
// exported over OTLP when the environment asks for them.
func (c command) agent(ctx context.Context, name string, args []string) error {
	return agentcli.Command{
		Name:   name,
		Stdout: c.stdout,
		Stderr: c.stderr,
		Getenv: c.getenv,
		Tracing: func(ctx context.Context) (trace.TracerProvider, func(context.Context) error, error) {
			tp, err := newTracerProvider(ctx, c.getenv, agentService)
			if err != nil || tp == nil {
				return nil, nil, err
			}
			return tp, tp.Shutdown, nil
		},
	}.Run(ctx, args)
}

// newLogger returns a logger writing text, or JSON, to w at level and
// above.
func newLogger(w io.Writer, json bool, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if json {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
