package serverless

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/quietlog"
	"github.com/http-tunnel/tunnel/internal/randid"
	"github.com/http-tunnel/tunnel/protocol"
	"github.com/http-tunnel/tunnel/ratelimit"
	"github.com/http-tunnel/tunnel/store"
	"github.com/http-tunnel/tunnel/store/dynamostore"
)

// Defaults of Handler's zero-valued fields.
const (
	// DefaultConnectionTTL is how long a tunnel record lives: API
	// Gateway's maximum connection duration. Nobody renews records here;
	// $disconnect deletes them, and the agent reconnects before the end.
	DefaultConnectionTTL = 2 * time.Hour
	// DefaultHeartbeat is announced to agents, under API Gateway's 10
	// minute idle timeout.
	DefaultHeartbeat = 5 * time.Minute
)

// Handler is the adapter's Lambda handlers: WebSocket for the WebSocket
// API's routes, HTTP and HTTPV1 for the HTTP API's two payload formats,
// Cleanup for the scheduled event, and Invoke, which tells them apart, for
// a function that serves every route.
//
// Server, Store and Mgmt are required, and Identities too when
// Server.Authenticator is set: the zero Handler is not usable.
// Server.Relay must be a *Relay on the same Store and Mgmt, Server.Cache
// should be NoCache (see there), and Server.BaseURL must be set, since a
// WebSocket event does not tell the public URL. Unless Server.Domain names
// a domain whose subdomains reach the HTTP API, Server.Routing should be
// tunnel.RoutePath: the Server would otherwise announce tunnels under
// subdomains of BaseURL's host, which an execute-api host does not have. FromEnv builds such a
// Handler from a function's environment; a program that brings its own
// Authenticator, limiters or logger sets the fields itself. Fields must not
// change after the first invocation. A Handler is safe for concurrent use.
type Handler struct {
	// Server serves public requests (routing, validation, rate limiting,
	// the error model) and authenticates agents at $connect with its
	// Authenticator (nil admits every agent). Its MeterProvider and
	// TracerProvider are the adapter's telemetry.
	Server *tunnel.Server
	// Store holds tunnel records and pending requests.
	Store *dynamostore.Store
	// Mgmt posts to agent connections; its BaseEndpoint is the WebSocket
	// API's management endpoint.
	Mgmt *apigatewaymanagementapi.Client
	// Identities keeps the identity each agent authenticated as at
	// $connect until its ready message, so that the admission at ready
	// binds names and imposes access by that identity, as the standalone
	// gateway does. Required when Server.Authenticator is set: without
	// it every $connect is refused (500, logged). Without an
	// Authenticator every agent is the anonymous identity and nothing is
	// kept.
	Identities *IdentityTable
	// IdentityKey seals (AES-256-GCM) the credentials an identity imposes
	// on its tunnels' public clients (Identity.Access's BasicAuth and
	// BearerTokens) in its row of Identities: IdentityKeySize random bytes,
	// the same for every instance of the function, from a secret store.
	// Only identities that impose credentials need it: static tokens read
	// by tunnel.ParseStaticTokens and JWTs of package jwtauth impose IP
	// lists alone. Without it, an identity that imposes credentials is
	// refused at $connect (500, logged) rather than written in clear.
	IdentityKey []byte
	// Limiter, if set, limits agent connections per source IP address at
	// $connect (429 past it); nil means no limit.
	Limiter ratelimit.Limiter
	// ConnectionTTL is the lifetime of a tunnel record. Zero means
	// DefaultConnectionTTL.
	ConnectionTTL time.Duration
	// Logger receives the handlers' logs (the Server logs to its own
	// Logger). Nil means slog.Default(), but only its warnings and errors,
	// as for tunnel.Server: INFO lines such as "tunnel connected" need a
	// Logger of your own.
	Logger *slog.Logger
}

func (h *Handler) log() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return quietlog.New()
}

// WebSocket handles the WebSocket API's $connect, $default and $disconnect
// routes.
func (h *Handler) WebSocket(ctx context.Context, ev events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	switch ev.RequestContext.RouteKey {
	case "$connect":
		return h.connect(ctx, ev), nil
	case "$disconnect":
		h.disconnect(ctx, ev.RequestContext.ConnectionID)
		return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
	default:
		h.message(ctx, ev)
		return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
	}
}

// connect admits an agent: rate limit, authentication, subprotocol. The
// identity the Authenticator answers is kept in Identities for the
// connection's ready message.
func (h *Handler) connect(ctx context.Context, ev events.APIGatewayWebsocketProxyRequest) events.APIGatewayProxyResponse {
	ip := ev.RequestContext.Identity.SourceIP
	connID := ev.RequestContext.ConnectionID
	if h.Limiter != nil {
		d, err := h.Limiter.Allow(ctx, "agent:"+ip)
		if err != nil {
			return h.internalError(ctx, "agent rate limiter failed", err, slog.String("connection_id", connID))
		}
		if !d.Allowed {
			resp := errorResponse(tunnel.ErrRateLimited)
			resp.Headers["Retry-After"] = strconv.Itoa(max(1, int((d.RetryAfter+time.Second-1)/time.Second)))
			return resp
		}
	}
	if h.Server.Authenticator != nil {
		if h.Identities == nil {
			return h.internalError(ctx, "agent refused: Handler.Identities is required with an Authenticator, to keep the agent's identity until its ready message", nil, slog.String("connection_id", connID))
		}
		id, err := h.Server.Authenticator.Authenticate(ctx, connectRequest(ctx, ev))
		if err != nil {
			var e *tunnel.Error
			if !errors.As(err, &e) || (e.Code != tunnel.CodeUnauthorized && e.Code != tunnel.CodeForbidden) {
				return h.internalError(ctx, "authenticator failed", err, slog.String("connection_id", connID))
			}
			h.log().Info("agent refused", slog.String("connection_id", connID), slog.String("source_ip", ip), slog.String("code", string(e.Code)), slog.String("reason", e.Message))
			return errorResponse(e)
		}
		data, err := encodeIdentity(id, connID, h.IdentityKey)
		if err == nil {
			err = h.Identities.put(ctx, connID, data, time.Now().Add(h.connectionTTL()))
		}
		if err != nil {
			return h.internalError(ctx, "keeping the agent's identity failed", err, slog.String("connection_id", connID), slog.String("subject", id.Subject))
		}
	}
	resp := events.APIGatewayProxyResponse{StatusCode: http.StatusOK}
	for name, v := range ev.Headers {
		if !strings.EqualFold(name, "Sec-WebSocket-Protocol") {
			continue
		}
		for _, p := range strings.Split(v, ",") {
			if strings.TrimSpace(p) == protocol.SubprotocolJSON {
				resp.Headers = map[string]string{"Sec-WebSocket-Protocol": protocol.SubprotocolJSON}
			}
		}
	}
	return resp
}

// internalError logs msg and cause under a new error ID and returns the
// internal error response that carries it.
func (h *Handler) internalError(ctx context.Context, msg string, cause error, attrs ...slog.Attr) events.APIGatewayProxyResponse {
	e := &tunnel.Error{Code: tunnel.CodeInternal, Message: tunnel.ErrInternal.Message, ID: randid.Hex(8)}
	attrs = append(attrs, slog.String("error_id", e.ID))
	if cause != nil {
		attrs = append(attrs, slog.Any("err", cause))
	}
	h.log().LogAttrs(ctx, slog.LevelError, msg, attrs...)
	return errorResponse(e)
}

func (h *Handler) connectionTTL() time.Duration {
	if h.ConnectionTTL > 0 {
		return h.ConnectionTTL
	}
	return DefaultConnectionTTL
}

// eventHeader joins an event's multi-value headers with its single-value
// ones: every value of the first, and the second's for names the first
// lacks.
func eventHeader(multi map[string][]string, single map[string]string) http.Header {
	hdr := make(http.Header, len(multi)+1)
	for name, values := range multi {
		for _, v := range values {
			hdr.Add(name, v)
		}
	}
	for name, v := range single {
		if _, ok := hdr[http.CanonicalHeaderKey(name)]; !ok {
			hdr.Set(name, v)
		}
	}
	return hdr
}

// eventQuery does for query parameters what eventHeader does for headers.
func eventQuery(multi map[string][]string, single map[string]string) url.Values {
	q := url.Values{}
	for name, values := range multi {
		q[name] = append(q[name], values...)
	}
	for name, v := range single {
		if _, ok := q[name]; !ok {
			q.Set(name, v)
		}
	}
	return q
}

// connectRequest rebuilds the agent's upgrade request for the
// Authenticator: headers and query parameters, every value.
func connectRequest(ctx context.Context, ev events.APIGatewayWebsocketProxyRequest) *http.Request {
	hdr := eventHeader(ev.MultiValueHeaders, ev.Headers)
	q := eventQuery(ev.MultiValueQueryStringParameters, ev.QueryStringParameters)
	r := (&http.Request{
		Method:     http.MethodGet,
		URL:        &url.URL{Path: "/", RawQuery: q.Encode()},
		Header:     hdr,
		Host:       hdr.Get("Host"),
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		RemoteAddr: net.JoinHostPort(ev.RequestContext.Identity.SourceIP, "0"),
		Body:       http.NoBody,
	}).WithContext(ctx)
	return r
}

// disconnect deletes the connection's identity row and its tunnel record,
// unless a newer connection has taken the tunnel over (the Store's Delete
// is conditional).
func (h *Handler) disconnect(ctx context.Context, connID string) {
	if h.Server.Authenticator != nil && h.Identities != nil {
		if err := h.Identities.delete(ctx, connID); err != nil {
			// The row expires with the connection's TTL anyway.
			h.log().Warn("disconnect: deleting the identity row failed", slog.String("connection_id", connID), slog.Any("err", err))
		}
	}
	rec, err := h.Store.GetByConnection(ctx, connID)
	if errors.Is(err, store.ErrNotFound) {
		return
	}
	if err != nil {
		h.log().Error("disconnect: lookup failed", slog.String("connection_id", connID), slog.Any("err", err))
		return
	}
	h.connectionClosed(ctx)
	if err := h.Store.Delete(ctx, rec.TunnelID, connID); err != nil {
		h.log().Error("disconnect: delete failed", slog.String("tunnel_id", rec.TunnelID), slog.Any("err", err))
	}
}

// message handles one message from an agent.
func (h *Handler) message(ctx context.Context, ev events.APIGatewayWebsocketProxyRequest) {
	connID := ev.RequestContext.ConnectionID
	log := h.log().With(slog.String("connection_id", connID))
	if ev.IsBase64Encoded {
		log.Warn("binary message from an agent in json mode; ignored")
		return
	}
	msg, err := protocol.Unmarshal([]byte(ev.Body), protocol.MaxMessageBytes)
	if err != nil {
		// Unknown types are additive extensions; ignore them too.
		log.Warn("undecodable message from an agent", slog.Any("err", err))
		return
	}
	switch m := msg.(type) {
	case *protocol.Ready:
		h.ready(ctx, ev, m, log)
	case *protocol.Ping:
		if err := post(ctx, h.Mgmt, connID, &protocol.Pong{}); err != nil && !isGone(err) {
			log.Warn("post pong failed", slog.Any("err", err))
		}
	case *protocol.HTTPResponse:
		index, count, data, err := responseChunk(m)
		if err != nil {
			log.Warn("malformed response from an agent", slog.String("request_id", m.RequestID), slog.Any("err", err))
			data, _ = errorChunk(&protocol.Error{Code: string(tunnel.CodeLocalServiceUnavailable), Message: "malformed response"})
			index, count = 0, 1
		}
		h.storeChunk(ctx, m.RequestID, index, count, data, log)
	case *protocol.Error:
		if m.RequestID == "" {
			log.Warn("agent reported an error", slog.String("code", m.Code), slog.String("message", m.Message))
			return
		}
		data, err := errorChunk(m)
		if err == nil {
			h.storeChunk(ctx, m.RequestID, 0, 1, data, log)
		}
	}
}

func (h *Handler) storeChunk(ctx context.Context, requestID string, index, count int, data []byte, log *slog.Logger) {
	err := h.Store.PutResponseChunk(ctx, requestID, index, count, data)
	switch {
	case errors.Is(err, store.ErrNotFound):
		log.Info("response for a request no longer waited for", slog.String("request_id", requestID))
	case err != nil:
		log.Error("store response failed", slog.String("request_id", requestID), slog.Any("err", err))
	}
}

// ready admits the agent through the Server's admission path (the same as
// the standalone gateway's) and answers connection_established.
//
// The Admission's Identity is the one the agent authenticated as at
// $connect, read back from Identities (the anonymous identity without an
// Authenticator), so that Admit binds the tunnel to its subject and its
// resume secret, allows only the names the identity may take, and imposes
// the access it requires. A connection whose identity is not found (its
// row missing or expired) is refused with unauthorized: its agent must
// connect, and authenticate, again.
func (h *Handler) ready(ctx context.Context, ev events.APIGatewayWebsocketProxyRequest, m *protocol.Ready, log *slog.Logger) {
	connID := ev.RequestContext.ConnectionID
	refuse := func(e *tunnel.Error) {
		code := string(e.Code)
		if m.Version < 1 {
			// An original agent decodes only the four codes of version 0.
			code = protocol.CodeForVersion0Agent(code)
		}
		post(ctx, h.Mgmt, connID, &protocol.Error{Code: code, Message: e.Message})
	}
	ident, e := h.identity(ctx, connID, log)
	if e != nil {
		refuse(e)
		return
	}
	relay, _ := h.Server.Relay.(*Relay)
	if relay == nil {
		relay = &Relay{}
	}
	rec, est, err := h.Server.Admit(ctx, tunnel.Admission{
		Identity:     ident,
		Ready:        m,
		ConnectionID: connID,
		TTL:          h.connectionTTL(),
		Limits: &protocol.Limits{
			MaxBodyBytes:         relay.maxBody(),
			MaxMessageBytes:      protocol.MaxMessageBytes,
			MaxFrameBytes:        protocol.MaxFrameBytes,
			HeartbeatMillis:      DefaultHeartbeat.Milliseconds(),
			RequestTimeoutMillis: relay.responseTimeout().Milliseconds(),
		},
	})
	if err != nil {
		e := &tunnel.Error{Code: tunnel.CodeInternal, Message: tunnel.ErrInternal.Message, Err: err}
		errors.As(err, &e)
		if e.Code == tunnel.CodeInternal {
			id := randid.Hex(8)
			log.Error("admitting an agent failed", slog.String("error_id", id), slog.String("subject", ident.Subject), slog.Any("err", err))
			e = &tunnel.Error{Code: tunnel.CodeInternal, Message: tunnel.ErrInternal.Message + " (error id " + id + ")"}
		} else {
			log.Info("agent refused", slog.String("subject", ident.Subject), slog.String("code", string(e.Code)), slog.String("reason", e.Message))
		}
		refuse(e)
		return
	}
	// API Gateway may deliver the agent's first message before the
	// connection accepts posts; retry Gone briefly.
	delay := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := post(ctx, h.Mgmt, connID, est)
		if err == nil {
			log.Info("tunnel connected", slog.String("tunnel_id", rec.TunnelID))
			h.connectionEstablished(ctx)
			return
		}
		if !isGone(err) || attempt == 4 {
			log.Warn("post connection_established failed", slog.String("tunnel_id", rec.TunnelID), slog.Any("err", err))
			h.Store.Delete(context.WithoutCancel(ctx), rec.TunnelID, connID)
			return
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay *= 2
	}
}

// identity returns the identity connection connID authenticated as at
// $connect, or the error to answer its ready message with. Refusals are
// logged with an error ID that the agent's message repeats.
func (h *Handler) identity(ctx context.Context, connID string, log *slog.Logger) (tunnel.Identity, *tunnel.Error) {
	if h.Server.Authenticator == nil {
		return tunnel.Identity{Subject: tunnel.AnonymousSubject}, nil
	}
	errID := randid.Hex(8)
	if h.Identities == nil {
		log.Error("ready refused: Handler.Identities is required with an Authenticator", slog.String("error_id", errID))
		return tunnel.Identity{}, &tunnel.Error{Code: tunnel.CodeInternal, Message: tunnel.ErrInternal.Message + " (error id " + errID + ")"}
	}
	data, err := h.Identities.get(ctx, connID)
	if errors.Is(err, store.ErrNotFound) {
		log.Warn("ready refused: no identity is kept for this connection (its row is missing or has expired)", slog.String("error_id", errID))
		return tunnel.Identity{}, &tunnel.Error{Code: tunnel.CodeUnauthorized,
			Message: "the identity this connection authenticated as is not known or has expired; connect again (error id " + errID + ")"}
	}
	var id tunnel.Identity
	if err == nil {
		id, err = decodeIdentity(data, connID, h.IdentityKey)
	}
	if err != nil {
		log.Error("ready refused: reading the connection's identity failed", slog.String("error_id", errID), slog.Any("err", err))
		return tunnel.Identity{}, &tunnel.Error{Code: tunnel.CodeInternal, Message: tunnel.ErrInternal.Message + " (error id " + errID + ")"}
	}
	return id, nil
}

// errorResponse is a public error as an API Gateway proxy response.
func errorResponse(e *tunnel.Error) events.APIGatewayProxyResponse {
	body := map[string]string{"error": string(e.Code), "message": e.Message}
	if e.ID != "" {
		body["error_id"] = e.ID
	}
	b, _ := json.Marshal(body)
	return events.APIGatewayProxyResponse{
		StatusCode: e.HTTPStatus(),
		Headers:    map[string]string{"Content-Type": "application/json"},
		Body:       string(b),
	}
}

// HTTP handles the HTTP API with payload format 2.0.
func (h *Handler) HTTP(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	hdr := make(http.Header, len(ev.Headers)+1)
	for name, v := range ev.Headers {
		// API Gateway joined repeated values with commas, which is
		// equivalent for every request header but Cookie, which comes
		// separately.
		hdr.Set(name, v)
	}
	if len(ev.Cookies) > 0 {
		hdr.Set("Cookie", strings.Join(ev.Cookies, "; "))
	}
	path := stripStage(ev.RawPath, ev.RequestContext.Stage)
	body, err := eventBody(ev.Body, ev.IsBase64Encoded)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{StatusCode: http.StatusBadRequest}, nil
	}
	ctx = h.traceContext(ctx, hdr.Get(xrayTraceHeader))
	r := publicRequest(ctx, ev.RequestContext.HTTP.Method, path, ev.RawQueryString, hdr, body, ev.RequestContext.HTTP.SourceIP)
	rb := h.serve(r)
	resp := events.APIGatewayV2HTTPResponse{StatusCode: rb.status, Headers: make(map[string]string, len(rb.header))}
	for name, values := range rb.header {
		if name == "Set-Cookie" {
			resp.Cookies = append(resp.Cookies, values...)
			continue
		}
		resp.Headers[name] = strings.Join(values, ",")
	}
	resp.Body, resp.IsBase64Encoded = responseBody(rb.body.Bytes())
	return resp, nil
}

// HTTPV1 handles the HTTP API (or a REST API) with payload format 1.0. Its
// query string is rebuilt from multiValueQueryStringParameters, since
// format 1.0 has no raw query string.
func (h *Handler) HTTPV1(ctx context.Context, ev events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
	hdr := eventHeader(ev.MultiValueHeaders, ev.Headers)
	q := eventQuery(ev.MultiValueQueryStringParameters, ev.QueryStringParameters)
	path := stripStage(ev.Path, ev.RequestContext.Stage)
	body, err := eventBody(ev.Body, ev.IsBase64Encoded)
	if err != nil {
		return events.APIGatewayProxyResponse{StatusCode: http.StatusBadRequest}, nil
	}
	ctx = h.traceContext(ctx, hdr.Get(xrayTraceHeader))
	r := publicRequest(ctx, ev.HTTPMethod, path, q.Encode(), hdr, body, ev.RequestContext.Identity.SourceIP)
	rb := h.serve(r)
	resp := events.APIGatewayProxyResponse{StatusCode: rb.status, MultiValueHeaders: map[string][]string(rb.header)}
	resp.Body, resp.IsBase64Encoded = responseBody(rb.body.Bytes())
	return resp, nil
}

// Cleanup handles the scheduled event: it deletes the expired rows of the
// connections table (Store.CleanupConnections). The pending table's rows
// are left to DynamoDB's TTL deletion, which must be on for its ttl
// attribute: scanning and deleting them would cost their bytes again.
func (h *Handler) Cleanup(ctx context.Context) error {
	st, err := h.Store.CleanupConnections(ctx)
	h.log().Info("cleanup", slog.Any("stats", st))
	return err
}

func (h *Handler) serve(r *http.Request) *responseBuffer {
	rb := &responseBuffer{header: make(http.Header)}
	h.Server.ServeHTTP(rb, r)
	if rb.status == 0 {
		rb.status = http.StatusOK
	}
	return rb
}

// stripStage removes the "/<stage>" prefix API Gateway keeps in the path
// of a named stage.
func stripStage(path, stage string) string {
	if stage == "" || stage == "$default" {
		return path
	}
	rest, ok := strings.CutPrefix(path, "/"+stage)
	if !ok || (rest != "" && rest[0] != '/') {
		return path
	}
	if rest == "" {
		return "/"
	}
	return rest
}

func eventBody(body string, isBase64 bool) ([]byte, error) {
	if isBase64 {
		return base64.StdEncoding.DecodeString(body)
	}
	return []byte(body), nil
}

// responseBody encodes b for a proxy response: as is when it is UTF-8
// text whose JSON encoding stays no larger than base64 would be, base64
// otherwise. encoding/json writes control characters and <, >, & as six
// bytes each, so a "text" body of NULs would grow sixfold and could push
// the function's response over Lambda's 6 MB limit.
func responseBody(b []byte) (string, bool) {
	if utf8.Valid(b) {
		size := 0
		for _, c := range b {
			switch {
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				size += 6
			case c == '"' || c == '\\':
				size += 2
			default:
				size++
			}
		}
		if size <= base64.StdEncoding.EncodedLen(len(b)) {
			return string(b), false
		}
	}
	return base64.StdEncoding.EncodeToString(b), true
}

// publicRequest builds the request the Server serves. rawQuery is kept
// byte for byte.
func publicRequest(ctx context.Context, method, path, rawQuery string, hdr http.Header, body []byte, sourceIP string) *http.Request {
	u := &url.URL{Path: path, RawQuery: rawQuery}
	r := &http.Request{
		Method:        method,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        hdr,
		Host:          hdr.Get("Host"),
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		RemoteAddr:    net.JoinHostPort(sourceIP, "0"),
		RequestURI:    u.RequestURI(),
	}
	hdr.Del("Host")
	if len(body) == 0 {
		r.Body = http.NoBody
	}
	return r.WithContext(ctx)
}

// responseBuffer collects the Server's response for a proxy response.
type responseBuffer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *responseBuffer) Header() http.Header { return b.header }

func (b *responseBuffer) WriteHeader(status int) {
	if b.status == 0 && status >= 200 {
		b.status = status
	}
}

func (b *responseBuffer) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}
