package tunnel

import "os"

// TUNNEL_TEST_TRANSPORT=websocket (or raw) runs every test of this
// package whose agent does not choose a transport over that one; the
// default, auto, takes the raw transport against this package's gateway.
// The tests of both transports' key behaviours choose each in turn
// whatever it says.
func init() {
	if t := os.Getenv("TUNNEL_TEST_TRANSPORT"); t != "" {
		defaultTransport = Transport(t)
	}
}
