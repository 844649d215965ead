package tunnel_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/http-tunnel/tunnel"
)

// The agent takes the raw transport where the way to the gateway passes
// it, and WebSocket where asked to (or where the raw upgrade is refused).
// EventConnected says which.
func ExampleWithTransport() {
	gatewayURL, stop := startGateway()
	defer stop()

	for _, t := range []tunnel.Transport{tunnel.TransportAuto, tunnel.TransportWebSocket} {
		took := make(chan tunnel.Transport, 1)
		ln, err := tunnel.Listen(context.Background(), gatewayURL, tunnel.WithTransport(t),
			tunnel.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
			tunnel.WithEvents(func(e tunnel.Event) {
				if e.Kind == tunnel.EventConnected {
					took <- e.Transport
				}
			}))
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("asked for %s, connected over %s\n", t, <-took)
		ln.Close()
	}
	// Output:
	// asked for auto, connected over raw
	// asked for websocket, connected over websocket
}
