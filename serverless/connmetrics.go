package serverless

import (
	"context"

	"github.com/http-tunnel/tunnel/observability"
)

// The connection metrics of the standalone gateway, recorded by the Lambda
// path on the Server's MeterProvider, so that the dashboards that plot
// them (the CloudWatch dashboard of template.yaml, and the Grafana one of
// cmd/tunnel) work for both: ConnectionEstablished when an agent's ready
// is admitted and its connection_established posted, ConnectionClosed
// when $disconnect finds the connection's record, that is for a
// connection that had been established. ActiveTunnels, a gauge per
// gateway node, has no meaning across Lambda instances and is not
// recorded.

// instruments returns the Server's instruments: those of its
// MeterProvider, or of the global provider when it is nil, as the Server
// makes them. The SDK returns the instruments it already has for names it
// knows, so this is cheap; it runs once per agent connection and
// disconnection. A provider that refuses them leaves nil.
func (h *Handler) instruments() *observability.Instruments {
	in, err := observability.NewInstruments(h.Server.MeterProvider)
	if err != nil {
		h.log().Warn("connection metrics: instruments", "err", err)
		return nil
	}
	return in
}

func (h *Handler) connectionEstablished(ctx context.Context) {
	if in := h.instruments(); in != nil {
		in.ConnectionEstablished.Add(ctx, 1)
	}
}

func (h *Handler) connectionClosed(ctx context.Context) {
	if in := h.instruments(); in != nil {
		in.ConnectionClosed.Add(ctx, 1)
	}
}
