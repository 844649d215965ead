// Package apigwtest emulates Amazon API Gateway in-process, on loopback, so
// that tests drive the serverless gateway's real Lambda handlers: a
// WebSocket API for agents (routes $connect, $default, $disconnect, and
// the @connections management API the handlers post to), and an HTTP API
// for public requests (payload format 2.0 or 1.0). Handlers receive the
// events of github.com/aws/aws-lambda-go/events, encoded and decoded
// through JSON as on Lambda, and the emulator enforces the quotas that
// shaped the original system (Limits).
//
// # Starting
//
//	emu, err := apigwtest.Start(apigwtest.Config{WebSocket: ws, HTTP: public, WebSocketStage: "prod"})
//	...
//	defer emu.Close()
//	agents dial emu.WebSocketURL(); handlers post through a Management
//	API client whose BaseEndpoint is emu.ManagementURL(); public traffic
//	goes to emu.HTTPURL().
//
// The WebSocket API and its @connections API share one listener, as they
// share one host on AWS; the HTTP API has its own. requestContext.domainName
// is the listener's "127.0.0.1:PORT", so "http://" + domainName + "/" +
// stage is the management endpoint, as "https://" + domainName + "/" +
// stage is on AWS (the emulator speaks plain HTTP and ws://).
//
// # The WebSocket API
//
// $connect runs before the opening handshake is answered. While it runs
// the connection exists (its ID is in the event) but every @connections
// call for it answers 410 GoneException, as on AWS: a handler cannot
// greet its client from $connect. A 2xx statusCode accepts; its
// Sec-WebSocket-Protocol header, if any, becomes the selected subprotocol
// (passed through as is). A 3xx-5xx status refuses the upgrade with that
// status and body; a handler error, or a statusCode outside 200-599 (0
// included: the field left unset), refuses with 500; an integration
// timeout with 504. The upgrade answer and the switch to "open" happen
// under the write lock, so a post that starts after the client sees the
// upgrade is delivered.
//
// Each complete client message invokes $default in its own goroutine:
// invocations for one connection run concurrently and may finish in any
// order. Text messages arrive as the body; binary messages in base64 with
// isBase64Encoded (API Gateway's binary handling for Lambda proxy
// integrations). With Config.RouteResponse the handler's response body
// goes back to the client; without it, as on a route without a route
// response, it is dropped. When a $default invocation fails the client is
// sent API Gateway's notice, a text message:
//
//	{"message":"Internal server error","connectionId":"...","requestId":"..."}
//
// ("Endpoint request timed out" after the integration timeout, "Forbidden"
// when no WebSocket handler is configured). Agents must ignore it.
//
// $disconnect runs once the connection is gone, whatever ended it (client
// close, idle timeout, lifetime, DELETE, size violation, Close, TCP loss);
// posts to the connection already answer 410. Its requestContext carries
// disconnectStatusCode and disconnectReason. It is not invoked for a
// refused upgrade.
//
// # Frames, messages and timeouts
//
// The server side of RFC 6455 is implemented here (frame.go), not taken
// from a WebSocket library, because the frame limit needs what libraries
// hide: a library's read limit caps a message, and its reader joins
// frames. The read loop decodes each frame header and compares its
// payload length with MaxFrameBytes before reading the payload: a client
// frame over 32 KiB closes the connection with 1009 even if its message
// is small, while a 100 KiB message in 32 KiB frames is delivered. A
// message whose frames add up to more than MaxMessageBytes (128 KiB)
// closes with 1009 too; exactly the limit is accepted. Other violations
// (unmasked frames, reserved bits or opcodes, bad fragmentation, invalid
// UTF-8 in text) close with 1002 or 1007. No extension is negotiated.
//
// Messages to clients (posts, route responses, notices) are text frames,
// or binary for a base64 route response, split into MaxFrameBytes frames,
// so clients must reassemble fragmented messages. They are queued and
// written in order by one writer per connection; a client that stops
// reading fills its TCP connection and then the queue
// (Limits.ClientBufferBytes), and further posts are answered 429
// LimitExceededException until it reads again. Pings are answered with
// pongs.
//
// The idle timer restarts on every data message, in either direction:
// client messages and messages delivered to the client. Pings do not
// restart it (the emulator takes the strict reading; keep-alive belongs in
// data messages, as the original agent's JSON ping does). Idle timeout and
// maximum lifetime both close with 1001 "Going away"; DELETE
// @connections closes with 1000. The emulator waits up to two seconds for
// the client's close frame, so a client must be reading to complete the
// handshake promptly.
//
// # The @connections API
//
// POST sends the body to the client as one text message (split into
// frames as above), whatever its bytes: binary payloads belong in base64,
// as the tunnel's JSON messages carry them. A body over MaxMessageBytes
// answers 413 PayloadTooLargeException. GET answers connectedAt, lastActiveAt and
// identity {sourceIp, userAgent}. DELETE starts the close and answers
// 204. An unknown, connecting or closed connection answers 410
// GoneException; a post to a client whose buffer is full 429
// LimitExceededException. Errors carry the x-amzn-ErrorType header and a
// {"message": ...} body, which the AWS SDK for Go decodes into
// *types.GoneException and friends. A request without a SigV4
// Authorization header answers 403 ForbiddenException; the signature is
// not verified, so any credentials work.
//
// # The HTTP API
//
// Every method and path of the stage invokes the one integration.
// Format 2.0 (route $default): rawPath and requestContext.http.path hold
// the path percent-decoded, as HTTP APIs deliver it ("/a%2Fb" arrives as
// "/a/b"); rawQueryString holds the query exactly as received;
// queryStringParameters the decoded values, repeated keys joined with
// commas; headers lower-case names with repeated values joined with
// commas; the Cookie header becomes cookies. Format 1.0 (route
// ANY /{proxy+}, which the emulator also applies to the root path):
// headers and multiValueHeaders (names as Go's server canonicalises them,
// so look them up case-insensitively), queryStringParameters (last value)
// and multiValueQueryStringParameters (every value, in order), path,
// resource "/{proxy+}" and pathParameters.proxy. In both formats a body
// is text when its Content-Type is textual (text/*, JSON, XML,
// JavaScript, YAML) and it is UTF-8, and base64 with isBase64Encoded
// otherwise, form posts and bodies without a Content-Type included.
// API Gateway adds X-Forwarded-For, X-Forwarded-Port, X-Forwarded-Proto
// and X-Amzn-Trace-Id; so does the emulator.
//
// A named HTTPStage serves only paths under "/<stage>" (others answer
// 404) and keeps that prefix in rawPath, requestContext.http.path, path
// and requestContext.path, as AWS does for a named stage reached through
// the execute-api host; pathParameters.proxy is relative to the stage.
//
// Responses: format 2.0 writes headers and one Set-Cookie per entry of
// cookies, and ignores multiValueHeaders as API Gateway does; format 1.0
// merges headers and multiValueHeaders, multiValueHeaders winning. Bodies
// are decoded from base64 when isBase64Encoded. Answers of API Gateway
// itself, each a JSON {"message": ...}:
//
//	413 Request Entity Too Large  body over MaxHTTPPayloadBytes (10 MB), or
//	                              event over MaxInvokeRequestBytes (6 MiB)
//	500 Internal Server Error     handler error or panic, statusCode
//	                              outside 200-599, bad base64
//	502 Internal Server Error     response over MaxInvokeResponseBytes
//	503 Service Unavailable       integration timeout, throttled
//	                              invocation, or emulator closed
//	404 Not Found                 path outside the stage, or no handler
//
// # Handlers
//
// Each invocation gets a context whose deadline is Limits.FunctionTimeout
// and which carries a lambdacontext.LambdaContext (AwsRequestID,
// InvokedFunctionArn). API Gateway's integration timeout does not cancel
// it: a handler keeps running after API Gateway has given up, as on
// Lambda. Close cancels every handler context and waits for the handlers
// to return. Stats counts invocations per route, for tests that assert a
// cost in Lambda invocations, and messages in API Gateway's billing
// units and @connections calls, for tests that assert the rest of it.
//
// # Concurrency
//
// Config.WebSocketConcurrency and Config.HTTPConcurrency model Lambda's
// concurrency limits: a function's reserved concurrency, or the
// account's limit shared by every function. An invocation beyond the
// limit is throttled, never queued: API Gateway does not retry. With
// Config.ActiveTracing each invocation's context carries its own X-Ray
// trace header, as Lambda's active tracing gives it.
package apigwtest
