package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/metrics"
)

func (m *Main) serve(ctx context.Context, args []string) error {
	fs := m.newFlagSet("serve", "serve -config FILE")
	configPath := fs.String("config", "", "config file (default $REPORTMAILER_CONFIG)")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := m.loadConfig(*configPath)
	if err != nil {
		return err
	}
	a, err := m.newApp(ctx, c)
	if err != nil {
		return err
	}
	defer a.obs.close(a.logger)
	log := cronLogger{a.logger}
	// cron.New installs no Recover wrapper despite its docs: a panic in a
	// run would kill the process. SkipIfStillRunning stops a slow run
	// from overlapping the next one.
	cr := cron.New(cron.WithLogger(log), cron.WithChain(cron.Recover(log), cron.SkipIfStillRunning(log)))
	sqsClient := a.sqs
	token, err := bearerToken(c.HTTP)
	if err != nil {
		return err
	}
	sv := &server{logger: a.logger, metrics: a.obs.metrics.Handler(), runners: map[string]*runner{},
		token: token, ready: a.ready, ctx: ctx}
	for _, s := range c.Schedules {
		if s.Paused {
			a.logger.Warn("schedule paused (paused: true in the config): not scheduled", "schedule", s.Name)
			continue
		}
		if s.Cron == "" {
			return fmt.Errorf("serve: schedule %q has no cron spec", s.Name)
		}
		loc, err := time.LoadLocation(s.TimeZone)
		if err != nil {
			return fmt.Errorf("serve: schedule %q: %w", s.Name, err)
		}
		sched, err := config.ParseCron(s.Cron, loc)
		if err != nil {
			return fmt.Errorf("serve: schedule %q: %w", s.Name, err)
		}
		// Each schedule watches its own runs (SkipIfStillRunning keeps
		// them one at a time), through its own wrapper of the shared
		// client.
		watch := newRunWatch()
		a.sqs = watch.sqs(sqsClient)
		ws, err := a.scheduleWorkers(s)
		if err != nil {
			return err
		}
		rn := &runner{name: s.Name, digest: s.Mode == string(worker.ModeDigest), budget: s.Budget, progress: a.obs.progressOf(s.Name), drain: func(ctx context.Context, id string, slot worker.Slot) runResult {
			watch.reset()
			rec := startRun(s, "serve", slot.Planned)
			rec.RunID, rec.Late = id, slot.Late
			ctx = worker.WithRunID(ctx, id)
			settled := a.settleFromSES(ctx, s.Name)
			mark := a.markRun()
			sum, err := runSlot(rec.context(ctx), ws.forRun(settled), s, slot)
			cause := watch.failure(s, sum, err)
			a.recordRun(s, metrics.KindSlot, mark, sum, cause)
			if cause != nil {
				a.logger.Error("run failed", "schedule", s.Name, "run_id", rec.RunID, "err", cause)
			}
			rec.finish(sum, settled, cause)
			a.writeHistory(ctx, rec)
			a.keyGauges(ctx) // the run may have moved the active key's date
			return result(s.Name, id, sum, err, cause)
		}}
		sv.runners[s.Name] = rn
		a.obs.metrics.Schedule(s.Name, cronPeriod(sched, time.Now()))
		a.obs.metrics.StartClock(s.Name)
		cr.Schedule(sched, cron.FuncJob(slotJob(ctx, a, rn, sched)))
		if s.Mode == string(worker.ModeDigest) {
			cr.Schedule(cron.Every(s.IngestEvery), cron.FuncJob(ingestJob(ctx, a, s, ws.ingest)))
			cr.Schedule(cron.Every(c.Ledger.SlotHeartbeat), cron.FuncJob(catchUpJob(ctx, a, rn, sched)))
		}
		a.logger.Info("scheduled", "schedule", s.Name, "cron", s.Cron, "time_zone", loc.String(), "next", sched.Next(time.Now()))
	}
	go a.seedLastSuccess(ctx, c)
	sv.tick()
	cr.Schedule(cron.Every(tickEvery), cron.FuncJob(sv.tick))
	cr.Start()
	stopHTTP := func() {}
	if !c.HTTP.Off() {
		addr, stop, err := sv.listen(c.HTTP.Addr)
		if err != nil {
			<-cr.Stop().Done()
			return err
		}
		stopHTTP = stop
		a.logger.Info("listening", "addr", addr, "send_now", token != nil)
		go a.refreshGauges(ctx, c.Schedules)
	}
	a.logger.Info("serving", "schedules", len(c.Schedules))
	<-ctx.Done()
	a.logger.Info("shutting down: waiting for runs in progress")
	stopHTTP()
	<-cr.Stop().Done()
	a.logger.Info("stopped")
	return nil
}

// slotJob runs rn at most once per planned time across replicas:
// every replica's cron fires, and the one that takes the slot's lease
// runs. Only wall-clock specs have slots that line up across replicas;
// "@every" schedules start from each process's own start time, so they
// run unleased (each-mode drains may overlap safely: SQS hands a message
// to one of them and the ledger stops double sends). A replica whose
// run (POST /run's) is still going on skips the slot before taking its
// lease, so that another replica can take it. A digest's slot runs
// under a heartbeated lease (runLeased); mode each's lease is created
// once and never revisited, as it was before digests had leases.
func slotJob(ctx context.Context, a *app, rn *runner, sched cron.Schedule) func() {
	_, aligned := sched.(*cron.SpecSchedule)
	planned := sched.Next(time.Now())
	return func() {
		// The slot is the latest planned time not after now; skipped
		// runs (SkipIfStillRunning) move it on.
		now := time.Now()
		slot := planned
		for n := sched.Next(slot); !n.After(now); n = sched.Next(n) {
			slot = n
		}
		planned = sched.Next(slot)
		id := worker.NewID()[:16]
		log := a.logger.With("schedule", rn.name, "run_id", id, "slot", slot.Format(time.RFC3339))
		if !rn.begin() {
			log.Info("run skipped: the schedule is still running")
			return
		}
		defer rn.end()
		if !aligned {
			log.Info("run starting")
			rn.drain(ctx, id, worker.Slot{Planned: slot})
			return
		}
		if !rn.digest {
			won, err := a.leases.Once(ctx, rn.name, slot)
			if err != nil {
				log.Error("run skipped: cannot take the slot's lease", "err", err)
				return
			}
			if !won {
				log.Info("run skipped: another replica took this slot")
				return
			}
			log.Info("run starting")
			rn.drain(ctx, id, worker.Slot{Planned: slot})
			return
		}
		lease, why, err := a.leases.Acquire(ctx, rn.name, slot, id, false)
		if err != nil {
			log.Error("run skipped: cannot take the slot's lease", "err", err)
			return
		}
		if lease == nil {
			log.Info("run skipped: " + why)
			return
		}
		log.Info("run starting")
		runLeased(ctx, log, rn, id, lease)
	}
}

// cronLogger adapts slog to cron.Logger.
type cronLogger struct{ l *slog.Logger }

func (c cronLogger) Info(msg string, kv ...any) { c.l.Debug("cron: "+msg, kv...) }
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error("cron: "+msg, append(kv, "err", err)...)
}

// seedTimeout bounds serve's reading of the run history for each
// schedule's last success at its start.
const seedTimeout = 30 * time.Second

// seedLastSuccess sets each schedule's last successful run from the
// run history, so that a restarted serve does not report none until
// its next success, and "no successful run in two periods" does not
// rest on how long Prometheus keeps the series (15 days by default,
// short of two monthly periods). A success recorded meanwhile wins.
func (a *app) seedLastSuccess(ctx context.Context, c *config.Config) {
	ctx, cancel := context.WithTimeout(ctx, seedTimeout)
	defer cancel()
	for _, s := range c.Schedules {
		r, err := lastSuccess(ctx, a.s3, c, s.Name, time.Now())
		switch {
		case err != nil:
			a.logger.Warn("run history: last success not read; the metric waits for the next one", "schedule", s.Name, "err", err)
		case r != nil:
			a.obs.metrics.LastSuccess(s.Name, metrics.KindSlot, r.EndedAt)
			a.logger.Debug("last success from the run history", "schedule", s.Name, "run_id", r.RunID, "ended_at", r.EndedAt)
		}
	}
}
