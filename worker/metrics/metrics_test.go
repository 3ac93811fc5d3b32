package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/metrics"
)

func TestObserverCounts(t *testing.T) {
	m := metrics.New()
	m.Schedule("daily", 24*time.Hour)
	m.StartClock("daily")
	o := m.Observer("daily")
	ctx := context.Background()
	_, end := o.Stage(ctx, worker.StageSend)
	end(nil)
	_, end = o.Stage(ctx, worker.StageHead)
	end(errors.New("timeout"))
	o.Sent()
	o.Duplicate()
	o.Refused("over_limit")
	o.Settled(ctx, worker.Message{}, worker.MessageOutcome{Settlement: worker.SettleAcked})
	o.Settled(ctx, worker.Message{}, worker.MessageOutcome{Settlement: worker.SettleDeadLettered, Class: worker.ClassPermanent, Code: worker.CodeObjectMissing})
	m.Run("daily", metrics.KindSlot, metrics.RunEnd{Summary: worker.Summary{Received: 2, Acked: 1, DeadLettered: 1}, Took: time.Second})
	p := m.Pace()
	p.Throttled()
	p.Waited(200 * time.Millisecond)
	p.Quota(200, 150, 14)
	m.Queue("daily", "dlq", 3, 0, 0)
	m.Key("K1", true, time.Unix(1800000000, 0))

	body := scrape(t, m)
	for _, want := range []string{
		`reportmailer_runs_total{kind="slot",outcome="incomplete",schedule="daily"} 1`,
		`reportmailer_runs_total{kind="slot",outcome="ok",schedule="daily"} 0`,
		`reportmailer_messages_total{class="permanent",code="object_missing",schedule="daily",settlement="dead_lettered"} 1`,
		`reportmailer_messages_total{class="",code="",schedule="daily",settlement="acked"} 1`,
		`reportmailer_emails_sent_total{schedule="daily"} 1`,
		`reportmailer_ledger_duplicates_prevented_total{schedule="daily"} 1`,
		`reportmailer_recipients_refused_total{reason="over_limit",schedule="daily"} 1`,
		`reportmailer_stage_duration_seconds_count{schedule="daily",stage="send"} 1`,
		`reportmailer_stage_errors_total{schedule="daily",stage="head"} 1`,
		`reportmailer_stage_errors_total{schedule="daily",stage="send"} 0`,
		`reportmailer_ses_throttles_total 1`,
		`reportmailer_ses_pacing_wait_seconds_count 1`,
		`reportmailer_ses_quota_remaining 50`,
		`reportmailer_ses_max_send_rate 14`,
		`reportmailer_queue_messages{queue="dlq",schedule="daily",state="visible"} 3`,
		`reportmailer_key_safe_removal_timestamp_seconds{active="true",key_id="K1"} 1.8e+09`,
		`reportmailer_last_success_timestamp_seconds{kind="slot",schedule="daily"}`,
		`reportmailer_schedule_period_seconds{schedule="daily"} 86400`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %s in\n%s", want, body)
		}
	}

	// A key that stops signing keeps one series, now active="false".
	m.Key("K1", false, time.Unix(1800000100, 0))
	body = scrape(t, m)
	if !strings.Contains(body, `reportmailer_key_safe_removal_timestamp_seconds{active="false",key_id="K1"}`) ||
		strings.Contains(body, `active="true",key_id="K1"`) {
		t.Errorf("key series after it stopped signing:\n%s", body)
	}
}

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, err := io.ReadAll(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// TestSucceeded: an incomplete run counts as a success only when it
// got somewhere.
func TestSucceeded(t *testing.T) {
	tests := []struct {
		name string
		sum  worker.Summary
		err  error
		want bool
	}{
		{"everything acked", worker.Summary{Received: 1, Acked: 1, Sent: 1}, nil, true},
		{"nothing to do", worker.Summary{}, nil, true},
		{"one sent, one left for retry", worker.Summary{Received: 2, Acked: 1, Sent: 1, Retrying: 1}, nil, true},
		{"one acked as sent before, one dead-lettered", worker.Summary{Received: 2, Acked: 1, Duplicates: 1, DeadLettered: 1}, nil, true},
		{"a digest slot that sent, some users left", worker.Summary{Sent: 3, Retrying: 1}, nil, true},
		{"received, all left for retry", worker.Summary{Received: 3, Retrying: 3}, nil, false},
		{"received, all dead-lettered", worker.Summary{Received: 2, DeadLettered: 2}, nil, true},
		{"a digest slot that sent none of its users", worker.Summary{Retrying: 4}, nil, false},
		{"a digest slot whose ingest acked, that delivered nothing", worker.Summary{Received: 3, Acked: 3, Due: 4, Retrying: 4}, nil, false},
		{"a digest slot that found a kept event sent, its older one failing again", worker.Summary{Due: 2, Duplicates: 1, Retrying: 1, Pending: 2}, nil, false},
		{"a digest slot that delivered a user, another left", worker.Summary{Due: 3, Sent: 1, Delivered: 2, Retrying: 1}, nil, true},
		{"halted after sending", worker.Summary{Received: 2, Sent: 1, Acked: 1, Halted: true}, nil, false},
		{"failed", worker.Summary{Received: 1, Acked: 1}, errors.New("receive"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := metrics.Succeeded(tt.sum, tt.err); got != tt.want {
				t.Errorf("Succeeded(%+v, %v) = %v, want %v", tt.sum, tt.err, got, tt.want)
			}
		})
	}
}

func TestRunOutcome(t *testing.T) {
	tests := []struct {
		name string
		sum  worker.Summary
		err  error
		want string
	}{
		{"everything acked", worker.Summary{Received: 1, Acked: 1}, nil, metrics.RunOK},
		{"some left for retry", worker.Summary{Received: 1, Retrying: 1}, nil, metrics.RunIncomplete},
		{"halted", worker.Summary{Halted: true}, nil, metrics.RunHalted},
		{"queue failed", worker.Summary{}, errors.New("receive"), metrics.RunFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := metrics.RunOutcome(tt.sum, tt.err); got != tt.want {
				t.Errorf("RunOutcome = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestRunTimestamps: a process start is not a success, a failed run
// leaves the last success alone and records its own time, and an
// unreadable queue or an unlimited quota leaves no stale value.
func TestRunTimestamps(t *testing.T) {
	tests := []struct {
		name      string
		do        func(m *metrics.Metrics)
		want, not []string
	}{
		{"declared, never run", func(m *metrics.Metrics) { m.StartClock("daily") },
			[]string{`reportmailer_schedule_declared_timestamp_seconds{schedule="daily"}`},
			[]string{`reportmailer_last_success_timestamp_seconds{`, `reportmailer_last_run_timestamp_seconds{`}},
		{"a failed run", func(m *metrics.Metrics) {
			m.Run("daily", metrics.KindSlot, metrics.RunEnd{Summary: worker.Summary{}, Took: time.Second, Err: errors.New("receive")})
		},
			[]string{`reportmailer_last_failure_timestamp_seconds{kind="slot",schedule="daily"}`, `reportmailer_last_run_timestamp_seconds{kind="slot",schedule="daily"}`},
			[]string{`reportmailer_last_success_timestamp_seconds{`}},
		{"a halted run", func(m *metrics.Metrics) {
			m.Run("daily", metrics.KindSlot, metrics.RunEnd{Summary: worker.Summary{Halted: true}, Took: time.Second})
		},
			[]string{`reportmailer_last_failure_timestamp_seconds{kind="slot",schedule="daily"}`},
			[]string{`reportmailer_last_success_timestamp_seconds{`}},
		{"a good run", func(m *metrics.Metrics) {
			m.Run("daily", metrics.KindSlot, metrics.RunEnd{Summary: worker.Summary{Received: 1, Acked: 1}, Took: time.Second})
		},
			[]string{`reportmailer_last_success_timestamp_seconds{kind="slot",schedule="daily"}`},
			[]string{`reportmailer_last_failure_timestamp_seconds{`}},
		{"a run that received messages and left them all for retry", func(m *metrics.Metrics) {
			m.Run("daily", metrics.KindSlot, metrics.RunEnd{Summary: worker.Summary{Received: 3, Retrying: 3}, Took: time.Second})
		},
			[]string{`reportmailer_runs_total{kind="slot",outcome="incomplete",schedule="daily"} 1`,
				`reportmailer_last_failure_timestamp_seconds{kind="slot",schedule="daily"}`},
			[]string{`reportmailer_last_success_timestamp_seconds{`}},
		{"an ingest is not a run of the schedule", func(m *metrics.Metrics) {
			m.Schedule("daily", 24*time.Hour)
			m.Run("daily", metrics.KindIngest, metrics.RunEnd{Summary: worker.Summary{}, Took: time.Second})
		},
			[]string{`reportmailer_runs_total{kind="ingest",outcome="ok",schedule="daily"} 1`,
				`reportmailer_runs_total{kind="slot",outcome="ok",schedule="daily"} 0`,
				`reportmailer_last_success_timestamp_seconds{kind="ingest",schedule="daily"}`},
			[]string{`reportmailer_last_success_timestamp_seconds{kind="slot"`, `reportmailer_last_run_timestamp_seconds{kind="slot"`}},
		{"the last run's emails and throttles", func(m *metrics.Metrics) {
			p := m.Pace()
			p.Throttled() // before the run
			start := m.Throttles()
			p.Throttled()
			p.Throttled()
			m.Run("daily", metrics.KindSlot, metrics.RunEnd{Summary: worker.Summary{Received: 5, Acked: 5, Sent: 5}, Took: time.Second,
				Throttles: m.Throttles() - start})
		},
			[]string{`reportmailer_last_run_emails_sent{kind="slot",schedule="daily"} 5`,
				`reportmailer_last_run_ses_throttles{kind="slot",schedule="daily"} 2`,
				`reportmailer_ses_throttles_total 3`},
			nil},
		{"the observer's RunFinished records no run", func(m *metrics.Metrics) {
			m.Observer("daily").RunFinished(worker.Summary{Received: 1, Acked: 1}, time.Second, nil)
		},
			nil,
			[]string{`reportmailer_last_success_timestamp_seconds{`, `reportmailer_runs_total{`}},
		{"queue unreadable after a read", func(m *metrics.Metrics) {
			m.Queue("daily", "dlq", 3, 0, 0)
			m.Queue("daily", "main", 1, 0, 0)
			m.DropQueue("daily", "dlq")
		},
			[]string{`reportmailer_queue_messages{queue="main",schedule="daily",state="visible"} 1`},
			[]string{`queue="dlq"`}},
		{"unlimited quota", func(m *metrics.Metrics) {
			m.Pace().Quota(200, 150, 14)
			m.Pace().Quota(-1, 150, 14)
		},
			[]string{`reportmailer_ses_quota_read_timestamp_seconds `, `reportmailer_ses_quota_max_24h -1`},
			[]string{`reportmailer_ses_quota_remaining `}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New()
			tt.do(m)
			body := scrape(t, m)
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("no %s in\n%s", w, body)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(body, n) {
					t.Errorf("%s in\n%s", n, body)
				}
			}
		})
	}
}
