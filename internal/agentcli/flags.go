package agentcli

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/http-tunnel/tunnel"
)

// Environment variables the agent reads. The TTF_ names are those of the
// original project's agent (tyrchen/http-tunnel, apps/forwarder), so that
// its users' settings keep working; the TUNNEL_ names win when both are
// set.
const (
	EnvGateway    = "TUNNEL_GATEWAY" // default of --gateway
	EnvToken      = "TUNNEL_TOKEN"   // default of --token
	EnvTTFGateway = "TTF_ENDPOINT"   // the original agent's endpoint
	EnvTTFToken   = "TTF_TOKEN"      // the original agent's token
)

// DefaultInspect is where the agent serves the inspector's page unless
// --inspect says otherwise; when it is taken (another agent), the agent
// takes a free port instead.
const DefaultInspect = "127.0.0.1:4040"

// DefaultGateway is the gateway an agent connects to when neither a flag
// nor the environment names one: a gateway on this machine with the
// gateway's default --listen.
const DefaultGateway = "http://127.0.0.1:8080"

// config is the agent's command line, checked.
type config struct {
	gateway       string
	fallbacks     []string
	token         string // secret: never logged
	name          string
	pool          bool
	rewriteHost   bool
	verbose       bool
	json          bool
	printURL      bool
	local         string // the local service's URL: http, https or h2c
	localCA       string // PEM file of CAs for an https local service
	localInsecure bool
	proxy         string // "" for the environment, "none", or a proxy URL
	transport     string // auto, raw or websocket: tunnel.WithTransport
	inspect       string // the inspector page's address, or "off"
	access        accessConfig
}

const usageText = `Usage: %[1]s [flags] <port|host:port|URL>

Forwards a local HTTP service through a gateway and prints its public URL,
then one line per request and what happens to the connection. The service
is a port on localhost (3000), a host and port (127.0.0.1:3000), or an
http, https or h2c URL (h2c://localhost:50051 for HTTP/2 without TLS, such
as a gRPC server). The agent reconnects by itself until interrupted
(SIGINT, SIGTERM or SIGHUP: requests in flight get 5 s to finish), or until
the gateway refuses it for good. The inspector, on http://127.0.0.1:4040,
shows every request and replays it.

--basic-auth-file, --bearer-auth-file, --allow-ip and --deny-ip ask the
gateway to protect the public URL: it checks every public request before
anything reaches the agent (401 or 403), and the local service never sees
the credentials.

The original agent's flags and variables work too: -p/--port and --host
for the local service, -e/--endpoint or $TTF_ENDPOINT for the gateway,
-t or $TTF_TOKEN for the token, -v for --verbose.

Flags:
`

// parseFlags parses and checks the agent's arguments. Flags may come before
// or after the local service. getenv supplies the environment; output
// receives usage and flag errors; name is the command's name in the usage.
func parseFlags(name string, args []string, getenv func(string) string, output io.Writer) (*config, error) {
	cfg := &config{}
	fs := NewFlagSet(name, fmt.Sprintf(usageText, name), output)
	// Defaults from the environment are filled in after parsing, so that
	// -h never prints a token.
	var gateways string
	gatewayUsage := "gateway `URL`; a comma-separated list names nodes of one cluster, tried in turn on reconnects (default $" + EnvGateway + ", else $" + EnvTTFGateway + ", else " + DefaultGateway + ")"
	fs.StringVar(&gateways, "gateway", "", gatewayUsage)
	fs.StringVar(&gateways, "endpoint", "", "gateway `URL`, as --gateway (the original agent's name)")
	fs.StringVar(&gateways, "e", "", "gateway `URL`, as --gateway")
	tokenUsage := "agent `token` (default $" + EnvToken + ", else $" + EnvTTFToken + ": a variable keeps it out of the process list)"
	fs.StringVar(&cfg.token, "token", "", tokenUsage)
	fs.StringVar(&cfg.token, "t", "", "agent `token`, as --token")
	port := fs.Int("port", 0, "local `port` to forward to, instead of the argument (the original agent's flag)")
	fs.IntVar(port, "p", 0, "local `port`, as --port")
	host := fs.String("host", "", "local `host` for --port (default localhost)")
	fs.StringVar(&cfg.name, "name", "", "tunnel `name` to ask for, its subdomain or path segment (default: the gateway picks one)")
	fs.BoolVar(&cfg.pool, "pool", false, "serve --name together with the other agents of the same token that ask for it with --pool: the gateway sends each request to the one with the fewest in flight")
	fs.BoolVar(&cfg.rewriteHost, "rewrite-host", false, "send the local service's host in the Host header instead of the public one, for dev servers that check it")
	fs.StringVar(&cfg.localCA, "local-ca", "", "PEM `file` of CA certificates that verify an https local service, in addition to the system's (a development CA such as mkcert's)")
	fs.BoolVar(&cfg.localInsecure, "local-insecure", false, "do not verify the certificate of an https local service")
	fs.StringVar(&cfg.proxy, "proxy", "", "HTTP or SOCKS5 proxy `URL` for the connection to the gateway, or none (default $HTTPS_PROXY, $HTTP_PROXY and $NO_PROXY)")
	fs.StringVar(&cfg.transport, "transport", string(tunnel.TransportAuto), "`transport` to the gateway: auto (the raw upgrade, or WebSocket where it is refused), raw, or websocket")
	fs.StringVar(&cfg.inspect, "inspect", DefaultInspect, "`address` of the inspector, a page on which the requests through the tunnel can be seen and replayed (a free port when the default is taken), or off")
	var access accessFlags
	access.register(fs)
	fs.BoolVar(&cfg.json, "json", false, "print JSON lines instead of text, for scripts")
	fs.BoolVar(&cfg.printURL, "print-url", false, "print the public URL alone on stdout, once; everything else goes to stderr")
	fs.BoolVar(&cfg.verbose, "verbose", false, "log debug messages")
	fs.BoolVar(&cfg.verbose, "v", false, "log debug messages, as --verbose")

	if err := ParseFlags(fs, args); err != nil {
		return nil, err
	}
	var target string
	if fs.NArg() > 0 {
		target = fs.Arg(0)
		if err := ParseFlags(fs, fs.Args()[1:]); err != nil {
			return nil, err
		}
		if fs.NArg() > 0 {
			return nil, Usagef("more than one local service given")
		}
	}

	var err error
	switch {
	case target != "" && *port != 0:
		return nil, Usagef("give the local service as an argument or with --port, not both")
	case *port != 0:
		if *port < 1 || *port > 65535 {
			return nil, Usagef("--port %d: want 1-65535", *port)
		}
		h := *host
		if h == "" {
			h = "localhost"
		}
		cfg.local = "http://" + net.JoinHostPort(h, strconv.Itoa(*port))
	case *host != "":
		return nil, Usagef("--host needs --port")
	case target == "":
		return nil, Usagef("missing the local service: a port, host:port or URL")
	default:
		if cfg.local, err = parseLocal(target); err != nil {
			return nil, &UsageError{Err: err}
		}
	}

	if cfg.pool && cfg.name == "" {
		return nil, Usagef("--pool needs --name: agents pool under a name they share")
	}
	if cfg.localCA != "" || cfg.localInsecure {
		if !strings.HasPrefix(cfg.local, "https://") {
			return nil, Usagef("--local-ca and --local-insecure are for an https local service")
		}
		if cfg.localCA != "" && cfg.localInsecure {
			return nil, Usagef("give --local-ca or --local-insecure, not both")
		}
	}
	if cfg.proxy != "" && cfg.proxy != "none" {
		u, err := url.Parse(cfg.proxy)
		if err != nil || u.Host == "" {
			return nil, Usagef("--proxy: want a proxy URL, such as http://proxy.internal:3128, or none")
		}
		switch u.Scheme {
		case "http", "https", "socks5", "socks5h":
		default:
			return nil, Usagef("--proxy: scheme %q is not http, https, socks5 or socks5h", u.Scheme)
		}
	}

	switch tunnel.Transport(cfg.transport) {
	case tunnel.TransportAuto, tunnel.TransportRaw, tunnel.TransportWebSocket:
	default:
		return nil, Usagef("--transport %q: want auto, raw or websocket", cfg.transport)
	}

	switch cfg.inspect {
	case "false", "none", "no":
		// --inspect=false, as a boolean flag would be turned off.
		cfg.inspect = "off"
	}
	if cfg.inspect != "off" {
		if _, _, err := net.SplitHostPort(cfg.inspect); err != nil {
			return nil, Usagef("--inspect %q: want host:port, such as 127.0.0.1:4040, or off", cfg.inspect)
		}
	}

	if cfg.access, err = access.load(getenv); err != nil {
		return nil, err
	}

	if cfg.token == "" {
		cfg.token = firstSet(getenv(EnvToken), getenv(EnvTTFToken))
	}
	if gateways == "" {
		gateways = firstSet(getenv(EnvGateway), getenv(EnvTTFGateway), DefaultGateway)
	}
	var list []string
	for item := range strings.SplitSeq(gateways, ",") {
		if item = strings.TrimSpace(item); item != "" {
			list = append(list, item)
		}
	}
	if len(list) == 0 {
		return nil, Usagef("--gateway names no gateway")
	}
	for _, g := range list {
		// The client would send a token in the URL along, and repeat it in
		// its error messages.
		if u, err := url.Parse(g); err == nil && u.Query().Has("token") {
			return nil, Usagef("--gateway: give the token with --token or $%s, not in the URL", EnvToken)
		}
	}
	cfg.gateway, cfg.fallbacks = list[0], list[1:]
	return cfg, nil
}

// firstSet returns the first of values that is not empty.
func firstSet(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// parseLocal turns the agent's argument into the local service's URL, with
// the meaning tunnel.Forward gives it: a port means http on localhost,
// host:port means http on that host (an empty host meaning localhost), and
// an http, https or h2c URL is used as it is. The agent prints the result
// on its forwarding line.
func parseLocal(s string) (string, error) {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "h2c") {
			return "", fmt.Errorf("local service %q: want an http, https or h2c URL", s)
		}
		return s, nil
	}
	host, port := "localhost", s
	if strings.Contains(s, ":") {
		var err error
		if host, port, err = net.SplitHostPort(s); err != nil {
			return "", fmt.Errorf("local service %q: want a port, host:port or URL", s)
		}
		if host == "" {
			host = "localhost"
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("local service %q: want a port (1-65535), host:port or URL", s)
	}
	return "http://" + net.JoinHostPort(host, port), nil
}
