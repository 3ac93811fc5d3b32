package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/templates"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
)

// throttledSigner signs the first ok reports, then answers as a KMS
// signer does when KMS still throttles after the SDK's retries.
type throttledSigner struct {
	mu    sync.Mutex
	ok    int
	calls int
	until time.Time
}

func (s *throttledSigner) Sign(ctx context.Context, r event.Report, now time.Time) (worker.Link, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls <= s.ok {
		return fakeSigner{}.Sign(ctx, r, now)
	}
	return worker.Link{}, worker.HaltUntil(errors.New("kms sign: ThrottlingException: rate exceeded"), s.until)
}

// TestDrainSignHaltHaltsTheRun: a signer's halt (KMS throttling past
// the SDK's retries) stops the run's sending and hides the unsent
// messages until the halt's time, as a HeadObject or SES halt does,
// instead of failing message by message until they are dead-lettered.
func TestDrainSignHaltHaltsTheRun(t *testing.T) {
	for _, mode := range []worker.Mode{worker.ModeEach, worker.ModeDigest} {
		t.Run(string(mode), func(t *testing.T) {
			var bodies []string
			for i := range 10 {
				bodies = append(bodies, native(fmt.Sprintf("e%d", i), fmt.Sprintf("u%d", i), nil, "a.pdf"))
			}
			_, b := setup(t, mode, nil, bodies...)
			s := &throttledSigner{ok: 0, until: b.now.Add(30 * time.Second)}
			w, err := worker.New(worker.Config{
				Schedule: "test", Mode: mode, From: "reports@example.com", WaitTime: time.Second, Bucket: "reports",
				Recipients: worker.RecipientPolicy{AllowedDomains: []string{"example.com"}},
			}, worker.Deps{
				Queue: b.queue, Objects: anyObjects{}, Signer: s, Templates: templates.Default(),
				Mailer: b.mailer, Ledger: b.ledger,
				Logger: slog.New(slog.NewTextHandler(b.logs, nil)),
				Now:    func() time.Time { return b.now },
			})
			if err != nil {
				t.Fatal(err)
			}
			sum, err := w.Drain(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !sum.Halted || sum.Acked != 0 || sum.DeadLettered != 0 {
				t.Fatalf("summary %+v; want halted, none acked, none dead-lettered", sum)
			}
			if len(b.queue.dead) != 0 {
				t.Errorf("dead-lettered %v; want none", b.queue.dead)
			}
			if len(b.queue.hidden) != 10 {
				t.Fatalf("hid %v; want the 10 unsent messages", b.queue.hidden)
			}
			for id, d := range b.queue.hidden {
				if d != 30*time.Second {
					t.Errorf("%s hidden for %s, want 30s (the halt's time)", id, d)
				}
			}
			if len(b.mailer.sent) != 0 || len(b.ledger.recs) != 0 {
				t.Errorf("sent %d, ledger %d records; want none", len(b.mailer.sent), len(b.ledger.recs))
			}
		})
	}
}
