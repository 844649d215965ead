package serverless

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aws/aws-lambda-go/events"
)

// eventProbe holds the members that tell the kinds of events apart.
type eventProbe struct {
	Version        string `json:"version"`
	HTTPMethod     string `json:"httpMethod"`
	Source         string `json:"source"`
	RequestContext struct {
		ConnectionID string `json:"connectionId"`
		RouteKey     string `json:"routeKey"`
	} `json:"requestContext"`
}

// Invoke is the entry point of a function that serves every route (the
// single-function deployment of template.yaml): it recognises the event by
// its shape and calls the matching handler. WebSocket events (they have
// requestContext.connectionId and routeKey) go to WebSocket, HTTP API
// events of payload format 2.0 (version "2.0") to HTTP, those of format
// 1.0 (httpMethod) to HTTPV1, and EventBridge scheduled events (source
// "aws.events") to Cleanup, which returns no response. Any other event is
// an error.
func (h *Handler) Invoke(ctx context.Context, raw json.RawMessage) (any, error) {
	var p eventProbe
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("unrecognised event: %w", err)
	}
	switch {
	case p.RequestContext.ConnectionID != "" && p.RequestContext.RouteKey != "":
		var ev events.APIGatewayWebsocketProxyRequest
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, err
		}
		return h.WebSocket(ctx, ev)
	case p.Version == "2.0":
		var ev events.APIGatewayV2HTTPRequest
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, err
		}
		return h.HTTP(ctx, ev)
	case p.HTTPMethod != "":
		var ev events.APIGatewayProxyRequest
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, err
		}
		return h.HTTPV1(ctx, ev)
	case p.Source == "aws.events":
		return nil, h.Cleanup(ctx)
	default:
		return nil, errors.New("unrecognised event")
	}
}
