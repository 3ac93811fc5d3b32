package main

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"github.com/robfig/cron/v3"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/metrics"
)

func (m *Main) drain(ctx context.Context, args []string) error {
	fs := m.newFlagSet("drain", "drain -config FILE [-schedule NAME]")
	configPath := fs.String("config", "", "config file (default $REPORTMAILER_CONFIG)")
	name := fs.String("schedule", "", "schedule to drain; may be left out when the config has only one")
	pushURL := fs.String("pushgateway", "", "Prometheus Pushgateway URL to push the run's metrics to (a CronJob is not scraped)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	memProfile := fs.String("memprofile", "", "write a heap (allocations) profile to this file at the end of the run")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := checkPushURL(*pushURL); err != nil {
		return usageError("drain: -pushgateway: %v", err)
	}
	stopProfiles, err := startProfiles(*cpuProfile, *memProfile)
	if err != nil {
		return err
	}
	defer func() {
		if err := stopProfiles(); err != nil {
			fmt.Fprintf(redacting{m.Stderr}, "reportmailer: %v\n", err)
		}
	}()
	c, err := m.loadConfig(*configPath)
	if err != nil {
		return err
	}
	if *name == "" {
		if len(c.Schedules) != 1 {
			return usageError("drain: -schedule is required when the config has %d schedules", len(c.Schedules))
		}
		*name = c.Schedules[0].Name
	}
	s, err := c.Schedule(*name)
	if err != nil {
		return usageError("drain: %v", err)
	}
	if s.Paused {
		fmt.Fprintln(m.Stdout, pausedLine(s.Name))
		return nil
	}
	a, err := m.newApp(ctx, c)
	if err != nil {
		return err
	}
	defer a.obs.close(a.logger)
	a.obs.unread = *pushURL == ""
	watch := newRunWatch()
	a.sqs = watch.sqs(a.sqs)
	ws, err := a.scheduleWorkers(s)
	if err != nil {
		return err
	}
	rec := startRun(s, "drain", time.Now())
	id := rec.RunID
	ctx = worker.WithRunID(ctx, id)
	settled := a.settleFromSES(ctx, s.Name)
	a.obs.metrics.Schedule(s.Name, period(s))
	// Pushed with every run: the alerts take the earliest in their
	// window, the time a CronJob that never succeeded has been failing.
	a.obs.metrics.StartClock(s.Name)
	mark := a.markRun()
	sum, err := runSlot(rec.context(ctx), ws.forRun(settled), s, worker.Slot{})
	cause := watch.failure(s, sum, err)
	a.recordRun(s, metrics.KindSlot, mark, sum, cause)
	rec.finish(sum, settled, cause)
	a.writeHistory(ctx, rec)
	if logFormat(m.Stderr, c.Log) == "json" {
		fmt.Fprintln(m.Stdout, summaryJSON(s.Name, id, sum, settled, cause))
	} else {
		fmt.Fprintln(m.Stdout, summaryLine(s.Name, sum, settled, cause))
	}
	if *pushURL != "" {
		// Nothing scrapes a CronJob, so the gauges serve refreshes are
		// read once, here, for the alerts on queue, DLQ and keys.
		a.readGauges(ctx, []config.Schedule{s})
		if err := a.push(ctx, *pushURL, s.Name); err != nil {
			a.logger.Error("pushgateway: the run's metrics were not pushed", "schedule", s.Name, "run_id", id, "err", err)
		}
	}
	if cause != nil {
		return cause
	}
	if !sum.OK() {
		return exitError{code: ExitPartial}
	}
	return nil
}

// summaryLine is drain's one line on stdout; cause, when the run
// failed, ends it. settled is what SES's events settled before the run.
func summaryLine(schedule string, s worker.Summary, settled settleRun, cause error) string {
	status := "ok"
	switch {
	case cause != nil:
		status = "failed"
	case !s.OK():
		status = "incomplete"
	}
	line := fmt.Sprintf("drain %s: %s: received %d, sent %d emails, acked %d, dropped %d, dead-lettered %d, retrying %d, "+
		"duplicates %d, maybe sent %d, maybe duplicated %d, refused %d",
		schedule, status, s.Received, s.Sent, s.Acked, s.Dropped, s.DeadLettered, s.Retrying,
		s.Duplicates, s.MaybeSent, s.MaybeDuplicated, s.Refused)
	if s.Due > 0 {
		line += fmt.Sprintf(", digest: %d users with %d events due, %d delivered", s.Users, s.Due, s.Delivered)
	}
	if s.Pending > 0 {
		line += fmt.Sprintf(", pending %d (digest events left for the next slot)", s.Pending)
	}
	if s.Unrecorded > 0 {
		line += fmt.Sprintf(", unrecorded %d (sent, but the ledger still says sending)", s.Unrecorded)
	}
	line += ", " + settled.summary()
	if cause != nil {
		line += ": " + cause.Error()
	}
	return line
}

// runWatch sees, for one schedule's runs, what the worker's Summary
// does not say: which queues SQS answered do not exist. That, or a run
// that halted before a single email was accepted (no ses:GetAccount,
// sending paused, the sender not verified, the reports unreadable, an
// earlier run's halt still holding), means the run could not do its
// work, which drain reports as a failure (exit 1) rather than as
// messages left for retry (exit 3).
type runWatch struct {
	mu      sync.Mutex
	missing map[string]error // queue URL -> the error that said it does not exist
}

func newRunWatch() *runWatch { return &runWatch{missing: map[string]error{}} }

// reset forgets the last run.
func (w *runWatch) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.missing = map[string]error{}
}

// sqs returns a client like c whose errors name the queue they are
// about, and which records the queues that do not exist.
func (w *runWatch) sqs(c *sqs.Client) *sqs.Client {
	return sqs.New(c.Options(), func(o *sqs.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Initialize.Add(middleware.InitializeMiddlewareFunc("reportmailer.QueueErrors",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					out, md, err := next.HandleInitialize(ctx, in)
					url := queueURLOf(in.Parameters)
					if err == nil || url == "" {
						return out, md, err
					}
					qe := &queueError{URL: url, Missing: queueMissing(err), Err: err}
					if qe.Missing {
						w.mu.Lock()
						w.missing[url] = qe
						w.mu.Unlock()
					}
					return out, md, qe
				}), middleware.Before)
		})
	})
}

// queueURLOf returns the QueueUrl of an SQS operation's input, or "".
func queueURLOf(params any) string {
	v := reflect.ValueOf(params)
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return ""
	}
	if f := v.FieldByName("QueueUrl"); f.IsValid() {
		if p, ok := f.Interface().(*string); ok {
			return aws.ToString(p)
		}
	}
	return ""
}

// queueMissing reports whether err says the queue does not exist: the
// typed QueueDoesNotExist of SQS's JSON protocol, or the bare error code
// that the query protocol (and emulators such as goaws) return.
func queueMissing(err error) bool {
	var dne *sqstypes.QueueDoesNotExist
	if errors.As(err, &dne) {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist":
			return true
		}
	}
	return false
}

// queueError is an SQS error with the queue it is about.
type queueError struct {
	URL     string
	Missing bool
	Err     error
}

func (e *queueError) Error() string {
	if e.Missing {
		return fmt.Sprintf("queue %s: does not exist: %v", e.URL, e.Err)
	}
	return fmt.Sprintf("queue %s: %v", e.URL, e.Err)
}

func (e *queueError) Unwrap() error { return e.Err }

// failure returns why the run of s, which ended with sum and err,
// failed, or nil: err from Drain (the queue failed), a dead-letter
// queue that does not exist, or a halt before any email was accepted.
// Each names the schedule, and a queue by its role and URL.
func (w *runWatch) failure(s config.Schedule, sum worker.Summary, err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	role := func(url string) string {
		if url == s.DeadLetterQueueURL {
			return "dead-letter queue"
		}
		return "queue"
	}
	var qe *queueError
	switch {
	case errors.As(err, &qe) && qe.Missing:
		return fmt.Errorf("schedule %q: %s %s: does not exist in this account and region", s.Name, role(qe.URL), qe.URL)
	case err != nil: // names the queue if it is the queue's
		return fmt.Errorf("schedule %q: %w", s.Name, err)
	case w.missing[s.DeadLetterQueueURL] != nil:
		return fmt.Errorf("schedule %q: dead-letter queue %s: does not exist in this account and region, so messages that cannot be delivered stay on the queue", s.Name, s.DeadLetterQueueURL)
	case sum.Halted && sum.Sent == 0:
		return fmt.Errorf("schedule %q: could not start sending: %s", s.Name, sum.Halt.Reason)
	}
	return nil
}

// period is the time between two runs of s by its cron spec, or 0 when
// it has none (a CronJob's own schedule drives it): cronPeriod from now.
func period(s config.Schedule) time.Duration {
	loc, err := time.LoadLocation(s.TimeZone)
	if s.Cron == "" || err != nil {
		return 0
	}
	sched, err := config.ParseCron(s.Cron, loc)
	if err != nil {
		return 0
	}
	return cronPeriod(sched, time.Now())
}

// Bounds of cronPeriod's look ahead: past periodHorizon and at least
// two gaps, or periodFirings firings at most (a spec that fires every
// minute would otherwise take tens of thousands).
const (
	periodHorizon = 8 * 7 * 24 * time.Hour
	periodFirings = 2000
)

// cronPeriod is the longest time between two firings of sched after
// from, over the next few weeks: what "no successful run in two
// periods" must allow for. The gap from one firing to the next alone
// would depend on the day it is taken: 0 7 * * 1-5 is a day apart on
// a Tuesday and three days on a Friday. 0 when sched does not fire.
func cronPeriod(sched cron.Schedule, from time.Time) time.Duration {
	var longest time.Duration
	prev := sched.Next(from)
	if prev.IsZero() {
		return 0
	}
	end := prev.Add(periodHorizon)
	for n, gaps := 0, 0; n < periodFirings; n++ {
		next := sched.Next(prev)
		if next.IsZero() {
			break
		}
		longest = max(longest, next.Sub(prev))
		prev = next
		if gaps++; gaps >= 2 && prev.After(end) {
			break
		}
	}
	return longest
}
