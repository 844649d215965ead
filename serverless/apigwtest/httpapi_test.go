package apigwtest

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

// rawTarget is a request target with repeated keys, encoded characters
// and a semicolon; the query must reach the handler byte for byte.
const (
	rawTarget = "/t1/a%20b/c%2Fd?x=1&x=2&enc=%2F%20+%3D&empty=&semi=a;b&bad=%zz"
	rawQuery  = "x=1&x=2&enc=%2F%20+%3D&empty=&semi=a;b&bad=%zz"
)

func doRequest(t *testing.T, client *http.Client, method, url string, header http.Header, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestHTTPAPIV2(t *testing.T) {
	t.Parallel()
	events2 := make(chan events.APIGatewayV2HTTPRequest, 1)
	e := startEmulator(t, Config{
		HTTP: func(_ context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
			events2 <- ev
			return events.APIGatewayV2HTTPResponse{
				StatusCode: 201,
				Headers:    map[string]string{"x-custom": "a,b", "content-type": "text/plain"},
				Cookies:    []string{"s=1; Path=/", "t=2; HttpOnly"},
				Body:       "created",
			}, nil
		},
	})
	resp, body := doRequest(t, httpClient(t), http.MethodPost, e.HTTPURL()+rawTarget, http.Header{
		"X-Multi":      {"one", "two"},
		"Cookie":       {"a=1; b=2", "c=3"},
		"Content-Type": {"application/json"},
		"User-Agent":   {"curl/8"},
	}, []byte(`{"k":"v"}`))

	ev := recv(t, events2)
	checks := map[string][2]string{
		"version":         {ev.Version, "2.0"},
		"routeKey":        {ev.RouteKey, "$default"},
		"rawPath":         {ev.RawPath, "/t1/a b/c/d"},
		"rawQueryString":  {ev.RawQueryString, rawQuery},
		"query x":         {ev.QueryStringParameters["x"], "1,2"},
		"query enc":       {ev.QueryStringParameters["enc"], "/  ="},
		"query empty":     {ev.QueryStringParameters["empty"], ""},
		"query semi":      {ev.QueryStringParameters["semi"], "a;b"},
		"query bad":       {ev.QueryStringParameters["bad"], "%zz"},
		"x-multi":         {ev.Headers["x-multi"], "one,two"},
		"user-agent":      {ev.Headers["user-agent"], "curl/8"},
		"x-forwarded-for": {ev.Headers["x-forwarded-for"], "127.0.0.1"},
		"http.method":     {ev.RequestContext.HTTP.Method, "POST"},
		"http.path":       {ev.RequestContext.HTTP.Path, "/t1/a b/c/d"},
		"http.protocol":   {ev.RequestContext.HTTP.Protocol, "HTTP/1.1"},
		"http.sourceIp":   {ev.RequestContext.HTTP.SourceIP, "127.0.0.1"},
		"http.userAgent":  {ev.RequestContext.HTTP.UserAgent, "curl/8"},
		"stage":           {ev.RequestContext.Stage, "$default"},
		"rc.routeKey":     {ev.RequestContext.RouteKey, "$default"},
		"body":            {ev.Body, `{"k":"v"}`},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
	if ev.IsBase64Encoded {
		t.Error("a JSON body arrived in base64")
	}
	if !slices.Equal(ev.Cookies, []string{"a=1", "b=2", "c=3"}) {
		t.Errorf("cookies %q", ev.Cookies)
	}
	if _, ok := ev.Headers["cookie"]; ok {
		t.Error("the cookie header stayed in headers")
	}
	for name := range ev.Headers {
		if name != strings.ToLower(name) {
			t.Errorf("header name %q is not lower-case", name)
		}
	}
	if ev.Headers["host"] == "" || ev.RequestContext.RequestID == "" || ev.RequestContext.TimeEpoch == 0 {
		t.Errorf("event lacks host, request ID or time: %+v", ev)
	}

	if resp.StatusCode != 201 || string(body) != "created" {
		t.Errorf("response %d %q", resp.StatusCode, body)
	}
	if got := resp.Header.Values("Set-Cookie"); !slices.Equal(got, []string{"s=1; Path=/", "t=2; HttpOnly"}) {
		t.Errorf("Set-Cookie %q", got)
	}
	if got := resp.Header.Values("X-Custom"); !slices.Equal(got, []string{"a,b"}) {
		t.Errorf("X-Custom %q", got)
	}
	if resp.Header.Get("Apigw-Requestid") != ev.RequestContext.RequestID {
		t.Errorf("apigw-requestid %q, event %q", resp.Header.Get("Apigw-Requestid"), ev.RequestContext.RequestID)
	}
	if s := e.Stats(); s.HTTPInvocations != 1 || s.Invocations() != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestHTTPAPIV1(t *testing.T) {
	t.Parallel()
	events1 := make(chan events.APIGatewayProxyRequest, 1)
	e := startEmulator(t, Config{
		HTTPV1: func(_ context.Context, ev events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
			events1 <- ev
			return events.APIGatewayProxyResponse{
				StatusCode:        200,
				Headers:           map[string]string{"X-One": "1", "Set-Cookie": "overridden=1"},
				MultiValueHeaders: map[string][]string{"Set-Cookie": {"a=1; Path=/", "b=2; Secure"}, "X-Many": {"p", "q"}},
				Body:              "ok",
			}, nil
		},
	})
	resp, body := doRequest(t, httpClient(t), http.MethodPut, e.HTTPURL()+rawTarget, http.Header{
		"X-Multi": {"one", "two"},
		"Cookie":  {"a=1"},
	}, nil)

	ev := recv(t, events1)
	checks := map[string][2]string{
		"httpMethod":            {ev.HTTPMethod, "PUT"},
		"path":                  {ev.Path, "/t1/a b/c/d"},
		"resource":              {ev.Resource, "/{proxy+}"},
		"pathParameters.proxy":  {ev.PathParameters["proxy"], "t1/a b/c/d"},
		"query x (last)":        {ev.QueryStringParameters["x"], "2"},
		"query enc":             {ev.QueryStringParameters["enc"], "/  ="},
		"header X-Multi (last)": {ev.Headers["X-Multi"], "two"},
		"header Cookie":         {ev.Headers["Cookie"], "a=1"},
		"rc.path":               {ev.RequestContext.Path, "/t1/a b/c/d"},
		"rc.resourcePath":       {ev.RequestContext.ResourcePath, "/{proxy+}"},
		"rc.httpMethod":         {ev.RequestContext.HTTPMethod, "PUT"},
		"rc.stage":              {ev.RequestContext.Stage, "$default"},
		"rc.sourceIp":           {ev.RequestContext.Identity.SourceIP, "127.0.0.1"},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
	if got := ev.MultiValueQueryStringParameters["x"]; !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("multiValueQueryStringParameters x = %q", got)
	}
	if got := ev.MultiValueHeaders["X-Multi"]; !slices.Equal(got, []string{"one", "two"}) {
		t.Errorf("multiValueHeaders X-Multi = %q", got)
	}
	if ev.Body != "" || ev.IsBase64Encoded {
		t.Errorf("empty body arrived as %q base64=%v", ev.Body, ev.IsBase64Encoded)
	}

	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Errorf("response %d %q", resp.StatusCode, body)
	}
	if got := resp.Header.Values("Set-Cookie"); !slices.Equal(got, []string{"a=1; Path=/", "b=2; Secure"}) {
		t.Errorf("Set-Cookie %q", got)
	}
	if got := resp.Header.Values("X-Many"); !slices.Equal(got, []string{"p", "q"}) {
		t.Errorf("X-Many %q", got)
	}
	if resp.Header.Get("X-One") != "1" {
		t.Errorf("X-One %q", resp.Header.Get("X-One"))
	}
}

// TestHTTPAPIBodies checks when a body travels in base64, both ways.
func TestHTTPAPIBodies(t *testing.T) {
	t.Parallel()
	binary := []byte{0x89, 'P', 'N', 'G', 0, 0xff, 0xfe, '\n'}
	tests := []struct {
		name        string
		contentType string
		body        []byte
		wantBase64  bool
	}{
		{"binary", "application/octet-stream", binary, true},
		{"binary with a text type", "text/plain", binary, true},
		{"json", "application/json; charset=utf-8", []byte(`{"a":"é"}`), false},
		{"vendor json", "application/vnd.api+json", []byte(`{}`), false},
		{"text", "text/html", []byte("<p>hi</p>"), false},
		{"form", "application/x-www-form-urlencoded", []byte("a=1&b=2"), true},
		{"no content type", "", []byte("plain"), true},
	}
	for _, format := range []string{"2.0", "1.0"} {
		for _, tt := range tests {
			t.Run(format+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				type seen struct {
					body     string
					isBase64 bool
				}
				got := make(chan seen, 1)
				// The handler echoes the decoded body back in base64.
				echo := func(body string, isBase64 bool) (string, error) {
					got <- seen{body, isBase64}
					raw, err := responseBody(body, isBase64)
					return base64.StdEncoding.EncodeToString(raw), err
				}
				cfg := Config{}
				if format == "2.0" {
					cfg.HTTP = func(_ context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
						b, err := echo(ev.Body, ev.IsBase64Encoded)
						return events.APIGatewayV2HTTPResponse{StatusCode: 200, Body: b, IsBase64Encoded: true}, err
					}
				} else {
					cfg.HTTPV1 = func(_ context.Context, ev events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
						b, err := echo(ev.Body, ev.IsBase64Encoded)
						return events.APIGatewayProxyResponse{StatusCode: 200, Body: b, IsBase64Encoded: true}, err
					}
				}
				e := startEmulator(t, cfg)
				header := http.Header{}
				if tt.contentType != "" {
					header.Set("Content-Type", tt.contentType)
				}
				resp, body := doRequest(t, httpClient(t), http.MethodPost, e.HTTPURL()+"/upload", header, tt.body)
				s := recv(t, got)
				if s.isBase64 != tt.wantBase64 {
					t.Errorf("isBase64Encoded %v, want %v", s.isBase64, tt.wantBase64)
				}
				if !tt.wantBase64 && s.body != string(tt.body) {
					t.Errorf("text body %q", s.body)
				}
				if resp.StatusCode != 200 || !bytes.Equal(body, tt.body) {
					t.Errorf("round trip: %d %q, want %q", resp.StatusCode, body, tt.body)
				}
			})
		}
	}
}

// TestHTTPAPIStage checks a named stage: only its paths are served, and
// the events keep the stage prefix.
func TestHTTPAPIStage(t *testing.T) {
	t.Parallel()
	v2 := make(chan events.APIGatewayV2HTTPRequest, 1)
	v1 := make(chan events.APIGatewayProxyRequest, 1)
	e2 := startEmulator(t, Config{HTTPStage: "prod", HTTP: func(_ context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		v2 <- ev
		return events.APIGatewayV2HTTPResponse{StatusCode: 200}, nil
	}})
	e1 := startEmulator(t, Config{HTTPStage: "prod", HTTPV1: func(_ context.Context, ev events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
		v1 <- ev
		return events.APIGatewayProxyResponse{StatusCode: 200}, nil
	}})
	client := httpClient(t)
	for _, e := range []*Emulator{e1, e2} {
		if !strings.HasSuffix(e.HTTPURL(), "/prod") {
			t.Fatalf("HTTPURL %q lacks the stage", e.HTTPURL())
		}
		if resp, _ := doRequest(t, client, http.MethodGet, e.HTTPURL()+"/tid/x?q=1", nil, nil); resp.StatusCode != 200 {
			t.Errorf("GET in stage: %d", resp.StatusCode)
		}
		outside := strings.TrimSuffix(e.HTTPURL(), "/prod") + "/tid/x"
		if resp, body := doRequest(t, client, http.MethodGet, outside, nil, nil); resp.StatusCode != 404 || string(body) != `{"message":"Not Found"}` {
			t.Errorf("GET outside the stage: %d %s", resp.StatusCode, body)
		}
		if n := e.Stats().HTTPInvocations; n != 1 {
			t.Errorf("%d invocations, want 1", n)
		}
	}
	ev2 := recv(t, v2)
	if ev2.RawPath != "/prod/tid/x" || ev2.RequestContext.HTTP.Path != "/prod/tid/x" || ev2.RequestContext.Stage != "prod" || ev2.RawQueryString != "q=1" {
		t.Errorf("2.0 event rawPath %q http.path %q stage %q query %q", ev2.RawPath, ev2.RequestContext.HTTP.Path, ev2.RequestContext.Stage, ev2.RawQueryString)
	}
	ev1 := recv(t, v1)
	if ev1.Path != "/prod/tid/x" || ev1.RequestContext.Path != "/prod/tid/x" || ev1.PathParameters["proxy"] != "tid/x" || ev1.RequestContext.Stage != "prod" {
		t.Errorf("1.0 event path %q rc.path %q proxy %q stage %q", ev1.Path, ev1.RequestContext.Path, ev1.PathParameters["proxy"], ev1.RequestContext.Stage)
	}
}

// TestHTTPAPIFailures checks API Gateway's own answers.
func TestHTTPAPIFailures(t *testing.T) {
	t.Parallel()
	ok := events.APIGatewayV2HTTPResponse{StatusCode: 200}
	tests := []struct {
		name            string
		handler         HTTPHandler
		timeout         time.Duration // IntegrationTimeout; zero for the default
		body            []byte
		contentType     string
		wantStatus      int
		wantBody        string
		wantInvocations int64
	}{
		{
			name: "integration timeout",
			handler: func(ctx context.Context, _ events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
				<-ctx.Done() // past the integration timeout; Close cancels it
				return ok, nil
			},
			timeout:    200 * time.Millisecond,
			wantStatus: 503, wantBody: `{"message":"Service Unavailable"}`, wantInvocations: 1,
		},
		{
			name: "handler error",
			handler: func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
				return ok, errors.New("dynamodb down")
			},
			wantStatus: 500, wantBody: `{"message":"Internal Server Error"}`, wantInvocations: 1,
		},
		{
			name: "statusCode unset",
			handler: func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
				return events.APIGatewayV2HTTPResponse{Body: "x"}, nil
			},
			wantStatus: 500, wantBody: `{"message":"Internal Server Error"}`, wantInvocations: 1,
		},
		{
			name: "bad base64",
			handler: func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
				return events.APIGatewayV2HTTPResponse{StatusCode: 200, Body: "!!", IsBase64Encoded: true}, nil
			},
			wantStatus: 500, wantBody: `{"message":"Internal Server Error"}`, wantInvocations: 1,
		},
		{
			name: "response over 6 MB",
			handler: func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
				return events.APIGatewayV2HTTPResponse{StatusCode: 200, Body: strings.Repeat("r", MaxInvokeResponseBytes)}, nil
			},
			wantStatus: 502, wantBody: `{"message":"Internal Server Error"}`, wantInvocations: 1,
		},
		{
			name: "request over 10 MB",
			handler: func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
				return ok, nil
			},
			body: bytes.Repeat([]byte("b"), MaxHTTPPayloadBytes+1), contentType: "text/plain",
			wantStatus: 413, wantBody: `{"message":"Request Entity Too Large"}`,
		},
		{
			name: "event over 6 MB after base64",
			handler: func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
				return ok, nil
			},
			body: bytes.Repeat([]byte{0xff}, 5<<20), contentType: "application/octet-stream",
			wantStatus: 413, wantBody: `{"message":"Request Entity Too Large"}`,
		},
		{
			name:       "no integration",
			wantStatus: 404, wantBody: `{"message":"Not Found"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := startEmulator(t, Config{HTTP: tt.handler, Limits: Limits{IntegrationTimeout: tt.timeout}})
			header := http.Header{}
			if tt.contentType != "" {
				header.Set("Content-Type", tt.contentType)
			}
			resp, body := doRequest(t, httpClient(t), http.MethodPost, e.HTTPURL()+"/x", header, tt.body)
			if resp.StatusCode != tt.wantStatus || string(body) != tt.wantBody {
				t.Errorf("got %d %.100s, want %d %s", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type %q", got)
			}
			if n := e.Stats().HTTPInvocations; n != tt.wantInvocations {
				t.Errorf("%d invocations, want %d", n, tt.wantInvocations)
			}
		})
	}
}

func TestStartValidation(t *testing.T) {
	t.Parallel()
	h2 := func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		return events.APIGatewayV2HTTPResponse{}, nil
	}
	h1 := func(context.Context, events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
		return events.APIGatewayProxyResponse{}, nil
	}
	for name, cfg := range map[string]Config{
		"both payload formats": {HTTP: h2, HTTPV1: h1},
		"bad stage":            {WebSocketStage: "a/b"},
		"bad http stage":       {HTTPStage: "$prod"},
		"negative timeout":     {Limits: Limits{IdleTimeout: -1}},
		"negative size":        {Limits: Limits{MaxFrameBytes: -1}},
	} {
		if e, err := Start(cfg); err == nil {
			e.Close()
			t.Errorf("%s: Start succeeded", name)
		}
	}
}
