package store_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/internal/s3test"
	"github.com/reportmailer/reportmailer/worker/store"
)

// leases returns leases on a gofakes3 whose clock runs back by *ago.
func leases(t *testing.T) (*store.Leases, *atomic.Int64) {
	var ago atomic.Int64
	_, c := s3test.StartWithClock(t, func() time.Time { return time.Now().Add(-time.Duration(ago.Load())) }, "state")
	return &store.Leases{Client: c, Bucket: "state", Prefix: "slots/", Heartbeat: time.Second}, &ago
}

func TestLeaseGoesToOneReplica(t *testing.T) {
	ctx := context.Background()
	l, _ := leases(t)
	slot := time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC)
	first, _, err := l.Acquire(ctx, "daily", slot, "run-1", false)
	if err != nil || first == nil {
		t.Fatalf("first Acquire = %v, %v; want the lease", first, err)
	}
	second, why, err := l.Acquire(ctx, "daily", slot, "run-2", false)
	if err != nil || second != nil || !strings.Contains(why, "another replica holds the slot") {
		t.Errorf("second Acquire of the same slot = %v, %q, %v; want none, held", second, why, err)
	}
	next, _, err := l.Acquire(ctx, "daily", slot.Add(24*time.Hour), "run-3", false)
	if err != nil || next == nil {
		t.Errorf("next day's slot = %v, %v; want the lease", next, err)
	}
}

func TestLeaseStaleIsTakenOverOnceAndDoneIsNeverRerun(t *testing.T) {
	ctx := context.Background()
	l, ago := leases(t)
	slot := time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC)
	ago.Store(int64(time.Minute)) // the holder's last write looks a minute old
	dead, _, err := l.Acquire(ctx, "daily", slot, "run-1", false)
	if err != nil || dead == nil {
		t.Fatalf("Acquire = %v, %v", dead, err)
	}
	ago.Store(0)
	taker, why, err := l.Acquire(ctx, "daily", slot, "run-2", false)
	if err != nil || taker == nil {
		t.Fatalf("takeover of a lease without a heartbeat for a minute = %v, %q, %v; want the lease", taker, why, err)
	}
	if r := taker.Record(); !r.Late || r.TookOverFrom == "" || r.RunID != "run-2" {
		t.Errorf("taken-over lease = %+v; want late, took_over_from set", r)
	}
	if err := dead.Beat(ctx); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("the old holder's heartbeat = %v; want ErrLeaseLost", err)
	}
	if third, _, err := l.Acquire(ctx, "daily", slot, "run-3", false); err != nil || third != nil {
		t.Errorf("a third replica took a live lease: %v, %v", third, err)
	}
	if err := taker.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	if err := taker.Complete(ctx, "ok"); err != nil {
		t.Fatal(err)
	}
	ago.Store(int64(10 * time.Minute))
	again, why, err := l.Acquire(ctx, "daily", slot, "run-4", false)
	if err != nil || again != nil || !strings.Contains(why, "done") {
		t.Errorf("Acquire of a done slot = %v, %q, %v; want none, done", again, why, err)
	}
	rec, ok, err := l.Get(ctx, "daily", slot)
	if err != nil || !ok || rec.Outcome != "ok" || rec.DoneAt.IsZero() {
		t.Errorf("Get = %+v, %v, %v", rec, ok, err)
	}
	if _, ok, err := l.Get(ctx, "daily", slot.Add(time.Hour)); ok || err != nil {
		t.Errorf("Get of a slot nobody took = %v, %v; want false, nil", ok, err)
	}
}

// TestLeaseAgeIsJudgedByTheHoldersHeartbeat: a replica configured with
// a shorter slot_heartbeat than the holder's does not take over a
// holder that beats on its own, slower, interval; one with a longer
// interval does not wait longer than the holder's four beats.
func TestLeaseAgeIsJudgedByTheHoldersHeartbeat(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name           string
		holder, reader time.Duration
		age            time.Duration
		takenOver      bool
	}{
		{"holder beats every 10m, 5m ago: live for a 1s reader", 10 * time.Minute, time.Second, 5 * time.Minute, false},
		{"holder beats every 1s, a minute ago: stale for a 10m reader", time.Second, 10 * time.Minute, time.Minute, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, ago := leases(t)
			slot := time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC)
			holder := *l
			holder.Heartbeat = tc.holder
			ago.Store(int64(tc.age))
			if h, _, err := holder.Acquire(ctx, "daily", slot, "run-1", false); err != nil || h == nil {
				t.Fatalf("Acquire = %v, %v", h, err)
			}
			ago.Store(0)
			reader := *l
			reader.Heartbeat = tc.reader
			taker, why, err := reader.Acquire(ctx, "daily", slot, "run-2", false)
			if err != nil || (taker != nil) != tc.takenOver {
				t.Errorf("Acquire by a reader beating every %s = %v, %q, %v; want taken over %v", tc.reader, taker, why, err, tc.takenOver)
			}
		})
	}
}
