package serverless

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/auth/jwtauth"
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
// connections table, a Relay posting through the Management API at
// TUNNEL_MANAGEMENT_ENDPOINT, a tunnel.Server with NoCache (routing by
// subdomain of TUNNEL_DOMAIN and by path, or by path alone without
// TUNNEL_DOMAIN) and, with TUNNEL_RATELIMIT_TABLE, dynamolimit limiters on
// that table: 100 public requests a second per tunnel (in bursts of up to
// 200) and 10 agent connections a minute per source IP address. With
// TUNNEL_BODY_BUCKET, response chunks over dynamostore.DefaultBodyThreshold
// are kept in that S3 bucket (S3Bodies) instead of the pending table
// (TUNNEL_S3_ENDPOINT, for local development, names an S3-compatible
// server, addressed path-style). logger
// receives the logs of the Server, the Handler and its authenticators;
// nil means their defaults (warnings and errors to slog.Default()).
//
// Agents are authenticated by whatever is configured, each in turn (see
// tunnel.Authenticators): a token file read from Secrets Manager
// (TUNNEL_TOKENS_SECRET_ARN) or Parameter Store (TUNNEL_TOKENS_PARAMETER)
// by a SecretAuthenticator; JWTs (package jwtauth) whose keys come from a
// JWK set URL (TUNNEL_JWT_JWKS_URL) or from a secret read the same way
// (TUNNEL_JWT_SECRET_ARN, TUNNEL_JWT_SECRET_PARAMETER): a JWK set (JSON,
// which may hold several "oct" secrets), PEM public keys, or else one HMAC
// secret, with
// TUNNEL_JWT_ISSUER and TUNNEL_JWT_AUDIENCE checked when set; or, for
// local use, the plaintext comma-separated tokens of TUNNEL_TOKENS. With
// none of them every agent is admitted. TUNNEL_UNLISTED_NAMES sets
// Server.UnlistedNames.
//
// It makes no network call: secrets are read, and a JWK set fetched, at
// the first $connect, and a wrong endpoint or a missing permission shows
// then. It fails when AWS_REGION, TUNNEL_MANAGEMENT_ENDPOINT or
// TUNNEL_BASE_URL is empty, when a secret is named twice (by ARN and by
// parameter, or TUNNEL_TOKENS beside a tokens secret), when
// TUNNEL_JWT_ISSUER or TUNNEL_JWT_AUDIENCE is set without a JWT key, and
// when TUNNEL_UNLISTED_NAMES is neither "any" nor "generated". Telemetry
// is not configured here: see NewMeterProvider and TracerProviderFromEnv.
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
	if bucket := getenv("TUNNEL_BODY_BUCKET"); bucket != "" {
		s3Opts := s3.Options{Region: region, Credentials: creds}
		if ep := getenv("TUNNEL_S3_ENDPOINT"); ep != "" {
			s3Opts.BaseEndpoint, s3Opts.UsePathStyle = aws.String(ep), true
		}
		storeOpts.Bodies = &S3Bodies{Client: s3.New(s3Opts), Bucket: bucket}
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
	switch rule := getenv("TUNNEL_UNLISTED_NAMES"); rule {
	case "", "any":
		srv.UnlistedNames = tunnel.AnyName
	case "generated":
		srv.UnlistedNames = tunnel.GeneratedNamesOnly
	default:
		return nil, fmt.Errorf("TUNNEL_UNLISTED_NAMES is %q: want any or generated", rule)
	}
	auth, err := authenticatorFromEnv(getenv, region, creds, logger)
	if err != nil {
		return nil, err
	}
	srv.Authenticator = auth
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

// authenticatorFromEnv builds the agent authentication FromEnv describes;
// nil when nothing is configured.
func authenticatorFromEnv(getenv func(string) string, region string, creds aws.CredentialsProvider, logger *slog.Logger) (tunnel.Authenticator, error) {
	// Endpoint overrides, for local development.
	smEndpoint, ssmEndpoint := getenv("TUNNEL_SECRETSMANAGER_ENDPOINT"), getenv("TUNNEL_SSM_ENDPOINT")
	secret := func(arnVar, paramVar string) (SecretSource, error) {
		arn, param := getenv(arnVar), getenv(paramVar)
		switch {
		case arn != "" && param != "":
			return nil, fmt.Errorf("%s and %s are both set: name the secret once", arnVar, paramVar)
		case arn != "":
			opts := secretsmanager.Options{Region: arnRegion(arn, region), Credentials: creds}
			if smEndpoint != "" {
				opts.BaseEndpoint = aws.String(smEndpoint)
			}
			return &SecretsManagerSecret{Client: secretsmanager.New(opts), SecretID: arn}, nil
		case param != "":
			opts := ssm.Options{Region: arnRegion(param, region), Credentials: creds}
			if ssmEndpoint != "" {
				opts.BaseEndpoint = aws.String(ssmEndpoint)
			}
			return &SSMParameter{Client: ssm.New(opts), Name: param}, nil
		}
		return nil, nil
	}

	var auths []tunnel.Authenticator
	tokens, err := secret("TUNNEL_TOKENS_SECRET_ARN", "TUNNEL_TOKENS_PARAMETER")
	if err != nil {
		return nil, err
	}
	plain := getenv("TUNNEL_TOKENS")
	switch {
	case tokens != nil && plain != "":
		return nil, errors.New("TUNNEL_TOKENS is set beside a tokens secret: keep every token in the secret")
	case tokens != nil:
		auths = append(auths, &SecretAuthenticator{Secret: tokens, Logger: logger})
	case plain != "":
		auths = append(auths, tunnel.NewStaticTokens(strings.Split(plain, ",")...))
	}

	jwtSecret, err := secret("TUNNEL_JWT_SECRET_ARN", "TUNNEL_JWT_SECRET_PARAMETER")
	if err != nil {
		return nil, err
	}
	cfg := jwtauth.Config{
		JWKSURL:  getenv("TUNNEL_JWT_JWKS_URL"),
		Issuer:   getenv("TUNNEL_JWT_ISSUER"),
		Audience: getenv("TUNNEL_JWT_AUDIENCE"),
		Logger:   logger,
	}
	switch {
	case cfg.JWKSURL != "" || jwtSecret != nil:
		auths = append(auths, &SecretAuthenticator{Secret: jwtSecret, Logger: logger,
			Parse: func(ctx context.Context, value []byte) (tunnel.Authenticator, error) {
				c := cfg
				if jwtSecret != nil {
					c.HMACSecret, c.KeyData = jwtKeys(value)
				}
				return jwtauth.New(ctx, c)
			}})
	case cfg.Issuer != "" || cfg.Audience != "":
		return nil, errors.New("TUNNEL_JWT_ISSUER and TUNNEL_JWT_AUDIENCE need a JWT key: TUNNEL_JWT_JWKS_URL, TUNNEL_JWT_SECRET_ARN or TUNNEL_JWT_SECRET_PARAMETER")
	}

	switch len(auths) {
	case 0:
		return nil, nil
	case 1:
		return auths[0], nil
	}
	return tunnel.Authenticators(auths...), nil
}

// jwtKeys reads the value of a JWT secret: a JWK set (JSON) or PEM keys
// are key data, as jwtauth.Config.KeyData reads them (a JWK set may hold
// several "oct" shared secrets, for a rotation that overlaps); anything
// else is one HMAC secret. Surrounding whitespace is not part of either.
func jwtKeys(value []byte) (hmacSecret, keyData []byte) {
	v := bytes.TrimSpace(value)
	if bytes.HasPrefix(v, []byte("{")) || bytes.HasPrefix(v, []byte("-----BEGIN ")) {
		return nil, v
	}
	return v, nil
}

// arnRegion returns the region of an ARN (arn:partition:service:region:...),
// or def for a name that is not an ARN: a secret of another region is read
// from that region.
func arnRegion(s, def string) string {
	parts := strings.SplitN(s, ":", 5)
	if len(parts) == 5 && parts[0] == "arn" && parts[3] != "" {
		return parts[3]
	}
	return def
}
