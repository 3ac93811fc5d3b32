package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// TestDrainJSONSummaryAndPushgateway: with JSON logs, drain's summary
// is one JSON line, every log line of the run names it, and
// -pushgateway pushes the run's metrics to the schedule's group.
func TestDrainJSONSummaryAndPushgateway(t *testing.T) {
	var mu sync.Mutex
	var pushes []string // "METHOD path", then the body
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		pushes = append(pushes, r.Method+" "+r.URL.Path, string(b))
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer gw.Close()

	e := newITEnv(t, "goaws")
	q, dlq := e.queues(t)
	cfg := e.config(t, q, dlq)
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(b, []byte("log: {format: json}\n")...), 0o644)
	e.put(t, "push/a.pdf", nil)
	e.send(t, q, nativeBody("evt-push", "pu", nil, "push/a.pdf"))

	var stdout, stderr bytes.Buffer
	m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: os.Getenv, Environ: os.Environ}
	if code := m.Run(context.Background(), []string{"drain", "-config", cfg, "-schedule", "it", "-pushgateway", gw.URL}); code != ExitOK {
		t.Fatalf("drain exit %d: %s\n%s", code, stdout.String(), stderr.String())
	}
	var sum struct {
		Schedule, Status string
		RunID            string `json:"run_id"`
		Summary          map[string]any
	}
	out := strings.TrimSpace(stdout.String())
	if strings.Contains(out, "\n") || json.Unmarshal([]byte(out), &sum) != nil {
		t.Fatalf("stdout is not one JSON line: %q", out)
	}
	if sum.Schedule != "it" || sum.Status != "ok" || sum.RunID == "" || sum.Summary["sent"] != 1.0 {
		t.Errorf("summary %+v, want schedule it, status ok, a run id and one email sent", sum)
	}
	var sentLines int
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("a log line is not JSON: %q", l)
		}
		if rec["msg"] == "sent" || rec["msg"] == "run finished" {
			sentLines++
		}
		// Every line of the run, the pacer's quota line included.
		if rec["run_id"] != sum.RunID || rec["schedule"] != "it" {
			t.Errorf("line %q lacks run_id %s and the schedule", l, sum.RunID)
		}
		if rec["msg"] == "sent" && rec["message_ids"] == nil {
			t.Errorf("the sent line lacks the SQS message id: %q", l)
		}
	}
	if sentLines != 2 {
		t.Errorf("%d sent and run finished lines, want 2:\n%s", sentLines, stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	// POST adds to the group: a PUT would replace it, and a failed run
	// would erase the last success the alerts compare with.
	if len(pushes) != 2 || pushes[0] != "POST /metrics/job/reportmailer-drain/cronjob/it" {
		t.Fatalf("pushes %q, want one POST of the run's metrics to the schedule's group\n%s", pushes, stderr.String())
	}
	for _, want := range []string{"reportmailer_runs_total", "reportmailer_emails_sent_total",
		"reportmailer_last_success_timestamp_seconds", "reportmailer_last_run_timestamp_seconds",
		// What the CronJob alerts read: no rate() of counters that
		// restart with each run, and when drain first ran the schedule.
		"reportmailer_last_run_emails_sent", "reportmailer_last_run_ses_throttles",
		"reportmailer_schedule_declared_timestamp_seconds",
		// Read before the push, as serve refreshes them: the DLQ and
		// quota alerts have data for a CronJob too.
		"reportmailer_queue_messages", "dlq", "reportmailer_ses_quota_read_timestamp_seconds"} {
		if !strings.Contains(pushes[1], want) {
			t.Errorf("the push lacks %s:\n%s", want, pushes[1])
		}
	}
}

func TestDrainRefusesABadPushgateway(t *testing.T) {
	for _, u := range []string{"localhost:9091", "ftp://gw", "https://user:pw@gw.example"} {
		var stderr bytes.Buffer
		m := &Main{Stdout: io.Discard, Stderr: &stderr, Getenv: func(string) string { return "" }, Environ: os.Environ}
		if code := m.Run(context.Background(), []string{"drain", "-config", "x.yaml", "-pushgateway", u}); code != ExitUsage {
			t.Errorf("-pushgateway %s: exit %d, want %d", u, code, ExitUsage)
		}
		if strings.Contains(stderr.String(), "pw@") {
			t.Errorf("-pushgateway %s: the error shows the credentials: %s", u, stderr.String())
		}
	}
}

// TestDrainPushesGaugesOfAnEmptyQueue: a run that sends nothing (so the
// pacer never reads the quota) still pushes the queue depths and the
// SES quota, read for the push under drain's own policy.
func TestDrainPushesGaugesOfAnEmptyQueue(t *testing.T) {
	var mu sync.Mutex
	pushed := map[string]float64{} // metric name -> its first series' value
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dec := expfmt.NewDecoder(r.Body, expfmt.ResponseFormat(r.Header))
		mu.Lock()
		defer mu.Unlock()
		for {
			var mf dto.MetricFamily
			if err := dec.Decode(&mf); err != nil {
				break
			}
			if m := mf.GetMetric(); len(m) > 0 {
				pushed[mf.GetName()] = m[0].GetGauge().GetValue() + m[0].GetCounter().GetValue()
			}
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer gw.Close()
	e := newITEnv(t, "goaws")
	q, dlq := e.queues(t)
	cfg := e.config(t, q, dlq)
	var stdout, stderr bytes.Buffer
	m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: os.Getenv, Environ: os.Environ}
	if code := m.Run(context.Background(), []string{"drain", "-config", cfg, "-schedule", "it", "-pushgateway", gw.URL}); code != ExitOK {
		t.Fatalf("drain exit %d: %s\n%s", code, stdout.String(), stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{"reportmailer_queue_messages", "reportmailer_ses_quota_read_timestamp_seconds", "reportmailer_ses_quota_max_24h"} {
		if _, ok := pushed[want]; !ok {
			t.Errorf("the push lacks %s\n%s", want, stderr.String())
		}
	}
	if pushed["reportmailer_ses_quota_read_timestamp_seconds"] == 0 {
		t.Errorf("the SES quota was not read for the push\n%s", stderr.String())
	}
	if strings.Contains(stderr.String(), "metrics:") {
		t.Errorf("a gauge could not be read:\n%s", stderr.String())
	}
}
