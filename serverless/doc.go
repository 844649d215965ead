// Package serverless is the serverless gateway as a library: the adapter
// that runs tunnel.Server as AWS Lambda handlers behind an API Gateway
// WebSocket API (agents, json mode), an HTTP API (public requests) and an
// EventBridge schedule (cleanup), with its state in DynamoDB
// (store/dynamostore). It is the system of the original http-tunnel,
// rebuilt on this repository's pieces.
//
// A program builds a Handler, either from a function's environment with
// FromEnv or field by field with its own tunnel.Authenticator, limiters,
// logger and telemetry providers, and hands Handler.Invoke (or the route
// methods, one function per route) to lambda.Start. The command
// examples/lambda of this repository does the former, and its
// template.yaml deploys it with AWS SAM. The telemetry of a function is
// chosen by the program too: NewMeterProvider writes the library's
// metrics as CloudWatch EMF, TracerProviderFromEnv and NewPropagator turn
// on X-Ray tracing, and FlushAfter flushes both before Lambda freezes the
// instance.
//
// Without AWS, package apigwtest emulates API Gateway in-process, and the
// command cmd/tunnel-lambda-local serves this package behind it on
// loopback, with DynamoDB in dynalite. docs/serverless.md covers
// deployment, agents, limits and cost.
//
// # Architecture
//
// One function serves every route (template.yaml's deployment);
// Handler.Invoke tells the events apart by their shape:
//
//	WebSocket $connect     rate limit per source IP (429), authentication
//	                       with Server.Authenticator (401/403), the identity
//	                       it answers kept in Identities (500 when it cannot
//	                       be), selection of the http-tunnel.json.v1
//	                       subprotocol when offered
//	WebSocket $default     one agent message per invocation:
//	  ready                read the connection's identity back, then admit
//	                       under it (tunnel.Server.Admit): choose the tunnel
//	                       ID (resumed tunnel, requested name if the
//	                       identity may take it, or 16 generated characters
//	                       of [a-z0-9]), Put the record (with the agent's
//	                       protocol version and the access policy), post
//	                       connection_established
//	  http_response        store the response, or one chunk of it, in the
//	                       pending table
//	  error                store it as the response: the public client gets
//	                       the matching error (local_service_unavailable,
//	                       gateway_timeout, payload_too_large, ...)
//	  ping                 post pong
//	WebSocket $disconnect  delete the connection's identity row and its
//	                       record (conditional: a newer connection of the
//	                       same tunnel keeps it)
//	HTTP API (2.0 or 1.0)  tunnel.Server: routing, validation, rate limits
//	                       and the error model; its Relay (this package's
//	                       Relay) forwards
//	schedule (aws.events)  dynamostore.Store.Cleanup
//
// A public request is forwarded by the invocation that received it: Relay
// reads the tunnel record (one GetItem; the Server uses NoCache, since
// Lambda instances share no memory and a cached record goes stale on
// reconnect), creates the pending row, posts the http_request message(s)
// to the agent's connection through the Management API, and polls the
// pending row until the $default invocation that receives the agent's
// answer has stored it, or ResponseTimeout (25 s) passes (504
// gateway_timeout). One forwarded GET costs two Lambda invocations (the
// HTTP request and the agent's response message), one post, one GetItem
// of the record and, on the pending table, one write to create the row,
// one to store the response, plus the polls (usually one read). The rows
// are left to DynamoDB's TTL deletion, which costs nothing (a delete
// would cost the response's bytes in write units again), and Cleanup
// leaves the pending table alone for the same reason. With
// TUNNEL_BODY_BUCKET (S3Bodies), response chunks over 8 KiB are S3
// objects instead, whose PUT and GET cost less than DynamoDB's writes of
// the same bytes. A post that API Gateway answers 429
// LimitExceededException (the agent's buffer is full) is retried with
// jittered, doubling waits until the request's deadline, then answered
// 503 unavailable. Bodies larger than one 128 KiB WebSocket message
// cross as chunks in both directions, up to 2 MiB
// (protocol.DefaultMaxBodyBytes), with agents of protocol version 1 (see
// Original agents below).
//
// When the agent is gone: a post answered GoneException (the agent left
// and its $disconnect has not run yet) deletes the record and answers 502
// agent_unavailable; once $disconnect has run, the tunnel is unknown and
// requests get 404 tunnel_not_found. A connection that closes while
// requests wait on it is noticed by the waiters themselves: every
// Relay.AgentCheckInterval (1 s) each asks the Management API for the
// connection (GetConnection), and once it has answered GoneException
// twice in a row the request is answered 502 agent_unavailable, not 504
// at ResponseTimeout. The role needs execute-api:ManageConnections on
// GET @connections/* for that, as well as on POST.
//
// Reconnecting agents keep their tunnel: ready carries the tunnel ID and
// the resume token of connection_established, and the record's owner is
// the SHA-256 of the subject, "\x00" and the resume token (hex), as on the
// standalone gateway: the tunnel goes back to an agent that holds the
// resume token and authenticates as the same subject at its new $connect.
//
// # Identity
//
// Agents get the identity and access model of the standalone gateway. The
// Authenticator's answer at $connect, a tunnel.Identity (its Subject, the
// Names it may take, the Access it imposes on its tunnels' public
// clients), must reach the ready message, which arrives in another
// invocation, often of another instance, in an event without the upgrade
// request's headers. The Handler keeps it in between in Identities: a row
// of the connections table keyed "identity#" + the connection ID, written
// at $connect before the upgrade is answered (so before any message of the
// agent), read back strongly consistently at ready, deleted at
// $disconnect, and expiring with ConnectionTTL (expiresAt and ttl, which
// dynamostore's Cleanup and DynamoDB's TTL deletion honour) in case
// $disconnect never runs. A row holds at most 16 KiB of JSON: the subject,
// the name list (null for none, [] for generated names only) and the IP
// lists in clear, and the credentials the identity imposes (basic and
// bearer), if any, sealed with AES-256-GCM under Handler.IdentityKey and
// bound to the row's key; without a key such an identity is refused rather
// than written in clear. Static tokens (tunnel.ParseStaticTokens) and JWTs
// (package jwtauth) impose IP lists alone, and need no key.
//
// At ready, the identity goes into the tunnel.Admission, so Admit
// applies the same rules as on the standalone gateway: a name the identity
// may not take is refused with forbidden ("tunnel name bob is not allowed
// for this agent"), Server.UnlistedNames decides for identities without a
// name list, the identity's Access is combined with the agent's (both IP
// lists must admit a client, the identity's credentials replace the
// agent's), and the record carries the subject. A ready on a connection
// whose identity row is missing or has expired is refused with
// unauthorized, and a row that cannot be read with internal; both
// messages end with an error ID that the function's log line (with the
// connection ID) repeats. Without an Authenticator every agent is the
// anonymous identity (subject "anonymous", no row), as on the standalone
// gateway.
//
// # Secrets
//
// FromEnv reads the agents' credentials from AWS Secrets Manager or
// Parameter Store, not from the environment: a token file (the format of
// tunnel.ParseStaticTokens) in the secret TUNNEL_TOKENS_SECRET_ARN or the
// SecureString parameter TUNNEL_TOKENS_PARAMETER, and JWT keys (an HMAC
// secret, or a JWK set) in TUNNEL_JWT_SECRET_ARN or
// TUNNEL_JWT_SECRET_PARAMETER. Each is a
// SecretAuthenticator: read at the first $connect of an instance, kept
// across invocations, read again after DefaultSecretMaxAge (5 minutes)
// and when an agent presents a token it does not accept, at most once per
// DefaultSecretMinRefresh (10 seconds), so a token added to the secret
// works without a cold start and a removed one stops within 5 minutes.
// Until a first read succeeds agents are refused with 500, never
// admitted; a later failure keeps the previous value. No value, token or
// hash of one is logged or returned in an error.
//
// # Original agents
//
// Agents of the original http-tunnel (the Rust ttf agent among them) speak
// protocol version 0: they offer no subprotocol at $connect (none is
// selected), send ready without a version, and know http_request and
// http_response without chunk fields. They are served like current agents,
// with these differences: connection_established carries no version; a
// request whose http_request would not fit one message
// (protocol.MaxMessageBytes, 128 KiB encoded, so a body of about 95 KiB)
// is answered 413 payload_too_large before anything is posted, since such
// an agent would take the first chunk for the whole body; and a ready
// that is refused is answered with one of the four error codes version 0
// decodes (protocol.CodeForVersion0Agent). Their responses are single
// messages, which the relay stores as chunk 0 of 1; their error codes
// timeout and internal_error mean gateway_timeout and internal.
//
// ttf writes every message as one WebSocket frame, and API Gateway closes
// a connection that sends a frame over 32 KB with 1009: a response body
// over about 24 KB (its base64 in one http_response) ends the agent's
// connection, and nothing the function does can prevent it. The public
// client gets 502 agent_unavailable after one or two connection checks
// (see above), $disconnect deletes the tunnel's record, and ttf connects
// again under a new tunnel ID: the old URL answers 404.
//
// The version is kept in the tunnel record (store.Record.Version, written
// by the Server's admission path, tunnel.Server.Admit, that the standalone
// gateway runs too): the lower of what the agent announced and
// protocol.Version. A record written by an earlier release has version 0:
// requests that fit one message still work, and larger ones are refused
// rather than risked.
//
// # Telemetry
//
// Telemetry is chosen by the program; this package provides the parts, and
// examples/lambda uses them as follows. Logs are JSON lines
// (slog.JSONHandler) on stdout, which Lambda sends to CloudWatch Logs.
//
// Metrics are the library's (observability's instruments, through
// Server.MeterProvider of NewMeterProvider), written to stdout in
// CloudWatch Embedded Metric Format by EMFExporter at the end of every
// invocation (FlushAfter), under the namespace EMFNamespace, HttpTunnel. CloudWatch extracts them from the log lines; no
// PutMetricData permission or agent is needed. ErrorOccurred has the
// dimension error.code; every other metric is published without
// dimensions, its attributes (method, status code, ...) summed. Counters
// are the counts of the invocation; histograms (RequestLatency,
// StoreOperationLatency, in milliseconds) carry exact minimum, maximum,
// sum and count, and approximate percentiles (see EMFExporter).
//
// Traces are off unless TUNNEL_XRAY=1. Then Server.TracerProvider is an
// OpenTelemetry SDK provider whose trace IDs X-Ray accepts (their first 4
// bytes are the Unix time in seconds: TracerProviderFromEnv), and the
// propagator, global and observability.Propagator alike, reads and writes
// the X-Amzn-Trace-Id header as well as W3C trace context and baggage
// (NewPropagator), so a request's span joins the trace API Gateway or a
// caller started. The function links no X-Ray exporter: spans leave
// through OTLP over HTTP when OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, typically to the collector
// of the ADOT Lambda layer (http://localhost:4318), which sends them on to
// X-Ray; the batch is flushed at the end of every invocation. Without an
// endpoint spans are not exported.
//
// # Storage format of a response
//
// The pending table holds each response as dynamostore's chunks (see
// dynamostore.Store.PutResponseChunk), one chunk per http_response message
// of the agent, with the message's chunk index and count (a message
// without chunk fields is chunk 0 of 1). Chunk 0 is a JSON head line, a
// newline, and the first piece of the body; every later chunk is the raw
// bytes of its body piece. WaitResponse's concatenation is therefore the
// head line followed by the whole body:
//
//	{"status_code":200,"headers":{"set-cookie":["a=1","b=2"]},"processing_time_ms":3}\n<body bytes>
//
// An error message of the agent is stored as a single chunk whose head
// line names it and which has no body:
//
//	{"error":"local_service_unavailable","message":"..."}\n
//
// Header names are lower case and keep every value, so two Set-Cookie
// headers stay two (in format 2.0 they go out as the cookies list).
//
// # Configuration
//
// Environment variables of FromEnv and TracerProviderFromEnv:
//
//	AWS_REGION                  required: region of DynamoDB and API Gateway
//	AWS_ACCESS_KEY_ID,
//	AWS_SECRET_ACCESS_KEY,
//	AWS_SESSION_TOKEN           the function's credentials (set by Lambda)
//	TUNNEL_MANAGEMENT_ENDPOINT  required: the WebSocket API's management
//	                            endpoint, https://{api-id}.execute-api.{region}.amazonaws.com/{stage}
//	TUNNEL_BASE_URL             required: the public base URL of the HTTP API
//	                            (tunnel URLs are TUNNEL_BASE_URL/<id>)
//	TUNNEL_DOMAIN               optional: domain for <id>.<domain> URLs and
//	                            subdomain routing (needs a custom domain)
//	TUNNEL_CONNECTIONS_TABLE    connections table (default dynamostore's)
//	TUNNEL_PENDING_TABLE        pending-requests table (default dynamostore's)
//	TUNNEL_TUNNEL_INDEX         GSI on tunnelId (default dynamostore's)
//	TUNNEL_RATELIMIT_TABLE      optional: dynamolimit table; enables 100
//	                            requests/s per tunnel (burst 200) and 10
//	                            agent connections/min per source IP
//	TUNNEL_BODY_BUCKET          optional: S3 bucket for response chunks
//	                            over 8 KiB (S3Bodies)
//	TUNNEL_TOKENS_SECRET_ARN    optional: ARN of the Secrets Manager secret
//	                            whose value is the agent token file
//	TUNNEL_TOKENS_PARAMETER     optional, instead: name or ARN of an SSM
//	                            parameter (SecureString) holding it
//	TUNNEL_JWT_JWKS_URL         optional: JWK set URL; agents may then
//	                            authenticate with JWTs (package jwtauth)
//	TUNNEL_JWT_SECRET_ARN,
//	TUNNEL_JWT_SECRET_PARAMETER optional: JWT keys, a JWK set (JSON, "oct"
//	                            secrets included) or PEM public keys, or
//	                            else one HMAC secret (HS256, HS384, HS512)
//	TUNNEL_JWT_ISSUER,
//	TUNNEL_JWT_AUDIENCE         optional, with a JWT key: iss and aud checked
//	TUNNEL_UNLISTED_NAMES       optional: any (default) or generated, the
//	                            names of identities without a name list
//	TUNNEL_TOKENS               optional, for local use: comma-separated
//	                            plaintext agent tokens. With none of the
//	                            token, JWT and secret variables, every agent
//	                            is admitted
//	TUNNEL_DYNAMODB_ENDPOINT,
//	TUNNEL_S3_ENDPOINT,
//	TUNNEL_SECRETSMANAGER_ENDPOINT,
//	TUNNEL_SSM_ENDPOINT         optional: endpoint overrides (local
//	                            development)
//	TUNNEL_XRAY                 optional: 1 turns on tracing with X-Ray
//	                            trace IDs and X-Amzn-Trace-Id propagation
//	OTEL_EXPORTER_OTLP_ENDPOINT optional, with TUNNEL_XRAY=1: where spans are
//	                            exported (OTLP over HTTP); the exporter's
//	                            other OTEL_EXPORTER_OTLP_* variables apply
//
// The function needs dynamodb:GetItem, PutItem, UpdateItem, DeleteItem,
// BatchGetItem, BatchWriteItem and Scan (cleanup) on both tables (the
// identity rows use GetItem, PutItem and DeleteItem on the connections
// table), execute-api:ManageConnections on the WebSocket API,
// s3:PutObject and s3:GetObject on the body bucket's objects with
// TUNNEL_BODY_BUCKET, and
// secretsmanager:GetSecretValue on its secrets, or ssm:GetParameter on
// its parameters, with kms:Decrypt on their key when it is a customer
// managed one.
package serverless
