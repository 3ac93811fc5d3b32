package worker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/templates"
	"github.com/reportmailer/reportmailer/worker"
)

// leaveRecord has another run leave the delivery of (e1, ana) in the
// ledger: claimed, or, with emailID, sending.
func leaveRecord(t *testing.T, l *memLedger, emailID string) {
	t.Helper()
	c, err := l.Claim(context.Background(), worker.ClaimRequest{Key: worker.DeliveryKey("e1", "ana@example.com"), RunID: "dead-run"})
	if err != nil || c.State != worker.Claimed {
		t.Fatalf("claim = %+v, %v", c, err)
	}
	if emailID != "" {
		if err := l.Sending(context.Background(), emailID, []*worker.Claim{&c}); err != nil {
			t.Fatal(err)
		}
	}
}

// ledgerWorker is setup with cfg's claim timeout, grace and policy.
func ledgerWorker(t *testing.T, b *bundle, cfg worker.Config) *worker.Worker {
	t.Helper()
	cfg.Schedule, cfg.From, cfg.Bucket, cfg.WaitTime = "test", "reports@example.com", "reports", time.Second
	w, err := worker.New(cfg, worker.Deps{Queue: b.queue, Objects: anyObjects{}, Signer: fakeSigner{}, Templates: templates.Default(),
		Mailer: b.mailer, Ledger: b.ledger, Now: func() time.Time { return b.now }})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestDrainTakesOverAClaimThatSentNothing: a run that died between its
// claim and the send (signing, rendering, waiting its turn) sent
// nothing. Its claim holds for the claim timeout, then the delivery is
// sent, not dead-lettered as maybe sent.
func TestDrainTakesOverAClaimThatSentNothing(t *testing.T) {
	body := native("e1", "ana", nil, "a.pdf")
	_, b := setup(t, worker.ModeEach, nil)
	leaveRecord(t, b.ledger, "")
	w := ledgerWorker(t, b, worker.Config{ClaimTimeout: 15 * time.Minute})

	b.now = b.now.Add(time.Minute)
	b.queue.pending = []worker.Message{{ID: "m0", ReceiptHandle: "r0", Body: body}}
	sum, _ := w.Drain(context.Background())
	if sum.Retrying != 1 || len(b.mailer.sent) != 0 || b.queue.codes["m0"] != "" {
		t.Fatalf("a minute after the claim: summary %+v, %d sent; want it left for retry, nothing sent", sum, len(b.mailer.sent))
	}
	if got := b.queue.hidden["m0"]; got != 14*time.Minute {
		t.Errorf("message hidden for %s; want 14m0s, until the claim may be taken over", got)
	}

	b.now = b.now.Add(15 * time.Minute)
	b.queue.pending = []worker.Message{{ID: "m0", ReceiptHandle: "r1", Body: body}}
	sum, _ = w.Drain(context.Background())
	if sum.Sent != 1 || sum.Acked != 1 || sum.MaybeSent != 0 || sum.DeadLettered != 0 {
		t.Fatalf("past the claim timeout: summary %+v; want it sent and acked, nothing maybe sent", sum)
	}
	if st := b.ledger.state("e1", "ana@example.com"); st != "sent" {
		t.Errorf("record = %q; want sent", st)
	}
}

// TestDrainUnsettled: a delivery another run started sending and never
// recorded waits for the grace, then follows the policy.
func TestDrainUnsettled(t *testing.T) {
	tests := []struct {
		name   string
		policy worker.UnsettledPolicy
		after  time.Duration
		want   worker.Summary
		sent   int
		record string
	}{
		{"within the grace it waits", "", 5 * time.Minute,
			worker.Summary{Received: 1, Retrying: 1}, 0, "sending"},
		{"past it, dead-lettered as maybe sent", worker.UnsettledDeadLetter, 20 * time.Minute,
			worker.Summary{Received: 1, DeadLettered: 1, MaybeSent: 1}, 0, "sending"},
		{"past it, resent and counted", worker.UnsettledResend, 20 * time.Minute,
			worker.Summary{Received: 1, Acked: 1, Sent: 1, MaybeDuplicated: 1}, 1, "sent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, b := setup(t, worker.ModeEach, nil)
			leaveRecord(t, b.ledger, "email-old")
			w := ledgerWorker(t, b, worker.Config{SettleGrace: 15 * time.Minute, UnsettledPolicy: tt.policy})
			b.now = b.now.Add(tt.after)
			b.queue.pending = []worker.Message{{ID: "m0", ReceiptHandle: "r0", Body: native("e1", "ana", nil, "a.pdf")}}
			sum, _ := w.Drain(context.Background())
			if sum != tt.want || len(b.mailer.sent) != tt.sent {
				t.Fatalf("summary %+v, %d sent; want %+v, %d sent", sum, len(b.mailer.sent), tt.want, tt.sent)
			}
			if st := b.ledger.state("e1", "ana@example.com"); st != tt.record {
				t.Errorf("record = %q; want %q", st, tt.record)
			}
			if tt.want.DeadLettered == 1 {
				key := worker.DeliveryKey("e1", "ana@example.com")
				for _, s := range []string{"ana@example.com", "email-old", "mem:" + key, "ledger settle -config FILE -record " + key} {
					if !strings.Contains(b.queue.dead["m0"], s) {
						t.Errorf("dead-letter reason %q does not say %q", b.queue.dead["m0"], s)
					}
				}
			}
		})
	}
}

// checkMailer looks at the ledger from inside Send, before and after
// BeforeSend, as a crash at either point would leave it.
type checkMailer struct {
	l             *memLedger
	before, after string
	tags          map[string]string
	retries       int // RetryAfterServerError calls to make
}

func (m *checkMailer) Send(ctx context.Context, e worker.Email) (string, error) {
	m.before = m.l.state("e1", "ana@example.com")
	if err := worker.BeforeSend(ctx); err != nil {
		return "", err
	}
	m.after = m.l.state("e1", "ana@example.com")
	m.tags = e.Tags
	for range m.retries {
		worker.RetryAfterServerError(ctx)
	}
	return "ses-1", nil
}

// TestDrainRecordsSendingBeforeTheSend: the record says "claimed" until
// the mailer's last moment before the send, and "sending", with the
// email's id, from then on; the email carries that id as a tag.
func TestDrainRecordsSendingBeforeTheSend(t *testing.T) {
	_, b := setup(t, worker.ModeEach, nil)
	m := &checkMailer{l: b.ledger}
	b.queue.pending = []worker.Message{{ID: "m0", ReceiptHandle: "r0", Body: native("e1", "ana", nil, "a.pdf")}}
	w, err := worker.New(worker.Config{Schedule: "test", From: "reports@example.com", Bucket: "reports", WaitTime: time.Second},
		worker.Deps{Queue: b.queue, Objects: anyObjects{}, Signer: fakeSigner{}, Templates: templates.Default(), Mailer: m, Ledger: b.ledger})
	if err != nil {
		t.Fatal(err)
	}
	if sum, _ := w.Drain(context.Background()); sum.Sent != 1 {
		t.Fatalf("summary %+v", sum)
	}
	if m.before != "claimed" || m.after != "sending" {
		t.Errorf("record before BeforeSend %q, after %q; want claimed, then sending", m.before, m.after)
	}
	id := m.tags[worker.EmailTag]
	if keys := b.ledger.emails[id]; id == "" || len(keys) != 1 || keys[0] != worker.DeliveryKey("e1", "ana@example.com") {
		t.Errorf("email tag %s = %q, ledger's email index %v; want the index of that email to list the delivery", worker.EmailTag, id, b.ledger.emails)
	}
}

// TestDrainLedgerSendingFails: when the ledger cannot record that the
// email is being sent, it is not sent, and the claim is released.
func TestDrainLedgerSendingFails(t *testing.T) {
	w, b := setup(t, worker.ModeEach, nil, native("e1", "ana", nil, "a.pdf"))
	b.ledger.sendingErr = errors.New("s3: 503 SlowDown")
	sum, _ := w.Drain(context.Background())
	if sum.Retrying != 1 || sum.Sent != 0 || len(b.mailer.sent) != 0 || b.queue.codes["m0"] != "" {
		t.Fatalf("summary %+v, %d sent; want nothing sent, the message left for retry", sum, len(b.mailer.sent))
	}
	if st := b.ledger.state("e1", "ana@example.com"); st != "" {
		t.Errorf("record = %q; want it released", st)
	}
}

// TestDrainCountsWhatMayBeDoubled: retries after a 5xx are counted as
// maybe duplicated; an email sent whose record cannot be completed is
// counted as unrecorded.
func TestDrainCountsWhatMayBeDoubled(t *testing.T) {
	_, b := setup(t, worker.ModeEach, nil)
	m := &checkMailer{l: b.ledger, retries: 2}
	b.ledger.completeErr = errors.New("s3: 500")
	b.queue.pending = []worker.Message{{ID: "m0", ReceiptHandle: "r0", Body: native("e1", "ana", nil, "a.pdf")}}
	w, err := worker.New(worker.Config{Schedule: "test", From: "reports@example.com", Bucket: "reports", WaitTime: time.Second},
		worker.Deps{Queue: b.queue, Objects: anyObjects{}, Signer: fakeSigner{}, Templates: templates.Default(), Mailer: m, Ledger: b.ledger})
	if err != nil {
		t.Fatal(err)
	}
	sum, _ := w.Drain(context.Background())
	want := worker.Summary{Received: 1, Acked: 1, Sent: 1, MaybeDuplicated: 2, Unrecorded: 1}
	if sum != want {
		t.Fatalf("summary %+v; want %+v", sum, want)
	}
}

// TestDrainAwaitsSettlement: with SES's events read, a delivery whose
// email may have been accepted is not dead-lettered at once. Its
// message is hidden for what is left of the grace, so that the events
// can settle it before it comes back; without them it is dead-lettered
// at once, as maybe sent, when this run sent it. One another run left
// sending waits, hidden, for the grace either way: a receive before it
// ends only counts towards maxReceiveCount.
func TestDrainAwaitsSettlement(t *testing.T) {
	lost := func(worker.Email) error { return worker.Ambiguous(errors.New("ses: connection reset")) }
	tests := []struct {
		name    string
		await   bool
		earlier time.Duration // an earlier run left the record sending this long ago; 0: this run sends
		want    worker.Summary
		hidden  time.Duration
		dead    string // what the dead letter must say; "": none
	}{
		{"this run's send, awaiting the events", true, 0,
			worker.Summary{Received: 1, Retrying: 1, MaybeSent: 1}, 15 * time.Minute, ""},
		{"this run's send, no events read", false, 0,
			worker.Summary{Received: 1, DeadLettered: 1, MaybeSent: 1}, 0, "ledger settle -config FILE -record"},
		{"another run's send within the grace, awaiting the events", true, 5 * time.Minute,
			worker.Summary{Received: 1, Retrying: 1}, 10 * time.Minute, ""},
		{"another run's send within the grace, no events read", false, 5 * time.Minute,
			worker.Summary{Received: 1, Retrying: 1}, 10 * time.Minute, ""},
		{"another run's send past the grace, awaiting the events", true, 20 * time.Minute,
			worker.Summary{Received: 1, DeadLettered: 1, MaybeSent: 1}, 0, "ledger settle -config FILE -record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, b := setup(t, worker.ModeEach, nil)
			b.mailer.fail = lost
			if tt.earlier > 0 {
				leaveRecord(t, b.ledger, "email-old")
			}
			w := ledgerWorker(t, b, worker.Config{SettleGrace: 15 * time.Minute, AwaitSettlement: tt.await})
			b.now = b.now.Add(tt.earlier)
			b.queue.pending = []worker.Message{{ID: "m0", ReceiptHandle: "r0", Body: native("e1", "ana", nil, "a.pdf")}}
			sum, _ := w.Drain(context.Background())
			if sum != tt.want {
				t.Fatalf("summary %+v; want %+v", sum, tt.want)
			}
			if got := b.queue.hidden["m0"]; got != tt.hidden {
				t.Errorf("message hidden for %s; want %s", got, tt.hidden)
			}
			if st := b.ledger.state("e1", "ana@example.com"); st != "sending" {
				t.Errorf("record = %q; want it left sending", st)
			}
			if dead := b.queue.dead["m0"]; (dead != "") != (tt.dead != "") || !strings.Contains(dead, tt.dead) {
				t.Errorf("dead letter %q; want one saying %q", dead, tt.dead)
			}
		})
	}
}

// TestDigestMaybeSentNamesEachMessagesOwnRecord: one digest email for
// two messages' events has no answer from SES. Each message's dead
// letter names its own ledger record, and the command that settles it
// is one an operator can paste.
func TestDigestMaybeSentNamesEachMessagesOwnRecord(t *testing.T) {
	w, b := setup(t, worker.ModeDigest, nil, native("e1", "ana", nil, "a.pdf"), native("e2", "ana", nil, "b.pdf"))
	b.mailer.fail = func(worker.Email) error { return worker.Ambiguous(errors.New("ses: connection reset")) }
	sum, _ := w.Drain(context.Background())
	if sum.DeadLettered != 2 || sum.MaybeSent != 1 {
		t.Fatalf("summary %+v; want both messages dead-lettered, one email maybe sent", sum)
	}
	for msg, ev := range map[string]string{"m0": "e1", "m1": "e2"} {
		own, other := worker.DeliveryKey(ev, "ana@example.com"), worker.DeliveryKey(map[string]string{"e1": "e2", "e2": "e1"}[ev], "ana@example.com")
		reason := b.queue.dead[msg]
		if want := "`reportmailer ledger settle -config FILE -record " + own + " -sent`"; !strings.Contains(reason, want) {
			t.Errorf("%s: dead letter %q; want it to say %s", msg, reason, want)
		}
		if strings.Contains(reason, other) {
			t.Errorf("%s: dead letter %q names the other message's record %s", msg, reason, other)
		}
	}
}
