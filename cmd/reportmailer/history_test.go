package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/internal/s3test"
	"github.com/reportmailer/reportmailer/worker/metrics"
)

// putRun writes a drain's run record of schedule as writeHistory does.
func putRun(t *testing.T, c *s3.Client, cfg *config.Config, schedule, runID string, started time.Time, body []byte) {
	t.Helper()
	putRunOf(t, c, cfg, historyKey(cfg.Ledger.HistoryPrefix, schedule, "drain", started, runID), schedule, "drain", runID, started, body)
}

// putRunOf writes a run record of command at key.
func putRunOf(t *testing.T, c *s3.Client, cfg *config.Config, key, schedule, command, runID string, started time.Time, body []byte) {
	t.Helper()
	if body == nil {
		body, _ = json.Marshal(&runRecord{Schedule: schedule, RunID: runID, Command: command, Digest: command != "drain",
			StartedAt: started, EndedAt: started.Add(time.Second), Outcome: "ok"})
	}
	if _, err := c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(cfg.Ledger.Bucket),
		Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
}

// TestLastRunOfADigestIsItsSlot: under serve a digest's ingests, every
// ingest_every, are newer than its last slot; status's last run is the
// slot, found without reading an ingest's record (those of junk bodies
// below would be skipped and named), and its last ingest apart. A
// record of an ingest written before ingests were kept apart is read,
// and passed over. history lists them all, in time order.
func TestLastRunOfADigestIsItsSlot(t *testing.T) {
	_, c := s3test.Start(t, "state")
	cfg := &config.Config{}
	cfg.Ledger.Bucket, cfg.Ledger.HistoryPrefix = "state", "rm/history/"
	now := time.Now()
	key := func(command, id string, at time.Time) string {
		return historyKey(cfg.Ledger.HistoryPrefix, "weekly", command, at, id)
	}
	slot := now.Add(-3 * 24 * time.Hour)
	putRunOf(t, c, cfg, key("serve", "slot", slot), "weekly", "serve", "slot", slot, nil)
	// A legacy ingest record, where the slot records are.
	legacy := now.Add(-2 * 24 * time.Hour)
	putRunOf(t, c, cfg, historyKey(cfg.Ledger.HistoryPrefix, "weekly", "serve", legacy, "legacy"), "weekly", "ingest", "legacy", legacy, nil)
	for i := range 200 {
		at := now.Add(-time.Duration(i+1) * time.Minute)
		putRunOf(t, c, cfg, key("ingest", fmt.Sprintf("junk%03d", i), at), "weekly", "ingest", "", at, []byte("not json"))
	}
	newest := now.Add(-10 * time.Second)
	putRunOf(t, c, cfg, key("ingest", "ingest", newest), "weekly", "ingest", "ingest", newest, nil)

	last, skipped, err := lastRun(t.Context(), c, cfg, "weekly", now)
	if err != nil || last == nil || last.RunID != "slot" || len(skipped) != 0 {
		t.Errorf("lastRun = %+v, skipped %d, %v; want the slot, no ingest record read", last, len(skipped), err)
	}
	last, skipped, err = lastIngest(t.Context(), c, cfg, "weekly", now)
	if err != nil || last == nil || last.RunID != "ingest" || len(skipped) != 0 {
		t.Errorf("lastIngest = %+v, skipped %d, %v; want the newest ingest", last, len(skipped), err)
	}
	runs, skipped, err := readHistory(t.Context(), c, cfg, "weekly", now.Add(-7*24*time.Hour), false)
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.RunID)
	}
	if err != nil || len(skipped) != 200 || !slices.Equal(ids, []string{"slot", "legacy", "ingest"}) {
		t.Errorf("readHistory = %v, skipped %d, %v; want slot, legacy, ingest and the 200 junk records skipped", ids, len(skipped), err)
	}
}

// TestLastRun: status's last run is the newest record, found in the
// recent window when there is one and by widening the window when the
// schedule has not run for a long time.
func TestLastRun(t *testing.T) {
	_, c := s3test.Start(t, "state")
	cfg := &config.Config{}
	cfg.Ledger.Bucket, cfg.Ledger.HistoryPrefix = "state", "rm/history/"
	now := time.Now()
	putRun(t, c, cfg, "daily", "old", now.Add(-200*24*time.Hour), nil)
	putRun(t, c, cfg, "daily", "week", now.Add(-3*24*time.Hour), nil)
	putRun(t, c, cfg, "daily", "new", now.Add(-time.Hour), nil)
	putRun(t, c, cfg, "rare", "ancient", now.Add(-400*24*time.Hour), nil)
	putRun(t, c, cfg, "rare", "older", now.Add(-500*24*time.Hour), nil)
	for _, tt := range []struct{ schedule, want string }{
		{"daily", "new"},
		{"rare", "ancient"},
		{"never", ""},
	} {
		r, _, err := lastRun(t.Context(), c, cfg, tt.schedule, now)
		got := ""
		if r != nil {
			got = r.RunID
		}
		if err != nil || got != tt.want {
			t.Errorf("lastRun(%s) = %q, %v; want %q", tt.schedule, got, err, tt.want)
		}
	}
}

// TestHistorySkipsBadRecords: a run record too large to read, or not a
// run record, is skipped with a warning naming it; the other runs are
// listed, and status's last run is the newest readable one.
func TestHistorySkipsBadRecords(t *testing.T) {
	_, c := s3test.Start(t, "state")
	cfg := &config.Config{}
	cfg.Ledger.Bucket, cfg.Ledger.HistoryPrefix = "state", "rm/history/"
	now := time.Now()
	putRun(t, c, cfg, "daily", "good", now.Add(-3*time.Hour), nil)
	putRun(t, c, cfg, "daily", "huge", now.Add(-2*time.Hour), bytes.Repeat([]byte(" "), maxRunRecord+1))
	putRun(t, c, cfg, "daily", "junk", now.Add(-time.Hour), []byte("not json"))
	runs, skipped, err := readHistory(t.Context(), c, cfg, "daily", now.Add(-24*time.Hour), false)
	if err != nil || len(runs) != 1 || runs[0].RunID != "good" || len(skipped) != 2 ||
		!strings.Contains(skipped[0].Error(), "huge.json: larger than 16 MiB") || !strings.Contains(skipped[1].Error(), "junk.json: not a run record") {
		t.Errorf("readHistory = %v, skipped %v, %v; want the good run, the other two skipped and named", runs, skipped, err)
	}
	last, skipped, err := lastRun(t.Context(), c, cfg, "daily", now)
	if err != nil || last == nil || last.RunID != "good" || len(skipped) != 2 {
		t.Errorf("lastRun = %+v, skipped %v, %v; want the good run", last, skipped, err)
	}
}

// TestSeedLastSuccess: a restarted serve reports each schedule's last
// successful run from the run history: the newest that succeeded as
// the metrics count success (a failed run after it, a digest's ingest
// and a run that left every message for retry are passed over), and a
// success recorded since the start is not put back.
func TestSeedLastSuccess(t *testing.T) {
	_, c := s3test.Start(t, "state")
	cfg := &config.Config{Schedules: []config.Schedule{{Name: "daily"}, {Name: "weekly"}, {Name: "never"}, {Name: "live"}}}
	cfg.Ledger.Bucket, cfg.Ledger.HistoryPrefix = "state", "rm/history/"
	now := time.Now().UTC().Truncate(time.Second)
	put := func(schedule, command, id string, at time.Time, outcome string, counts runCounts) time.Time {
		body, _ := json.Marshal(&runRecord{Schedule: schedule, RunID: id, Command: command, StartedAt: at, EndedAt: at.Add(time.Minute), Outcome: outcome, Counts: counts})
		putRunOf(t, c, cfg, historyKey(cfg.Ledger.HistoryPrefix, schedule, command, at, id), schedule, command, id, at, body)
		return at.Add(time.Minute)
	}
	dailyOK := put("daily", "serve", "ok", now.Add(-50*time.Hour), "ok", runCounts{Received: 3, Sent: 3, Acked: 3})
	put("daily", "serve", "failed", now.Add(-26*time.Hour), "failed", runCounts{})
	put("daily", "serve", "stuck", now.Add(-2*time.Hour), "incomplete", runCounts{Received: 2, Retrying: 2})
	put("daily", "ingest", "ingest", now.Add(-time.Minute), "ok", runCounts{Received: 1, Acked: 1})
	weeklyPoison := put("weekly", "drain", "poison", now.Add(-6*24*time.Hour), "incomplete", runCounts{Received: 1, DeadLettered: 1})
	put("never", "drain", "halted", now.Add(-time.Hour), "halted", runCounts{Received: 1, Sent: 1, Acked: 1})
	put("live", "serve", "old", now.Add(-time.Hour), "ok", runCounts{})

	m := metrics.New()
	live := time.Now()
	m.LastSuccess("live", metrics.KindSlot, live) // a run that ended since the start
	a := &app{s3: c, logger: slog.New(slog.DiscardHandler), obs: &observability{metrics: m}}
	a.seedLastSuccess(t.Context(), cfg)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	got := map[string]float64{}
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		var schedule string
		var v float64
		if _, err := fmt.Sscanf(strings.Replace(line, `reportmailer_last_success_timestamp_seconds{kind="slot",schedule="`, "", 1), "%s %g", &schedule, &v); err == nil && strings.HasPrefix(line, "reportmailer_last_success") {
			got[strings.TrimSuffix(schedule, `"}`)] = v
		}
	}
	for schedule, want := range map[string]time.Time{"daily": dailyOK, "weekly": weeklyPoison, "live": live} {
		if v, ok := got[schedule]; !ok || math.Abs(v-float64(want.UnixNano())/1e9) > 0.001 {
			t.Errorf("%s: last success %v (%v), want %s", schedule, v, ok, want)
		}
	}
	if v, ok := got["never"]; ok {
		t.Errorf("never: last success %v; its only run halted", v)
	}
}
