package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/reportmailer/reportmailer/worker/metrics"
)

// metricName finds reportmailer metric names in PromQL.
var metricName = regexp.MustCompile(`\breportmailer_[a-z0-9_]+`)

// PromQL, as far as the checks below need it: a selector and its
// matchers, a function taking a counter, an aggregation's grouping.
var (
	selector   = regexp.MustCompile(`\b(reportmailer_[a-z0-9_]+)(\{[^}]*\})?`)
	matcher    = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	rateOf     = regexp.MustCompile(`\b(rate|irate|increase)\(\s*(reportmailer_[a-z0-9_]+)`)
	grouping   = regexp.MustCompile(`\b(by|without)\s*\(([^)]*)\)`)
	plainValue = regexp.MustCompile(`^[a-z0-9_]+$`)
)

// catalogue is what the exporter has: each series name a query may
// use, with its family, and the values of the labels that have a
// fixed set.
type catalogue struct {
	series map[string]metrics.Family
	values map[string][]string
}

func newCatalogue() catalogue {
	c := catalogue{series: map[string]metrics.Family{}, values: metrics.LabelValues()}
	for _, f := range metrics.New().Families() {
		if f.Type != "histogram" {
			c.series[f.Name] = f
			continue
		}
		// A histogram is queried by its _bucket (with le), _sum and
		// _count series; it has none under its own name.
		for _, suffix := range []string{"_sum", "_count"} {
			c.series[f.Name+suffix] = f
		}
		b := f
		b.Labels = append(slices.Clone(f.Labels), "le")
		c.series[f.Name+"_bucket"] = b
	}
	return c
}

// check returns what is wrong with expr: a series the exporter does
// not have, rate or increase of a gauge, a label the series does not
// carry, a value the exporter never gives that label, or a grouping by
// a label no series of expr carries.
func (c catalogue) check(expr string) []string {
	var problems []string
	labels := map[string]bool{}
	for _, m := range selector.FindAllStringSubmatch(expr, -1) {
		f, ok := c.series[m[1]]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s is not a series the exporter has", m[1]))
			continue
		}
		fl := f.Labels
		if strings.HasSuffix(m[1], "_bucket") {
			fl = c.series[m[1]].Labels
		}
		for _, l := range fl {
			labels[l] = true
		}
		for _, mm := range matcher.FindAllStringSubmatch(m[2], -1) {
			name, op, value := mm[1], mm[2], mm[3]
			if !slices.Contains(fl, name) {
				problems = append(problems, fmt.Sprintf("%s has no label %s (it has %v)", m[1], name, fl))
				continue
			}
			known, fixed := c.values[name]
			if !fixed {
				continue
			}
			alts := []string{value}
			if op == "=~" || op == "!~" {
				alts = strings.Split(value, "|")
			}
			for _, v := range alts {
				if plainValue.MatchString(v) && !slices.Contains(known, v) {
					problems = append(problems, fmt.Sprintf("%s{%s%s%q}: the exporter never gives %s the value %q (%v)", m[1], name, op, value, name, v, known))
				}
			}
		}
	}
	for _, m := range rateOf.FindAllStringSubmatch(expr, -1) {
		if f, ok := c.series[m[2]]; ok && f.Type != "counter" && f.Type != "histogram" {
			problems = append(problems, fmt.Sprintf("%s of %s, a %s: only counters and histogram series go up", m[1], m[2], f.Type))
		}
	}
	for _, m := range grouping.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(m[2], ",") {
			if l = strings.TrimSpace(l); l != "" && !labels[l] {
				problems = append(problems, fmt.Sprintf("%s (%s): no series of the expression has the label %s", m[1], m[2], l))
			}
		}
	}
	return problems
}

// TestCatalogueCheck: the checks catch each kind of mistake.
func TestCatalogueCheck(t *testing.T) {
	c := newCatalogue()
	tests := []struct {
		name, expr string
		problem    string // "" for none
	}{
		{"good counter rate", `sum by (schedule) (rate(reportmailer_runs_total{outcome=~"failed|halted"}[5m]))`, ""},
		{"histogram quantile", `histogram_quantile(0.95, sum by (le, stage) (rate(reportmailer_stage_duration_seconds_bucket{stage="send"}[5m])))`, ""},
		{"not a metric", `reportmailer_nothing`, "not a series"},
		{"_bucket of a counter", `reportmailer_runs_total_bucket`, "not a series"},
		{"_count of a gauge", `reportmailer_queue_messages_count`, "not a series"},
		{"histogram by its own name", `reportmailer_run_duration_seconds`, "not a series"},
		{"rate of a gauge", `rate(reportmailer_last_run_timestamp_seconds[5m])`, "only counters"},
		{"increase of a gauge", `increase(reportmailer_queue_messages[1h])`, "only counters"},
		{"a label the metric lacks", `reportmailer_runs_total{stage="send"}`, "has no label stage"},
		{"a value never exported", `reportmailer_queue_messages{queue="deadletter"}`, `never gives queue the value "deadletter"`},
		{"a regex alternative never exported", `reportmailer_runs_total{outcome=~"failed|crashed"}`, `value "crashed"`},
		{"grouping by a missing label", `sum by (stage) (reportmailer_runs_total)`, "no series of the expression has the label stage"},
		{"le without a bucket", `sum by (le) (reportmailer_stage_duration_seconds_count)`, "label le"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Join(c.check(tt.expr), "\n")
			if tt.problem == "" && got != "" || !strings.Contains(got, tt.problem) {
				t.Errorf("check(%s) = %q, want %q", tt.expr, got, tt.problem)
			}
		})
	}
}

type alertRules struct {
	Groups []struct {
		Name  string
		Rules []struct {
			Alert       string
			Expr        string
			For         string
			Labels      map[string]string
			Annotations map[string]string
		}
	}
}

// TestAlertRules: the alerts the issue asks for are there, each on
// metrics the exporter has, with a severity and a summary.
func TestAlertRules(t *testing.T) {
	b, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules alertRules
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	c := newCatalogue()
	seen := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			seen[r.Alert] = true
			if len(metricName.FindAllString(r.Expr, -1)) == 0 {
				t.Errorf("alert %s: its expression uses no reportmailer metric: %s", r.Alert, r.Expr)
			}
			for _, p := range c.check(r.Expr) {
				t.Errorf("alert %s: %s", r.Alert, p)
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.For == "" {
				t.Errorf("alert %s: needs a severity, a summary and a for", r.Alert)
			}
		}
	}
	for _, want := range []string{
		"ReportmailerDeadLetters", "ReportmailerSESThrottled", "ReportmailerRunsFailing",
		"ReportmailerNoSuccessfulRun", "ReportmailerActiveKeyNearRemovalDate", "ReportmailerSESQuotaHigh",
	} {
		if !seen[want] {
			t.Errorf("no alert %s", want)
		}
	}
}

// TestDashboard: every query of the Grafana dashboard is on metrics the
// exporter has, and every metric the exporter has is on the dashboard.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/reportmailer.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	names := metrics.New().Names()
	c := newCatalogue()
	shown := map[string]bool{}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, problem := range c.check(tg.Expr) {
				t.Errorf("panel %q: %s", p.Title, problem)
			}
			for _, n := range metricName.FindAllString(tg.Expr, -1) {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					n = strings.TrimSuffix(n, suffix)
				}
				shown[n] = true
			}
		}
	}
	for _, n := range names {
		if !shown[n] {
			t.Errorf("the dashboard does not show %s", n)
		}
	}
}
