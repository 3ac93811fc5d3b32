package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/internal/s3test"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/store"
)

func TestSlotJobRunsOncePerSlotAcrossReplicas(t *testing.T) {
	_, client := s3test.Start(t, "state")
	tests := []struct {
		name, spec string
		digest     bool
		firstBusy  bool // the first replica's POST /run is going on
		whole      bool // the run left nothing for a retry
		runs       int
		why        string
		// notWhy must not be logged: mode each keeps its create-once
		// lease, with no heartbeat, completion or takeover.
		notWhy string
	}{
		{"wall-clock spec: one replica runs", "0 7 * * *", false, false, true, 1, "run skipped: another replica took this slot", "slot lease"},
		{"mode each, a run not whole: no lease lapses", "0 7 * * *", false, false, false, 1, "run skipped: another replica took this slot", "slot left unfinished"},
		{"digest: one replica runs, under a lease", "0 7 * * *", true, false, true, 1, "run skipped: the slot is done", ""},
		{"@every: not aligned across replicas, both run", "@every 1h", false, false, true, 2, "", ""},
		{"a busy replica leaves the slot to another", "0 7 * * *", false, true, true, 1, "run skipped: the schedule is still running", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sched, err := config.ParseCron(tt.spec, time.UTC)
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			runs := 0
			replica := func() (func(), *runner) {
				a := &app{logger: slog.New(slog.NewTextHandler(&logs, nil)),
					leases: &store.Leases{Client: client, Bucket: "state", Prefix: "slots/" + tt.name + "/"}}
				rn := &runner{name: "daily", digest: tt.digest, drain: func(context.Context, string, worker.Slot) runResult {
					runs++
					return runResult{Outcome: "ok", whole: tt.whole}
				}}
				return slotJob(context.Background(), a, rn, sched), rn
			}
			one, rn1 := replica()
			two, _ := replica()
			if tt.firstBusy && !rn1.begin() {
				t.Fatal("begin on an idle runner failed")
			}
			one()
			two()
			if runs != tt.runs {
				t.Errorf("%d runs, want %d\n%s", runs, tt.runs, logs.String())
			}
			if !strings.Contains(logs.String(), tt.why) {
				t.Errorf("the skipped replica should say %q:\n%s", tt.why, logs.String())
			}
			if tt.notWhy != "" && strings.Contains(logs.String(), tt.notWhy) {
				t.Errorf("mode each logged %q:\n%s", tt.notWhy, logs.String())
			}
			for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				if !strings.Contains(l, "run_id=") || !strings.Contains(l, "schedule=daily") {
					t.Errorf("a line lacks the run_id and schedule: %s", l)
				}
			}
		})
	}
}

// TestCatchUpRunsASlotNoReplicaTook: a digest slot whose lease was
// never written (the write failed at slot time, or the only replica
// was busy) is run late at a later check, not only at a start.
func TestCatchUpRunsASlotNoReplicaTook(t *testing.T) {
	_, client := s3test.Start(t, "state")
	sched, err := config.ParseCron("0 7 1 1 *", time.UTC) // yearly: the latest slot is long past
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	a := &app{logger: slog.New(slog.NewTextHandler(&logs, nil)),
		leases: &store.Leases{Client: client, Bucket: "state", Prefix: "slots/", Heartbeat: time.Second}}
	var slots []worker.Slot
	rn := &runner{name: "yearly", digest: true, drain: func(_ context.Context, _ string, s worker.Slot) runResult {
		slots = append(slots, s)
		return runResult{Outcome: "ok", whole: true}
	}}
	check := catchUpJob(context.Background(), a, rn, sched)
	if !rn.begin() {
		t.Fatal("begin on an idle runner failed")
	}
	check() // at start, busy: nothing runs
	rn.end()
	if len(slots) != 0 {
		t.Fatalf("ran %d slots while busy", len(slots))
	}
	check()
	if len(slots) != 1 || !slots[0].Late {
		t.Fatalf("a later check ran %+v; want the missed slot once, late\n%s", slots, logs.String())
	}
	check()
	if len(slots) != 1 {
		t.Errorf("the done slot ran again: %+v", slots)
	}
}
