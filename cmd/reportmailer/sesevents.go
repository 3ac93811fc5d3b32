package main

import (
	"context"
	"errors"
	"log/slog"
	"strconv"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/sesevents"
)

// settleRun is what one run learnt from SES's sending events before it
// started on its own queue.
type settleRun struct {
	configured bool // ses_events.queue_url is set
	res        sesevents.Result
	err        error // the queue could not be read, or not to the end
}

// settleFromSES reads SES's sending events and settles the ledger with
// them, before a run of schedule receives anything: a redelivered
// message whose email SES accepted then finds its delivery sent. A
// queue that cannot be read is logged and the run goes on; the
// deliveries it would have settled stay unsettled.
func (a *app) settleFromSES(ctx context.Context, schedule string) settleRun {
	if a.events == nil {
		return settleRun{}
	}
	ctx = worker.WithSchedule(ctx, schedule)
	res, err := a.events.Drain(ctx)
	log := a.logger.With(worker.LogAttrs(ctx)...).With("queue", a.cfg.SESEvents.QueueURL)
	switch {
	case err == nil:
	case errors.Is(err, sesevents.ErrIncomplete):
		log.Warn("ses events: not all read; the rest are read next run", "err", err)
	default:
		log.Error("ses events: the queue could not be read; the run goes on without them", "err", err)
	}
	return settleRun{configured: true, res: res, err: err}
}

// policy is the unsettled policy for this run: the configured one,
// except that resend needs this run to have read SES's events to the
// end. A delivery with no Send event read may have one still waiting
// on the queue, and resending it could send the email twice.
func (r settleRun) policy(c config.SESEvents) worker.UnsettledPolicy {
	if c.Unsettled == config.UnsettledResend && r.configured && r.err == nil {
		return worker.UnsettledResend
	}
	return worker.UnsettledDeadLetter
}

// summary is what the run's summary line says of SES's events.
func (r settleRun) summary() string {
	s := "settled " + strconv.Itoa(r.res.Settled)
	if r.configured && r.err != nil && !errors.Is(r.err, sesevents.ErrIncomplete) {
		s += " (ses events queue unreadable)"
	}
	return s
}

// scheduleWorkers are one schedule's workers: with the configured
// unsettled policy, and, when that is resend, with dead_letter for runs
// that could not read SES's events to the end.
type scheduleWorkers struct {
	configured, deadLetter *worker.Worker
	// ingest, for a digest, is the worker of its ingest runs.
	ingest *worker.Worker
	cfg    config.SESEvents
	logger *slog.Logger
}

func (a *app) scheduleWorkers(s config.Schedule) (*scheduleWorkers, error) {
	w, err := a.worker(s)
	if err != nil {
		return nil, err
	}
	sw := &scheduleWorkers{configured: w, deadLetter: w, cfg: a.cfg.SESEvents, logger: a.logger.With("schedule", s.Name)}
	if a.cfg.SESEvents.Unsettled == config.UnsettledResend {
		if sw.deadLetter, err = a.workerWith(s, worker.UnsettledDeadLetter); err != nil {
			return nil, err
		}
	}
	if s.Mode == string(worker.ModeDigest) {
		if sw.ingest, err = a.ingestWorker(s); err != nil {
			return nil, err
		}
	}
	return sw, nil
}

// forRun returns the worker for a run that read SES's events as r says.
func (sw *scheduleWorkers) forRun(r settleRun) *worker.Worker {
	if r.policy(sw.cfg) == worker.UnsettledResend || sw.cfg.Unsettled != config.UnsettledResend {
		return sw.configured
	}
	sw.logger.Warn("ses events: this run did not read them all, so deliveries still unsettled after the grace are dead-lettered, not resent")
	return sw.deadLetter
}
