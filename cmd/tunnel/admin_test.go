package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/observability"
)

// TestGatewayAdmin runs a gateway with --admin-listen and an agent, sends
// public requests through the tunnel and to an unknown tunnel, and checks
// /tunnels, /healthz and what /metrics reports about that traffic.
func TestGatewayAdmin(t *testing.T) {
	t.Parallel()
	const name = "e2e-metrics"
	gw, addr := startGateway(t, nil,
		"--listen", "127.0.0.1:0", "--insecure-no-auth", "--log-format", "json",
		"--admin-listen", "127.0.0.1:0", "--metrics-per-tunnel")
	if gw.admin == "" {
		t.Fatalf("the admin listener did not report its address; stdout:\n%s", gw.stdout)
	}
	if _, ok := gw.stdout.find("admin listening on " + gw.admin); !ok {
		t.Errorf("gateway stdout does not give the admin address:\n%s", gw.stdout)
	}
	admin := "http://" + gw.admin
	ag, publicURL := startAgent(t, nil, "--gateway", "http://"+addr, "--name", name, localService(t).URL)

	if status, body := get(t, admin+"/healthz"); status != http.StatusOK || body != "ok" {
		t.Errorf("GET /healthz = %d %q; want 200 ok", status, body)
	}
	checkTunnels(t, admin, name, publicURL)

	// The public requests share one connection, which the server reads a
	// request at a time: once the last answer is in, the handlers of all
	// the requests before it have returned, and recorded their metrics.
	// They go to the tunnel's path URL: its subdomain URL would be a
	// connection of its own.
	pub := newSequentialClient(t)
	pathURL := "http://" + addr + "/" + name
	const gets = 3
	for range gets {
		pub.expect(t, http.MethodGet, pathURL+"/hello", "", http.StatusOK)
	}
	const payload = "posted body"
	pub.expect(t, http.MethodPost, pathURL+"/upload", payload, http.StatusOK)
	pub.expect(t, http.MethodGet, "http://"+addr+"/no-such-tunnel/x", "", http.StatusNotFound)
	pub.expect(t, http.MethodGet, "http://"+addr+"/no-such-tunnel/y", "", http.StatusNotFound)

	families := scrape(t, admin+"/metrics")
	for _, m := range []string{
		observability.MetricRequestForwarded, observability.MetricErrorOccurred, observability.MetricRequestLatency,
		observability.MetricConnectionEstablished, observability.MetricActiveTunnels,
		observability.MetricBytesIn, observability.MetricBytesOut,
	} {
		if families[promMetrics[m].name] == nil {
			t.Errorf("/metrics has no %s family (%s)", promMetrics[m].name, m)
		}
	}
	atLeast := func(metric string, labels map[string]string, want float64) {
		t.Helper()
		if got := seriesSum(families[promMetrics[metric].name], labels); got < want {
			t.Errorf("%s%v = %v; want at least %v", promMetrics[metric].name, labels, got, want)
		}
	}
	atLeast(observability.MetricRequestForwarded, map[string]string{"http_request_method": "GET"}, gets)
	atLeast(observability.MetricRequestForwarded, map[string]string{"http_request_method": "POST"}, 1)
	atLeast(observability.MetricRequestForwarded, map[string]string{"tunnel_id": name}, gets+1) // --metrics-per-tunnel
	atLeast(observability.MetricErrorOccurred, map[string]string{"error_code": string(tunnel.CodeTunnelNotFound)}, 1)
	atLeast(observability.MetricRequestLatency, nil, gets+1)
	atLeast(observability.MetricConnectionEstablished, nil, 1)
	atLeast(observability.MetricBytesIn, nil, float64(len(payload)))
	atLeast(observability.MetricBytesOut, nil, float64(gets*len("local answered GET /hello")))
	if got := seriesSum(families[promMetrics[observability.MetricActiveTunnels].name], nil); got != 1 {
		t.Errorf("ActiveTunnels = %v; want 1", got)
	}
	if got := seriesSum(families["target_info"], map[string]string{"service_name": gatewayService}); got != 1 {
		t.Errorf("target_info{service_name=%q} = %v; want 1", gatewayService, got)
	}

	if err := ag.stop(t); err != nil {
		t.Errorf("agent: %v", err)
	}
	if err := gw.stop(t); err != nil {
		t.Errorf("gateway: %v", err)
	}
}

// checkTunnels checks that /tunnels lists the one tunnel id, at url.
func checkTunnels(t *testing.T, admin, id, url string) {
	t.Helper()
	status, body := get(t, admin+"/tunnels")
	var list []map[string]any
	if err := json.Unmarshal([]byte(body), &list); status != http.StatusOK || err != nil {
		t.Fatalf("GET /tunnels = %d %q (%v); want 200 and a JSON array", status, body, err)
	}
	if len(list) != 1 || list[0]["id"] != id || list[0]["url"] != url || list[0]["connection_id"] == "" {
		t.Fatalf("GET /tunnels = %s; want the tunnel %s at %s", body, id, url)
	}
	at, err := time.Parse(time.RFC3339Nano, list[0]["connected_at"].(string))
	if err != nil || time.Since(at) < 0 || time.Since(at) > time.Minute {
		t.Errorf("connected_at = %v (%v); want the time the agent connected", list[0]["connected_at"], err)
	}
}

// sequentialClient sends requests one after the other on a single
// connection, and fails the test if one needs a new connection.
type sequentialClient struct {
	client *http.Client
	sent   int
}

func newSequentialClient(t *testing.T) *sequentialClient {
	tr := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &sequentialClient{client: &http.Client{Transport: tr, Timeout: waitTimeout}}
}

// expect sends a request and checks its status.
func (c *sequentialClient) expect(t *testing.T, method, url, body string, want int) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	reused := false
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
	}))
	resp, err := c.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != want {
		t.Fatalf("%s %s = %d %q (%v); want %d", method, url, resp.StatusCode, got, err, want)
	}
	if c.sent > 0 && !reused {
		t.Fatalf("%s %s went on a new connection; the test relies on one", method, url)
	}
	c.sent++
}

// scrape GETs a Prometheus text exposition and parses it.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	resp, err := (&http.Client{Transport: tr, Timeout: waitTimeout}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET %s = %d (%s); want 200 and the Prometheus text format", url, resp.StatusCode, ct)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: not Prometheus text: %v", url, err)
	}
	return families
}

// seriesSum adds up the series of f whose labels include labels: counter
// and gauge values, histogram sample counts. A missing family sums to 0.
func seriesSum(f *dto.MetricFamily, labels map[string]string) float64 {
	var sum float64
	for _, m := range f.GetMetric() {
		matched := 0
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; ok && v == l.GetValue() {
				matched++
			}
		}
		if matched != len(labels) {
			continue
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			sum += m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			sum += m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// TestAdminHealthzDraining checks that /healthz turns 503 once shutdown
// starts, so that load balancers stop sending requests to the node.
func TestAdminHealthzDraining(t *testing.T) {
	t.Parallel()
	a := &admin{gateway: &tunnel.Server{}}
	h := a.handler()
	for _, tt := range []struct {
		draining bool
		want     int
		body     string
	}{{false, http.StatusOK, "ok"}, {true, http.StatusServiceUnavailable, "shutting down"}} {
		a.draining.Store(tt.draining)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		if rec.Code != tt.want || rec.Body.String() != tt.body {
			t.Errorf("draining %v: /healthz = %d %q; want %d %q", tt.draining, rec.Code, rec.Body, tt.want, tt.body)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/healthz", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz = %d; want 405", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/tunnels", nil))
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != "[]" {
		t.Errorf("/tunnels of an idle gateway = %d %q; want 200 []", rec.Code, rec.Body)
	}
}
