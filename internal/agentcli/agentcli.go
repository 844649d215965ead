// Package agentcli is the agent command: it forwards a local HTTP service
// through a gateway with tunnel.Forward and tells its user what happens,
// one line at a time, and serves the inspector's page (package inspector)
// on which the requests can be seen and replayed. Two binaries run it: tunnel (cmd/tunnel, as "tunnel
// agent" and "tunnel http") and tunnel-agent (cmd/tunnel-agent). It
// imports the standard library and the root module only, so that
// tunnel-agent installs without the gateway's backends (the AWS SDK,
// go-redis, Prometheus).
//
// The package also holds the command-line conventions that every command
// of the repository shares (UsageError, NewFlagSet, ParseFlags, Exit).
package agentcli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/inspector"
)

// closeTimeout bounds how long an interrupted agent lets requests in
// flight finish.
const closeTimeout = 5 * time.Second

// Command is the agent command as a process runs it: its name, where its
// output goes and what environment it reads. The zero value of a field
// means what its doc says.
type Command struct {
	// Name is the command as its user types it, such as "tunnel http",
	// for the usage text.
	Name string

	// Stdout receives the forwarding line, the inspector's address, the
	// request lines and the connection's events (only the public URL with
	// --print-url); Stderr receives logs, usage and everything else.
	Stdout, Stderr io.Writer

	// Getenv reads the environment. Nil means os.Getenv. The proxy
	// variables (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) are read by
	// http.ProxyFromEnvironment from the process's own environment.
	Getenv func(string) string

	// Tracing, if set, is called once the command line is checked, and
	// returns the TracerProvider for the spans of Forward (nil for none)
	// and the function that flushes it at exit. cmd/tunnel exports traces
	// over OTLP with it.
	Tracing func(ctx context.Context) (trace.TracerProvider, func(context.Context) error, error)
}

// Run runs the agent with args, what follows the command's name, until ctx
// ends, which is a clean exit (nil), or until the gateway ends the tunnel
// for good, which is an error. Mistakes in args are a *UsageError;
// flag.ErrHelp means -h was given and the usage printed.
func (c Command) Run(ctx context.Context, args []string) (err error) {
	getenv := c.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	cfg, err := parseFlags(c.Name, args, getenv, c.Stderr)
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if cfg.verbose {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	var log *slog.Logger
	if cfg.json {
		log = slog.New(slog.NewJSONHandler(c.Stderr, opts))
	} else {
		log = slog.New(slog.NewTextHandler(c.Stderr, opts))
	}
	out := c.Stdout
	if cfg.printURL {
		out = c.Stderr
	}
	p := &printer{out: out, json: cfg.json, now: time.Now}

	var tp trace.TracerProvider
	if c.Tracing != nil {
		var flush func(context.Context) error
		tp, flush, err = c.Tracing(ctx)
		if err != nil {
			return err
		}
		if flush != nil {
			defer func() {
				fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
				defer cancel()
				if err := flush(fctx); err != nil {
					log.Warn("spans lost at exit", slog.Any("err", err))
				}
			}()
		}
	}

	// The inspector's listener comes first: an address given that cannot
	// be had is a mistake to report before connecting.
	var pageLn net.Listener
	if cfg.inspect != "off" {
		if pageLn, err = listenInspector(cfg.inspect); err != nil {
			return err
		}
		defer pageLn.Close()
	}

	linesReady := make(chan struct{})
	topts, err := cfg.options(log, p, tp, linesReady)
	if err != nil {
		return err
	}
	log.Debug("connecting", slog.String("gateway", cfg.gateway), slog.Any("fallbacks", cfg.fallbacks), slog.String("local", cfg.local))
	fw, err := tunnel.Forward(ctx, cfg.gateway, cfg.local, topts...)
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while connecting
		}
		return explain(err, cfg.name)
	}
	if cfg.printURL {
		fmt.Fprintln(c.Stdout, fw.URL())
	}
	p.forwarding(fw.URL(), fw.ID(), cfg.local)
	if !cfg.access.empty() {
		p.access(cfg.access)
	}

	// The request lines are the inspector's exchanges, as each ends.
	rec := fw.Inspector()
	var page *http.Server
	pageDone := make(chan struct{})
	if pageLn != nil {
		page = &http.Server{
			Handler:           rec.Handler(),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
		go func() {
			defer close(pageDone)
			page.Serve(pageLn)
		}()
		p.inspector(pageURL(pageLn.Addr()))
	} else {
		close(pageDone)
	}
	// The request lines start after the inspector's line: a request made
	// as soon as the forwarding line appeared waits in the inspector, or
	// for linesReady.
	close(linesReady)
	linesCtx, stopLines := context.WithCancel(context.WithoutCancel(ctx))
	linesDone := make(chan struct{})
	go func() {
		defer close(linesDone)
		for rec != nil {
			ex, err := rec.Next(linesCtx)
			if err != nil {
				return // stopped, and every exchange that had ended printed
			}
			p.request(requestOf(ex))
		}
	}()
	// stop ends the page (its live streams too) and prints the lines of
	// the requests that ended before.
	stop := func() {
		if page != nil {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			if page.Shutdown(sctx) != nil {
				page.Close()
			}
			cancel()
		}
		<-pageDone
		stopLines()
		<-linesDone
	}

	select {
	case <-ctx.Done():
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		if err := fw.CloseWithContext(cctx); err != nil {
			log.Warn("requests in flight were cut short", slog.Any("err", err))
		}
		stop()
		p.closed(nil)
		return nil
	case <-fw.Done():
		err := fw.Err()
		fw.Close()
		stop()
		if err == nil {
			err = errors.New("tunnel stopped")
		} else {
			err = fmt.Errorf("tunnel stopped: %w", explain(err, cfg.name))
		}
		p.closed(err)
		return err
	}
}

// listenInspector listens for the inspector's page on addr. When addr is
// DefaultInspect and that port is taken (another agent has it), it takes
// a free port on 127.0.0.1 instead.
func listenInspector(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil && addr == DefaultInspect {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		return nil, fmt.Errorf("--inspect: %w", err)
	}
	return ln, nil
}

// pageURL is the inspector's URL for a person on this machine: the page
// answers loopback names only, so an address on every interface is shown
// as localhost.
func pageURL(a net.Addr) string {
	host, port, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// options turns the command line into Forward's options: tp, if set,
// receives the spans; connection events go to p, heartbeats to log, at
// debug level. Forward records every exchange in an inspector (kept
// whole for the page, only as far as the request lines need without it).
func (cfg *config) options(log *slog.Logger, p *printer, tp trace.TracerProvider, linesReady <-chan struct{}) ([]tunnel.Option, error) {
	opts := []tunnel.Option{
		tunnel.WithLogger(log),
		tunnel.WithEvents(func(e tunnel.Event) {
			if e.Kind == tunnel.EventHeartbeat {
				log.Debug("heartbeat", slog.String("tunnel_id", e.TunnelID), slog.Duration("rtt", e.RTT))
				return
			}
			p.event(e)
		}),
	}
	if cfg.inspect == "off" {
		// Without the page, the request lines come from the cheaper log,
		// which leaves Forward free to relay requests as bytes.
		var seq atomic.Uint64
		opts = append(opts, tunnel.WithRequestLog(func(r tunnel.RequestLog) {
			<-linesReady
			p.request(requestOfLog(seq.Add(1), r))
		}))
	} else {
		opts = append(opts, tunnel.WithInspector(&inspector.Options{}))
	}
	if tp != nil {
		opts = append(opts, tunnel.WithTracerProvider(tp))
	}
	if cfg.token != "" {
		opts = append(opts, tunnel.WithToken(cfg.token))
	}
	if cfg.name != "" {
		opts = append(opts, tunnel.WithName(cfg.name))
	}
	if cfg.pool {
		opts = append(opts, tunnel.WithPool())
	}
	if cfg.rewriteHost {
		opts = append(opts, tunnel.WithRewriteHost())
	}
	opts = append(opts, tunnel.WithTransport(tunnel.Transport(cfg.transport)))
	opts = append(opts, cfg.access.options()...)
	if len(cfg.fallbacks) > 0 {
		opts = append(opts, tunnel.WithFallbackGateways(cfg.fallbacks...))
	}
	switch cfg.proxy {
	case "":
		// The library connects directly unless told; a command follows
		// the conventions of the machine it runs on.
		opts = append(opts, tunnel.WithProxy(http.ProxyFromEnvironment))
	case "none":
	default:
		u, err := url.Parse(cfg.proxy) // checked by parseFlags
		if err != nil {
			return nil, err
		}
		opts = append(opts, tunnel.WithProxy(http.ProxyURL(u)))
	}
	switch {
	case cfg.localInsecure:
		opts = append(opts, tunnel.WithLocalTLSConfig(&tls.Config{InsecureSkipVerify: true}))
	case cfg.localCA != "":
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(cfg.localCA)
		if err != nil {
			return nil, fmt.Errorf("--local-ca: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--local-ca: no PEM certificate in %s", cfg.localCA)
		}
		opts = append(opts, tunnel.WithLocalTLSConfig(&tls.Config{RootCAs: pool}))
	}
	return opts, nil
}

// explain prefixes a gateway's refusal with its HTTP status and what to
// do about it; *tunnel.Error's own text has the gateway's code and message.
// name is the tunnel name the agent asked for ("" for a generated one).
func explain(err error, name string) error {
	var te *tunnel.Error
	if !errors.As(err, &te) {
		return err
	}
	status := te.HTTPStatus()
	switch te.Code {
	case tunnel.CodeUnauthorized:
		return fmt.Errorf("the gateway refused the token (%d); check --token or $%s: %w", status, EnvToken, err)
	case tunnel.CodeForbidden:
		if name != "" {
			return fmt.Errorf("the gateway refused this agent (%d); ask for a name the token allows, or leave out --name for a generated one: %w", status, err)
		}
		return fmt.Errorf("the gateway refused this agent (%d): %w", status, err)
	case tunnel.CodeInvalidRequest:
		return fmt.Errorf("the gateway refused what the agent asked for (%d): %w", status, err)
	case tunnel.CodeNameInUse:
		return fmt.Errorf("another agent holds this name (%d); choose another --name, or give every agent of the name --pool (same token): %w", status, err)
	case tunnel.CodeRateLimited:
		return fmt.Errorf("too many connections from this address (%d); try again later: %w", status, err)
	}
	return err
}
