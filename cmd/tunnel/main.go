// Command standalone is a tunnel gateway for production and the agent
// that goes with it, in one binary with two subcommands.
//
//	standalone gateway [flags]
//	standalone agent [flags] <port|host:port|URL>
//
// Build it with go build ./examples/standalone, or try it with go run
// ./examples/standalone gateway ...; run either subcommand with -h for its
// flags.
//
// # A gateway on one machine
//
// Records in memory, path-routed tunnel URLs (http://host:8080/<id>/),
// agent tokens from the environment:
//
//	TUNNEL_TOKENS=s3cret standalone gateway
//
// Behind a TLS-terminating proxy that sends tunnel.example.com and
// *.tunnel.example.com to it, with tokens in a file (one per line, # for
// comments) and JSON logs:
//
//	standalone gateway --base-url https://tunnel.example.com \
//	    --tokens-file /etc/tunnel/tokens --log-format json
//
// # Three nodes sharing Redis
//
// Every node uses the same Redis, the same tokens and the same node
// secret, and names the URL at which the others reach it; a public request
// that arrives at the wrong node is proxied to the node holding the
// tunnel. Limits are shared through Redis too:
//
//	export TUNNEL_TOKENS=... TUNNEL_NODE_SECRET=...
//	standalone gateway --base-url https://tunnel.example.com \
//	    --store redis --redis-addr redis.internal:6379 \
//	    --limiter redis --agent-rate 100/h --request-rate 600/m \
//	    --node-url http://10.0.0.1:8080      # on 10.0.0.1
//	# the same on 10.0.0.2 and 10.0.0.3, each with its own --node-url
//
// Agents list the nodes, so that they come back on a live one with the
// same URL when theirs goes away:
//
//	standalone agent --gateway http://10.0.0.1:8080,http://10.0.0.2:8080,http://10.0.0.3:8080 3000
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
//	standalone gateway --store dynamodb \
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
//	standalone gateway --admin-listen 127.0.0.1:9090
//
// docs/observability.md lists the metrics, spans and log fields.
//
// # The agent
//
// The agent forwards a local HTTP service and prints its public URL on
// stdout; logs go to stderr. It reconnects by itself, and exits 0 when
// interrupted, non-zero when the gateway refuses it for good.
//
//	TUNNEL_TOKEN=s3cret standalone agent --gateway https://tunnel.example.com 3000
//	standalone agent --name myapp --rewrite-host localhost:5173
//
// Exit status: 0 on success, on -h, or after SIGINT or SIGTERM; 1 on an
// error; 2 on a mistake in the command line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
)

// Environment variables the subcommands read.
const (
	envTokens     = "TUNNEL_TOKENS"      // gateway: agent tokens, comma-separated
	envNodeSecret = "TUNNEL_NODE_SECRET" // gateway: default of --node-secret
	envGateway    = "TUNNEL_GATEWAY"     // agent: default of --gateway
	envToken      = "TUNNEL_TOKEN"       // agent: default of --token
)

const usage = `Usage:
  standalone gateway [flags]                       run a tunnel gateway
  standalone agent [flags] <port|host:port|URL>    forward a local service through a gateway

Run "standalone <command> -h" for the flags of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
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
	// adminListening, if set, is called with the address of the gateway's
	// admin listener (--admin-listen) once it accepts connections, before
	// listening is called.
	adminListening func(net.Addr)
}

// runAgent runs the agent with args (what follows "agent") until ctx ends
// or the tunnel stops for good.
func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return command{stdout: stdout, stderr: stderr, getenv: os.Getenv}.agent(ctx, args)
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
	case "agent":
		err = c.agent(ctx, args[1:])
	case "help", "-h", "-help", "--help":
		fmt.Fprint(c.stdout, usage)
		return 0
	default:
		fmt.Fprintf(c.stderr, "standalone: unknown command %q\n\n%s", name, usage)
		return 2
	}

	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		if !ue.printed {
			fmt.Fprintf(c.stderr, "standalone %s: %v\nRun \"standalone %s -h\" for the flags.\n", name, err, name)
		}
		return 2
	default:
		fmt.Fprintf(c.stderr, "standalone %s: %v\n", name, err)
		return 1
	}
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
