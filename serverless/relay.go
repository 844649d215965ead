package serverless

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"go.opentelemetry.io/otel/propagation"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/observability"
	"github.com/http-tunnel/tunnel/protocol"
	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/store/dynamostore"
)

// Defaults of Relay's zero-valued fields.
const (
	// DefaultResponseTimeout stays under API Gateway's 29 s integration
	// timeout, as the original's 25 s does.
	DefaultResponseTimeout = 25 * time.Second
	// DefaultPendingTTL is the pending row's lifetime, the original's.
	DefaultPendingTTL = 30 * time.Second
)

// Relay implements tunnel.Relay for agents connected to an API Gateway
// WebSocket API: it posts each public request to the agent's connection
// through the Management API and waits for the response in the pending
// table, where the $default invocations that receive the agent's messages
// store it (see the package doc for the storage format).
//
// Store and Mgmt are required, so the zero Relay is not usable; the other
// fields have defaults. A Relay goes in Server.Relay, and the Handler's
// $default invocations must write to the same Store. Fields must not
// change after the first request. A Relay is safe for concurrent use.
type Relay struct {
	// Store holds tunnel records and pending requests.
	Store *dynamostore.Store
	// Mgmt posts to agent connections; its BaseEndpoint is the WebSocket
	// API's management endpoint (https://{api}.execute-api.{region}.amazonaws.com/{stage}).
	Mgmt *apigatewaymanagementapi.Client

	// ResponseTimeout bounds the wait for the agent's response; past it
	// the public client gets 504 gateway_timeout. Zero means
	// DefaultResponseTimeout. It is also announced to agents, which give
	// up on their local service at the same time.
	ResponseTimeout time.Duration
	// MaxBodyBytes caps request bodies (413 payload_too_large past it);
	// it is announced to agents as the response body limit too. Zero
	// means protocol.DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Wait tunes the polling of the pending table; the zero value uses
	// dynamostore's defaults.
	Wait dynamostore.WaitOptions
	// AgentCheckInterval is how often a request waiting for its response
	// asks the Management API whether the agent's connection is still
	// open (GetConnection, which needs execute-api:ManageConnections on
	// GET @connections/*): once it is closed, the public client gets 502
	// agent_unavailable then rather than 504 at ResponseTimeout. Zero
	// means DefaultAgentCheckInterval (1 s); negative turns the check off.
	AgentCheckInterval time.Duration
}

var _ tunnel.Relay = (*Relay)(nil)

func (rl *Relay) responseTimeout() time.Duration {
	if rl.ResponseTimeout > 0 {
		return rl.ResponseTimeout
	}
	return DefaultResponseTimeout
}

func (rl *Relay) maxBody() int64 {
	if rl.MaxBodyBytes > 0 {
		return rl.MaxBodyBytes
	}
	return protocol.DefaultMaxBodyBytes
}

// pendingTTL outlives the wait, so a waiter never sees its row expire.
func (rl *Relay) pendingTTL() time.Duration {
	return max(DefaultPendingTTL, rl.responseTimeout()+5*time.Second)
}

// Forward implements tunnel.Relay. r's context bounds everything; the
// wait for the response is bounded by ResponseTimeout too.
func (rl *Relay) Forward(w http.ResponseWriter, r *http.Request, rec store.Record) error {
	ctx := r.Context()
	limit := rl.maxBody()
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return publicError(tunnel.CodeInvalidRequest, fmt.Errorf("read request body: %w", err))
	}
	if int64(len(body)) > limit {
		return publicError(tunnel.CodePayloadTooLarge, fmt.Errorf("request body over %d bytes", limit))
	}

	id := rand.Text()
	req := &protocol.HTTPRequest{
		RequestID: id,
		Method:    r.Method,
		URI:       r.URL.RequestURI(),
		Headers:   requestHeaders(r),
		Timestamp: time.Now().UnixMilli(),
	}
	if a, ok := tunnel.ClientAddr(r); ok {
		req.RemoteAddr = a.String()
	}
	msgs, err := protocol.SplitRequest(req, body, protocol.MaxMessageBytes)
	if err != nil {
		return publicError(tunnel.CodePayloadTooLarge, fmt.Errorf("split request: %w", err))
	}
	if len(msgs) > 1 && rec.Version < 1 {
		// A version 0 agent knows no chunk fields: it would take the
		// first piece for the whole body.
		return publicError(tunnel.CodePayloadTooLarge, fmt.Errorf("request needs %d messages; the agent of tunnel %s speaks protocol version 0, which has no chunking", len(msgs), rec.TunnelID))
	}
	// Posts that meet a full agent buffer are retried until the
	// request's deadline.
	deadline := time.Now().Add(rl.responseTimeout())
	if err := rl.Store.CreatePending(ctx, id, rec.ConnectionID, rl.pendingTTL()); err != nil {
		return fmt.Errorf("create pending: %w", err)
	}
	// The rows are left to DynamoDB's TTL deletion, which is free: a
	// DeleteItem costs as many write units as the response's bytes took
	// to store. Readers treat rows past their ttl as gone.

	for _, m := range msgs {
		if err := rl.postMessage(ctx, deadline, rec.ConnectionID, m); err != nil {
			if isGone(err) {
				// The agent left without its $disconnect having run yet,
				// or the record is stale: it is no use to anyone.
				rl.Store.Delete(context.WithoutCancel(ctx), rec.TunnelID, rec.ConnectionID)
				return publicError(tunnel.CodeAgentUnavailable, fmt.Errorf("connection %s is gone: %w", rec.ConnectionID, err))
			}
			return fmt.Errorf("post request: %w", err) // a *tunnel.Error inside keeps its code
		}
	}

	data, err := rl.awaitResponse(ctx, deadline, id, rec.ConnectionID)
	if err != nil {
		return err
	}
	head, respBody, err := parseStored(data)
	if err != nil {
		return err
	}
	if head.Error != "" {
		return agentError(head.Error, head.Message)
	}
	protocol.RemoveHopByHop(head.Headers)
	h := w.Header()
	for name, values := range head.Headers {
		switch strings.ToLower(name) {
		case "content-length":
			// The body is whole here: its length is known. A HEAD
			// response has none, and keeps the length the agent gave.
			if r.Method != http.MethodHead {
				continue
			}
		}
		h[http.CanonicalHeaderKey(name)] = append([]string(nil), values...)
	}
	if r.Method != http.MethodHead {
		h.Set("Content-Length", strconv.Itoa(len(respBody)))
	}
	w.WriteHeader(head.StatusCode)
	w.Write(respBody)
	return nil
}

// requestHeaders returns r's headers as json mode carries them: lower-case
// names, every value, and the host.
func requestHeaders(r *http.Request) map[string][]string {
	h := make(map[string][]string, len(r.Header)+1)
	for name, values := range r.Header {
		name = strings.ToLower(name)
		h[name] = append(h[name], values...)
	}
	protocol.RemoveHopByHop(h)
	if r.Host != "" {
		h["host"] = []string{r.Host}
	}
	// The trace context of the request's span, as the standalone gateway
	// passes it on; it replaces what the client sent. Without a span
	// (tracing off) nothing is written, and the client's passes through.
	tc := http.Header{}
	observability.Propagator.Inject(r.Context(), propagation.HeaderCarrier(tc))
	for name, values := range tc {
		h[strings.ToLower(name)] = values
	}
	return h
}

// post sends m to connection id.
func post(ctx context.Context, mgmt *apigatewaymanagementapi.Client, id string, m protocol.Message) error {
	b, err := protocol.Marshal(m)
	if err != nil {
		return err
	}
	_, err = mgmt.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
		ConnectionId: aws.String(id),
		Data:         b,
	})
	return err
}

func isGone(err error) bool {
	var gone *types.GoneException
	return errors.As(err, &gone)
}

// publicError is an *tunnel.Error of code with its sentinel's message.
func publicError(code tunnel.Code, cause error) *tunnel.Error {
	return &tunnel.Error{Code: code, Message: messageOf(code), Err: cause}
}

// agentError maps the code of an agent's error message to the public
// error. The codes of a version 0 agent become their current names
// (protocol.CodeFromVersion0: timeout is gateway_timeout). Codes the
// gateway does not know become local_service_unavailable: whatever went
// wrong, it went wrong behind the agent.
func agentError(code, message string) *tunnel.Error {
	c := tunnel.Code(protocol.CodeFromVersion0(code))
	switch c {
	case tunnel.CodeLocalServiceUnavailable, tunnel.CodeGatewayTimeout, tunnel.CodePayloadTooLarge,
		tunnel.CodeInvalidRequest, tunnel.CodeAgentUnavailable, tunnel.CodeUnavailable:
	default:
		c = tunnel.CodeLocalServiceUnavailable
	}
	if c == tunnel.CodeUnavailable {
		// The agent is shutting down, not the gateway.
		c = tunnel.CodeAgentUnavailable
	}
	return publicError(c, fmt.Errorf("agent answered %s: %s", code, message))
}

func messageOf(code tunnel.Code) string {
	for _, e := range []*tunnel.Error{
		tunnel.ErrInvalidRequest, tunnel.ErrPayloadTooLarge, tunnel.ErrGatewayTimeout,
		tunnel.ErrAgentUnavailable, tunnel.ErrLocalServiceUnavailable, tunnel.ErrInternal,
	} {
		if e.Code == code {
			return e.Message
		}
	}
	return tunnel.ErrInternal.Message
}
