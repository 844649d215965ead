package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/http-tunnel/tunnel"
)

// defaultGateway is the gateway an agent connects to when neither
// --gateway nor $TUNNEL_GATEWAY names one: a gateway on this machine with
// the default --listen.
const defaultGateway = "http://127.0.0.1:8080"

// agentCloseTimeout bounds how long an interrupted agent lets requests in
// flight finish.
const agentCloseTimeout = 5 * time.Second

// agentConfig is the agent's command line, checked.
type agentConfig struct {
	gateway     string
	fallbacks   []string
	token       string // secret: never logged
	name        string
	rewriteHost bool
	verbose     bool
	local       string // the local service's URL
}

const agentUsage = `Usage: standalone agent [flags] <port|host:port|URL>

Forwards a local HTTP service through a gateway and prints its public URL.
The service is a port on 127.0.0.1 (3000), a host and port
(localhost:3000), or an http or https URL. The agent reconnects by itself
until interrupted, or until the gateway refuses it for good. Traces are
exported over OTLP/HTTP when $OTEL_EXPORTER_OTLP_ENDPOINT is set.

Flags:
`

// parseAgentFlags parses and checks the agent's arguments. Flags may come
// before or after the local service. getenv supplies the environment;
// output receives usage and flag errors.
func parseAgentFlags(args []string, getenv func(string) string, output io.Writer) (*agentConfig, error) {
	cfg := &agentConfig{}
	fs := newFlagSet("agent", agentUsage, output)
	// Defaults from the environment are filled in after parsing, so that
	// -h never prints a token.
	gateways := fs.String("gateway", "", "gateway `URL`; a comma-separated list names nodes of one cluster, tried in turn on reconnects (default $"+envGateway+", else "+defaultGateway+")")
	fs.StringVar(&cfg.token, "token", "", "agent `token` (default $"+envToken+", which keeps it out of the process list)")
	fs.StringVar(&cfg.name, "name", "", "tunnel `name` to ask for, its subdomain or path segment (default: the gateway picks one)")
	fs.BoolVar(&cfg.rewriteHost, "rewrite-host", false, "send the local service's host in the Host header instead of the public one, for dev servers that check it")
	fs.BoolVar(&cfg.verbose, "verbose", false, "log debug messages")

	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() == 0 {
		return nil, usagef("missing the local service: a port, host:port or URL")
	}
	target := fs.Arg(0)
	if err := parseFlags(fs, fs.Args()[1:]); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usagef("more than one local service given")
	}
	local, err := parseLocal(target)
	if err != nil {
		return nil, &usageError{err: err}
	}
	cfg.local = local

	if cfg.token == "" {
		cfg.token = getenv(envToken)
	}
	if *gateways == "" {
		*gateways = envOr(getenv, envGateway, defaultGateway)
	}
	list := splitList(*gateways)
	if len(list) == 0 {
		return nil, usagef("--gateway names no gateway")
	}
	for _, g := range list {
		// The client would send a token in the URL along, and repeat it in
		// its error messages.
		if u, err := url.Parse(g); err == nil && u.Query().Has("token") {
			return nil, usagef("--gateway: give the token with --token or $%s, not in the URL", envToken)
		}
	}
	cfg.gateway, cfg.fallbacks = list[0], list[1:]
	return cfg, nil
}

// parseLocal turns the agent's argument into the local service's URL: a
// port means http on 127.0.0.1, host:port means http on that host (an
// empty host meaning 127.0.0.1), and an http or https URL is used as it
// is.
func parseLocal(s string) (string, error) {
	if strings.Contains(s, "://") {
		if !httpURL(s) {
			return "", fmt.Errorf("local service %q: want an http or https URL", s)
		}
		return s, nil
	}
	host, port := "127.0.0.1", s
	if strings.Contains(s, ":") {
		var err error
		if host, port, err = net.SplitHostPort(s); err != nil {
			return "", fmt.Errorf("local service %q: want a port, host:port or URL", s)
		}
		if host == "" {
			host = "127.0.0.1"
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("local service %q: want a port (1-65535), host:port or URL", s)
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// agent runs the agent subcommand: it forwards the local service until ctx
// ends, which is a clean exit, or the tunnel stops for good, which is an
// error.
func (c command) agent(ctx context.Context, args []string) error {
	cfg, err := parseAgentFlags(args, c.getenv, c.stderr)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if cfg.verbose {
		level = slog.LevelDebug
	}
	log := newLogger(c.stderr, false, level)

	opts := []tunnel.Option{tunnel.WithLogger(log), tunnel.WithEvents(logEvents(log))}
	tp, err := newTracerProvider(ctx, c.getenv, agentService)
	if err != nil {
		return err
	}
	if tp != nil {
		defer func() {
			if err := shutdownTelemetry(ctx, tp.Shutdown); err != nil {
				log.Warn("spans lost at exit", slog.Any("err", err))
			}
		}()
		opts = append(opts, tunnel.WithTracerProvider(tp))
		log.Debug("exporting traces over OTLP")
	}
	if cfg.token != "" {
		opts = append(opts, tunnel.WithToken(cfg.token))
	}
	if cfg.name != "" {
		opts = append(opts, tunnel.WithName(cfg.name))
	}
	if cfg.rewriteHost {
		opts = append(opts, tunnel.WithRewriteHost())
	}
	if len(cfg.fallbacks) > 0 {
		opts = append(opts, tunnel.WithFallbackGateways(cfg.fallbacks...))
	}

	log.Debug("connecting", slog.String("gateway", cfg.gateway), slog.Any("fallbacks", cfg.fallbacks), slog.String("local", cfg.local))
	fw, err := tunnel.Forward(ctx, cfg.gateway, cfg.local, opts...)
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while connecting
		}
		return explain(err)
	}
	fmt.Fprintln(c.stdout, fw.URL())
	log.Debug("forwarding", slog.String("url", fw.URL()), slog.String("local", cfg.local))

	select {
	case <-ctx.Done():
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), agentCloseTimeout)
		defer cancel()
		if err := fw.CloseWithContext(cctx); err != nil {
			log.Warn("requests in flight were cut short", slog.Any("err", err))
		}
		return nil
	case <-fw.Done():
		err := fw.Err()
		fw.Close()
		if err == nil {
			return errors.New("tunnel stopped")
		}
		return fmt.Errorf("tunnel stopped: %w", explain(err))
	}
}

// logEvents returns the WithEvents callback of the agent: reconnect
// attempts at info level, heartbeat round trips at debug level (--verbose).
// Connects and disconnects are logged by the library itself.
func logEvents(log *slog.Logger) func(tunnel.Event) {
	return func(e tunnel.Event) {
		switch e.Kind {
		case tunnel.EventReconnecting:
			log.Info("reconnecting to the gateway",
				slog.String("tunnel_id", e.TunnelID),
				slog.Int("attempt", e.Attempt),
				slog.Duration("delay", e.Delay),
				slog.String("gateway", e.Gateway))
		case tunnel.EventHeartbeat:
			log.Debug("heartbeat", slog.String("tunnel_id", e.TunnelID), slog.Duration("rtt", e.RTT))
		}
	}
}

// explain prefixes a gateway's refusal with its code and what to do about
// it; *tunnel.Error's own text has the gateway's message but not the code.
func explain(err error) error {
	var te *tunnel.Error
	if !errors.As(err, &te) {
		return err
	}
	switch te.Code {
	case tunnel.CodeUnauthorized:
		return fmt.Errorf("the gateway refused the token; check --token or $%s: %w", envToken, err)
	case tunnel.CodeForbidden:
		return fmt.Errorf("the gateway does not allow this agent: %w", err)
	case tunnel.CodeNameInUse:
		return fmt.Errorf("another agent holds this name; choose another --name: %w", err)
	case tunnel.CodeRateLimited:
		return fmt.Errorf("too many connections from this address; try again later: %w", err)
	}
	return err
}
