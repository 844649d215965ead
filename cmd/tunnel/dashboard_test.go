package main

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// grafanaDashboard is the part of a Grafana dashboard model these tests
// read.
type grafanaDashboard struct {
	SchemaVersion int `json:"schemaVersion"`
	Templating    struct {
		List []grafanaVariable `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaVariable struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Query string `json:"query"`
}

type grafanaPanel struct {
	Title      string            `json:"title"`
	Datasource grafanaDatasource `json:"datasource"`
	Targets    []struct {
		Datasource   grafanaDatasource `json:"datasource"`
		Expr         string            `json:"expr"`
		LegendFormat string            `json:"legendFormat"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // of a collapsed row
}

type grafanaDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// TestGrafanaDashboard checks grafana-dashboard.json: it must parse, take
// its data source from the datasource variable, and query only the metric
// families and labels of promMetrics and promLabels, which
// TestPrometheusNames pins to the exporter. Renaming a metric or an
// attribute fails here until the dashboard follows. Every family must
// appear on some panel.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d; want 36 or later (data sources referenced by uid)", d.SchemaVersion)
	}
	if i := slices.IndexFunc(d.Templating.List, func(v grafanaVariable) bool { return v.Name == "datasource" }); i < 0 || d.Templating.List[i].Type != "datasource" || d.Templating.List[i].Query != "prometheus" {
		t.Errorf("no datasource variable of Prometheus data sources in %+v", d.Templating.List)
	}

	families := map[string]bool{}
	for _, m := range promMetrics {
		families[m.name] = false
	}
	labels := map[string]bool{"le": true}
	for _, l := range promLabels {
		labels[l] = true
	}

	var panels []grafanaPanel
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			panels = append(panels, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	queries := 0
	for _, p := range panels {
		for _, q := range p.Targets {
			queries++
			if ds := q.Datasource; ds.UID != "${datasource}" || ds.Type != "prometheus" {
				t.Errorf("panel %q: query data source %+v; want the ${datasource} variable", p.Title, ds)
			}
			if p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: data source %+v; want the ${datasource} variable", p.Title, p.Datasource)
			}
			names, usedLabels := promQLNames(q.Expr)
			if len(names) == 0 {
				t.Errorf("panel %q: found no metric in %q", p.Title, q.Expr)
			}
			for _, n := range names {
				family := promFamily(n)
				if _, ok := families[family]; !ok {
					t.Errorf("panel %q queries %s, which the gateway does not export (promMetrics)", p.Title, n)
					continue
				}
				families[family] = true
			}
			for _, m := range legendLabel.FindAllStringSubmatch(q.LegendFormat, -1) {
				usedLabels = append(usedLabels, m[1])
			}
			for _, l := range usedLabels {
				if !labels[l] {
					t.Errorf("panel %q uses label %q, which no metric of the gateway has (promLabels)", p.Title, l)
				}
			}
		}
	}
	if queries == 0 {
		t.Fatal("the dashboard has no queries")
	}
	for f, used := range families {
		if !used {
			t.Errorf("no panel shows %s", f)
		}
	}
}

var (
	legendLabel   = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)
	promSelector  = regexp.MustCompile(`\{([^}]*)\}`)
	promMatcher   = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)`)
	promRange     = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	promIdent     = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?`)
	promNotMetric = []string{"and", "or", "unless", "bool", "offset", "inf", "nan"}
)

// promQLNames returns the metric names and the label names in a PromQL
// expression. It knows enough PromQL for dashboards: selectors with
// matchers, range brackets, function calls, aggregation grouping and
// binary operators.
func promQLNames(expr string) (metrics, labels []string) {
	for _, sel := range promSelector.FindAllStringSubmatch(expr, -1) {
		for _, m := range promMatcher.FindAllStringSubmatch(sel[1], -1) {
			labels = append(labels, m[1])
		}
	}
	expr = promSelector.ReplaceAllString(expr, " ")
	expr = promRange.ReplaceAllString(expr, " ")
	for _, g := range promGrouping.FindAllStringSubmatch(expr, -1) {
		for l := range strings.SplitSeq(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
	}
	expr = promGrouping.ReplaceAllString(expr, " ")
	for _, m := range promIdent.FindAllStringSubmatch(expr, -1) {
		if m[1] != "" || slices.Contains(promNotMetric, strings.ToLower(m[0])) {
			continue // a function call or a keyword
		}
		metrics = append(metrics, m[0])
	}
	return metrics, labels
}

func TestPromQLNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr            string
		metrics, labels []string
	}{
		{`sum(ActiveTunnels)`, []string{"ActiveTunnels"}, nil},
		{`sum by (http_request_method) (rate(RequestForwarded_total{tunnel_id=~"a.*", error_code!="x"}[$__rate_interval])) * 60`,
			[]string{"RequestForwarded_total"}, []string{"tunnel_id", "error_code", "http_request_method"}},
		{`histogram_quantile(0.95, sum by (le, db_operation_name) (rate(StoreOperationLatency_milliseconds_bucket[5m])))`,
			[]string{"StoreOperationLatency_milliseconds_bucket"}, []string{"le", "db_operation_name"}},
		{`sum(rate(CacheHits_total[1m])) / (sum(rate(CacheHits_total[1m])) + sum(rate(CacheMisses_total[1m]))) and on (job) up`,
			[]string{"CacheHits_total", "CacheHits_total", "CacheMisses_total", "up"}, []string{"job"}},
	}
	for _, tt := range tests {
		metrics, labels := promQLNames(tt.expr)
		if !slices.Equal(metrics, tt.metrics) || !slices.Equal(labels, tt.labels) {
			t.Errorf("promQLNames(%q) = %q, %q; want %q, %q", tt.expr, metrics, labels, tt.metrics, tt.labels)
		}
	}
}
