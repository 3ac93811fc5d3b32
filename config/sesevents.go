package config

import (
	"fmt"
	"time"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/sesevents"
)

// SES events defaults. The worker owns the grace and the policies.
const (
	// SESEventsGraceDefault is the default ses_events.grace.
	SESEventsGraceDefault = worker.SettleGraceDefault
	// UnsettledDeadLetter and UnsettledResend are the values of
	// ses_events.unsettled.
	UnsettledDeadLetter = string(worker.UnsettledDeadLetter)
	UnsettledResend     = string(worker.UnsettledResend)
	// SESEventsUnsettledDefault is the default ses_events.unsettled.
	SESEventsUnsettledDefault = UnsettledDeadLetter
	// SESEventsMaxEventsDefault is the default ses_events.max_events.
	SESEventsMaxEventsDefault = sesevents.MaxMessagesDefault
)

// SES events limits.
const (
	// SESEventsGraceMin is the shortest grace: SES publishes an email's
	// Send event within seconds, but EventBridge and SNS deliver on a
	// best-effort basis, and a grace shorter than their delay would
	// give up on emails whose event is on its way.
	SESEventsGraceMin = time.Minute
	// SESEventsGraceMax is SQS's longest retention: a message waiting
	// longer than that for its email to be settled would be gone.
	SESEventsGraceMax = 14 * 24 * time.Hour
)

// SESEvents is where the worker reads SES's own record of what it sent,
// and what it does with a delivery that record does not settle. See
// docs/operations.md for setting up the event destination.
//
// A delivery is "sending" from just before its SendEmail call until the
// worker records SES's answer. When the answer is lost (a connection
// reset after SES accepted the email, a crash), the delivery stays
// "sending": the email may or may not have gone. SES publishes a Send
// event for every email it accepts from a configuration set with an
// event destination for it, tagged with the email's id; at the start of
// each run the worker reads those events and records the deliveries
// they name as sent, without an operator.
type SESEvents struct {
	// QueueURL is the SQS queue the configuration set's event
	// destination publishes to (through an EventBridge rule or an SNS
	// topic). Default none: the worker reads no events, and a delivery
	// left "sending" is settled only by an operator. It must not be a
	// schedule's queue or dead-letter queue. Give it a RedrivePolicy:
	// messages the worker cannot read are left there for it.
	QueueURL string `yaml:"queue_url"`
	// Grace is how long a delivery may stay "sending" without an event
	// settling it before the Unsettled policy applies, counted from when
	// it became "sending" (by S3's clock). Default 15m; 1m to 336h.
	Grace time.Duration `yaml:"grace"`
	// Unsettled is what happens to a delivery still "sending" after
	// Grace: "dead_letter" (the default) dead-letters its message with
	// code maybe_sent and a reason naming the recipient, the ledger
	// record and the command that settles it; "resend" treats the email
	// as not sent and sends it again. "resend" needs QueueURL and
	// sender.configuration_set, and is safe only when that set's
	// destination publishes Send events to QueueURL: then a delivery
	// with no Send event after Grace was not accepted. A run that could not read the
	// events queue to the end dead-letters instead.
	Unsettled string `yaml:"unsettled"`
	// MaxEvents bounds how many messages a run reads from QueueURL
	// before it starts on its own queue; the rest are read by the next
	// run. Default 1000; at least 10.
	MaxEvents int `yaml:"max_events"`
}

// setSESEventsDefaults fills in ses_events' defaults.
func (c *Config) setSESEventsDefaults() {
	e := &c.SESEvents
	if e.Grace == 0 {
		e.Grace = SESEventsGraceDefault
	}
	if e.Unsettled == "" {
		e.Unsettled = SESEventsUnsettledDefault
	}
	if e.MaxEvents == 0 {
		e.MaxEvents = SESEventsMaxEventsDefault
	}
}

// validateSESEvents checks ses_events.
func (c *Config) validateSESEvents() []error {
	var errs []error
	bad := func(field string, value any, reason string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Value: value, Reason: fmt.Sprintf(reason, args...)})
	}
	e := c.SESEvents
	if u := e.QueueURL; u != "" {
		if err := checkQueueURL(u); err != nil {
			bad("ses_events.queue_url", u, "%v", err)
		}
		for i, s := range c.Schedules {
			switch u {
			case s.QueueURL:
				bad("ses_events.queue_url", u, "is schedules[%d].queue_url: the worker would read report events as SES events, and delete them", i)
			case s.DeadLetterQueueURL:
				bad("ses_events.queue_url", u, "is schedules[%d].dead_letter_queue_url", i)
			}
		}
	}
	if g := e.Grace; g < SESEventsGraceMin || g > SESEventsGraceMax {
		bad("ses_events.grace", g, "is not between 1m and 336h")
	}
	switch e.Unsettled {
	case UnsettledDeadLetter:
	case UnsettledResend:
		if e.QueueURL == "" {
			bad("ses_events.unsettled", e.Unsettled, "needs ses_events.queue_url: without SES's events a delivery with no answer may have been accepted, and resending it could send the email twice")
		}
		if c.Sender.ConfigurationSet == "" {
			bad("ses_events.unsettled", e.Unsettled, "needs sender.configuration_set, the set whose event destination publishes Send events to ses_events.queue_url: SES publishes events only for emails sent with a set, and without them every email whose answer was lost would be sent again")
		}
	default:
		bad("ses_events.unsettled", e.Unsettled, "is not %s or %s", UnsettledDeadLetter, UnsettledResend)
	}
	if e.MaxEvents < 10 {
		bad("ses_events.max_events", e.MaxEvents, "is less than 10")
	}
	return errs
}
