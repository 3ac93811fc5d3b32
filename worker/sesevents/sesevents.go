// Package sesevents settles the ledger from SES's own record of what it
// sent. SES publishes a sending event for each email of a configuration
// set with an event destination (through EventBridge or SNS to an SQS
// queue), and each email the worker sends carries its ledger id as the
// message tag [Tag]. A delivery left "sending" (SES may or may not have
// accepted it: the answer was lost, or the worker died) is completed as
// sent when an event proves SES accepted its email, and released when
// an event proves SES never sent it. See docs/operations.md for setting
// up the event destination.
package sesevents

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/reportmailer/reportmailer/worker"
)

// Settler is the ledger, as far as events can tell it something. Both
// methods are idempotent and safe for concurrent use, and change only
// deliveries of the email that are still "sending" under that email id.
type Settler interface {
	// SettleEmail records the deliveries of the email emailID as sent,
	// with SES's message id, and returns how many it changed.
	SettleEmail(ctx context.Context, emailID, messageID string) (int, error)
	// ReleaseEmail frees the deliveries of the email emailID, which SES
	// did not send, for another try, and returns how many it changed.
	ReleaseEmail(ctx context.Context, emailID string) (int, error)
}

// Queue is the queue the events arrive on. *queue.SQS is one.
type Queue interface {
	Receive(ctx context.Context, max int, wait time.Duration) ([]worker.Message, error)
	Delete(ctx context.Context, msgs []worker.Message) error
}

// Defaults for Reader.
const (
	// MaxMessagesDefault bounds one Drain. An email makes one event per
	// published type (Send, and Delivery, Open... when the destination
	// publishes them), so a run that sent many emails leaves many
	// events for the next.
	MaxMessagesDefault = 1000
	// WaitDefault is each receive's long-poll wait: short, so an empty
	// queue costs a run one second, and not zero, since a short poll
	// may answer empty while the queue holds messages.
	WaitDefault = time.Second
	// VisibilityTimeout is what the queue should hide a received
	// message for: longer than a Drain, so a message left on the queue
	// (unreadable, or its settling failed) is not received again in the
	// same Drain, and short enough that the next run tries it again.
	VisibilityTimeout = 2 * time.Minute
)

// Reader reads SES's events from a queue and settles the ledger.
type Reader struct {
	// Queue holds the events. Required.
	Queue Queue
	// Settler is the ledger. Required.
	Settler Settler
	// MaxMessages bounds how many messages one Drain receives. Default
	// MaxMessagesDefault.
	MaxMessages int
	// Wait is each receive's long-poll wait, 0 to 20s. Default
	// WaitDefault.
	Wait time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Result counts what one Drain did.
type Result struct {
	Received int // messages received
	Events   int // events about emails of ours
	Settled  int // deliveries recorded as sent
	Released int // deliveries released: SES did not send their email
	Ignored  int // messages deleted with nothing to settle: not ours, or an event type that proves nothing
	Left     int // messages left on the queue: unreadable, or settling failed
	// Emptied is set when the last receive found the queue empty, so
	// every event published before the Drain started was read (SQS
	// permitting: a receive can miss messages on a few servers).
	Emptied bool
}

// LogValue makes a Result log as a group of counts.
func (r Result) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Int("received", r.Received), slog.Int("events", r.Events),
		slog.Int("settled", r.Settled), slog.Int("released", r.Released),
		slog.Int("ignored", r.Ignored), slog.Int("left", r.Left),
		slog.Bool("emptied", r.Emptied))
}

// ErrIncomplete is wrapped by Drain's error when it stopped before the
// queue was empty: MaxMessages received, or ctx cancelled.
var ErrIncomplete = errors.New("the events queue was not read to the end")

// Drain reads the queue until it is empty, MaxMessages are received or
// ctx is cancelled. Each message is parsed ([Parse]); an event proving
// SES accepted its email settles the email's deliveries, one proving it
// did not releases them. The message is then deleted, and so is every
// message not about an email of ours. A message that cannot be read, an
// SNS subscription message, and an event whose settling failed are
// left: they come back after the queue's visibility timeout, and the
// queue's RedrivePolicy, if it has one, moves those that keep failing to
// its dead-letter queue.
//
// The error is non-nil when the queue could not be received from (the
// Result says what was done before), or, wrapping [ErrIncomplete], when
// Drain stopped before the queue was empty. A failed delete is only
// logged: the message comes back and settles nothing twice.
func (r *Reader) Drain(ctx context.Context) (Result, error) {
	if r.Queue == nil || r.Settler == nil {
		return Result{}, errors.New("ses events: a queue and a settler are required")
	}
	max := r.MaxMessages
	if max <= 0 {
		max = MaxMessagesDefault
	}
	wait := r.Wait
	if wait <= 0 {
		wait = WaitDefault
	}
	// Once received, a batch is settled and deleted even if ctx is
	// cancelled: its receive is short, and its work is a few calls.
	work := context.WithoutCancel(ctx)
	var res Result
	for res.Received < max {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("ses events: %w: %w", ErrIncomplete, err)
		}
		msgs, err := r.Queue.Receive(work, min(10, max-res.Received), wait)
		if err != nil {
			return res, fmt.Errorf("ses events: receive: %w", err)
		}
		if len(msgs) == 0 {
			res.Emptied = true
			break
		}
		res.Received += len(msgs)
		done := r.handle(work, msgs, &res)
		if len(done) == 0 {
			continue
		}
		if err := r.Queue.Delete(work, done); err != nil {
			r.logger(ctx).Warn("ses events: delete failed; the messages come back and settle nothing twice", "err", err)
		}
	}
	r.logger(ctx).Info("ses events read", "result", res)
	if !res.Emptied {
		return res, fmt.Errorf("ses events: %w: stopped after %d messages; the rest are read next run", ErrIncomplete, res.Received)
	}
	if res.Left > 0 {
		// An event left unapplied may be the Send event of a delivery
		// that now looks unsettled: resending it could send it twice.
		return res, fmt.Errorf("ses events: %w: %d messages left on the queue, unread or not applied; they are tried again next run", ErrIncomplete, res.Left)
	}
	return res, nil
}

// handle settles a batch, each message in its own goroutine since each
// is a few ledger reads and writes, and returns the messages to delete.
func (r *Reader) handle(ctx context.Context, msgs []worker.Message, res *Result) []worker.Message {
	outs := make([]outcome, len(msgs))
	var wg sync.WaitGroup
	for i, m := range msgs {
		wg.Go(func() { outs[i] = r.settle(ctx, m) })
	}
	wg.Wait()
	var done []worker.Message
	for i, o := range outs {
		res.Settled += o.settled
		res.Released += o.released
		if o.ours {
			res.Events++
		}
		switch {
		case o.left:
			res.Left++
		default:
			if !o.ours || o.proof == Unknown {
				res.Ignored++
			}
			done = append(done, msgs[i])
		}
	}
	return done
}

// outcome is what became of one message.
type outcome struct {
	ours              bool  // an event about an email of ours
	proof             Proof // what it proves
	settled, released int
	left              bool // leave it on the queue
}

func (r *Reader) settle(ctx context.Context, m worker.Message) outcome {
	log := r.logger(ctx).With("sqs_message_id", m.ID)
	ev, err := Parse([]byte(m.Body))
	var fe *FieldError
	switch {
	case errors.Is(err, ErrUnrelated):
		log.Debug("ses events: not about an email of ours; deleted", "why", err)
		return outcome{}
	case errors.Is(err, ErrSubscriptionConfirmation):
		log.Warn("ses events: an SNS subscription message; left on the queue, whose dead-letter queue keeps it for an operator to confirm", "err", err)
		return outcome{left: true}
	case errors.As(err, &fe):
		log.Warn("ses events: unreadable message left on the queue; its RedrivePolicy moves it to the dead-letter queue", "receive_count", m.ReceiveCount, "err", err)
		return outcome{left: true}
	case err != nil: // Parse returns no other error
		log.Error("ses events: message left on the queue", "err", err)
		return outcome{left: true}
	}
	log = log.With("event", ev.Type, "email_id", ev.EmailID, "ses_message_id", ev.MessageID)
	o := outcome{ours: true, proof: ev.Proves()}
	switch o.proof {
	case Accepted:
		n, err := r.Settler.SettleEmail(ctx, ev.EmailID, ev.MessageID)
		if err != nil {
			log.Warn("ses events: settling failed; left for the next run", "err", err)
			return outcome{ours: true, proof: o.proof, left: true}
		}
		o.settled = n
		if n > 0 {
			log.Info("ses events: deliveries settled as sent", "deliveries", n)
		} else {
			log.Debug("ses events: nothing to settle")
		}
	case NotSent:
		n, err := r.Settler.ReleaseEmail(ctx, ev.EmailID)
		if err != nil {
			log.Warn("ses events: release failed; left for the next run", "err", err)
			return outcome{ours: true, proof: o.proof, left: true}
		}
		o.released = n
		if n > 0 {
			log.Info("ses events: SES did not send the email; deliveries released", "deliveries", n)
		} else {
			log.Debug("ses events: SES did not send the email; nothing to release")
		}
	default:
		log.Debug("ses events: an event type that proves nothing; deleted")
	}
	return o
}

// logger is the logger for work done in ctx: with the schedule and
// run_id of the run ctx belongs to, if any, since one Reader serves every schedule.
func (r *Reader) logger(ctx context.Context) *slog.Logger {
	l := r.Logger
	if l == nil {
		l = slog.Default()
	}
	if kv := worker.LogAttrs(ctx); kv != nil {
		l = l.With(kv...)
	}
	return l
}
