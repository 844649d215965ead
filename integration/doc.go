// Package integration holds the tests that need more than the library's own
// module: several gateway nodes on Redis and DynamoDB, the OpenTelemetry
// SDK, and other implementations of the protocols the tunnel speaks
// (coder/websocket, upstream yamux, gRPC). They live in a module of their
// own so that a program importing the library never finds these
// dependencies in its module graph. It has no API.
package integration
