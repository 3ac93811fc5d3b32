package main

import (
	"cmp"
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/metrics"
	"github.com/reportmailer/reportmailer/worker/store"
)

// pendingStore returns the pending store of a digest schedule, or nil
// (a nil interface, not a nil pointer) for mode each.
func (a *app) pendingStore(s config.Schedule) worker.Pending {
	if p := a.pendingOf(s); p != nil {
		return p
	}
	return nil
}

// pendingOf is pendingStore's concrete store, for counting.
func (a *app) pendingOf(s config.Schedule) *store.Pending {
	if s.Mode != string(worker.ModeDigest) {
		return nil
	}
	return &store.Pending{Client: a.s3, Bucket: a.cfg.Ledger.Bucket, Prefix: store.PendingPrefix(a.cfg.Ledger.Prefix, s.Name),
		QuarantinePrefix: store.QuarantinePrefix(a.cfg.Ledger.Prefix, s.Name)}
}

// runSlot is one run of s: Drain for mode each; for a digest, the
// slot (worker.RunSlot): the ingest of the queue into the pending
// store, then the delivery of slot, within one budget. A slot with no
// planned time (drain, which a CronJob times) holds everything stored
// when the ingest ends.
func runSlot(ctx context.Context, w *worker.Worker, s config.Schedule, slot worker.Slot) (worker.Summary, error) {
	if s.Mode != string(worker.ModeDigest) {
		return w.Drain(ctx)
	}
	return w.RunSlot(ctx, slot)
}

// runLeased runs rn for the slot lease holds, heartbeating the lease
// meanwhile. If another replica takes the slot over (this process was
// paused past four heartbeats), the run is stopped as on shutdown: no
// new email starts, and what is left pending is the taker's. A run that
// left nothing for a retry marks the slot done; one stopped by a
// shutdown or a lost lease, or that left messages or pending events for
// a retry (a transient failure, a halt, a delivery another run is still
// settling), lets the lease lapse, so that a replica's next check
// takes the slot over and runs it again, late, after four heartbeats.
func runLeased(ctx context.Context, log *slog.Logger, rn *runner, id string, lease *store.Lease) runResult {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var lost atomic.Bool
	stop := lease.Keep(ctx, func() {
		lost.Store(true)
		log.Warn("slot lease lost: another replica took the slot over; this run stops starting emails")
		cancel()
	}, func(err error) { log.Warn("slot lease: heartbeat failed; retried at the next", "err", err) })
	rec := lease.Record()
	res := rn.drain(runCtx, id, worker.Slot{Planned: rec.Planned, Late: rec.Late})
	stop()
	if lost.Load() || ctx.Err() != nil || !res.whole {
		log.Info("slot left unfinished: its lease lapses, and a replica runs it again")
		return res
	}
	if err := lease.Complete(context.WithoutCancel(ctx), res.Outcome); err != nil {
		log.Error("slot lease: not marked done; another replica may run the slot again (the ledger stops double sends)", "err", err)
		return res
	}
	log.Info("slot lease: marked done", "outcome", res.Outcome)
	return res
}

// ingestJob moves a digest schedule's queue into its pending store,
// every schedules[].ingest_every, on every replica: SQS hands each
// message to one of them, and a second copy stores nothing new. Runs
// that received nothing leave no history record.
func ingestJob(ctx context.Context, a *app, s config.Schedule, w *worker.Worker) func() {
	return func() {
		if ctx.Err() != nil {
			return
		}
		rec := startRun(s, "ingest", time.Now())
		ctx := rec.context(worker.WithRunID(ctx, rec.RunID))
		mark := a.markRun()
		sum, err := w.Drain(ctx)
		if err != nil {
			a.logger.Error("ingest failed", "schedule", s.Name, "run_id", rec.RunID, "err", err)
		}
		a.recordRun(s, metrics.KindIngest, mark, sum, err)
		if sum.Received == 0 && err == nil {
			return
		}
		rec.finish(sum, settleRun{}, err)
		a.writeHistory(ctx, rec)
	}
}

// catchUpJob runs, every ledger.slot_heartbeat, the latest slot of a
// digest schedule when it needs a replica: a slot no replica took
// (missed during a deploy or an outage, or whose lease could not be
// written at its time), once it is a heartbeat past its time, so as
// not to race the cron; or a slot whose holder stopped heartbeating.
// Either runs late, once, and says so.
func catchUpJob(ctx context.Context, a *app, rn *runner, sched cron.Schedule) func() {
	first := true
	return func() {
		start := first
		first = false
		slot, ok := lastSlot(sched, time.Now())
		if !ok || ctx.Err() != nil {
			return
		}
		rec, found, err := a.leases.Get(ctx, rn.name, slot)
		switch {
		case err != nil:
			a.logger.Warn("slot check: cannot read the slot's lease", "schedule", rn.name, "slot", slot, "err", err)
			return
		case found && !rec.DoneAt.IsZero():
			if start {
				a.logger.Info("slot check at start: the latest slot is done", "schedule", rn.name, "slot", slot.Format(time.RFC3339), "by", rec.Holder, "outcome", rec.Outcome)
			}
			return
		case !found && !start && time.Since(slot) < cmp.Or(a.leases.Heartbeat, store.SlotHeartbeatDefault):
			return // the cron is taking it
		}
		id := worker.NewID()[:16]
		log := a.logger.With("schedule", rn.name, "run_id", id, "slot", slot.Format(time.RFC3339))
		if !rn.begin() {
			return // this process runs the schedule now
		}
		defer rn.end()
		lease, why, err := a.leases.Acquire(ctx, rn.name, slot, id, true)
		if err != nil {
			log.Error("slot check: cannot take the slot's lease", "err", err)
			return
		}
		if lease == nil {
			log.Debug("slot check: " + why)
			return
		}
		if r := lease.Record(); r.TookOverFrom != "" {
			log.Warn("slot taken over: its holder stopped heartbeating; running it late", "from", r.TookOverFrom)
		} else {
			log.Warn("slot missed: no replica ran it; running it late", "planned", slot)
		}
		runLeased(ctx, log, rn, id, lease)
	}
}

// lastSlot returns sched's latest planned time not after now, looking
// back at most a year.
func lastSlot(sched cron.Schedule, now time.Time) (time.Time, bool) {
	for back := time.Hour; back <= 400*24*time.Hour; back *= 2 {
		from := now.Add(-back)
		n := sched.Next(from)
		if n.After(now) {
			continue
		}
		for {
			next := sched.Next(n)
			if next.After(now) || next.IsZero() {
				return n, true
			}
			n = next
		}
	}
	return time.Time{}, false
}
