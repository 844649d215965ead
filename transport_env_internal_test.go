package tunnel

import "os"

// TUNNEL_TEST_TRANSPORT=websocket runs every test of this package whose
// agent does not choose a transport over WebSocket; the default, auto,
// takes the raw transport against this package's gateway and WebSocket
// against the json-mode gateways of the tests. (raw is accepted too, and
// fails those json-mode tests by design: they speak WebSocket only.) The
// tests of both transports' key behaviours choose each in turn whatever it
// says.
func init() {
	if t := os.Getenv("TUNNEL_TEST_TRANSPORT"); t != "" {
		defaultTransport = Transport(t)
	}
}
