package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/ratelimit"
	"github.com/http-tunnel/tunnel/ratelimit/dynamolimit"
	"github.com/http-tunnel/tunnel/store/dynamostore"
)

// The limits applied when TUNNEL_RATELIMIT_TABLE is set.
var (
	// requestLimit is per tunnel: 100 public requests a second.
	requestLimit = ratelimit.Limit{Events: 100, Period: time.Second, Burst: 200}
	// agentLimit is per source IP: 10 agent connections a minute.
	agentLimit = ratelimit.Limit{Events: 10, Period: time.Minute}
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	h, err := handlerFromEnv(os.Getenv, log)
	if err != nil {
		log.Error("configuration", slog.Any("err", err))
		os.Exit(1)
	}
	lambda.Start(h.Invoke)
}

// handlerFromEnv builds the Handler from the environment variables listed
// in the package doc.
func handlerFromEnv(getenv func(string) string, log *slog.Logger) (*Handler, error) {
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
	st := dynamostore.New(dynamodb.New(ddbOpts), dynamostore.Options{
		ConnectionsTable: getenv("TUNNEL_CONNECTIONS_TABLE"),
		PendingTable:     getenv("TUNNEL_PENDING_TABLE"),
		TunnelIndex:      getenv("TUNNEL_TUNNEL_INDEX"),
	})
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
		Logger:  log,
		Relay:   &Relay{Store: st, Mgmt: mgmt},
	}
	if tokens := getenv("TUNNEL_TOKENS"); tokens != "" {
		srv.Authenticator = tunnel.NewStaticTokens(strings.Split(tokens, ",")...)
	}
	if table := getenv("TUNNEL_RATELIMIT_TABLE"); table != "" {
		client := dynamodb.New(ddbOpts)
		srv.RequestLimiter = dynamolimit.New(client, table, requestLimit, &dynamolimit.Options{Prefix: "request:"})
		agents := dynamolimit.New(client, table, agentLimit, &dynamolimit.Options{Prefix: "connect:"})
		return &Handler{Server: srv, Store: st, Mgmt: mgmt, Limiter: agents, Logger: log}, nil
	}
	return &Handler{Server: srv, Store: st, Mgmt: mgmt, Logger: log}, nil
}

// eventProbe holds the members that tell the kinds of events apart.
type eventProbe struct {
	Version        string `json:"version"`
	HTTPMethod     string `json:"httpMethod"`
	Source         string `json:"source"`
	RequestContext struct {
		ConnectionID string `json:"connectionId"`
		RouteKey     string `json:"routeKey"`
	} `json:"requestContext"`
}

// Invoke is the function's one entry point: it recognises the event by its
// shape and calls the matching handler.
func (h *Handler) Invoke(ctx context.Context, raw json.RawMessage) (any, error) {
	var p eventProbe
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("unrecognised event: %w", err)
	}
	switch {
	case p.RequestContext.ConnectionID != "" && p.RequestContext.RouteKey != "":
		var ev events.APIGatewayWebsocketProxyRequest
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, err
		}
		return h.WebSocket(ctx, ev)
	case p.Version == "2.0":
		var ev events.APIGatewayV2HTTPRequest
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, err
		}
		return h.HTTP(ctx, ev)
	case p.HTTPMethod != "":
		var ev events.APIGatewayProxyRequest
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, err
		}
		return h.HTTPV1(ctx, ev)
	case p.Source == "aws.events":
		return nil, h.Cleanup(ctx)
	default:
		return nil, errors.New("unrecognised event")
	}
}
