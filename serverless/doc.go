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
//	                       with Server.Authenticator (401/403), selection of
//	                       the http-tunnel.json.v1 subprotocol when offered
//	WebSocket $default     one agent message per invocation:
//	  ready                choose the tunnel ID (resumed tunnel, requested
//	                       name, or 16 generated characters of [a-z0-9]),
//	                       Put the record (with the agent's protocol
//	                       version), post connection_established
//	  http_response        store the response, or one chunk of it, in the
//	                       pending table
//	  error                store it as the response: the public client gets
//	                       the matching error (local_service_unavailable,
//	                       gateway_timeout, payload_too_large, ...)
//	  ping                 post pong
//	WebSocket $disconnect  delete the connection's record (conditional: a
//	                       newer connection of the same tunnel keeps it)
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
// one to store the response, one to delete the rows, plus the polls
// (usually one read). Bodies larger than one 128 KiB WebSocket message
// cross as chunks in both directions, up to 2 MiB
// (protocol.DefaultMaxBodyBytes), with agents of protocol version 1 (see
// Original agents below).
//
// When the agent is gone: a post answered GoneException (the agent left
// and its $disconnect has not run yet) deletes the record and answers 502
// agent_unavailable; once $disconnect has run, the tunnel is unknown and
// requests get 404 tunnel_not_found.
//
// Reconnecting agents keep their tunnel: ready carries the tunnel ID and
// the resume token of connection_established, and the record's owner is
// the SHA-256 of "\x00" + resume token (hex). The subject authenticated at
// $connect is not part of it, because $default events carry no headers to
// authenticate again; the resume token alone proves ownership.
//
// # Original agents
//
// Agents of the original http-tunnel (the Rust ttf agent among them) speak
// protocol version 0: they offer no subprotocol at $connect (none is
// selected), send ready without a version, and know http_request and
// http_response without chunk fields. They are served like current agents,
// with two differences: connection_established carries no version, and a
// request whose http_request would not fit one message
// (protocol.MaxMessageBytes, 128 KiB encoded, so a body of about 95 KiB)
// is answered 413 payload_too_large before anything is posted, since such
// an agent would take the first chunk for the whole body. Their responses
// are single messages, which the relay stores as chunk 0 of 1.
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
//	TUNNEL_TOKENS               optional: comma-separated agent tokens;
//	                            empty admits every agent
//	TUNNEL_DYNAMODB_ENDPOINT    optional: DynamoDB endpoint override (local
//	                            development)
//	TUNNEL_XRAY                 optional: 1 turns on tracing with X-Ray
//	                            trace IDs and X-Amzn-Trace-Id propagation
//	OTEL_EXPORTER_OTLP_ENDPOINT optional, with TUNNEL_XRAY=1: where spans are
//	                            exported (OTLP over HTTP); the exporter's
//	                            other OTEL_EXPORTER_OTLP_* variables apply
//
// The function needs dynamodb:GetItem, PutItem, UpdateItem, DeleteItem,
// BatchGetItem, BatchWriteItem and Scan (cleanup) on both tables, and
// execute-api:ManageConnections on the WebSocket API.
package serverless
