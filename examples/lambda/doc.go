// Command lambda is the serverless gateway: the reference adapter that
// runs tunnel.Server as one AWS Lambda function behind an API Gateway
// WebSocket API (agents, json mode), an HTTP API (public requests) and an
// EventBridge schedule (cleanup), with its state in DynamoDB
// (store/dynamostore). It is the system of the original http-tunnel,
// rebuilt on this module's pieces.
//
// # Architecture
//
// One function serves every route; Handler.Invoke tells the events apart
// by their shape:
//
//	WebSocket $connect     rate limit per source IP (429), authentication
//	                       with Server.Authenticator (401/403), selection of
//	                       the http-tunnel.json.v1 subprotocol when offered
//	WebSocket $default     one agent message per invocation:
//	  ready                choose the tunnel ID (resumed tunnel, requested
//	                       name, or 16 generated characters of [a-z0-9]),
//	                       Put the record, post connection_established
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
// (protocol.DefaultMaxBodyBytes).
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
// Environment variables:
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
//
// The function needs dynamodb:GetItem, PutItem, UpdateItem, DeleteItem,
// BatchGetItem, BatchWriteItem and Scan (cleanup) on both tables, and
// execute-api:ManageConnections on the WebSocket API.
package main
