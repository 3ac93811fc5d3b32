package sesevents_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/sesevents"
)

// fakeQueue is a small sesevents.Queue: batches to hand out, and
// errors to give.
type fakeQueue struct {
	batches    [][]worker.Message
	receiveErr error
	deleteErr  error
	deleted    []string
}

func (q *fakeQueue) Receive(context.Context, int, time.Duration) ([]worker.Message, error) {
	if q.receiveErr != nil {
		return nil, q.receiveErr
	}
	if len(q.batches) == 0 {
		return nil, nil
	}
	b := q.batches[0]
	q.batches = q.batches[1:]
	return b, nil
}

func (q *fakeQueue) Delete(_ context.Context, msgs []worker.Message) error {
	for _, m := range msgs {
		q.deleted = append(q.deleted, m.ID)
	}
	return q.deleteErr
}

func TestDrainReceiveFails(t *testing.T) {
	q := &fakeQueue{receiveErr: errors.New("queue https://sqs.example/events: AccessDenied")}
	r := &sesevents.Reader{Queue: q, Settler: newLedger(nil), Logger: slog.New(slog.DiscardHandler)}
	res, err := r.Drain(context.Background())
	if err == nil || !strings.Contains(err.Error(), "AccessDenied") || errors.Is(err, sesevents.ErrIncomplete) {
		t.Errorf("Drain error = %v, want the receive error", err)
	}
	if res.Emptied {
		t.Error("a queue that could not be read is reported emptied")
	}
}

// TestDrainDeleteFailsQuietly: a failed delete leaves settled events on
// the queue, where they settle nothing twice; the run goes on.
func TestDrainDeleteFailsQuietly(t *testing.T) {
	body := withEmail(t, readSample(t, "raw-send.json"), "email-a", "ses-a")
	q := &fakeQueue{batches: [][]worker.Message{{{ID: "m1", Body: string(body)}}}, deleteErr: errors.New("delete batch: 500")}
	l := newLedger(map[string]int{"email-a": 1})
	r := &sesevents.Reader{Queue: q, Settler: l, Logger: slog.New(slog.DiscardHandler)}
	res, err := r.Drain(context.Background())
	if err != nil || res.Settled != 1 || !res.Emptied {
		t.Errorf("Drain = %+v, %v; want the delivery settled and the queue emptied", res, err)
	}
}

func TestDrainStopsWhenCancelled(t *testing.T) {
	q := &fakeQueue{batches: [][]worker.Message{{{ID: "m1", Body: "{}"}}}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := &sesevents.Reader{Queue: q, Settler: newLedger(nil), Logger: slog.New(slog.DiscardHandler)}
	res, err := r.Drain(ctx)
	if !errors.Is(err, sesevents.ErrIncomplete) || res.Received != 0 {
		t.Errorf("Drain = %+v, %v; want nothing received and ErrIncomplete", res, err)
	}
}

func TestDrainNeedsQueueAndSettler(t *testing.T) {
	if _, err := (&sesevents.Reader{Queue: &fakeQueue{}}).Drain(context.Background()); err == nil {
		t.Error("Drain without a settler: no error")
	}
}
