package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"

	"github.com/prometheus/client_golang/prometheus/push"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/metrics"
	"github.com/reportmailer/reportmailer/worker/secret"
)

// checkPushURL refuses a -pushgateway that is not an http(s) URL, or
// that carries credentials, which would show in errors and logs.
func checkPushURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return errors.New("not a URL")
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("%q is not an http or https URL", s)
	case u.User != nil:
		return errors.New("holds credentials; put them in a proxy or use a URL without them")
	}
	return nil
}

// push sends the process's metrics to the Pushgateway at gw, in the
// group job="reportmailer-drain", cronjob=the schedule: a CronJob lives
// too briefly to be scraped. It adds to the group (POST) rather than
// replacing it (PUT), so that the last success of an earlier run
// outlives a run that failed, for the alerts to compare. The
// grouping label is not "schedule", which the metrics carry already
// and the Pushgateway refuses to have twice.
func (a *app) push(ctx context.Context, gw, schedule string) error {
	return push.New(gw, "reportmailer-drain").Gatherer(a.obs.metrics.Gatherer()).Grouping("cronjob", schedule).AddContext(ctx)
}

// summaryJSON is drain's summary as one JSON line, for logs that are
// JSON: the counts of the run, what SES's events settled before it,
// and the cause when it failed.
func summaryJSON(schedule, runID string, s worker.Summary, settled settleRun, cause error) string {
	v := struct {
		Msg      string         `json:"msg"`
		Schedule string         `json:"schedule"`
		RunID    string         `json:"run_id"`
		Status   string         `json:"status"`
		Summary  map[string]any `json:"summary"`
		Settled  string         `json:"ses_events"`
		Error    string         `json:"error,omitempty"`
	}{Msg: "drain summary", Schedule: schedule, RunID: runID, Status: metrics.RunOutcome(s, nil), Summary: summaryFields(s), Settled: settled.summary()}
	if cause != nil {
		v.Status, v.Error = metrics.RunFailed, secret.Redact(cause.Error())
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// summaryFields is s as its log lines show it: snake_case counts.
func summaryFields(s worker.Summary) map[string]any {
	out := map[string]any{}
	for _, a := range s.LogValue().Group() {
		out[a.Key] = a.Value.Any()
	}
	return out
}
