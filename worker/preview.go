package worker

import (
	"context"
	"errors"
	"fmt"
	"time"
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
// the ledger's de-duplication does not apply.
//
// The error joins one error for each body that a run would dead-letter
// or leave for retry, and one for each email that could not be
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
		e, err := r.compose(d.user, d.recipient, d.events, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("email to %s: %w", d.recipient, err))
			continue
		}
		emails = append(emails, e)
	}
	for i, st := range batch {
		switch {
		case st.poison != "":
			errs = append(errs, fmt.Errorf("body %d: a run would dead-letter it: %s", i+1, st.poison))
		case st.retry != "":
			errs = append(errs, fmt.Errorf("body %d: a run would leave it for retry: %s", i+1, st.retry))
		case st.drop:
			w.logger.Info("S3 test event: a run would delete it and send nothing", "body", i+1)
		}
	}
	return emails, errors.Join(errs...)
}
