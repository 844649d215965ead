package apigwtest

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/http-tunnel/tunnel/protocol"
)

// The HTTP API: every method and path of the stage goes to one Lambda
// integration, with payload format 2.0 (Config.HTTP, route $default) or
// 1.0 (Config.HTTPV1, route ANY /{proxy+}).

// httpRequest is a request accepted by the HTTP API, read in full.
type httpRequest struct {
	r         *http.Request
	now       time.Time
	requestID string
	path      string // decoded, with the stage prefix: rawPath and path of the events
	rel       string // path relative to the stage
	rawQuery  string // exactly as received
	body      []byte
	sourceIP  string
}

func (e *Emulator) serveHTTPAPI(w http.ResponseWriter, r *http.Request) {
	q := httpRequest{
		r:         r,
		now:       time.Now(),
		requestID: newConnectionID(),
		// API Gateway's HTTP APIs hand the path over percent-decoded
		// (rawPath included, despite its name); the query stays raw.
		path:     r.URL.Path,
		rawQuery: r.URL.RawQuery,
		sourceIP: remoteIP(r),
	}
	w.Header().Set("Apigw-Requestid", q.requestID)
	rel, ok := e.stageRelative(q.path)
	if !ok || (e.cfg.HTTP == nil && e.cfg.HTTPV1 == nil) {
		writeJSONMessage(w, http.StatusNotFound, "Not Found")
		return
	}
	q.rel = rel
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxHTTPPayloadBytes+1))
	if err != nil {
		writeJSONMessage(w, http.StatusBadRequest, "Bad Request")
		return
	}
	if len(body) > MaxHTTPPayloadBytes {
		writeJSONMessage(w, http.StatusRequestEntityTooLarge, "Request Entity Too Large")
		return
	}
	q.body = body

	count := func(s *Stats) { s.HTTPInvocations++ }
	if h := e.cfg.HTTP; h != nil {
		resp, err := invoke(e, e.cfg.HTTPConcurrency, count, h, e.v2Event(q))
		if err != nil {
			e.writeInvokeError(w, err)
			return
		}
		e.writeV2(w, resp)
		return
	}
	resp, err := invoke(e, e.cfg.HTTPConcurrency, count, e.cfg.HTTPV1, e.v1Event(q))
	if err != nil {
		e.writeInvokeError(w, err)
		return
	}
	e.writeV1(w, resp)
}

// stageRelative strips the stage prefix from a path, reporting false for
// a path outside the stage.
func (e *Emulator) stageRelative(path string) (string, bool) {
	if e.httpBase == "" {
		return path, true
	}
	if path == e.httpBase {
		return "/", true
	}
	rel, ok := strings.CutPrefix(path, e.httpBase+"/")
	return "/" + rel, ok
}

// requestHeaders returns the request's headers as API Gateway passes them
// on: hop-by-hop headers dropped, Host and the forwarding headers added,
// Content-Length set for a chunked body (API Gateway buffers it).
func (e *Emulator) requestHeaders(q httpRequest) http.Header {
	h := q.r.Header.Clone()
	protocol.RemoveHopByHop(h) // they end at API Gateway
	h.Set("Host", q.r.Host)
	if len(q.body) > 0 && h.Get("Content-Length") == "" {
		h.Set("Content-Length", strconv.Itoa(len(q.body)))
	}
	addForwardingHeaders(h, q.sourceIP, e.httpDomain, q.now)
	return h
}

// v2Event builds the payload format 2.0 event: header names lower-case
// with repeated values joined by commas, cookies apart, query values
// joined by commas.
func (e *Emulator) v2Event(q httpRequest) events.APIGatewayV2HTTPRequest {
	h := e.requestHeaders(q)
	var cookies []string
	for _, line := range h.Values("Cookie") {
		for c := range strings.SplitSeq(line, ";") {
			if c = strings.TrimSpace(c); c != "" {
				cookies = append(cookies, c)
			}
		}
	}
	h.Del("Cookie")
	headers := make(map[string]string, len(h))
	for name, values := range h {
		headers[strings.ToLower(name)] = strings.Join(values, ",")
	}
	var query map[string]string
	if params := parseQuery(q.rawQuery); len(params) > 0 {
		query = make(map[string]string, len(params))
		for _, p := range params {
			if v, ok := query[p.key]; ok {
				query[p.key] = v + "," + p.value
			} else {
				query[p.key] = p.value
			}
		}
	}
	body, isBase64 := encodeBody(q.body, q.r.Header.Get("Content-Type"))
	return events.APIGatewayV2HTTPRequest{
		Version:               "2.0",
		RouteKey:              "$default",
		RawPath:               q.path,
		RawQueryString:        q.rawQuery,
		Cookies:               cookies,
		Headers:               headers,
		QueryStringParameters: query,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey:     "$default",
			AccountID:    accountID,
			Stage:        e.cfg.HTTPStage,
			RequestID:    q.requestID,
			APIID:        e.httpAPIID,
			DomainName:   e.httpDomain,
			DomainPrefix: domainPrefix(e.httpDomain),
			Time:         requestTime(q.now),
			TimeEpoch:    q.now.UnixMilli(),
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
				Method:    q.r.Method,
				Path:      q.path,
				Protocol:  q.r.Proto,
				SourceIP:  q.sourceIP,
				UserAgent: q.r.UserAgent(),
			},
		},
		Body:            body,
		IsBase64Encoded: isBase64,
	}
}

// v1Event builds the payload format 1.0 event of a route
// "ANY /{proxy+}": single- and multi-value headers and query parameters,
// pathParameters.proxy holding the path below the stage (absent at the
// root).
func (e *Emulator) v1Event(q httpRequest) events.APIGatewayProxyRequest {
	headers, multiHeaders := headerMaps(e.requestHeaders(q), false)
	query, multiQuery := queryMaps(q.rawQuery)
	var pathParams map[string]string
	if proxy := strings.TrimPrefix(q.rel, "/"); proxy != "" {
		pathParams = map[string]string{"proxy": proxy}
	}
	body, isBase64 := encodeBody(q.body, q.r.Header.Get("Content-Type"))
	return events.APIGatewayProxyRequest{
		Resource:                        "/{proxy+}",
		Path:                            q.path,
		HTTPMethod:                      q.r.Method,
		Headers:                         headers,
		MultiValueHeaders:               multiHeaders,
		QueryStringParameters:           query,
		MultiValueQueryStringParameters: multiQuery,
		PathParameters:                  pathParams,
		RequestContext: events.APIGatewayProxyRequestContext{
			AccountID:         accountID,
			ResourceID:        "ANY /{proxy+}",
			Stage:             e.cfg.HTTPStage,
			DomainName:        e.httpDomain,
			DomainPrefix:      domainPrefix(e.httpDomain),
			RequestID:         q.requestID,
			ExtendedRequestID: q.requestID,
			Protocol:          q.r.Proto,
			Identity:          events.APIGatewayRequestIdentity{SourceIP: q.sourceIP, UserAgent: q.r.UserAgent()},
			ResourcePath:      "/{proxy+}",
			Path:              q.path,
			HTTPMethod:        q.r.Method,
			RequestTime:       requestTime(q.now),
			RequestTimeEpoch:  q.now.UnixMilli(),
			APIID:             e.httpAPIID,
		},
		Body:            body,
		IsBase64Encoded: isBase64,
	}
}

// writeInvokeError answers a request whose invocation failed, as the HTTP
// API does.
func (e *Emulator) writeInvokeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, errIntegrationTimeout), errors.Is(err, errClosed), errors.Is(err, errThrottled):
		writeJSONMessage(w, http.StatusServiceUnavailable, "Service Unavailable")
	case errors.Is(err, errRequestTooLarge):
		writeJSONMessage(w, http.StatusRequestEntityTooLarge, "Request Entity Too Large")
	case errors.Is(err, errResponseTooLarge):
		e.log.Warn("apigw: HTTP handler response over the Lambda payload limit", "limit", MaxInvokeResponseBytes)
		writeJSONMessage(w, http.StatusBadGateway, "Internal Server Error")
	default:
		e.log.Warn("apigw: HTTP handler failed", "err", err)
		writeJSONMessage(w, http.StatusInternalServerError, "Internal Server Error")
	}
}

// writeV2 writes a format 2.0 response: headers (one line each, a value
// with commas as is), each cookie as a Set-Cookie line. Format 2.0 has no
// multiValueHeaders; API Gateway ignores them, and so does the emulator.
func (e *Emulator) writeV2(w http.ResponseWriter, resp events.APIGatewayV2HTTPResponse) {
	if len(resp.MultiValueHeaders) > 0 {
		e.log.Warn("apigw: multiValueHeaders ignored in payload format 2.0; use headers and cookies")
	}
	hdr := make(http.Header, len(resp.Headers)+1)
	for name, v := range resp.Headers {
		hdr.Set(name, v)
	}
	for _, c := range resp.Cookies {
		hdr.Add("Set-Cookie", c)
	}
	e.writeResponse(w, resp.StatusCode, hdr, resp.Body, resp.IsBase64Encoded)
}

// writeV1 writes a format 1.0 response: multiValueHeaders, then headers
// whose names multiValueHeaders lacks (API Gateway merges the two maps,
// multiValueHeaders winning).
func (e *Emulator) writeV1(w http.ResponseWriter, resp events.APIGatewayProxyResponse) {
	hdr := make(http.Header, len(resp.Headers)+len(resp.MultiValueHeaders))
	for name, values := range resp.MultiValueHeaders {
		for _, v := range values {
			hdr.Add(name, v)
		}
	}
	for name, v := range resp.Headers {
		if _, ok := hdr[http.CanonicalHeaderKey(name)]; !ok {
			hdr.Set(name, v)
		}
	}
	e.writeResponse(w, resp.StatusCode, hdr, resp.Body, resp.IsBase64Encoded)
}

// writeResponse writes a Lambda response. A statusCode outside 200-599
// or a body that is not valid base64 makes it malformed: 500.
func (e *Emulator) writeResponse(w http.ResponseWriter, status int, hdr http.Header, body string, isBase64 bool) {
	if status < 200 || status > 599 {
		e.log.Warn("apigw: HTTP handler response has no valid statusCode", "status", status)
		writeJSONMessage(w, http.StatusInternalServerError, "Internal Server Error")
		return
	}
	data, err := responseBody(body, isBase64)
	if err != nil {
		e.log.Warn("apigw: HTTP handler response body is not valid base64", "err", err)
		writeJSONMessage(w, http.StatusInternalServerError, "Internal Server Error")
		return
	}
	for _, name := range []string{"Content-Length", "Transfer-Encoding", "Connection"} {
		hdr.Del(name)
	}
	out := w.Header()
	for name, values := range hdr {
		out[name] = values
	}
	if _, ok := out["Content-Type"]; !ok {
		out["Content-Type"] = nil // no content sniffing: API Gateway adds none
	}
	if status == http.StatusNoContent || status == http.StatusNotModified {
		w.WriteHeader(status) // no body allowed
		return
	}
	out.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	w.Write(data)
}
