package serverless

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/http-tunnel/tunnel/observability"
)

// EMFNamespace is the CloudWatch namespace of the function's metrics. The
// SAM template's dashboard reads them from it.
const EMFNamespace = "HttpTunnel"

// emfDimensions are the data point attributes that become CloudWatch
// dimensions, by metric name. Every other attribute is aggregated away: a
// metric not listed here is published without dimensions.
var emfDimensions = map[string][]string{
	observability.MetricErrorOccurred: {string(observability.AttrCode)},
}

// EMFExporter is an OpenTelemetry metric exporter that writes CloudWatch
// Embedded Metric Format: JSON lines on a writer, which Lambda sends to
// CloudWatch Logs, where CloudWatch extracts the metrics. It needs no
// network and no credentials.
//
// Each Export writes one line for the metrics without dimensions and one
// line per distinct set of dimension values (an EMF document holds one
// value per dimension, so two error codes take two lines). A line is
//
//	{"_aws":{"Timestamp":<ms>,"CloudWatchMetrics":[{"Namespace":"HttpTunnel",
//	  "Dimensions":[["error.code"]],"Metrics":[{"Name":"ErrorOccurred","Unit":"Count"}]}]},
//	 "error.code":"tunnel_not_found","ErrorOccurred":1}
//
// Dimensions is [[]] on the line without dimensions. Counters are written
// as the sum of the interval: the exporter asks for delta temporality for
// counters and histograms, so each Export reports what happened since the
// previous one (up-down counters and gauges stay cumulative, their value is
// a level). A histogram is written as
//
//	{"Values":[...],"Counts":[...],"Min":m,"Max":M,"Sum":s,"Count":n}
//
// the form CloudWatch accepts for distributions: Min, Max, Sum and Count
// are exact, so are the Minimum, Maximum, Sum, SampleCount and Average
// statistics; Values holds one representative per non-empty bucket (the
// bucket's midpoint, clamped to [Min, Max]; the open buckets use Min and
// Max), with its count in Counts, so percentiles are approximate. A single
// recorded value, the usual case in one invocation, is exact. Units map
// from OpenTelemetry's: ms to Milliseconds, s to Seconds, By to Bytes,
// annotations such as {request} to Count.
//
// The zero value is not usable: use NewEMFExporter. An EMFExporter is safe
// for concurrent use; each line is written with one Write call.
type EMFExporter struct {
	mu       sync.Mutex
	w        io.Writer
	shutdown bool

	// now is the clock of the Timestamp; a seam for tests.
	now func() time.Time
}

var _ sdkmetric.Exporter = (*EMFExporter)(nil)

// NewEMFExporter returns an exporter that writes to w, which is stdout in
// the function (Lambda forwards stdout to CloudWatch Logs).
func NewEMFExporter(w io.Writer) *EMFExporter {
	return &EMFExporter{w: w, now: time.Now}
}

// Temporality implements sdkmetric.Exporter: delta for counters and
// histograms, cumulative for up-down counters and gauges.
func (e *EMFExporter) Temporality(k sdkmetric.InstrumentKind) metricdata.Temporality {
	switch k {
	case sdkmetric.InstrumentKindUpDownCounter, sdkmetric.InstrumentKindObservableUpDownCounter, sdkmetric.InstrumentKindObservableGauge, sdkmetric.InstrumentKindGauge:
		return metricdata.CumulativeTemporality
	}
	return metricdata.DeltaTemporality
}

// Aggregation implements sdkmetric.Exporter with the SDK's defaults.
func (e *EMFExporter) Aggregation(k sdkmetric.InstrumentKind) sdkmetric.Aggregation {
	return sdkmetric.DefaultAggregationSelector(k)
}

// ErrExporterShutdown is returned by Export after Shutdown.
var ErrExporterShutdown = errors.New("emf: exporter is shut down")

// Export implements sdkmetric.Exporter: it writes rm as EMF lines. It
// writes nothing when rm holds no data point.
func (e *EMFExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.shutdown {
		return ErrExporterShutdown
	}
	docs := emfDocuments(rm, e.now())
	if len(docs) == 0 {
		return nil
	}
	for _, d := range docs {
		b, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("emf: encode: %w", err)
		}
		// One Write per line, so that a line never interleaves with
		// other output on the same writer.
		if _, err := e.w.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("emf: write: %w", err)
		}
	}
	return nil
}

// ForceFlush implements sdkmetric.Exporter. Export writes synchronously,
// so there is nothing to flush.
func (e *EMFExporter) ForceFlush(ctx context.Context) error { return ctx.Err() }

// Shutdown implements sdkmetric.Exporter; later Exports fail.
func (e *EMFExporter) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.shutdown = true
	e.mu.Unlock()
	return ctx.Err()
}

// emfGroup collects the metrics of one EMF document: one set of dimension
// values.
type emfGroup struct {
	dimNames  []string
	dimValues []string
	units     map[string]string
	sums      map[string]float64
	hists     map[string]*emfHistogram
	order     []string // metric names in first-seen order
}

func (g *emfGroup) add(name, unit string) bool {
	if _, ok := g.units[name]; ok {
		return false
	}
	g.units[name] = unit
	g.order = append(g.order, name)
	return true
}

// emfHistogram is a histogram merged over data points.
type emfHistogram struct {
	counts   map[float64]uint64 // representative value -> count
	min, max float64
	sum      float64
	count    uint64
}

func (h *emfHistogram) MarshalJSON() ([]byte, error) {
	values := make([]float64, 0, len(h.counts))
	for v := range h.counts {
		values = append(values, v)
	}
	slices.Sort(values)
	lo, hi := h.min, h.max
	if math.IsInf(lo, 1) && len(values) > 0 {
		// No data point had extrema: the representatives bound them.
		lo, hi = values[0], values[len(values)-1]
	}
	counts := make([]uint64, len(values))
	for i, v := range values {
		counts[i] = h.counts[v]
	}
	return json.Marshal(struct {
		Values []float64 `json:"Values"`
		Counts []uint64  `json:"Counts"`
		Min    float64   `json:"Min"`
		Max    float64   `json:"Max"`
		Sum    float64   `json:"Sum"`
		Count  uint64    `json:"Count"`
	}{values, counts, lo, hi, h.sum, h.count})
}

// emfDocuments turns rm into EMF documents, the one without dimensions
// first, then by dimension values.
func emfDocuments(rm *metricdata.ResourceMetrics, now time.Time) []map[string]any {
	groups := map[string]*emfGroup{}
	var keys []string
	group := func(name string, attrs func(string) (string, bool)) *emfGroup {
		names := emfDimensions[name]
		values := make([]string, len(names))
		for i, n := range names {
			v, ok := attrs(n)
			if !ok || v == "" {
				v = "unknown"
			}
			values[i] = v
		}
		key := strings.Join(names, "\x00") + "\x01" + strings.Join(values, "\x00")
		g := groups[key]
		if g == nil {
			g = &emfGroup{dimNames: names, dimValues: values, units: map[string]string{},
				sums: map[string]float64{}, hists: map[string]*emfHistogram{}}
			groups[key] = g
			keys = append(keys, key)
		}
		return g
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			unit := emfUnit(m.Unit)
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				addSums(d.DataPoints, m.Name, unit, group)
			case metricdata.Sum[float64]:
				addSums(d.DataPoints, m.Name, unit, group)
			case metricdata.Gauge[int64]:
				addSums(d.DataPoints, m.Name, unit, group)
			case metricdata.Gauge[float64]:
				addSums(d.DataPoints, m.Name, unit, group)
			case metricdata.Histogram[int64]:
				addHistograms(d.DataPoints, m.Name, unit, group)
			case metricdata.Histogram[float64]:
				addHistograms(d.DataPoints, m.Name, unit, group)
			}
		}
	}
	slices.SortFunc(keys, func(a, b string) int {
		// The document without dimensions first, the others by key.
		if (groups[a].dimNames == nil) != (groups[b].dimNames == nil) {
			if groups[a].dimNames == nil {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	docs := make([]map[string]any, 0, len(keys))
	for _, k := range keys {
		g := groups[k]
		if len(g.order) == 0 {
			continue
		}
		doc := make(map[string]any, len(g.order)+len(g.dimNames)+1)
		defs := make([]map[string]string, 0, len(g.order))
		for _, name := range g.order {
			defs = append(defs, map[string]string{"Name": name, "Unit": g.units[name]})
			if h, ok := g.hists[name]; ok {
				doc[name] = h
			} else {
				doc[name] = g.sums[name]
			}
		}
		dims := g.dimNames
		if dims == nil {
			dims = []string{}
		}
		for i, n := range g.dimNames {
			doc[n] = g.dimValues[i]
		}
		doc["_aws"] = map[string]any{
			"Timestamp": now.UnixMilli(),
			"CloudWatchMetrics": []map[string]any{{
				"Namespace":  EMFNamespace,
				"Dimensions": [][]string{dims},
				"Metrics":    defs,
			}},
		}
		docs = append(docs, doc)
	}
	return docs
}

type groupFunc func(name string, attrs func(string) (string, bool)) *emfGroup

func addSums[N int64 | float64](points []metricdata.DataPoint[N], name, unit string, group groupFunc) {
	for _, p := range points {
		g := group(name, attrLookup(p.Attributes))
		g.add(name, unit)
		g.sums[name] += float64(p.Value)
	}
}

func addHistograms[N int64 | float64](points []metricdata.HistogramDataPoint[N], name, unit string, group groupFunc) {
	for _, p := range points {
		if p.Count == 0 {
			continue
		}
		g := group(name, attrLookup(p.Attributes))
		g.add(name, unit)
		h := g.hists[name]
		if h == nil {
			h = &emfHistogram{counts: map[float64]uint64{}, min: math.Inf(1), max: math.Inf(-1)}
			g.hists[name] = h
		}
		lo, hasMin := p.Min.Value()
		hi, hasMax := p.Max.Value()
		pmin, pmax := float64(lo), float64(hi)
		if !hasMin || !hasMax {
			// Without extrema the open buckets use the nearest bound.
			pmin, pmax = math.Inf(-1), math.Inf(1)
		}
		if len(p.BucketCounts) <= 1 && (!hasMin || !hasMax) {
			// No buckets and no extrema: the mean is all there is.
			h.counts[float64(p.Sum)/float64(p.Count)] += p.Count
		} else {
			for i, c := range p.BucketCounts {
				if c == 0 {
					continue
				}
				h.counts[bucketValue(p.Bounds, i, pmin, pmax)] += c
			}
		}
		if hasMin {
			h.min = min(h.min, pmin)
			h.max = max(h.max, pmax)
		}
		h.sum += float64(p.Sum)
		h.count += p.Count
	}
}

// bucketValue is the representative of bucket i of bounds (see
// EMFExporter), for values known to lie in [lo, hi].
func bucketValue(bounds []float64, i int, lo, hi float64) float64 {
	var v float64
	switch {
	case len(bounds) == 0:
		v = (lo + hi) / 2
	case i == 0:
		v = lo
		if math.IsInf(v, -1) {
			v = bounds[0]
		}
	case i >= len(bounds):
		v = hi
		if math.IsInf(v, 1) {
			v = bounds[len(bounds)-1]
		}
	default:
		v = (bounds[i-1] + bounds[i]) / 2
	}
	return min(max(v, lo), hi)
}

// attrLookup looks up attributes of set by name.
func attrLookup(set attribute.Set) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := set.Value(attribute.Key(name))
		return v.String(), ok
	}
}

// emfUnit maps an OpenTelemetry unit to a CloudWatch unit: annotations
// such as {request} and the dimensionless 1 count things; a unit
// CloudWatch does not know is None.
func emfUnit(unit string) string {
	switch {
	case unit == "ms":
		return "Milliseconds"
	case unit == "s":
		return "Seconds"
	case unit == "us":
		return "Microseconds"
	case unit == "By":
		return "Bytes"
	case unit == "", unit == "1", strings.HasPrefix(unit, "{") && strings.HasSuffix(unit, "}"):
		return "Count"
	}
	return "None"
}
