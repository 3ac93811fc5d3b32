package deploy_test

import (
	"encoding/json"
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

// exported reports whether name, as a query writes it, is a metric the
// exporter has: histograms are queried by their _bucket, _sum and
// _count series.
func exported(names []string, name string) bool {
	if slices.Contains(names, name) {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && slices.Contains(names, base) {
			return true
		}
	}
	return false
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
	names := metrics.New().Names()
	seen := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			seen[r.Alert] = true
			used := metricName.FindAllString(r.Expr, -1)
			if len(used) == 0 {
				t.Errorf("alert %s: its expression uses no reportmailer metric: %s", r.Alert, r.Expr)
			}
			for _, n := range used {
				if !exported(names, n) {
					t.Errorf("alert %s: %s is not a metric the exporter has (%v)", r.Alert, n, names)
				}
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
	shown := map[string]bool{}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range metricName.FindAllString(tg.Expr, -1) {
				if !exported(names, n) {
					t.Errorf("panel %q: %s is not a metric the exporter has", p.Title, n)
				}
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
