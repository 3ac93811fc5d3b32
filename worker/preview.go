package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/reportmailer/reportmailer/worker/event"
)

// PreviewOptions changes what Preview sees.
type PreviewOptions struct {
	// Objects resolves S3 notifications in place of the worker's own
	// ObjectStore, for example from metadata given on a command line.
	// Nil uses the worker's.
	Objects ObjectStore
	// Now is when the emails are composed, which sets the links'
	// expiry. Zero means the worker's clock.
	Now time.Time
}

// Preview returns the emails a run would send if bodies were the
// bodies of the messages on the queue, in order: the same decoding,
// grouping by the worker's Mode, recipient policy, signing and
// rendering as Drain. It never calls the Queue, the Mailer or the
// Ledger: nothing is claimed, sent, deleted or dead-lettered, and so
// the ledger's de-duplication does not apply. It refuses reports in a
// bucket the worker does not serve, as Drain does, but it heads only
// the objects of S3 notifications, which it must resolve: a native
// event's report is not looked up, so a missing object is not found,
// and the email shows only the size and content type the event gives.
//
// The error joins one error for each body that a run would dead-letter
// or leave for retry (a report whose link cannot be signed fails its
// own body, as in a run), and one for each email that could not be
// composed; the emails that could are returned with it.
func (w *Worker) Preview(ctx context.Context, bodies []string, o PreviewOptions) ([]Email, error) {
	pw := *w
	if o.Objects != nil {
		pw.objects = o.Objects
	}
	now := o.Now
	if now.IsZero() {
		now = w.now()
	}
	pw.now = func() time.Time { return now }
	r := &run{w: &pw, ctx: ctx, held: map[string]Message{}}

	msgs := make([]Message, len(bodies))
	for i, b := range bodies {
		msgs[i] = Message{ID: fmt.Sprintf("preview-%d", i+1), Body: b}
	}
	batch := r.decode(msgs)
	var emails []Email
	var errs []error
	for _, d := range r.plan(batch) {
		links, serrs := r.signEvents(r.ctx, d.signs, d.recipient, d.events)
		var evs []event.Event
		var ls [][]Link
		for i, err := range serrs {
			if err != nil {
				d.from[i].fail(err, "link", CodeLinkFailed)
				continue
			}
			evs = append(evs, d.events[i])
			ls = append(ls, links[i])
		}
		if len(evs) == 0 {
			continue
		}
		e, err := r.render(d, evs, ls, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("email to %s: %w", d.recipient, err))
			continue
		}
		emails = append(emails, e)
	}
	for i, st := range batch {
		switch f := st.failed; {
		case f != nil && f.Code == CodeRecipientRefused:
			// The body gives its other emails; the refusal is logged,
			// and a run dead-letters it after them for a redrive.
			w.logger.Info("a run would send the other emails, then dead-letter it (recipient_refused)", "body", i+1)
		case f != nil && f.deadLetters():
			errs = append(errs, fmt.Errorf("body %d: a run would dead-letter it (%s): %s", i+1, f.Code, f.Reason))
		case f != nil:
			errs = append(errs, fmt.Errorf("body %d: a run would leave it for retry (%s): %s", i+1, f.Code, f.Reason))
		case st.drop:
			w.logger.Info("S3 test event: a run would delete it and send nothing", "body", i+1)
		}
	}
	return emails, errors.Join(errs...)
}
