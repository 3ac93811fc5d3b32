package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/templates"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/secret"
)

// memHalts is an in-memory worker.HaltRecord.
type memHalts struct {
	mu     sync.Mutex
	note   *worker.HaltNote
	getErr error
	puts   []worker.HaltNote
}

func (h *memHalts) Get(context.Context) (worker.HaltNote, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.getErr != nil {
		return worker.HaltNote{}, false, h.getErr
	}
	if h.note == nil {
		return worker.HaltNote{}, false, nil
	}
	n := *h.note
	n.Where = "s3://state/ledger/halt.json"
	return n, true, nil
}

func (h *memHalts) Put(_ context.Context, n worker.HaltNote) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.puts = append(h.puts, n)
	h.note = &n
	return nil
}

// withHalts rebuilds b's worker with halts as its HaltRecord.
func withHalts(t *testing.T, b *bundle, objects worker.ObjectStore, halts worker.HaltRecord) *worker.Worker {
	t.Helper()
	if objects == nil {
		objects = anyObjects{}
	}
	w, err := worker.New(worker.Config{
		Schedule: "test", From: "reports@example.com", WaitTime: time.Second, Bucket: "reports",
		Recipients: worker.RecipientPolicy{AllowedDomains: []string{"example.com"}},
	}, worker.Deps{
		Queue: b.queue, Objects: objects, Signer: fakeSigner{}, Templates: templates.Default(),
		Mailer: b.mailer, Ledger: b.ledger, Halts: halts,
		Logger: slog.New(slog.NewTextHandler(b.logs, nil)),
		Now:    func() time.Time { return b.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func bodies(n int) []string {
	var out []string
	for i := range n {
		out = append(out, native(fmt.Sprintf("e%d", i), fmt.Sprintf("u%d", i), nil, "a.pdf"))
	}
	return out
}

// TestDrainHaltHoldsAcrossRuns: an account-wide refusal halts one run
// and hides its messages; the next run, in another process or replica,
// must not receive them again before the halt ends, or each run would
// add a receive and SQS would dead-letter healthy messages at
// maxReceiveCount.
func TestDrainHaltHoldsAcrossRuns(t *testing.T) {
	halts := &memHalts{}
	unverified := errors.New("ses sender identity not verified: reports@example.com; no email can be sent from it until it is verified in this region")

	// Run 1 meets the refusal on its first send.
	_, b := setup(t, worker.ModeEach, nil, bodies(15)...)
	t0 := b.now
	b.mailer.fail = func(worker.Email) error { return worker.HaltUntil(unverified, t0.Add(5*time.Minute)) }
	sum, err := withHalts(t, b, nil, halts).Drain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Halted || sum.Retrying != 10 || b.queue.receives != 1 {
		t.Fatalf("run 1: summary %+v, %d receives; want halted, 10 handed back, 1 receive", sum, b.queue.receives)
	}
	want := worker.HaltNote{Code: worker.CodeHalted, Reason: unverified.Error(), Until: t0.Add(5 * time.Minute), Schedule: "test", At: t0}
	if len(halts.puts) != 1 || halts.puts[0] != want {
		t.Fatalf("run 1 recorded %+v; want one record %+v", halts.puts, want)
	}

	// Run 2, a minute later: another process with the same record.
	_, b2 := setup(t, worker.ModeEach, nil, bodies(15)...)
	b2.now = t0.Add(time.Minute)
	sum, err = withHalts(t, b2, nil, halts).Drain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if b2.queue.receives != 0 || len(b2.mailer.sent) != 0 || sum.Received != 0 {
		t.Errorf("run 2: %d receives, %d sent, summary %+v; want nothing received while the halt holds", b2.queue.receives, len(b2.mailer.sent), sum)
	}
	if !sum.Halted || sum.OK() || sum.Halt.Code != worker.CodeHalted ||
		!strings.Contains(sum.Halt.Reason, "sending halted until 2026-11-26T07:05:00Z by an earlier run") ||
		!strings.Contains(sum.Halt.Reason, unverified.Error()) || !strings.Contains(sum.Halt.Reason, "delete s3://state/ledger/halt.json") {
		t.Errorf("run 2: summary %+v; want halted, saying until when, why, and which record to delete", sum)
	}
	if len(halts.puts) != 1 {
		t.Errorf("run 2 wrote the record again: %+v", halts.puts)
	}

	// Run 3, after the halt ended: receives and sends.
	_, b3 := setup(t, worker.ModeEach, nil, bodies(3)...)
	b3.now = t0.Add(6 * time.Minute)
	sum, err = withHalts(t, b3, nil, halts).Drain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Halted || len(b3.mailer.sent) != 3 {
		t.Errorf("run 3: summary %+v, %d sent; want the ended halt ignored", sum, len(b3.mailer.sent))
	}
}

// TestDrainHaltRecord covers what is recorded, and that a record that
// cannot be read, or none, halts nothing.
func TestDrainHaltRecord(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)
	denied := worker.HaltUntil(worker.Fail(worker.CodeObjectAccessDenied, worker.ClassHalt,
		errors.New("access denied to s3://reports/a.pdf")), t0.Add(10*time.Minute))
	tests := []struct {
		name    string
		halts   *memHalts
		send    error // every send's error
		objects worker.ObjectStore
		sent    int
		puts    []worker.HaltNote
		logs    string
	}{
		{"no record: the run goes on", &memHalts{}, nil, nil, 3, nil, ""},
		{"an unreadable record halts nothing", &memHalts{getErr: errors.New("halt record s3://state/ledger/halt.json: StatusCode: 403, AccessDenied")}, nil, nil, 3, nil,
			"halt record: cannot read it; receiving anyway"},
		{"a halt with no time is not recorded", &memHalts{}, worker.Halt(errors.New("from: bad address")), nil, 0, nil, ""},
		{"a report's 403 is recorded with its code", &memHalts{}, nil, &deniedObjects{denied: map[string]error{"a.pdf": denied}}, 0,
			[]worker.HaltNote{{Code: worker.CodeObjectAccessDenied, Reason: "access denied to s3://reports/a.pdf", Until: t0.Add(10 * time.Minute), Schedule: "test", At: t0}}, ""},
		{"key material in the reason is redacted", &memHalts{},
			worker.HaltUntil(errors.New("ses: MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKBwko6"), t0.Add(time.Minute)), nil, 0,
			[]worker.HaltNote{{Code: worker.CodeHalted, Reason: "ses: " + secret.Redacted, Until: t0.Add(time.Minute), Schedule: "test", At: t0}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, b := setup(t, worker.ModeEach, nil, bodies(3)...)
			if tt.send != nil {
				b.mailer.fail = func(worker.Email) error { return tt.send }
			}
			if _, err := withHalts(t, b, tt.objects, tt.halts).Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			if len(b.mailer.sent) != tt.sent || b.queue.receives == 0 {
				t.Errorf("%d sent, %d receives; want %d sent", len(b.mailer.sent), b.queue.receives, tt.sent)
			}
			if fmt.Sprint(tt.halts.puts) != fmt.Sprint(tt.puts) {
				t.Errorf("recorded %+v\nwant %+v", tt.halts.puts, tt.puts)
			}
			if !strings.Contains(b.logs.String(), tt.logs) {
				t.Errorf("logs lack %q:\n%s", tt.logs, b.logs)
			}
		})
	}
}

// TestDrainRepeatedHaltDoubles: a halt whose cause outlives it (an
// unverified sender needs a person) comes back at once; each time, the
// record lasts twice as long, up to worker.HaltMax, so the messages
// spend a receive per doubling rather than one per refresh.
func TestDrainRepeatedHaltDoubles(t *testing.T) {
	halts := &memHalts{}
	unverified := errors.New("ses sender identity not verified: reports@example.com")
	_, b := setup(t, worker.ModeEach, nil, bodies(3)...)
	now := b.now
	want := []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute}
	for i, d := range want {
		_, bi := setup(t, worker.ModeEach, nil, bodies(3)...)
		bi.now = now
		start := now
		bi.mailer.fail = func(worker.Email) error { return worker.HaltUntil(unverified, start.Add(5*time.Minute)) }
		if _, err := withHalts(t, bi, nil, halts).Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(halts.puts) != i+1 {
			t.Fatalf("run %d: %d records written, want %d", i+1, len(halts.puts), i+1)
		}
		if got := halts.puts[i].Until.Sub(start); got != d {
			t.Errorf("run %d: halted for %s, want %s", i+1, got, d)
		}
		now = halts.puts[i].Until.Add(time.Second) // the next run, just after it ended
	}
	// A different cause starts again at its own length.
	_, bo := setup(t, worker.ModeEach, nil, bodies(1)...)
	bo.now = now
	start := now
	bo.mailer.fail = func(worker.Email) error {
		return worker.HaltUntil(worker.Fail(worker.CodeObjectAccessDenied, worker.ClassHalt, errors.New("denied")), start.Add(5*time.Minute))
	}
	if _, err := withHalts(t, bo, nil, halts).Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := halts.puts[len(halts.puts)-1].Until.Sub(start); got != 5*time.Minute {
		t.Errorf("another cause halted for %s, want 5m", got)
	}
}

// TestDrainRepeatedThrottleDoesNotDouble: a throttle (KMS signing) clears
// by itself, so each repeat halts for its own short time, never longer.
func TestDrainRepeatedThrottleDoesNotDouble(t *testing.T) {
	halts := &memHalts{}
	throttled := worker.Fail(worker.CodeThrottled, worker.ClassHalt, errors.New("kms sign: ThrottlingException"))
	_, b := setup(t, worker.ModeEach, nil, bodies(3)...)
	now := b.now
	for i := range 4 {
		_, bi := setup(t, worker.ModeEach, nil, bodies(3)...)
		bi.now = now
		start := now
		bi.mailer.fail = func(worker.Email) error { return worker.HaltUntil(throttled, start.Add(30*time.Second)) }
		if _, err := withHalts(t, bi, nil, halts).Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(halts.puts) != i+1 || halts.puts[i].Code != worker.CodeThrottled {
			t.Fatalf("run %d: records %+v, want %d, the last coded throttled", i+1, halts.puts, i+1)
		}
		if got := halts.puts[i].Until.Sub(start); got != 30*time.Second {
			t.Errorf("run %d: halted for %s, want 30s each time", i+1, got)
		}
		now = halts.puts[i].Until.Add(time.Second)
	}
}
