package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/templates"
	"github.com/reportmailer/reportmailer/worker"
)

// recordingObserver keeps what it is told. It tags each message's
// context, so the test can check that a stage ran in its message's.
type recordingObserver struct {
	worker.NopObserver
	mu       sync.Mutex
	outcomes map[string]worker.MessageOutcome // message id -> outcome
	stages   []string                         // "stage message-id error?"
	sent     int
	dups     int
	refused  []string
	runs     []worker.Summary
}

type msgKey struct{}

func (o *recordingObserver) Received(ctx context.Context, m worker.Message) context.Context {
	return context.WithValue(ctx, msgKey{}, m.ID)
}

func (o *recordingObserver) Stage(ctx context.Context, s worker.Stage) (context.Context, func(error)) {
	id, _ := ctx.Value(msgKey{}).(string)
	return ctx, func(err error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		e := ""
		if err != nil {
			e = " error"
		}
		o.stages = append(o.stages, fmt.Sprintf("%s %s%s", s, id, e))
	}
}

func (o *recordingObserver) Settled(ctx context.Context, m worker.Message, out worker.MessageOutcome) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if id, _ := ctx.Value(msgKey{}).(string); id != m.ID {
		panic("settled outside its message's context")
	}
	if _, ok := o.outcomes[m.ID]; ok {
		panic("settled twice: " + m.ID)
	}
	o.outcomes[m.ID] = out
}

func (o *recordingObserver) Sent()               { o.sent++ }
func (o *recordingObserver) Duplicate()          { o.dups++ }
func (o *recordingObserver) Refused(code string) { o.refused = append(o.refused, code) }
func (o *recordingObserver) RunFinished(s worker.Summary, _ time.Duration, _ error) {
	o.runs = append(o.runs, s)
}

func TestObserverSeesEachMessageStageAndRun(t *testing.T) {
	q := &fakeQueue{}
	for i, body := range []string{
		native("e1", "ana", []string{"cfo@example.com", "x@elsewhere.test"}, "a.pdf"), // sent twice, one refused
		native("e2", "bo", nil, "missing.pdf"),                                        // dead-lettered
		testEvent,                                                                     // dropped
		native("e1", "ana", []string{"cfo@example.com"}, "a.pdf"),                     // a redelivery: duplicates
	} {
		q.pending = append(q.pending, worker.Message{ID: fmt.Sprintf("m%d", i), ReceiptHandle: fmt.Sprintf("r%d", i), Body: body})
	}
	obs := &recordingObserver{outcomes: map[string]worker.MessageOutcome{}}
	ledger := &memLedger{}
	w, err := worker.New(worker.Config{
		Schedule: "test", From: "reports@example.com", WaitTime: time.Second, Bucket: "reports", BatchSize: 3,
		Recipients: worker.RecipientPolicy{AllowedDomains: []string{"example.com"}},
	}, worker.Deps{
		Queue: q, Objects: fakeObjects{"reports/a.pdf": {}}, Signer: fakeSigner{}, Templates: templates.Default(),
		Mailer: &fakeMailer{}, Ledger: ledger, Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)),
		Observer: obs,
	})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := w.Drain(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	want := map[string]worker.MessageOutcome{
		// m0's user got the email; its stranger was refused, so the
		// message is dead-lettered for a redrive once the policy allows.
		"m0": {Settlement: worker.SettleDeadLettered, Class: worker.ClassPermanent, Code: worker.CodeRecipientRefused},
		"m1": {Settlement: worker.SettleDeadLettered, Class: worker.ClassPermanent, Code: worker.CodeObjectMissing},
		"m2": {Settlement: worker.SettleDropped},
		"m3": {Settlement: worker.SettleAcked},
	}
	for id, o := range want {
		if obs.outcomes[id] != o {
			t.Errorf("outcome of %s = %+v, want %+v", id, obs.outcomes[id], o)
		}
	}
	if obs.sent != 2 || obs.dups != 2 {
		t.Errorf("sent %d, duplicates %d; want 2 and 2", obs.sent, obs.dups)
	}
	if !slices.Equal(obs.refused, []string{"domain_not_allowed"}) {
		t.Errorf("refused = %q", obs.refused)
	}
	if len(obs.runs) != 1 || obs.runs[0] != sum {
		t.Errorf("runs = %+v, want one with %+v", obs.runs, sum)
	}
	for _, s := range []string{
		"receive ", "head m0", "head m1 error", "claim m0", "sign m0", "render m0", "send m0", "settle m1", "settle m0", "settle m2", "claim m3",
	} {
		if !slices.Contains(obs.stages, s) {
			t.Errorf("no stage %q in %q", s, obs.stages)
		}
	}
	if slices.Contains(obs.stages, "send m3") {
		t.Errorf("a duplicate was sent: %q", obs.stages)
	}
}

func TestObserverHandedBackOnHalt(t *testing.T) {
	_, b := setup(t, worker.ModeEach, nil, native("e1", "ana", nil, "a.pdf"), native("e2", "bo", nil, "b.pdf"))
	b.mailer.fail = func(worker.Email) error { return worker.Halt(fmt.Errorf("quota")) }
	obs := &recordingObserver{outcomes: map[string]worker.MessageOutcome{}}
	w, err := worker.New(worker.Config{Schedule: "test", From: "reports@example.com", WaitTime: time.Second, Bucket: "reports"},
		worker.Deps{Queue: b.queue, Objects: anyObjects{}, Signer: fakeSigner{}, Templates: templates.Default(),
			Mailer: b.mailer, Ledger: b.ledger, Logger: slog.New(slog.NewTextHandler(b.logs, nil)), Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"m0", "m1"} {
		if o := obs.outcomes[id]; o.Settlement != worker.SettleHandedBack || o.Class != worker.ClassHalt {
			t.Errorf("outcome of %s = %+v, want handed back for a halt", id, o)
		}
	}
}

func TestRefusalCode(t *testing.T) {
	p := worker.RecipientPolicy{AllowedDomains: []string{"example.com"}, Max: 1}
	_, refused := p.Apply("u@example.com", []string{"a@other.test", "not an address", "b@example.com", "c@example.com"})
	var got []string
	for _, r := range refused {
		got = append(got, worker.RefusalCode(r))
	}
	if want := []string{"domain_not_allowed", "invalid_address", "over_limit"}; !slices.Equal(got, want) {
		t.Errorf("codes = %q, want %q", got, want)
	}
	_, refused = worker.RecipientPolicy{Max: -1}.Apply("u@example.com", []string{"a@example.com"})
	if len(refused) != 1 || worker.RefusalCode(refused[0]) != "extras_off" {
		t.Errorf("refused = %+v, want extras_off", refused)
	}
}

func TestDrainLogsRunIDOnEveryLine(t *testing.T) {
	w, b := setup(t, worker.ModeEach, fakeObjects{"reports/a.pdf": {}},
		native("e1", "ana", nil, "a.pdf"), native("e2", "bo", nil, "missing.pdf"))
	if _, err := w.Drain(worker.WithRunID(context.Background(), "run-0123")); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.logs.String()), "\n")
	for _, l := range lines {
		if !strings.Contains(l, "run_id=run-0123") || !strings.Contains(l, "schedule=test") {
			t.Errorf("a line without the run id and schedule: %s", l)
		}
	}
	for _, want := range []string{
		`msg=sent schedule=test run_id=run-0123 user=ana recipient=ana@example.com message_ids=[m0]`,
		`msg=dead-lettered schedule=test run_id=run-0123 message_id=m1 events=[e2]`,
	} {
		if !strings.Contains(b.logs.String(), want) {
			t.Errorf("no line with %q in\n%s", want, b.logs.String())
		}
	}
}
