package serverless

import (
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/ratelimit"
	"github.com/http-tunnel/tunnel/ratelimit/dynamolimit"
	"github.com/http-tunnel/tunnel/store/dynamostore"
)

// The limits FromEnv applies when TUNNEL_RATELIMIT_TABLE is set.
var (
	// requestLimit is per tunnel: 100 public requests a second.
	requestLimit = ratelimit.Limit{Events: 100, Period: time.Second, Burst: 200}
	// agentLimit is per source IP: 10 agent connections a minute.
	agentLimit = ratelimit.Limit{Events: 10, Period: time.Minute}
)

// FromEnv builds a Handler from the environment variables listed in the
// package doc, read through getenv (os.Getenv in a function): a
// dynamostore.Store on the configured tables, an IdentityTable on the
// connections table, a Relay posting through the
// Management API at TUNNEL_MANAGEMENT_ENDPOINT, a tunnel.Server with
// NoCache (routing by subdomain of TUNNEL_DOMAIN and by path, or by path
// alone without TUNNEL_DOMAIN), static agent tokens from TUNNEL_TOKENS (none: every agent is
// admitted) and, with TUNNEL_RATELIMIT_TABLE, dynamolimit limiters on that
// table: 100 public requests a second per tunnel (in bursts of up to 200)
// and 10 agent connections a minute per source IP address. logger
// receives the logs of the Server and the Handler; nil means their
// defaults (warnings and errors to slog.Default()).
//
// It makes no network call: a wrong endpoint or a missing permission
// shows at the first invocation. It fails only when AWS_REGION,
// TUNNEL_MANAGEMENT_ENDPOINT or TUNNEL_BASE_URL is empty. Telemetry is
// not configured here: see NewMeterProvider and TracerProviderFromEnv.
func FromEnv(getenv func(string) string, logger *slog.Logger) (*Handler, error) {
	region := getenv("AWS_REGION")
	mgmtEndpoint := getenv("TUNNEL_MANAGEMENT_ENDPOINT")
	base := getenv("TUNNEL_BASE_URL")
	if region == "" || mgmtEndpoint == "" || base == "" {
		return nil, errors.New("AWS_REGION, TUNNEL_MANAGEMENT_ENDPOINT and TUNNEL_BASE_URL are required")
	}
	creds := credentials.NewStaticCredentialsProvider(getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"), getenv("AWS_SESSION_TOKEN"))
	ddbOpts := dynamodb.Options{Region: region, Credentials: creds}
	if ep := getenv("TUNNEL_DYNAMODB_ENDPOINT"); ep != "" {
		ddbOpts.BaseEndpoint = aws.String(ep)
	}
	ddb := dynamodb.New(ddbOpts)
	storeOpts := dynamostore.Options{
		ConnectionsTable: getenv("TUNNEL_CONNECTIONS_TABLE"),
		PendingTable:     getenv("TUNNEL_PENDING_TABLE"),
		TunnelIndex:      getenv("TUNNEL_TUNNEL_INDEX"),
	}
	st := dynamostore.New(ddb, storeOpts)
	mgmt := apigatewaymanagementapi.New(apigatewaymanagementapi.Options{
		Region:       region,
		Credentials:  creds,
		BaseEndpoint: aws.String(mgmtEndpoint),
	})
	srv := &tunnel.Server{
		BaseURL: base,
		Domain:  getenv("TUNNEL_DOMAIN"),
		Store:   st,
		Cache:   NoCache{},
		Logger:  logger,
		Relay:   &Relay{Store: st, Mgmt: mgmt},
	}
	if srv.Domain == "" {
		// Without a domain of its own the Server would take the base
		// URL's host, {api-id}.execute-api.{region}.amazonaws.com, whose
		// subdomains do not resolve: tunnels live at TUNNEL_BASE_URL/<id>.
		srv.Routing = tunnel.RoutePath
	}
	if tokens := getenv("TUNNEL_TOKENS"); tokens != "" {
		srv.Authenticator = tunnel.NewStaticTokens(strings.Split(tokens, ",")...)
	}
	h := &Handler{
		Server:     srv,
		Store:      st,
		Mgmt:       mgmt,
		Identities: &IdentityTable{Client: ddb, Table: storeOpts.ConnectionsTable},
		Logger:     logger,
	}
	if table := getenv("TUNNEL_RATELIMIT_TABLE"); table != "" {
		srv.RequestLimiter = dynamolimit.New(ddb, table, requestLimit, &dynamolimit.Options{Prefix: "request:"})
		h.Limiter = dynamolimit.New(ddb, table, agentLimit, &dynamolimit.Options{Prefix: "connect:"})
	}
	return h, nil
}
