package worker

import "context"

// DeliveryResult is what became of one delivery (an event to a
// recipient) in a run, or, with no Recipient, of a whole message that
// was not done: for a run's history.
type DeliveryResult struct {
	RunID     string  `json:"-"`
	EventID   string  `json:"event_id"`
	Recipient string  `json:"recipient,omitempty"`
	MessageID string  `json:"message_id,omitempty"` // SES's, for a delivered one
	Outcome   Outcome `json:"outcome"`
	Code      Code    `json:"code,omitempty"`
}

type deliveryResultsKey struct{}

// WithDeliveryResults returns a context whose Drain calls f for each
// delivery sent or found sent, and for each event of a message
// dead-lettered, left for retry or handed back: a run's history. f is
// called from the run's goroutines and must be safe for concurrent use.
func WithDeliveryResults(ctx context.Context, f func(DeliveryResult)) context.Context {
	return context.WithValue(ctx, deliveryResultsKey{}, f)
}

// observe reports d to the run's history, if it keeps one.
func (r *run) observe(d DeliveryResult) {
	f, _ := r.stop.Value(deliveryResultsKey{}).(func(DeliveryResult))
	if f == nil {
		return
	}
	d.RunID = r.id
	f(d)
}

// observeMessage reports each event of a message that was not done.
func (r *run) observeMessage(st *msgState, f Failure, o Outcome) {
	for _, ev := range st.events {
		r.observe(DeliveryResult{EventID: ev.ID, Outcome: o, Code: f.Code})
	}
}
