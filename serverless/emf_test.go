package serverless

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/http-tunnel/tunnel/observability"
)

// emfDoc is an EMF line as CloudWatch reads it.
type emfDoc struct {
	AWS struct {
		Timestamp         int64 `json:"Timestamp"`
		CloudWatchMetrics []struct {
			Namespace  string     `json:"Namespace"`
			Dimensions [][]string `json:"Dimensions"`
			Metrics    []struct {
				Name string `json:"Name"`
				Unit string `json:"Unit"`
			} `json:"Metrics"`
		} `json:"CloudWatchMetrics"`
	} `json:"_aws"`
	members map[string]json.RawMessage
}

// parseEMF decodes the lines of b, failing the test on anything that is
// not an EMF document of the function's namespace.
func parseEMF(t *testing.T, b []byte) []emfDoc {
	t.Helper()
	var docs []emfDoc
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var d emfDoc
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("line %q: %v", sc.Bytes(), err)
		}
		if err := json.Unmarshal(sc.Bytes(), &d.members); err != nil {
			t.Fatal(err)
		}
		if len(d.AWS.CloudWatchMetrics) != 1 {
			t.Fatalf("line %s: %d metric directives, want 1", sc.Bytes(), len(d.AWS.CloudWatchMetrics))
		}
		dir := d.AWS.CloudWatchMetrics[0]
		if dir.Namespace != "HttpTunnel" {
			t.Errorf("namespace %q, want HttpTunnel", dir.Namespace)
		}
		if len(dir.Dimensions) != 1 {
			t.Fatalf("line %s: %d dimension sets, want 1", sc.Bytes(), len(dir.Dimensions))
		}
		// Every metric and every dimension the directive names is a
		// member of the document, as EMF requires.
		for _, m := range dir.Metrics {
			if _, ok := d.members[m.Name]; !ok {
				t.Errorf("line %s: metric %s has no value", sc.Bytes(), m.Name)
			}
		}
		for _, dim := range dir.Dimensions[0] {
			if _, ok := d.members[dim]; !ok {
				t.Errorf("line %s: dimension %s has no value", sc.Bytes(), dim)
			}
		}
		docs = append(docs, d)
	}
	return docs
}

func (d emfDoc) unit(name string) string {
	for _, m := range d.AWS.CloudWatchMetrics[0].Metrics {
		if m.Name == name {
			return m.Unit
		}
	}
	return ""
}

func (d emfDoc) number(t *testing.T, name string) float64 {
	t.Helper()
	var v float64
	if err := json.Unmarshal(d.members[name], &v); err != nil {
		t.Fatalf("%s = %s: %v", name, d.members[name], err)
	}
	return v
}

func TestEMFExporter(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	mp, in := emfInstruments(t, &buf)
	ctx := t.Context()
	get := metric.WithAttributes(attribute.String("http.request.method", "GET"))
	post := metric.WithAttributes(attribute.String("http.request.method", "POST"))
	in.RequestForwarded.Add(ctx, 2, get)
	in.RequestForwarded.Add(ctx, 1, post)
	in.BytesIn.Add(ctx, 1500)
	for _, ms := range []float64{3, 40, 41} {
		in.RequestLatency.Record(ctx, ms, get)
	}
	in.ErrorOccurred.Add(ctx, 1, metric.WithAttributes(observability.AttrCode.String("tunnel_not_found")))
	in.ErrorOccurred.Add(ctx, 2, metric.WithAttributes(observability.AttrCode.String("gateway_timeout")))

	before := time.Now().UnixMilli()
	if err := mp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	docs := parseEMF(t, buf.Bytes())
	if len(docs) != 3 {
		t.Fatalf("%d lines, want 3 (no dimensions, and one per error code):\n%s", len(docs), buf.Bytes())
	}

	plain := docs[0]
	if dims := plain.AWS.CloudWatchMetrics[0].Dimensions[0]; len(dims) != 0 {
		t.Errorf("first line has dimensions %q, want none", dims)
	}
	if ts := plain.AWS.Timestamp; ts < before || ts > time.Now().UnixMilli() {
		t.Errorf("Timestamp %d, want the flush time", ts)
	}
	tests := []struct {
		name  string
		value float64
		unit  string
	}{
		{observability.MetricRequestForwarded, 3, "Count"}, // summed over methods
		{observability.MetricBytesIn, 1500, "Bytes"},
	}
	for _, tt := range tests {
		if got := plain.number(t, tt.name); got != tt.value {
			t.Errorf("%s = %v, want %v", tt.name, got, tt.value)
		}
		if got := plain.unit(tt.name); got != tt.unit {
			t.Errorf("%s unit %q, want %q", tt.name, got, tt.unit)
		}
	}
	var lat struct {
		Values []float64
		Counts []uint64
		Min    float64
		Max    float64
		Sum    float64
		Count  uint64
	}
	if err := json.Unmarshal(plain.members[observability.MetricRequestLatency], &lat); err != nil {
		t.Fatalf("RequestLatency = %s: %v", plain.members[observability.MetricRequestLatency], err)
	}
	if lat.Min != 3 || lat.Max != 41 || lat.Sum != 84 || lat.Count != 3 {
		t.Errorf("RequestLatency = %+v, want min 3, max 41, sum 84, count 3", lat)
	}
	// Each non-empty bucket is represented by its midpoint: 3 is in
	// (2.5, 5], 40 and 41 are in (25, 50].
	if len(lat.Values) != 2 || lat.Values[0] != 3.75 || lat.Values[1] != 37.5 ||
		len(lat.Counts) != 2 || lat.Counts[0] != 1 || lat.Counts[1] != 2 {
		t.Errorf("RequestLatency values %v counts %v, want [3.75 37.5] [1 2]", lat.Values, lat.Counts)
	}
	if got := plain.unit(observability.MetricRequestLatency); got != "Milliseconds" {
		t.Errorf("RequestLatency unit %q", got)
	}

	errs := map[string]float64{}
	for _, d := range docs[1:] {
		dims := d.AWS.CloudWatchMetrics[0].Dimensions[0]
		if len(dims) != 1 || dims[0] != "error.code" {
			t.Fatalf("error line dimensions %q, want [error.code]", dims)
		}
		if ms := d.AWS.CloudWatchMetrics[0].Metrics; len(ms) != 1 || ms[0].Name != "ErrorOccurred" || ms[0].Unit != "Count" {
			t.Errorf("error line metrics %+v", ms)
		}
		var code string
		json.Unmarshal(d.members["error.code"], &code)
		errs[code] = d.number(t, "ErrorOccurred")
	}
	if len(errs) != 2 || errs["tunnel_not_found"] != 1 || errs["gateway_timeout"] != 2 {
		t.Errorf("ErrorOccurred by error.code = %v", errs)
	}

	// Counters are deltas: a flush after an idle invocation writes nothing.
	buf.Reset()
	if err := mp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Errorf("idle flush wrote %s", buf.Bytes())
	}
	in.RequestForwarded.Add(ctx, 1, get)
	if err := mp.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	docs = parseEMF(t, buf.Bytes())
	if len(docs) != 1 || docs[0].number(t, observability.MetricRequestForwarded) != 1 {
		t.Errorf("second flush: %s, want RequestForwarded 1", buf.Bytes())
	}
}

// TestFlushAfterInvocation checks that the wrapped handler leaves its
// metrics on the writer by the time the invocation returns.
func TestFlushAfterInvocation(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	mp, in := emfInstruments(t, &buf)
	invoke := FlushAfter(func(ctx context.Context, raw json.RawMessage) (any, error) {
		in.ErrorOccurred.Add(ctx, 1, metric.WithAttributes(observability.AttrCode.String("rate_limited")))
		return "ok", nil
	}, mp.ForceFlush, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if resp, err := invoke(t.Context(), json.RawMessage(`{}`)); resp != "ok" || err != nil {
		t.Fatalf("invoke = %v, %v", resp, err)
	}
	docs := parseEMF(t, buf.Bytes())
	if len(docs) != 1 || docs[0].number(t, "ErrorOccurred") != 1 {
		t.Fatalf("after the invocation: %s, want ErrorOccurred 1", buf.Bytes())
	}
}

func TestEMFBucketValue(t *testing.T) {
	t.Parallel()
	bounds := []float64{1, 10, 100}
	inf := math.Inf(1)
	tests := []struct {
		i      int
		lo, hi float64
		want   float64
	}{
		{0, 0.2, 500, 0.2},  // open lower bucket: the minimum
		{1, 0.2, 500, 5.5},  // midpoint
		{2, 20, 30, 30},     // midpoint 55 clamped to the maximum
		{3, 0.2, 500, 500},  // open upper bucket: the maximum
		{3, -inf, inf, 100}, // no extrema: the nearest bound
		{0, -inf, inf, 1},   // likewise
	}
	for _, tt := range tests {
		if got := bucketValue(bounds, tt.i, tt.lo, tt.hi); got != tt.want {
			t.Errorf("bucketValue(%v, %d, %v, %v) = %v, want %v", bounds, tt.i, tt.lo, tt.hi, got, tt.want)
		}
	}
}

func TestEMFExporterEmpty(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	e := NewEMFExporter(&buf)
	if err := e.Export(t.Context(), &metricdata.ResourceMetrics{}); err != nil || buf.Len() != 0 {
		t.Fatalf("Export of nothing: %v, wrote %q", err, buf.Bytes())
	}
	e.Shutdown(t.Context())
	if err := e.Export(t.Context(), &metricdata.ResourceMetrics{}); !errors.Is(err, ErrExporterShutdown) {
		t.Fatalf("Export after Shutdown: %v, want ErrExporterShutdown", err)
	}
}

// One recorded value, the usual histogram of one invocation, is written
// exactly.
func TestEMFSingleValueExact(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	mp, in := emfInstruments(t, &buf)
	in.RequestLatency.Record(t.Context(), 137)
	if err := mp.ForceFlush(t.Context()); err != nil {
		t.Fatal(err)
	}
	docs := parseEMF(t, buf.Bytes())
	if len(docs) != 1 {
		t.Fatalf("%d lines, want 1", len(docs))
	}
	var lat struct {
		Values []float64
		Counts []uint64
	}
	json.Unmarshal(docs[0].members[observability.MetricRequestLatency], &lat)
	if len(lat.Values) != 1 || lat.Values[0] != 137 || len(lat.Counts) != 1 || lat.Counts[0] != 1 {
		t.Errorf("RequestLatency = %s, want the value 137 once", docs[0].members[observability.MetricRequestLatency])
	}
}

// emfInstruments returns the gateway's instruments on a meter provider
// whose EMF exporter writes to w, shut down when the test ends.
func emfInstruments(t *testing.T, w io.Writer) (*sdkmetric.MeterProvider, *observability.Instruments) {
	t.Helper()
	mp := NewMeterProvider(w)
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	in, err := observability.NewInstruments(mp)
	if err != nil {
		t.Fatal(err)
	}
	return mp, in
}
