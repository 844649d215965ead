package backendtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/internal/leakcheck"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m)
}

// recorder is a testing.TB that records Skipf and Fatalf instead of
// stopping the goroutine, so that the helper's choice can be observed.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// tcpServer serves every connection with handle, which need not close it,
// until the test ends; it returns the server's address. Cleanup closes the
// listener and the connections and waits for every handler to return.
func tcpServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Go(func() {
				defer conn.Close()
				handle(conn)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// Servers that are not the backend, each a way a port can be taken.
var (
	// echo sends back whatever it receives.
	echo = func(c net.Conn) { io.Copy(c, c) }
	// garbage answers anything with bytes of no protocol, then hangs up.
	garbage = func(c net.Conn) {
		c.Read(make([]byte, 64))
		c.Write([]byte("\x00\xff\x13garbage\x7f\x80 no protocol here"))
	}
	// silent accepts and never says a word.
	silent = func(c net.Conn) { io.Copy(io.Discard, c) }
	// hangUp closes the connection at once.
	hangUp = func(net.Conn) {}
)

// redisReplying returns a handler that reads a command and answers reply,
// as a Redis (or something like one) would.
func redisReplying(reply string) func(net.Conn) {
	return func(c net.Conn) {
		buf := make([]byte, len(redisPing))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != redisPing {
			c.Write([]byte("-ERR the probe did not send PING in RESP\r\n"))
			return
		}
		c.Write([]byte(reply))
	}
}

// plainHTTP answers every request as python3 -m http.server answers a
// POST: 501 and an HTML page.
func plainHTTP(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html;charset=utf-8")
		w.WriteHeader(http.StatusNotImplemented)
		io.WriteString(w, "<!DOCTYPE HTML>\n<html><body><h1>Error response</h1><p>Error code: 501</p></body></html>\n")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// sigV4Header is the form of the Authorization header the probe sends.
var sigV4Header = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=test/\d{8}/us-east-1/dynamodb/aws4_request, ` +
	`SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=[0-9a-f]{64}$`)

// fakeDynamo answers a well-formed ListTables call with status and body,
// and anything else with 400 and plain text, which the probe refuses: so
// a probe that passes against it sent the call DynamoDB expects.
func fakeDynamo(t *testing.T, status int, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var problems []string
		check := func(what, got string, ok bool) {
			if !ok {
				problems = append(problems, fmt.Sprintf("%s %q", what, got))
			}
		}
		check("method", r.Method, r.Method == http.MethodPost)
		check("path", r.URL.Path, r.URL.Path == "/")
		check("X-Amz-Target", r.Header.Get("X-Amz-Target"), r.Header.Get("X-Amz-Target") == dynamoTarget)
		check("Content-Type", r.Header.Get("Content-Type"), r.Header.Get("Content-Type") == dynamoContentType)
		check("X-Amz-Date", r.Header.Get("X-Amz-Date"), len(r.Header.Get("X-Amz-Date")) == len("20060102T150405Z"))
		check("Authorization", r.Header.Get("Authorization"), sigV4Header.MatchString(r.Header.Get("Authorization")))
		check("body", string(b), string(b) == dynamoBody)
		if problems != nil {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, "bad ListTables call: "+strings.Join(problems, ", "))
			return
		}
		w.Header().Set("Content-Type", dynamoContentType)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// wantProbe checks a probe's verdict: nil for want "", or else a
// *probeError whose message starts with want and whose answered flag
// agrees.
func wantProbe(t *testing.T, err error, want string, answered bool) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("probe = %v, want the backend found", err)
		}
		return
	}
	var pe *probeError
	if !errors.As(err, &pe) {
		t.Fatalf("probe = %v (%T), want a *probeError", err, err)
	}
	if !strings.HasPrefix(err.Error(), want) || pe.answered != answered {
		t.Errorf("probe = %q (answered %v), want a message starting %q (answered %v)", err, pe.answered, want, answered)
	}
}

// TestProbeRedis checks the decision on what answers at a Redis address.
func TestProbeRedis(t *testing.T) {
	t.Parallel()
	httpSrv := plainHTTP(t)
	closed := closedAddr(t)
	tests := []struct {
		name     string
		addr     string
		timeout  time.Duration // 0 means probeTimeout
		want     string        // message prefix; "" means found
		answered bool
	}{
		{name: "Pong", addr: tcpServer(t, redisReplying("+PONG\r\n"))},
		{name: "Closed", addr: closed, want: "no Redis at " + closed + ": "},
		{name: "PlainHTTP", addr: httpSrv.Listener.Addr().String(), want: " answered, but not as Redis: reply to PING is \"HTTP/1.1 400", answered: true},
		{name: "Echo", addr: tcpServer(t, echo), want: " answered, but not as Redis: reply to PING is \"*1\\r\\n\"", answered: true},
		{name: "Garbage", addr: tcpServer(t, garbage), want: " answered, but not as Redis: reply to PING is \"\\x00\\xff", answered: true},
		{name: "HangUp", addr: tcpServer(t, hangUp), want: " answered, but not as Redis: ", answered: true},
		{name: "HangUpAfterPING", addr: tcpServer(t, redisReplying("")), want: " answered, but not as Redis: connection closed without a reply", answered: true},
		{name: "Silent", addr: tcpServer(t, silent), timeout: 100 * time.Millisecond, want: " answered, but not as Redis: no reply to PING: ", answered: true},
		{name: "NoAuth", addr: tcpServer(t, redisReplying("-NOAUTH Authentication required.\r\n")), want: " answered, but not as Redis: reply to PING is \"-NOAUTH", answered: true},
		{name: "PongWithoutNewline", addr: tcpServer(t, redisReplying("+PONG")), want: " answered, but not as Redis: reply to PING is \"+PONG\"", answered: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), cmp(tt.timeout, probeTimeout))
			defer cancel()
			want := tt.want
			if strings.HasPrefix(want, " ") {
				want = tt.addr + want
			}
			wantProbe(t, probeRedis(ctx, tt.addr), want, tt.answered)
		})
	}
}

// TestProbeDynamo checks the decision on what answers at a DynamoDB
// endpoint.
func TestProbeDynamo(t *testing.T) {
	t.Parallel()
	closed := closedAddr(t)
	tests := []struct {
		name     string
		endpoint string
		timeout  time.Duration
		want     string // message prefix after the host:port; "" means found
		answered bool
	}{
		{name: "TableNames", endpoint: fakeDynamo(t, http.StatusOK, `{"TableNames":["a","b"]}`).URL},
		{name: "NoTables", endpoint: fakeDynamo(t, http.StatusOK, `{"TableNames":[]}`).URL},
		{name: "DynamoDBError", endpoint: fakeDynamo(t, http.StatusBadRequest,
			`{"__type":"com.amazon.coral.service#UnrecognizedClientException","message":"The security token included in the request is invalid."}`).URL},
		{name: "Closed", endpoint: "http://" + closed, want: "no DynamoDB at " + closed + ": "},
		{name: "NotAURL", endpoint: closed, want: "no DynamoDB at " + closed + ": endpoint "},
		{name: "PlainHTTP", endpoint: plainHTTP(t).URL, want: " answered, but not as DynamoDB: HTTP 501 Not Implemented (text/html), not a JSON object: \"<!DOCTYPE", answered: true},
		{name: "OtherJSON", endpoint: fakeDynamo(t, http.StatusOK, `{"status":"ok"}`).URL, want: " answered, but not as DynamoDB: HTTP 200 OK, JSON without TableNames or __type", answered: true},
		{name: "TableNamesNotAList", endpoint: fakeDynamo(t, http.StatusOK, `{"TableNames":"a"}`).URL, want: " answered, but not as DynamoDB: HTTP 200 OK, TableNames is not a list", answered: true},
		{name: "OtherErrorType", endpoint: fakeDynamo(t, http.StatusBadRequest, `{"__type":"BadRequest"}`).URL, want: " answered, but not as DynamoDB: HTTP 400 Bad Request, __type \"\\\"BadRequest\\\"\" is not a DynamoDB error", answered: true},
		{name: "Echo", endpoint: "http://" + tcpServer(t, echo), want: " answered, but not as DynamoDB: ", answered: true},
		{name: "Garbage", endpoint: "http://" + tcpServer(t, garbage), want: " answered, but not as DynamoDB: ", answered: true},
		{name: "HangUp", endpoint: "http://" + tcpServer(t, hangUp), want: " answered, but not as DynamoDB: ", answered: true},
		{name: "Silent", endpoint: "http://" + tcpServer(t, silent), timeout: 100 * time.Millisecond, want: " answered, but not as DynamoDB: ", answered: true},
		{name: "RedisLike", endpoint: "http://" + tcpServer(t, redisReplying("+PONG\r\n")), want: " answered, but not as DynamoDB: ", answered: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), cmp(tt.timeout, probeTimeout))
			defer cancel()
			want := tt.want
			if strings.HasPrefix(want, " ") {
				u, err := url.Parse(tt.endpoint)
				if err != nil {
					t.Fatal(err)
				}
				want = u.Host + want
			}
			wantProbe(t, probeDynamo(ctx, tt.endpoint), want, tt.answered)
		})
	}
}

// cmp returns d, or def when d is zero.
func cmp(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// TestFind checks what a test that needs a backend sees: the address when
// the backend answers; otherwise a skip, or in CI a failure, whose message
// says what answered instead and which variable to set. It cannot run in
// parallel: it sets environment variables.
func TestFind(t *testing.T) {
	const env = "BACKENDTEST_ADDR"
	redisAddr := tcpServer(t, redisReplying("+PONG\r\n"))
	dynamoURL := fakeDynamo(t, http.StatusOK, `{"TableNames":[]}`).URL
	httpSrv := plainHTTP(t)
	httpAddr := httpSrv.Listener.Addr().String()
	closed := closedAddr(t)

	tests := []struct {
		name             string
		backend          backend
		env, ci          string
		fallback         string
		want             string
		skipped, failed  bool
		msgStart, msgHas string
	}{
		{name: "RedisFallback", backend: redis, fallback: redisAddr, want: redisAddr},
		{name: "RedisEnvOverridesFallback", backend: redis, env: redisAddr, fallback: closed, want: redisAddr},
		{name: "DynamoEnv", backend: dynamo, env: dynamoURL, fallback: "http://" + closed, want: dynamoURL},
		{name: "DynamoIsPlainHTTPSkips", backend: dynamo, env: httpSrv.URL, skipped: true,
			msgStart: httpAddr + " answered, but not as DynamoDB: HTTP 501", msgHas: env + "=\"" + httpSrv.URL + "\""},
		{name: "DynamoIsPlainHTTPFailsInCI", backend: dynamo, env: httpSrv.URL, ci: "true", failed: true,
			msgStart: httpAddr + " answered, but not as DynamoDB: HTTP 501"},
		{name: "RedisIsPlainHTTPSkips", backend: redis, env: httpAddr, skipped: true,
			msgStart: httpAddr + " answered, but not as Redis: ", msgHas: "set it to the host:port of a Redis server"},
		{name: "RedisIsDynamoFailsInCI", backend: redis, env: strings.TrimPrefix(dynamoURL, "http://"), ci: "true", failed: true,
			msgStart: strings.TrimPrefix(dynamoURL, "http://") + " answered, but not as Redis: "},
		{name: "DownSkips", backend: redis, fallback: closed, skipped: true, msgStart: "no Redis at " + closed},
		{name: "DownSkipsWhenCINotTrue", backend: redis, fallback: closed, ci: "1", skipped: true, msgStart: "no Redis at " + closed},
		{name: "DownFailsInCI", backend: dynamo, env: "http://" + closed, ci: "true", failed: true, msgStart: "no DynamoDB at " + closed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(env, tt.env)
			t.Setenv("CI", tt.ci)
			b := tt.backend
			b.env, b.fallback = env, tt.fallback
			r := &recorder{TB: t}
			got := find(r, new(probeCache), b)
			if got != tt.want || r.skipped != tt.skipped || r.failed != tt.failed {
				t.Fatalf("find = %q (skipped %v, failed %v), want %q (skipped %v, failed %v); message %q",
					got, r.skipped, r.failed, tt.want, tt.skipped, tt.failed, r.msg)
			}
			if !strings.HasPrefix(r.msg, tt.msgStart) || !strings.Contains(r.msg, tt.msgHas) {
				t.Errorf("message %q, want one starting %q and containing %q", r.msg, tt.msgStart, tt.msgHas)
			}
		})
	}
}

// TestProbeOnce checks that each address is probed once, however many
// tests ask and however concurrently, and that a refusal is remembered as
// well as a success.
func TestProbeOnce(t *testing.T) {
	t.Parallel()
	var probed sync.Map // addr -> *atomic.Int32
	b := backend{name: "Fake", probe: func(_ context.Context, addr string) error {
		n, _ := probed.LoadOrStore(addr, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		if addr == "down" {
			return &probeError{backend: "Fake", addr: addr, err: errors.New("refused")}
		}
		return nil
	}}
	var c probeCache
	var wg sync.WaitGroup
	for range 20 {
		for _, addr := range []string{"up", "down"} {
			wg.Go(func() {
				err := c.check(b, addr)
				if (err == nil) != (addr == "up") {
					t.Errorf("check(%s) = %v", addr, err)
				}
			})
		}
	}
	wg.Wait()
	for _, addr := range []string{"up", "down"} {
		n, _ := probed.Load(addr)
		if got := n.(*atomic.Int32).Load(); got != 1 {
			t.Errorf("%s probed %d times, want 1", addr, got)
		}
	}
}

// TestRealServers checks that the servers the backend tests use are found
// (and, in CI, that they are there): each probe, run again directly,
// accepts them.
func TestRealServers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		find  func(testing.TB) string
		probe func(context.Context, string) error
	}{
		{"Redis", RedisAddr, probeRedis},
		{"DynamoDB", DynamoEndpoint, probeDynamo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr := tt.find(t)
			ctx, cancel := context.WithTimeout(t.Context(), probeTimeout)
			defer cancel()
			if err := tt.probe(ctx, addr); err != nil {
				t.Errorf("%s at %s: %v", tt.name, addr, err)
			}
		})
	}
}

// TestSign pins the signature against AWS's published Signature Version 4
// test vector get-vanilla and a query-string case computed by the AWS SDK
// for Go's signer, so that the probe's Authorization header is a valid
// signature, not only of the right form.
func TestSign(t *testing.T) {
	t.Parallel()
	signer := sigV4{accessKey: "AKIDEXAMPLE", secretKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", region: "us-east-1", service: "service"}
	now := time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)
	tests := []struct {
		name, url, want string
	}{
		{"GetVanilla", "http://example.amazonaws.com/",
			"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
		{"PathAndQuery", "http://example.amazonaws.com/a%20b?z=1&a=2",
			"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=e9d47cc65793ec8ddcd6c12b268a3edd9dc193cacab58d8ad917875d1a4b9539"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(http.MethodGet, tt.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			signer.sign(req, nil, now)
			if got := req.Header.Get("X-Amz-Date"); got != "20150830T123600Z" {
				t.Errorf("X-Amz-Date = %q", got)
			}
			if got := req.Header.Get("Authorization"); got != tt.want {
				t.Errorf("Authorization =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}
