package serverless

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/http-tunnel/tunnel/protocol"
)

// TestInvokeDispatch feeds Invoke the raw events Lambda delivers and checks
// that each reaches its handler.
func TestInvokeDispatch(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gatewayConfig{})

	connect := events.APIGatewayWebsocketProxyRequest{
		Headers: map[string]string{"Sec-WebSocket-Protocol": protocol.SubprotocolMux + ", " + protocol.SubprotocolJSON},
		RequestContext: events.APIGatewayWebsocketProxyRequestContext{
			RouteKey: "$connect", ConnectionID: "abc=", EventType: "CONNECT",
			Identity: events.APIGatewayRequestIdentity{SourceIP: "192.0.2.1"},
		},
	}
	v2 := events.APIGatewayV2HTTPRequest{
		Version: "2.0", RouteKey: "$default", RawPath: "/nosuchtunnel/x", RawQueryString: "a=1",
		Headers: map[string]string{"host": "example.com"},
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey: "$default", Stage: "$default",
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "GET", Path: "/nosuchtunnel/x", SourceIP: "192.0.2.1"},
		},
	}
	v1 := events.APIGatewayProxyRequest{
		HTTPMethod: "GET", Path: "/nosuchtunnel/x",
		RequestContext: events.APIGatewayProxyRequestContext{Stage: "$default", Identity: events.APIGatewayRequestIdentity{SourceIP: "192.0.2.1"}},
	}
	scheduled := events.EventBridgeEvent{Source: "aws.events", DetailType: "Scheduled Event", Detail: json.RawMessage(`{}`)}

	tests := []struct {
		name  string
		event any
		check func(t *testing.T, out any)
	}{
		{"websocket connect", connect, func(t *testing.T, out any) {
			resp, ok := out.(events.APIGatewayProxyResponse)
			if !ok || resp.StatusCode != http.StatusOK || resp.Headers["Sec-WebSocket-Protocol"] != protocol.SubprotocolJSON {
				t.Errorf("got %#v, want 200 selecting %s", out, protocol.SubprotocolJSON)
			}
		}},
		{"http 2.0", v2, func(t *testing.T, out any) {
			resp, ok := out.(events.APIGatewayV2HTTPResponse)
			if !ok || resp.StatusCode != http.StatusNotFound {
				t.Errorf("got %#v, want a 2.0 response with 404", out)
			}
		}},
		{"http 1.0", v1, func(t *testing.T, out any) {
			resp, ok := out.(events.APIGatewayProxyResponse)
			if !ok || resp.StatusCode != http.StatusNotFound {
				t.Errorf("got %#v, want a 1.0 response with 404", out)
			}
		}},
		{"schedule", scheduled, func(t *testing.T, out any) {
			if out != nil {
				t.Errorf("got %#v, want nil", out)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := json.Marshal(tt.event)
			if err != nil {
				t.Fatal(err)
			}
			out, err := g.h.Invoke(t.Context(), raw)
			if err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			tt.check(t, out)
		})
	}

	if _, err := g.h.Invoke(t.Context(), json.RawMessage(`{"foo":1}`)); err == nil {
		t.Error("Invoke accepted an unknown event")
	}
}

func TestStoredResponseRoundTrip(t *testing.T) {
	t.Parallel()
	resp := &protocol.HTTPResponse{
		RequestID: "r1", StatusCode: 201,
		Headers:              map[string][]string{"set-cookie": {"a=1", "b=2"}},
		ProcessingTimeMillis: 7,
	}
	body := []byte(strings.Repeat("line one\nline two\x00\xff", 100))
	msgs, err := protocol.SplitResponse(resp, body, 400)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) < 2 {
		t.Fatalf("%d messages, want a chunked response", len(msgs))
	}
	var data []byte
	for i, m := range msgs {
		index, count, chunk, err := responseChunk(m.(*protocol.HTTPResponse))
		if err != nil || index != i || count != len(msgs) {
			t.Fatalf("chunk %d: index %d count %d err %v", i, index, count, err)
		}
		data = append(data, chunk...)
	}
	head, got, err := parseStored(data)
	if err != nil {
		t.Fatal(err)
	}
	if head.StatusCode != 201 || len(head.Headers["set-cookie"]) != 2 || head.ProcessingTimeMillis != 7 || string(got) != string(body) {
		t.Errorf("got %+v %q", head, got)
	}

	data, err = errorChunk(&protocol.Error{RequestID: "r1", Code: "gateway_timeout", Message: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	head, got, err = parseStored(data)
	if err != nil || head.Error != "gateway_timeout" || len(got) != 0 {
		t.Errorf("error chunk: %+v %q %v", head, got, err)
	}
	if e := agentError(head.Error, head.Message); e.HTTPStatus() != http.StatusGatewayTimeout {
		t.Errorf("agent gateway_timeout maps to %d", e.HTTPStatus())
	}
	if e := agentError("something_new", ""); e.HTTPStatus() != http.StatusBadGateway {
		t.Errorf("unknown agent code maps to %d, want 502", e.HTTPStatus())
	}
}
