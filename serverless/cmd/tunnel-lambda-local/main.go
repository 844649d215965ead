// Command tunnel-lambda-local serves the serverless gateway on loopback:
// the Lambda handlers of package serverless behind the API Gateway
// emulator of package apigwtest, with their tables in a local DynamoDB
// such as dynalite. It is the serverless path without AWS: the same
// handlers, json-mode agents, pending rows and Management API posts as in
// a deployment.
//
//	go run github.com/http-tunnel/tunnel/serverless/cmd/tunnel-lambda-local --dynamodb-endpoint http://127.0.0.1:8000
//
// It creates its two tables unless they exist (dynamostore.CreateTables,
// with TTL where the service has it), signs every AWS call with dummy
// credentials, prints the URL agents connect to and the public URL, and
// serves until interrupted (Ctrl-C). On the way out it closes every agent
// connection, which runs $disconnect and so deletes their records; the
// tables stay.
//
// Agents connect with tunnel.Listen (or cmd/tunnel-agent) to the printed
// agent URL, which includes the WebSocket stage; they get a tunnel URL
// under the public URL, <public URL>/<tunnel id>/. The emulator enforces
// API Gateway's quotas (see package apigwtest) and listens on ports
// chosen by the system.
//
// Exit status: 0 after an interrupt or on -h, 1 on an error, 2 on a
// mistake in the command line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/serverless"
	"github.com/http-tunnel/tunnel/serverless/apigwtest"
	"github.com/http-tunnel/tunnel/store/dynamostore"
)

const usage = `Usage: tunnel-lambda-local [flags]

Serves the serverless gateway (package serverless) behind an emulated API
Gateway on loopback, with its tables in a local DynamoDB such as dynalite,
until interrupted.

Flags:
`

// tableTimeout bounds creating the tables.
const tableTimeout = time.Minute

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &ue):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "tunnel-lambda-local:", err)
		os.Exit(1)
	}
}

// usageError is a mistake in the command line, already reported.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// config is the command line.
type config struct {
	dynamoEndpoint   string
	region           string
	connectionsTable string
	pendingTable     string
	tokens           []string
	stage            string
	payloadV1        bool
	responseTimeout  time.Duration
	verbose          bool
}

// parseFlags parses args; getenv supplies the default of --tokens. Usage
// and parse errors go to output.
func parseFlags(args []string, output io.Writer, getenv func(string) string) (config, error) {
	var c config
	fs := flag.NewFlagSet("tunnel-lambda-local", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.dynamoEndpoint, "dynamodb-endpoint", "http://127.0.0.1:8000", "`URL` of the DynamoDB to keep the tables in (dynalite, DynamoDB Local)")
	fs.StringVar(&c.region, "region", "us-east-1", "AWS `region` to sign DynamoDB calls for")
	fs.StringVar(&c.connectionsTable, "connections-table", dynamostore.DefaultConnectionsTable, "connections table `name`, created if missing")
	fs.StringVar(&c.pendingTable, "pending-table", dynamostore.DefaultPendingTable, "pending-requests table `name`, created if missing")
	// The default is not the flag's: -h must not print the tokens.
	tokens := fs.String("tokens", "", "comma-separated agent `tokens` (default $TUNNEL_TOKENS); with neither, every agent is admitted")
	fs.StringVar(&c.stage, "stage", "local", "`name` of the WebSocket API's stage, the last segment of the agent URL")
	format := fs.String("payload-format", "2.0", "`version` of the HTTP API's payload format: 2.0 or 1.0")
	fs.DurationVar(&c.responseTimeout, "response-timeout", serverless.DefaultResponseTimeout, "how long a public request waits for the agent's response")
	fs.BoolVar(&c.verbose, "verbose", false, "log connections and requests, not only warnings and errors")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, usageError{err}
	}
	fail := func(format string, args ...any) (config, error) {
		err := fmt.Errorf(format, args...)
		fmt.Fprintf(output, "tunnel-lambda-local: %v\n", err)
		return c, usageError{err}
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q", fs.Arg(0))
	}
	switch *format {
	case "2.0":
	case "1.0":
		c.payloadV1 = true
	default:
		return fail("--payload-format %q: want 2.0 or 1.0", *format)
	}
	if c.responseTimeout <= 0 {
		return fail("--response-timeout must be positive")
	}
	if *tokens == "" {
		*tokens = getenv("TUNNEL_TOKENS")
	}
	for t := range strings.SplitSeq(*tokens, ",") {
		if t = strings.TrimSpace(t); t != "" {
			c.tokens = append(c.tokens, t)
		}
	}
	return c, nil
}

// run serves until ctx ends, then stops the emulator and returns nil. It
// prints the URLs to stdout once the gateway serves, and logs to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	c, err := parseFlags(args, stderr, getenv)
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if c.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	// One transport for every AWS call, whose idle connections go when
	// the command does.
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	httpClient := &http.Client{Transport: tr}
	// Dynalite and the emulator accept any signature.
	creds := credentials.NewStaticCredentialsProvider("local", "local", "")

	ddb := dynamodb.New(dynamodb.Options{
		Region:       c.region,
		BaseEndpoint: aws.String(c.dynamoEndpoint),
		Credentials:  creds,
		HTTPClient:   httpClient,
	})
	opts := dynamostore.Options{ConnectionsTable: c.connectionsTable, PendingTable: c.pendingTable}
	tctx, cancel := context.WithTimeout(ctx, tableTimeout)
	err = dynamostore.CreateTables(tctx, ddb, opts)
	cancel()
	if err != nil {
		return fmt.Errorf("tables at %s: %w", c.dynamoEndpoint, err)
	}
	st := dynamostore.New(ddb, opts)

	// The handlers need the emulator's URLs, which exist once it has
	// started; invocations wait for the Handler until then.
	h := &serverless.Handler{Store: st, Identities: &serverless.IdentityTable{Client: ddb, Table: c.connectionsTable}, Logger: log}
	ready := make(chan struct{})
	emuCfg := apigwtest.Config{
		WebSocket: func(ctx context.Context, ev events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
			<-ready
			return h.WebSocket(ctx, ev)
		},
		WebSocketStage: c.stage,
	}
	if c.payloadV1 {
		emuCfg.HTTPV1 = func(ctx context.Context, ev events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
			<-ready
			return h.HTTPV1(ctx, ev)
		}
	} else {
		emuCfg.HTTP = func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
			<-ready
			return h.HTTP(ctx, ev)
		}
	}
	if c.verbose {
		emuCfg.Logger = log
	}
	emu, err := apigwtest.Start(emuCfg)
	if err != nil {
		return fmt.Errorf("API Gateway emulator: %w", err)
	}

	h.Mgmt = apigatewaymanagementapi.New(apigatewaymanagementapi.Options{
		Region:       c.region,
		Credentials:  creds,
		BaseEndpoint: aws.String(emu.ManagementURL()),
		HTTPClient:   httpClient,
	})
	h.Server = &tunnel.Server{
		BaseURL: emu.HTTPURL(),
		// 127.0.0.1 has no subdomains.
		Routing: tunnel.RoutePath,
		Store:   st,
		Cache:   serverless.NoCache{},
		Relay:   &serverless.Relay{Store: st, Mgmt: h.Mgmt, ResponseTimeout: c.responseTimeout},
		Logger:  log,
	}
	if len(c.tokens) > 0 {
		h.Server.Authenticator = tunnel.NewStaticTokens(c.tokens...)
	}
	close(ready)

	fmt.Fprintf(stdout, "agent URL:  %s\n", emu.WebSocketURL())
	fmt.Fprintf(stdout, "public URL: %s (tunnels at %s/<tunnel id>/)\n", emu.HTTPURL(), emu.HTTPURL())
	fmt.Fprintf(stdout, "tables:     %s, %s at %s\n", c.connectionsTable, c.pendingTable, c.dynamoEndpoint)

	<-ctx.Done()
	if err := emu.Close(); err != nil {
		return fmt.Errorf("stop the emulator: %w", err)
	}
	return nil
}
