package worker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	sesv2types "github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"github.com/reportmailer/reportmailer/templates"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/mail"
)

// countingSigner counts the signatures it makes, by report key.
type countingSigner struct {
	mu    sync.Mutex
	calls map[string]int
}

func (s *countingSigner) Sign(_ context.Context, r event.Report, now time.Time) (worker.Link, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls == nil {
		s.calls = map[string]int{}
	}
	s.calls[r.Key]++
	return worker.Link{URL: "https://cdn.test/" + r.Key + "?sig", Expires: now.Add(48 * time.Hour)}, nil
}

func (s *countingSigner) counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, n := range s.calls {
		out[k] = n
	}
	return out
}

// syncMailer records sends and is safe for concurrent use; each Send
// first calls hold, when set, which may block or fail it.
type syncMailer struct {
	mu   sync.Mutex
	sent []worker.Email
	hold func(worker.Email) error
}

func (m *syncMailer) Send(ctx context.Context, e worker.Email) (string, error) {
	if err := worker.BeforeSend(ctx); err != nil {
		return "", err
	}
	if m.hold != nil {
		if err := m.hold(e); err != nil {
			return "", err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent = append(m.sent, e)
	return fmt.Sprintf("msg-%d", len(m.sent)), nil
}

// perDelivery counts the emails sent per "event recipient".
func (m *syncMailer) perDelivery() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{}
	for _, e := range m.sent {
		for _, id := range e.EventIDs {
			out[id+" "+strings.Join(e.To, ",")]++
		}
	}
	return out
}

// concurrentSetup is a worker with the given concurrency on fakes that
// are safe for concurrent use.
func concurrentSetup(t *testing.T, mode worker.Mode, concurrency int, signer worker.Signer, mailer worker.Mailer, bodies ...string) (*worker.Worker, *fakeQueue, *memLedger) {
	t.Helper()
	q := &fakeQueue{}
	for i, body := range bodies {
		q.pending = append(q.pending, worker.Message{ID: fmt.Sprintf("m%d", i), ReceiptHandle: fmt.Sprintf("r%d", i), Body: body})
	}
	l := &memLedger{}
	w, err := worker.New(worker.Config{
		Schedule: "test", Mode: mode, From: "reports@example.com", WaitTime: time.Second, Bucket: "reports",
		Recipients:  worker.RecipientPolicy{AllowedDomains: []string{"example.com"}},
		Concurrency: concurrency,
	}, worker.Deps{
		Queue: q, Objects: anyObjects{}, Signer: signer, Templates: templates.Default(),
		Mailer: mailer, Ledger: l, Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return w, q, l
}

func TestDrainSignsEachEventsLinksOnce(t *testing.T) {
	tests := []struct {
		name        string
		mode        worker.Mode
		concurrency int
		bodies      []string
		emails      int
		want        map[string]int // signatures per report key
	}{{
		name: "each, one at a time", mode: worker.ModeEach, concurrency: 1,
		bodies: []string{
			native("e1", "ana", []string{"bo@example.com", "cy@example.com"}, "a.pdf", "b.pdf"),
			native("e2", "dan", []string{"ed@example.com"}, "c.pdf"),
		},
		emails: 5, want: map[string]int{"a.pdf": 1, "b.pdf": 1, "c.pdf": 1},
	}, {
		name: "each, eight at a time", mode: worker.ModeEach, concurrency: 8,
		bodies: []string{
			native("e1", "ana", []string{"bo@example.com", "cy@example.com"}, "a.pdf", "b.pdf"),
			native("e2", "dan", []string{"ed@example.com"}, "c.pdf"),
		},
		emails: 5, want: map[string]int{"a.pdf": 1, "b.pdf": 1, "c.pdf": 1},
	}, {
		// The user's digest links e1's and e3's reports; bo, e1's extra
		// recipient, sees only e1's: a set of its own, signed for it.
		name: "digest", mode: worker.ModeDigest, concurrency: 8,
		bodies: []string{
			native("e1", "ana", []string{"bo@example.com"}, "a.pdf"),
			native("e3", "ana", nil, "d.pdf"),
			native("e2", "dan", []string{"ed@example.com", "fi@example.com"}, "c.pdf"),
		},
		emails: 5, want: map[string]int{"a.pdf": 2, "d.pdf": 1, "c.pdf": 1},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &countingSigner{}
			m := &syncMailer{}
			w, _, _ := concurrentSetup(t, tt.mode, tt.concurrency, s, m, tt.bodies...)
			sum, err := w.Drain(context.Background())
			if err != nil || sum.Sent != tt.emails || !sum.OK() {
				t.Fatalf("summary %+v, err %v; want %d emails sent", sum, err, tt.emails)
			}
			got := s.counts()
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("signatures per report %v, want %v", got, tt.want)
			}
		})
	}
}

// TestDrainConcurrentDeliveriesAreExactlyOnce: with eight deliveries in
// flight, proven by a send that waits until eight are, every (event,
// recipient) gets one email, including an event whose message arrives
// twice in different batches, and every message is acknowledged.
func TestDrainConcurrentDeliveriesAreExactlyOnce(t *testing.T) {
	const events, concurrency = 40, 8
	var bodies []string
	for i := range events {
		bodies = append(bodies, native(fmt.Sprintf("e%d", i), fmt.Sprintf("u%d", i), []string{fmt.Sprintf("x%d@example.com", i)}, "a.pdf"))
	}
	bodies = append(bodies, bodies[3]) // a copy of e3, 38 messages later
	var mu sync.Mutex
	inFlight, most := 0, 0
	full := make(chan struct{})
	var fill sync.Once
	m := &syncMailer{hold: func(worker.Email) error {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		if inFlight == concurrency {
			fill.Do(func() { close(full) }) // later sends may fill the slots again
		}
		mu.Unlock()
		defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		select {
		case <-full:
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("never eight sends in flight at once")
		}
	}}
	w, q, l := concurrentSetup(t, worker.ModeEach, concurrency, fakeSigner{}, m, bodies...)
	sum, err := w.Drain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if most != concurrency {
		t.Errorf("at most %d sends in flight, want %d", most, concurrency)
	}
	got := m.perDelivery()
	for i := range events {
		for _, rcpt := range []string{fmt.Sprintf("u%d@example.com", i), fmt.Sprintf("x%d@example.com", i)} {
			k := fmt.Sprintf("e%d %s", i, rcpt)
			if got[k] != 1 {
				t.Errorf("%s: %d emails, want 1", k, got[k])
			}
			if st := l.state(fmt.Sprintf("e%d", i), rcpt); st != "sent" {
				t.Errorf("%s: ledger says %q, want sent", k, st)
			}
		}
	}
	if len(got) != 2*events || sum.Sent != 2*events {
		t.Errorf("%d deliveries, %d sent; want %d", len(got), sum.Sent, 2*events)
	}
	// The copy is skipped as sent, or left for a retry that will.
	if sum.Received != events+1 || sum.Acked+sum.Retrying != sum.Received || sum.Retrying > 1 || len(q.pending) != 0 {
		t.Errorf("summary %+v, %d left; want every message acked but at most the copy", sum, len(q.pending))
	}
}

// signalQueue closes second when the run receives a second time.
type signalQueue struct {
	*fakeQueue
	once   sync.Once
	n      int
	second chan struct{}
}

func (q *signalQueue) Receive(ctx context.Context, max int, wait time.Duration) ([]worker.Message, error) {
	msgs, err := q.fakeQueue.Receive(ctx, max, wait)
	q.fakeQueue.mu.Lock()
	q.n++
	if q.n == 2 {
		q.once.Do(func() { close(q.second) })
	}
	q.fakeQueue.mu.Unlock()
	return msgs, err
}

// TestDrainReceivesWhileEmailsGoOut: the first batch's sends wait
// until the run has received the next batch.
func TestDrainReceivesWhileEmailsGoOut(t *testing.T) {
	q := &signalQueue{fakeQueue: &fakeQueue{}, second: make(chan struct{})}
	for i := range 20 {
		q.pending = append(q.pending, worker.Message{ID: fmt.Sprintf("m%d", i), ReceiptHandle: fmt.Sprintf("r%d", i),
			Body: native(fmt.Sprintf("e%d", i), fmt.Sprintf("u%d", i), nil, "a.pdf")})
	}
	m := &syncMailer{hold: func(worker.Email) error {
		select {
		case <-q.second:
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("the second batch was not received while the first was being sent")
		}
	}}
	w, err := worker.New(worker.Config{Schedule: "t", From: "r@example.com", WaitTime: time.Second, Bucket: "reports", Concurrency: 4},
		worker.Deps{Queue: q, Objects: anyObjects{}, Signer: fakeSigner{}, Templates: templates.Default(), Mailer: m, Ledger: &memLedger{},
			Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := w.Drain(context.Background())
	if err != nil || sum.Sent != 20 || sum.Acked != 20 {
		t.Fatalf("summary %+v, err %v; want 20 sent and acked", sum, err)
	}
}

// TestDrainConcurrentShutdown: SIGTERM during the first sends. The
// emails in flight finish and are recorded; no email starts after it;
// every message is either acknowledged, with all its emails sent, or
// handed back, with none recorded.
func TestDrainConcurrentShutdown(t *testing.T) {
	var bodies []string
	for i := range 30 {
		bodies = append(bodies, native(fmt.Sprintf("e%d", i), fmt.Sprintf("u%d", i), []string{fmt.Sprintf("x%d@example.com", i)}, "a.pdf"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	var afterCancel int
	var mu sync.Mutex
	m := &syncMailer{}
	m.hold = func(worker.Email) error {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil {
			afterCancel++
		}
		once.Do(cancel)
		return nil
	}
	w, q, l := concurrentSetup(t, worker.ModeEach, 8, fakeSigner{}, m, bodies...)
	sum, err := w.Drain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent == 0 || sum.Sent > 8 || afterCancel > 7 {
		t.Errorf("sent %d (%d after the cancel); want the first send and at most the 7 then in flight", sum.Sent, afterCancel)
	}
	if sum.Acked+sum.Retrying != sum.Received || len(q.released) != sum.Retrying {
		t.Errorf("summary %+v, released %d: every message received must be acked or released", sum, len(q.released))
	}
	sent := m.perDelivery()
	for i := range 30 {
		for _, rcpt := range []string{fmt.Sprintf("u%d@example.com", i), fmt.Sprintf("x%d@example.com", i)} {
			st := l.state(fmt.Sprintf("e%d", i), rcpt)
			n := sent[fmt.Sprintf("e%d %s", i, rcpt)]
			if (n == 1) != (st == "sent") || n > 1 || (n == 0 && st != "") {
				t.Errorf("e%d %s: %d emails, ledger %q; want a sent record for each email and no other record", i, rcpt, n, st)
			}
		}
	}
}

func TestNewValidatesConcurrency(t *testing.T) {
	for _, c := range []int{-1, worker.ConcurrencyMax + 1} {
		_, err := worker.New(worker.Config{From: "r@example.com", Bucket: "reports", Concurrency: c}, worker.Deps{
			Queue: &fakeQueue{}, Objects: anyObjects{}, Signer: fakeSigner{}, Templates: templates.Default(), Mailer: &syncMailer{}, Ledger: &memLedger{}})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("concurrency: %d", c)) {
			t.Errorf("concurrency %d: err %v, want one naming it", c, err)
		}
	}
}

// TestDrainConcurrentHeadsEachObjectOnce: with heads made concurrently,
// each object of a batch is still headed once, and what it says
// reaches the email.
func TestDrainConcurrentHeadsEachObjectOnce(t *testing.T) {
	objects := &countingObjects{ObjectStore: fakeObjects{
		"reports/a.pdf": {Size: 2048, ContentType: "application/pdf"},
		"reports/b.csv": {Size: 5 << 20, ContentType: "text/csv"},
		"reports/c.pdf": {Size: 10, ContentType: "application/pdf"},
	}}
	m := &syncMailer{}
	q := &fakeQueue{}
	for i, body := range []string{native("e1", "ana", nil, "a.pdf", "b.csv"), native("e2", "bo", nil, "a.pdf", "c.pdf"), native("e3", "cy", nil, "missing.pdf")} {
		q.pending = append(q.pending, worker.Message{ID: fmt.Sprintf("m%d", i), ReceiptHandle: fmt.Sprintf("r%d", i), Body: body})
	}
	w, err := worker.New(worker.Config{Schedule: "t", From: "r@example.com", WaitTime: time.Second, Bucket: "reports", Concurrency: 8},
		worker.Deps{Queue: q, Objects: objects, Signer: fakeSigner{}, Templates: templates.Default(), Mailer: m, Ledger: &memLedger{},
			Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := w.Drain(context.Background())
	if err != nil || sum.Sent != 2 || sum.Acked != 2 || sum.DeadLettered != 1 {
		t.Fatalf("summary %+v, err %v; want 2 sent and acked, the missing report's message dead-lettered", sum, err)
	}
	objects.mu.Lock()
	heads := slices.Sorted(slices.Values(objects.heads))
	objects.mu.Unlock()
	if got := strings.Join(heads, " "); got != "reports/a.pdf reports/b.csv reports/c.pdf reports/missing.pdf" {
		t.Errorf("heads %q; want each object headed once", got)
	}
	for _, e := range m.sent {
		if e.To[0] == "ana@example.com" && !strings.Contains(e.Text, templates.HumanSize(5<<20)) {
			t.Errorf("ana's email should show b.csv's size from its head:\n%s", e.Text)
		}
	}
}

// slowAccount is an SES account that allows one email a second.
type slowAccount struct{}

func (slowAccount) GetAccount(context.Context, *sesv2.GetAccountInput, ...func(*sesv2.Options)) (*sesv2.GetAccountOutput, error) {
	return &sesv2.GetAccountOutput{ProductionAccessEnabled: true, SendingEnabled: true,
		SendQuota: &sesv2types.SendQuota{MaxSendRate: 1, Max24HourSend: 1000}}, nil
}

// TestDrainShutdownStopsPacingWaits: with many deliveries in flight on
// a slow account, those still waiting for the pacer when the run is
// told to stop give up: nothing of theirs is sent or left claimed, and
// their messages go back to the queue, so a shutdown does not wait for
// the account's rate to drain them all.
func TestDrainShutdownStopsPacingWaits(t *testing.T) {
	var bodies []string
	for i := range 8 {
		bodies = append(bodies, native(fmt.Sprintf("e%d", i), fmt.Sprintf("u%d", i), nil, "a.pdf"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &syncMailer{}
	var once sync.Once
	m.hold = func(worker.Email) error { once.Do(cancel); return nil }
	paced := &mail.Paced{Mailer: m, Account: slowAccount{}, Logger: slog.New(slog.DiscardHandler)}
	w, q, l := concurrentSetup(t, worker.ModeEach, 8, fakeSigner{}, paced, bodies...)
	start := time.Now()
	sum, err := w.Drain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.sent) != 1 || sum.Sent != 1 {
		t.Errorf("sent %d (summary %d); want the one email that did not wait", len(m.sent), sum.Sent)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the run took %s to stop: the waits for the pacer (1.25 s apart) were not given up", took)
	}
	if sum.Acked != 1 || sum.Retrying != 7 || len(q.released) != 7 {
		t.Errorf("summary %+v, released %d; want 1 acked and the 7 others handed back", sum, len(q.released))
	}
	for i := range 8 {
		st := l.state(fmt.Sprintf("e%d", i), fmt.Sprintf("u%d@example.com", i))
		if want := map[bool]string{true: "sent", false: ""}[m.perDelivery()[fmt.Sprintf("e%d u%d@example.com", i, i)] == 1]; st != want {
			t.Errorf("e%d: ledger %q, want %q", i, st, want)
		}
	}
}
