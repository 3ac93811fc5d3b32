package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/store"
)

const resendSynopsis = `resend -config FILE (-event-id ID | -event FILE) [-schedule NAME] [-to ADDR] [-force] [-dry-run] [-by NAME]

Delivers one event again, directly, through the worker's own sending
(the same links, templates, ledger and SES pacing as drain). It finds
the event in the dead-letter queues (or reads the message body from
-event FILE), and first prints, for each recipient, what the ledger
says and what it will do.

Without -force it sends only deliveries the ledger has no record of:
one marked sent, or sending (maybe sent: SES may have accepted it), is
skipped, and the command says so and exits 3. With -force those are
sent again; each one is named as it is. -to limits the resend to one
of the event's recipients, who must still pass recipients.allowed_domains.
Each email sent is recorded on its ledger record as a resend: who asked
(-by, default $USER), when, and SES's message id. A message taken from
a dead-letter queue is deleted from it only once every allowed
recipient of each of its events has a sent record and the policy
refused none; with -to it is never deleted (use "dlq delete"). -dry-run prints the plan and changes nothing.
With links.trace, a resent email's links carry the same token as the
first (it is a function of the event id and the recipient): a delivery
revoked with "reportmailer revoke" stays denied after the resend until
"reportmailer revoke -undo" takes its token off the deny list.`

func (m *Main) resend(ctx context.Context, args []string) error {
	fs := m.newFlagSet("resend", resendSynopsis)
	configPath := fs.String("config", "", "config file (default $REPORTMAILER_CONFIG)")
	name := fs.String("schedule", "", "the schedule whose dead-letter queue holds the event, or (with -event) whose settings send it; may be left out when the config has only one, or with -event-id")
	eventID := fs.String("event-id", "", "the event to resend, looked up in the dead-letter queues")
	eventFile := fs.String("event", "", "a file holding the message body to resend (an event as producers send it)")
	to := fs.String("to", "", "send only to this one of the event's recipients")
	force := fs.Bool("force", false, "send deliveries the ledger says are sent or maybe sent, too")
	dry := fs.Bool("dry-run", false, "print what would be sent, to whom, and what the ledger says; send nothing")
	by := fs.String("by", "", "who asks, for the ledger (default $USER)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if (*eventID == "") == (*eventFile == "") {
		return usageError("resend: give exactly one of -event-id and -event")
	}
	who := cmp.Or(*by, m.Getenv("USER"), "unknown")
	c, err := m.loadConfig(*configPath)
	if err != nil {
		return err
	}
	scheds, err := schedulesFor(c, "resend", *name)
	if err != nil {
		return err
	}
	a, err := m.newApp(ctx, c)
	if err != nil {
		return err
	}
	ledger := &store.Ledger{Client: a.s3, Bucket: c.Ledger.Bucket, Prefix: c.Ledger.Prefix}

	// The message: from a dead-letter queue, held invisible while it is
	// resent, or from a file.
	var (
		sched config.Schedule
		body  string
		held  *deadLetter
	)
	if *eventFile != "" {
		if len(scheds) != 1 {
			return usageError("resend: -schedule is required with -event when the config has %d schedules", len(scheds))
		}
		b, err := os.ReadFile(*eventFile)
		if err != nil {
			return usageError("resend: -event: %v", err)
		}
		sched, body = scheds[0], string(b)
	} else {
		for _, s := range scheds {
			err := scanDeadLetters(ctx, a.sqs, s, 0, func(d deadLetter) (bool, error) {
				if !slices.Contains(d.EventIDs, *eventID) {
					return false, nil
				}
				// Reading hid it for dlqHold only; the run may take its
				// whole budget, and a dead letter that reappeared
				// meanwhile, even during the rest of a long scan, would be
				// received again under a new receipt handle, leaving
				// this one stale. So hold it now and stop scanning.
				if _, err := a.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(s.DeadLetterQueueURL),
					ReceiptHandle: d.msg.ReceiptHandle, VisibilityTimeout: int32(resendHold(s) / time.Second)}); err != nil {
					return false, fmt.Errorf("resend: dead-letter queue %s: hold %s for the resend: %w", s.DeadLetterQueueURL, d.MessageID, err)
				}
				held, sched = &d, s
				return true, errStopScan // kept: put back below, or deleted once sent
			})
			if err = m.warnPutBack(err); err != nil {
				return fmt.Errorf("schedule %q: %w", s.Name, err)
			}
			if held != nil {
				break
			}
		}
		if held == nil {
			return fmt.Errorf("resend: event %q is in no dead-letter queue of %s; give the body with -event FILE", *eventID, scheduleNames(scheds))
		}
		body = aws.ToString(held.msg.Body)
		fmt.Fprintf(m.Stdout, "event %s: dead letter %s in %s (%s, %s): %s\n", *eventID, held.MessageID, sched.Name, or(string(held.Class), "-"), or(string(held.Code), "-"), oneLine(held.Reason, 200))
	}
	putBack := func() {
		if held != nil {
			_, _ = a.sqs.ChangeMessageVisibility(context.WithoutCancel(ctx), &sqs.ChangeMessageVisibilityInput{
				QueueUrl: aws.String(sched.DeadLetterQueueURL), ReceiptHandle: held.msg.ReceiptHandle, VisibilityTimeout: 0})
		}
	}

	dec, err := event.Decode([]byte(body))
	if err != nil {
		putBack()
		return fmt.Errorf("resend: the message is not an event: %w", err)
	}
	policy := worker.RecipientPolicy{AllowedDomains: c.Recipients.AllowedDomains, Max: c.Recipients.Max}
	type delivery struct {
		ev     event.Event
		rcpt   string
		key    string
		rec    store.Record
		exists bool
		send   bool
	}
	var plan []*delivery
	found := false
	// every is each allowed delivery of every event in the body, -to or
	// not, and refusedAny whether the policy refused any: the dead
	// letter goes only when, after the run, each of them is sent and
	// none was refused.
	var every []string
	refusedAny := false
	for _, ev := range dec.Events {
		if ev.User.Email == "" {
			putBack()
			return fmt.Errorf("resend: event %s is an S3 notification, whose recipients come from its object's metadata; redrive it instead", ev.ID)
		}
		var reports []string
		for _, r := range ev.Reports {
			reports = append(reports, "s3://"+r.Bucket+"/"+r.Key)
		}
		fmt.Fprintf(m.Stdout, "event %s of user %s <%s>, schedule %s: %d reports: %s\n", ev.ID, ev.User.ID, ev.User.Email, sched.Name, len(reports), strings.Join(reports, ", "))
		allowed, refused := policy.Apply(ev.User.Email, ev.Recipients)
		refusedAny = refusedAny || len(refused) > 0
		for _, rcpt := range allowed {
			every = append(every, worker.DeliveryKey(ev.ID, rcpt))
		}
		for _, r := range refused {
			fmt.Fprintf(m.Stdout, "  %s to %s: refused by the recipient policy: %s\n", ev.ID, r.Address, r.Reason)
			if *to != "" && strings.EqualFold(r.Address, *to) {
				putBack()
				return usageError("resend: -to %q: refused by the recipient policy: %s", *to, r.Reason)
			}
		}
		for _, rcpt := range allowed {
			if *to != "" && !strings.EqualFold(rcpt, *to) {
				continue
			}
			found = true
			d := &delivery{ev: ev, rcpt: rcpt, key: worker.DeliveryKey(ev.ID, rcpt)}
			if d.rec, d.exists, err = ledger.Lookup(ctx, d.key); err != nil {
				putBack()
				return err
			}
			plan = append(plan, d)
		}
	}
	if *to != "" && !found {
		putBack()
		return usageError("resend: -to %q: not a recipient of the event", *to)
	}

	skipped := 0
	for _, d := range plan {
		state := "no record: not sent"
		switch {
		case !d.exists:
			d.send = true
		case d.rec.State == "sent" && d.rec.Covered:
			state = fmt.Sprintf("covered at %s: its reports went out in newer events' emails %s", d.rec.SentAt.Format(time.RFC3339), or(strings.Join(d.rec.CoveredBy, ", "), "?"))
			if n := len(d.rec.Resends); n > 0 {
				state += fmt.Sprintf(", resent %d times", n)
			}
		case d.rec.State == "sent":
			state = fmt.Sprintf("sent at %s as SES message %s", d.rec.SentAt.Format(time.RFC3339), or(d.rec.MessageID, "?"))
			if n := len(d.rec.Resends); n > 0 {
				state += fmt.Sprintf(", resent %d times", n)
			}
		case d.rec.State == "sending":
			state = fmt.Sprintf("maybe sent: sending since %s as email %s, no result recorded", d.rec.SendingAt.Format(time.RFC3339), d.rec.EmailID)
		case d.rec.State == "released":
			state, d.send = "released: not sent", true
		default:
			state = "claimed by run " + d.rec.RunID + ", which may still send it"
		}
		action := "will send"
		switch {
		case d.send:
		case d.rec.State == "claimed":
			action = "skip: another run holds it; try again after ledger.claim_timeout"
		case *force:
			d.send = true
			action = "will send AGAIN (-force)"
		default:
			action = "skip: give -force to send it again"
		}
		if !d.send {
			skipped++
		}
		fmt.Fprintf(m.Stdout, "  %s to %s: ledger %s: %s; %s\n", d.ev.ID, d.rcpt, ledger.RecordURI(d.key), state, action)
	}
	var sends []*delivery
	for _, d := range plan {
		if d.send {
			sends = append(sends, d)
		}
	}
	if *dry {
		putBack()
		fmt.Fprintf(m.Stdout, "resend: dry run: would send %d, skip %d\n", len(sends), skipped)
		return nil
	}
	if len(sends) == 0 {
		putBack()
		fmt.Fprintf(m.Stdout, "resend: sent 0, skipped %d\n", skipped)
		return exitError{code: ExitPartial, err: errors.New("resend: nothing sent: every delivery is sent or maybe sent; check with the recipient, then give -force to send again")}
	}

	// -force: the records of the deliveries sent again are deleted, so
	// the worker's own claim takes them; what they said (SES message
	// id, times, attempts) goes into the resend note as Previous.
	for _, d := range sends {
		if !d.exists || d.rec.State == "released" {
			continue
		}
		if _, err := ledger.SettleRecord(ctx, d.key, false, true); err != nil {
			putBack()
			return err
		}
		fmt.Fprintf(m.Stdout, "  %s to %s: cleared ledger record (was %s) to send it again\n", d.ev.ID, d.rcpt, d.rec.State)
	}

	// The run sends the planned deliveries only; the skipped ones'
	// records stay as they are.
	var only []string
	for _, d := range sends {
		only = append(only, d.rcpt)
	}
	mq := &memQueue{msg: worker.Message{ID: "resend-" + worker.NewID()[:8], Body: body}}
	w, err := a.workerOn(sched, worker.UnsettledDeadLetter, only, mq)
	if err != nil {
		putBack()
		return err
	}
	sum, err := w.Drain(ctx)
	if err != nil {
		putBack()
		return err
	}
	sent := 0
	var errs []error
	for _, d := range sends {
		rec, ok, err := ledger.Lookup(ctx, d.key)
		if err != nil || !ok || rec.State != "sent" {
			errs = append(errs, fmt.Errorf("%s to %s: not sent (ledger %s)", d.ev.ID, d.rcpt, or(rec.State, "no record")))
			continue
		}
		note := store.Resend{By: who, At: rec.SentAt, MessageID: rec.MessageID, EmailID: rec.EmailID, Forced: d.exists && d.rec.State != "released", Was: d.rec.State}
		if note.Forced {
			note.Previous = &store.PreviousSend{RunID: d.rec.RunID, EmailID: d.rec.EmailID, MessageID: d.rec.MessageID,
				SendingAt: d.rec.SendingAt, SentAt: d.rec.SentAt, Attempts: d.rec.Attempts, SettledBy: d.rec.SettledBy}
		}
		rec, err = ledger.AddResends(ctx, d.key, append(slices.Clone(d.rec.Resends), note))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s to %s: sent as SES message %s, but the resend is not recorded: %w", d.ev.ID, d.rcpt, note.MessageID, err))
			continue
		}
		sent++
		fmt.Fprintf(m.Stdout, "  %s to %s: sent as SES message %s; resend %d of this delivery, recorded by %s\n", d.ev.ID, d.rcpt, note.MessageID, len(rec.Resends), who)
	}
	if f := mq.failure(); f != nil {
		errs = append(errs, fmt.Errorf("the run: %s", f))
	}
	if len(errs) > 0 || !mq.done() {
		putBack()
		fmt.Fprintf(m.Stdout, "resend: sent %d, skipped %d; the dead letter stays\n", sent, skipped)
		return exitError{code: ExitFailure, err: fmt.Errorf("resend: %w", errors.Join(errs...))}
	}
	if held != nil {
		if skipped > 0 {
			putBack()
			fmt.Fprintf(m.Stdout, "resend: sent %d, skipped %d; the dead letter stays for the skipped ones\n", sent, skipped)
			return exitError{code: ExitPartial}
		}
		if why, err := deadLetterUnfinished(ctx, ledger, *to, refusedAny, every); err != nil || why != "" {
			putBack()
			if err != nil {
				why = err.Error()
			}
			fmt.Fprintf(m.Stdout, "resend: sent %d, skipped %d; the dead letter %s stays: %s\n", sent, skipped, held.MessageID, why)
			if *to != "" {
				return nil
			}
			return exitError{code: ExitPartial}
		}
		if _, err := a.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(sched.DeadLetterQueueURL), ReceiptHandle: held.msg.ReceiptHandle}); err != nil {
			putBack()
			fmt.Fprintf(m.Stdout, "resend: sent %d, skipped %d; the dead letter %s is STILL in %s: delete it with `reportmailer dlq delete -config FILE -event-id %s`\n",
				sent, skipped, held.MessageID, sched.DeadLetterQueueURL, *eventID)
			return exitError{code: ExitPartial, err: fmt.Errorf("resend: every email went out, but dead letter %s was not deleted (a redrive of it sends nothing twice): %w", held.MessageID, err)}
		}
		fmt.Fprintf(m.Stdout, "resend: sent %d, skipped %d; deleted dead letter %s (%d emails in the run)\n", sent, skipped, held.MessageID, sum.Sent)
		return nil
	}
	fmt.Fprintf(m.Stdout, "resend: sent %d, skipped %d\n", sent, skipped)
	if skipped > 0 {
		return exitError{code: ExitPartial}
	}
	return nil
}

// deadLetterUnfinished says why a resent dead letter must stay in its
// queue, or "" when it may go: -to sent one delivery of it only, its
// recipient policy refused some recipient, or one of its deliveries
// (keys) has no sent record.
func deadLetterUnfinished(ctx context.Context, l *store.Ledger, to string, refused bool, keys []string) (string, error) {
	switch {
	case to != "":
		return "-to sends to one recipient only; delete it once every recipient has theirs", nil
	case refused:
		return "the recipient policy refuses some of its recipients; redrive it once they are allowed", nil
	}
	for _, k := range keys {
		rec, ok, err := l.Lookup(ctx, k)
		if err != nil {
			return "", err
		}
		if !ok || rec.State != "sent" {
			return fmt.Sprintf("delivery %s is %s, not sent", l.RecordURI(k), or(rec.State, "not recorded")), nil
		}
	}
	return "", nil
}

// resendHoldMargin is how much longer than its schedule's budget a
// resend hides the dead letter it sends: the ledger reads before the
// run and the resend notes after it.
const resendHoldMargin = 2 * time.Minute

// resendHold is how long a resend hides the dead letter it sends: the
// run's budget and a margin, within SQS's 12 hours.
func resendHold(s config.Schedule) time.Duration {
	return min(s.Budget+resendHoldMargin, 12*time.Hour)
}

func scheduleNames(ss []config.Schedule) string {
	var n []string
	for _, s := range ss {
		n = append(n, s.Name)
	}
	return "schedule " + strings.Join(n, ", ")
}

// memQueue is a worker.Queue holding the one message a resend sends:
// the dead letter stays where it is until the emails went out.
type memQueue struct {
	mu       sync.Mutex
	msg      worker.Message
	given    bool
	deleted  bool
	failed   *worker.Failure
	released bool
}

var _ worker.Queue = (*memQueue)(nil)

func (q *memQueue) Receive(context.Context, int, time.Duration) ([]worker.Message, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.given {
		return nil, nil
	}
	q.given = true
	return []worker.Message{q.msg}, nil
}

func (q *memQueue) Delete(context.Context, []worker.Message) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deleted = true
	return nil
}

func (q *memQueue) Release(context.Context, []worker.Message) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.released = true
	return nil
}

func (q *memQueue) Extend(context.Context, []worker.Message, time.Duration) error { return nil }

func (q *memQueue) DeadLetter(_ context.Context, _ worker.Message, f worker.Failure) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.failed = &f
	return nil
}

// done reports whether the run acknowledged the message: every email
// of it went out, or was sent before.
func (q *memQueue) done() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.deleted
}

func (q *memQueue) failure() *worker.Failure {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.failed
}
