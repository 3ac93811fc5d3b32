package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/internal/s3test"
	"github.com/reportmailer/reportmailer/templates"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/queue"
	"github.com/reportmailer/reportmailer/worker/store"
)

// setupPending returns a digest worker whose pending store is the S3
// one on gofakes3, and the fakes of its other collaborators.
func setupPending(t *testing.T, maxLinks int) (*worker.Worker, *bundle, *store.Pending) {
	t.Helper()
	return setupPendingWith(t, maxLinks, func(*worker.Deps) {})
}

// setupPendingWith is setupPending with deps changed by edit.
func setupPendingWith(t *testing.T, maxLinks int, edit func(*worker.Deps)) (*worker.Worker, *bundle, *store.Pending) {
	t.Helper()
	_, client := s3test.Start(t, "state")
	p := &store.Pending{Client: client, Bucket: "state", Prefix: store.PendingPrefix("rm/ledger/", "weekly")}
	b := &bundle{queue: &fakeQueue{}, mailer: &fakeMailer{}, ledger: &memLedger{}, logs: &bytes.Buffer{},
		now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	b.ledger.now = func() time.Time { return b.now }
	deps := worker.Deps{
		Queue: b.queue, Objects: anyObjects{}, Signer: fakeSigner{}, Templates: templates.Default(),
		Mailer: b.mailer, Ledger: b.ledger, Pending: p,
		Logger: slog.New(slog.NewTextHandler(b.logs, nil)),
		Now:    func() time.Time { return b.now },
	}
	edit(&deps)
	w, err := worker.New(worker.Config{
		Schedule: "weekly", Mode: worker.ModeDigest, From: "reports@example.com", WaitTime: time.Second, Bucket: "reports",
		MaxMessages: 100, MaxLinksPerEmail: maxLinks, Budget: 24 * time.Hour,
		Recipients: worker.RecipientPolicy{AllowedDomains: []string{"example.com"}},
	}, deps)
	if err != nil {
		t.Fatal(err)
	}
	return w, b, p
}

func (b *bundle) enqueue(bodies ...string) {
	b.queue.mu.Lock()
	defer b.queue.mu.Unlock()
	for _, body := range bodies {
		n := len(b.queue.pending) + len(b.queue.deleted) + len(b.queue.dead)
		b.queue.pending = append(b.queue.pending, worker.Message{ID: fmt.Sprintf("m%d", n), ReceiptHandle: fmt.Sprintf("r%d-%d", n, time.Now().UnixNano()), Body: body})
	}
}

var linkRE = regexp.MustCompile(`https://cdn\.test/(\S+)\?sig`)

// links returns the report keys an email links, in order.
func links(e worker.Email) []string {
	var out []string
	for _, m := range linkRE.FindAllStringSubmatch(e.Text, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestDigestWholeAcrossReceiveLoops: 1,500 events for 3 users, 15
// times max_messages, all ingested by one drain, make one digest per
// user (or its parts), each report listed once, newest first.
func TestDigestWholeAcrossReceiveLoops(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxLinks int
		parts    int
	}{
		{"whole", 1000, 1},
		{"parts", 50, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, b, p := setupPending(t, tc.maxLinks)
			users := []string{"ana", "bo", "cy"}
			for i := range 1500 {
				u := users[i%3]
				b.enqueue(native(fmt.Sprintf("e%04d", i), u, nil, fmt.Sprintf("%s/r%04d.pdf", u, i)))
			}
			if _, err := w.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			if len(b.queue.pending) != 0 || len(b.queue.deleted) != 1500 {
				t.Fatalf("queue: %d left, %d deleted; want 0 and 1500", len(b.queue.pending), len(b.queue.deleted))
			}
			if len(b.mailer.sent) != 0 {
				t.Fatalf("ingest sent %d emails", len(b.mailer.sent))
			}
			b.now = b.now.Add(time.Hour)
			sum, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := len(b.mailer.sent), 3*tc.parts; got != want {
				t.Fatalf("sent %d emails, want %d", got, want)
			}
			per := map[string][]string{}
			for _, e := range b.mailer.sent {
				per[e.To[0]] = append(per[e.To[0]], links(e)...)
				if tc.parts > 1 && !strings.Contains(e.Subject, fmt.Sprintf("of %d)", tc.parts)) {
					t.Errorf("subject %q does not say which part it is", e.Subject)
				}
			}
			for _, u := range users {
				ls := per[u+"@example.com"]
				if len(ls) != 500 {
					t.Fatalf("%s got %d links, want 500", u, len(ls))
				}
				seen := map[string]bool{}
				for i, l := range ls {
					if seen[l] {
						t.Fatalf("%s got %s twice", u, l)
					}
					seen[l] = true
					if i > 0 && ls[i-1] <= l {
						t.Fatalf("%s: %s before %s: not newest first", u, ls[i-1], l)
					}
				}
			}
			if sum.Pending != 0 || sum.Users != 3 || sum.Due != 1500 || sum.Delivered != 1500 {
				t.Errorf("summary: pending %d, users %d, due %d, delivered %d; want 0, 3, 1500, 1500", sum.Pending, sum.Users, sum.Due, sum.Delivered)
			}
			if n, err := p.Count(context.Background()); err != nil || n != 0 {
				t.Errorf("pending store holds %d (%v), want 0", n, err)
			}
			// The next slot has nothing to send.
			if _, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now.Add(time.Hour)}); err != nil || len(b.mailer.sent) != 3*tc.parts {
				t.Errorf("a second slot sent %d emails in all (%v)", len(b.mailer.sent), err)
			}
		})
	}
}

// TestDigestMonth: with a fake clock, events ingested every day for 31
// days leave the queue at each ingest and go out in one monthly digest
// per user; one ingested after the slot waits for the next.
func TestDigestMonth(t *testing.T) {
	w, b, p := setupPending(t, 1000)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	slot := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	b.now = start
	for day := range 31 {
		for h := 0; h < 24; h += 6 {
			b.now = start.Add(time.Duration(day)*24*time.Hour + time.Duration(h)*time.Hour)
			b.enqueue(native(fmt.Sprintf("d%02d-%02d-ana", day, h), "ana", nil, fmt.Sprintf("ana/%02d-%02d.pdf", day, h)),
				native(fmt.Sprintf("d%02d-%02d-bo", day, h), "bo", nil, fmt.Sprintf("bo/%02d-%02d.pdf", day, h)))
			if _, err := w.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := len(b.queue.pending); n != 0 {
				t.Fatalf("day %d: %d messages still on the queue after the ingest", day, n)
			}
		}
	}
	// The same report again: the newest event wins, listed once.
	b.now = slot.Add(-time.Minute)
	b.enqueue(native("again", "ana", nil, "ana/00-00.pdf"))
	if _, err := w.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.now = slot.Add(time.Minute)
	b.enqueue(native("next-month", "ana", nil, "ana/next.pdf"))
	if _, err := w.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(b.mailer.sent) != 0 {
		t.Fatalf("sent %d emails before the slot", len(b.mailer.sent))
	}
	b.now = slot.Add(2 * time.Minute)
	sum, err := w.Deliver(context.Background(), worker.Slot{Planned: slot})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.mailer.sent) != 2 {
		t.Fatalf("sent %d emails, want one per user (2)", len(b.mailer.sent))
	}
	for _, e := range b.mailer.sent {
		ls := links(e)
		if len(ls) != 31*4 {
			t.Errorf("%s: %d links, want %d", e.To[0], len(ls), 31*4)
		}
		for _, l := range ls {
			if strings.Contains(l, "next") {
				t.Errorf("%s: the event ingested after the slot went out: %s", e.To[0], l)
			}
		}
		if e.To[0] == "ana@example.com" && ls[0] != "ana/00-00.pdf" {
			t.Errorf("ana's first link is %s, want the newest event's ana/00-00.pdf", ls[0])
		}
	}
	if sum.Pending != 1 {
		t.Errorf("summary pending %d, want 1 (ingested after the slot)", sum.Pending)
	}
	if n, _ := p.Count(context.Background()); n != 1 {
		t.Errorf("pending store holds %d, want 1", n)
	}
}

// TestDigestFailureResendsNothing: a slot that fails for one user
// leaves only that user's events pending; the next slot sends those and
// nothing twice.
func TestDigestFailureResendsNothing(t *testing.T) {
	w, b, _ := setupPending(t, 0)
	b.enqueue(native("a1", "ana", nil, "ana/1.pdf"), native("b1", "bo", nil, "bo/1.pdf"), `{not json`)
	if _, err := w.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b.queue.codes["m2"] != worker.CodeInvalidJSON {
		t.Errorf("poison message dead-lettered with %q, want %q", b.queue.codes["m2"], worker.CodeInvalidJSON)
	}
	b.mailer.fail = func(e worker.Email) error {
		if e.To[0] == "bo@example.com" {
			return errors.New("connection refused")
		}
		return nil
	}
	sum, _ := w.Deliver(context.Background(), worker.Slot{Planned: b.now})
	if len(b.mailer.sent) != 1 || sum.Pending != 1 {
		t.Fatalf("first slot: sent %v, pending %d; want ana's only, 1 pending", b.mailer.to(), sum.Pending)
	}
	b.mailer.fail = nil
	b.now = b.now.Add(time.Hour)
	if _, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(b.mailer.to(), " "); got != "ana@example.com bo@example.com" {
		t.Fatalf("sent to %s; want ana then bo, once each", got)
	}
}

// TestDigestLateSaysSo: a slot run late says when it was due.
func TestDigestLateSaysSo(t *testing.T) {
	w, b, _ := setupPending(t, 0)
	b.enqueue(native("a1", "ana", nil, "ana/1.pdf"))
	if _, err := w.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	due := b.now.Add(time.Hour)
	b.now = due.Add(26 * time.Hour)
	if _, err := w.Deliver(context.Background(), worker.Slot{Planned: due, Late: true}); err != nil {
		t.Fatal(err)
	}
	if len(b.mailer.sent) != 1 {
		t.Fatalf("sent %d", len(b.mailer.sent))
	}
	if want := "This digest was due on 1 January 2026, 01:00 GMT and goes out late"; !strings.Contains(b.mailer.sent[0].Text, want) {
		t.Errorf("text does not say it is late (%q):\n%s", want, b.mailer.sent[0].Text)
	}
}

// TestDigestDeadLettersWhatCannotBeDelivered: an event whose extra
// recipient the policy refuses by domain goes to the dead-letter queue
// with its code and body once the user's digest is out, and leaves the
// pending store.
func TestDigestDeadLettersWhatCannotBeDelivered(t *testing.T) {
	w, b, p := setupPending(t, 0)
	refused := native("a2", "ana", []string{"cfo@other.org"}, "ana/2.pdf")
	b.enqueue(native("a1", "ana", nil, "ana/1.pdf"), refused)
	if _, err := w.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	sum, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(b.mailer.to(), " "); got != "ana@example.com" || len(links(b.mailer.sent[0])) != 2 {
		t.Fatalf("sent to %q; want ana's digest with both reports", got)
	}
	if b.queue.codes["m1"] != worker.CodeRecipientRefused || sum.DeadLettered != 1 {
		t.Errorf("dead letters %v, summary %d; want m1 with %q", b.queue.codes, sum.DeadLettered, worker.CodeRecipientRefused)
	}
	if n, _ := p.Count(context.Background()); n != 0 {
		t.Errorf("pending store holds %d, want 0", n)
	}
}

// TestDigestCoveredEventNeverSentAgain: an event whose reports a newer
// event links again is covered by it; it is never sent later, whether
// the slot failed for another of the user's emails or the queue
// delivers the covered event again after its entry is gone.
func TestDigestCoveredEventNeverSentAgain(t *testing.T) {
	for _, tc := range []struct {
		name string
		// failFirst fails, at the first slot, the email linking it.
		failFirst string
		// again is ingested between the slots.
		again string
	}{
		{name: "another email of the user fails", failFirst: "ana/3.pdf"},
		{name: "the covered event is redelivered", again: native("a1", "ana", nil, "ana/1.pdf")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, b, p := setupPending(t, 1)
			for _, body := range []string{
				native("a1", "ana", nil, "ana/1.pdf"),
				native("a2", "ana", nil, "ana/1.pdf"),
				native("a3", "ana", nil, "ana/3.pdf"),
			} {
				b.enqueue(body)
				b.now = b.now.Add(time.Minute)
				if _, err := w.Drain(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			b.mailer.fail = func(e worker.Email) error {
				if tc.failFirst != "" && slices.Contains(links(e), tc.failFirst) {
					return errors.New("connection refused")
				}
				return nil
			}
			if _, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now}); err != nil {
				t.Fatal(err)
			}
			b.mailer.fail = nil
			if tc.again != "" {
				b.enqueue(tc.again)
				b.now = b.now.Add(time.Minute)
				if _, err := w.Drain(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			b.now = b.now.Add(time.Hour)
			if _, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now}); err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, e := range b.mailer.sent {
				for _, l := range links(e) {
					got[l]++
				}
			}
			if got["ana/1.pdf"] != 1 || got["ana/3.pdf"] != 1 {
				t.Errorf("ana got links %v over two slots; want ana/1.pdf and ana/3.pdf once each", got)
			}
			if n, err := p.Count(context.Background()); err != nil || n != 0 {
				t.Errorf("pending store holds %d (%v), want 0", n, err)
			}
		})
	}
}

// TestDigestReportLinkedAgainIsSentOnce: a report linked by an older
// and a newer event reaches each recipient of either event exactly
// once: when the newer one is dead-lettered at the slot for another of
// its reports, the older one still carries it, and a recipient of only
// the older one still gets it.
func TestDigestReportLinkedAgainIsSentOnce(t *testing.T) {
	for _, tc := range []struct {
		name           string
		older, newer   string
		deleted        string // before the slot
		want           map[string]int
		wantDeadLetter map[string]worker.Code
	}{
		{
			name:           "the newer event is dead-lettered",
			older:          native("a1", "ana", nil, "ana/1.pdf"),
			newer:          native("a2", "ana", nil, "ana/1.pdf", "ana/2.pdf"),
			deleted:        "reports/ana/2.pdf",
			want:           map[string]int{"ana@example.com ana/1.pdf": 1},
			wantDeadLetter: map[string]worker.Code{"m1": worker.CodeObjectMissing},
		},
		{
			name:           "the older event has another recipient",
			older:          native("a1", "ana", []string{"cfo@example.com"}, "ana/1.pdf"),
			newer:          native("a2", "ana", nil, "ana/1.pdf"),
			want:           map[string]int{"ana@example.com ana/1.pdf": 1, "cfo@example.com ana/1.pdf": 1},
			wantDeadLetter: map[string]worker.Code{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objects := fakeObjects{"reports/ana/1.pdf": {}, "reports/ana/2.pdf": {}}
			w, b, p := setupPendingWith(t, 0, func(d *worker.Deps) { d.Objects = objects })
			for _, body := range []string{tc.older, tc.newer} {
				b.enqueue(body)
				b.now = b.now.Add(time.Minute)
				if _, err := w.Drain(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if tc.deleted != "" {
				delete(objects, tc.deleted)
			}
			for range 2 { // the second slot sends nothing more
				if _, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now}); err != nil {
					t.Fatal(err)
				}
				b.now = b.now.Add(time.Hour)
			}
			got := map[string]int{}
			for _, e := range b.mailer.sent {
				for _, l := range links(e) {
					got[e.To[0]+" "+l]++
				}
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("sent %v, want %v", got, tc.want)
			}
			if !maps.Equal(b.queue.codes, tc.wantDeadLetter) {
				t.Errorf("dead letters %v, want %v", b.queue.codes, tc.wantDeadLetter)
			}
			if n, err := p.Count(context.Background()); err != nil || n != 0 {
				t.Errorf("pending store holds %d (%v), want 0", n, err)
			}
		})
	}
}

// TestDigestCoveredEventUnsettled: an older event whose reports a
// newer one shows, and whose delivery another run started and never
// recorded, goes to the dead-letter queue as maybe sent for an
// operator to settle; the newer one's email goes out in the same slot,
// and the slot leaves nothing pending.
func TestDigestCoveredEventUnsettled(t *testing.T) {
	w, b, p := setupPending(t, 0)
	for _, body := range []string{native("a1", "ana", nil, "ana/1.pdf"), native("a2", "ana", nil, "ana/1.pdf")} {
		b.enqueue(body)
		b.now = b.now.Add(time.Minute)
		if _, err := w.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	b.ledger.recs = map[string]*memRecord{
		worker.DeliveryKey("a1", "ana@example.com"): {state: "sending", emailID: "e-old", at: b.now.Add(-24 * time.Hour)},
	}
	sum, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.mailer.sent) != 1 || strings.Join(links(b.mailer.sent[0]), " ") != "ana/1.pdf" {
		t.Fatalf("sent %d emails to %v; want one linking ana/1.pdf", len(b.mailer.sent), b.mailer.to())
	}
	if b.queue.codes["m0"] != worker.CodeMaybeSent || sum.DeadLettered != 1 {
		t.Errorf("dead letters %v, summary %d; want m0 with %q", b.queue.codes, sum.DeadLettered, worker.CodeMaybeSent)
	}
	if n, err := p.Count(context.Background()); err != nil || n != 0 {
		t.Errorf("pending store holds %d (%v), want 0", n, err)
	}
}

// TestDigestCoveredEventWaitsWithItsNewerEvent: while another run
// holds the claim of an older event whose reports a newer one shows,
// neither goes; once the claim is given up, the next slot sends the
// report once, and never again to the older event alone.
func TestDigestCoveredEventWaitsWithItsNewerEvent(t *testing.T) {
	w, b, p := setupPending(t, 0)
	for _, body := range []string{native("a1", "ana", nil, "ana/1.pdf"), native("a2", "ana", nil, "ana/1.pdf")} {
		b.enqueue(body)
		b.now = b.now.Add(time.Minute)
		if _, err := w.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	key := worker.DeliveryKey("a1", "ana@example.com")
	b.ledger.recs = map[string]*memRecord{key: {state: "claimed", at: b.now}}
	sum, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.mailer.sent) != 0 || sum.Pending != 2 {
		t.Fatalf("first slot sent %d emails, left %d pending; want none sent, both pending", len(b.mailer.sent), sum.Pending)
	}
	b.ledger.recs[key].state = "released" // the other run gave up
	for range 2 {
		b.now = b.now.Add(time.Hour)
		if _, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now}); err != nil {
			t.Fatal(err)
		}
	}
	if len(b.mailer.sent) != 1 || strings.Join(links(b.mailer.sent[0]), " ") != "ana/1.pdf" {
		t.Errorf("sent %d emails; want one linking ana/1.pdf", len(b.mailer.sent))
	}
	if n, err := p.Count(context.Background()); err != nil || n != 0 {
		t.Errorf("pending store holds %d (%v), want 0", n, err)
	}
}

// TestDigestPartsShowEachReportOnce: split into parts, an event partly
// shown by a newer one lists only its other reports, and one wholly
// shown goes, recorded sent, with the part that shows its reports.
func TestDigestPartsShowEachReportOnce(t *testing.T) {
	w, b, p := setupPending(t, 1)
	for _, body := range []string{
		native("a1", "ana", nil, "ana/1.pdf"),
		native("a2", "ana", nil, "ana/1.pdf", "ana/3.pdf"),
		native("a3", "ana", nil, "ana/3.pdf"),
	} {
		b.enqueue(body)
		b.now = b.now.Add(time.Minute)
		if _, err := w.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range b.mailer.sent {
		got = append(got, strings.Join(links(e), " "))
	}
	slices.Sort(got) // the parts go concurrently
	if want := []string{"ana/1.pdf", "ana/3.pdf"}; !slices.Equal(got, want) {
		t.Errorf("emails link %q, want %q", got, want)
	}
	for _, id := range []string{"a1", "a2", "a3"} {
		if rec := b.ledger.recs[worker.DeliveryKey(id, "ana@example.com")]; rec == nil || rec.state != "sent" {
			t.Errorf("ledger record of %s for ana is %+v, want sent", id, rec)
		}
	}
	if n, err := p.Count(context.Background()); err != nil || n != 0 {
		t.Errorf("pending store holds %d (%v), want 0", n, err)
	}
}

// TestDigestIngestsWhileSendingIsHalted: ingest sends nothing, so
// neither an earlier run's halt nor a spent quota keeps events on the
// queue; the slot's delivery still honours them.
func TestDigestIngestsWhileSendingIsHalted(t *testing.T) {
	for _, tc := range []struct {
		name  string
		halts *memHalts
		admit func() error
	}{
		{name: "halt record until +20h", halts: &memHalts{note: &worker.HaltNote{
			Code: worker.CodeHalted, Reason: "ses account paused", Until: time.Date(2026, 1, 1, 20, 0, 0, 0, time.UTC)}}},
		{name: "quota spent", admit: func() error { return worker.Halt(errors.New("ses 24-hour sending quota: 200 of 200 used")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gm *gatedMailer
			w, b, p := setupPendingWith(t, 0, func(d *worker.Deps) {
				if tc.halts != nil {
					d.Halts = tc.halts
				}
				if tc.admit != nil {
					gm = &gatedMailer{fakeMailer: d.Mailer.(*fakeMailer), admit: tc.admit}
					d.Mailer = gm
				}
			})
			b.enqueue(native("a1", "ana", nil, "ana/1.pdf"))
			sum, err := w.Drain(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(b.queue.pending) != 0 || len(b.queue.deleted) != 1 || sum.Halted {
				t.Fatalf("queue: %d left, %d deleted, halted %v; want the message stored and deleted", len(b.queue.pending), len(b.queue.deleted), sum.Halted)
			}
			if n, err := p.Count(context.Background()); err != nil || n != 1 {
				t.Fatalf("pending store holds %d (%v), want 1", n, err)
			}
			sum, err = w.Deliver(context.Background(), worker.Slot{Planned: b.now})
			if err != nil {
				t.Fatal(err)
			}
			if len(b.mailer.sent) != 0 || !sum.Halted {
				t.Errorf("the slot sent %d emails while halted (summary halted %v); want none", len(b.mailer.sent), sum.Halted)
			}
			if n, _ := p.Count(context.Background()); n != 1 {
				t.Errorf("pending store holds %d after the halted slot, want 1", n)
			}
		})
	}
}

// TestDigestNewestEventNamesTheUser: the user's name (and time zone)
// in a digest are the newest event's, whatever order the store lists.
func TestDigestNewestEventNamesTheUser(t *testing.T) {
	w, b, _ := setupPending(t, 0)
	for _, body := range []string{
		strings.Replace(native("a1", "ana", nil, "ana/1.pdf"), `"name":"Ana Lima"`, `"name":"Olga Old"`, 1),
		strings.Replace(native("a2", "ana", nil, "ana/2.pdf"), `"name":"Ana Lima"`, `"name":"Nadia New"`, 1),
	} {
		b.enqueue(body)
		b.now = b.now.Add(time.Minute)
		if _, err := w.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now}); err != nil {
		t.Fatal(err)
	}
	if len(b.mailer.sent) != 1 {
		t.Fatalf("sent %d emails, want 1", len(b.mailer.sent))
	}
	if text := b.mailer.sent[0].Text; !strings.HasPrefix(text, "Hello Nadia,") {
		t.Errorf("the digest greets %q; want the newest event's name, Nadia", strings.SplitN(text, "\n", 2)[0])
	}
}

// TestDigestChecksReportsAtTheSlot: a report deleted after its event
// was ingested is not linked: its event goes to the dead-letter queue
// as object_missing, and the user's other reports still go out.
func TestDigestChecksReportsAtTheSlot(t *testing.T) {
	objects := fakeObjects{"reports/ana/1.pdf": {}, "reports/ana/2.pdf": {}}
	w, b, p := setupPendingWith(t, 0, func(d *worker.Deps) { d.Objects = objects })
	b.enqueue(native("a1", "ana", nil, "ana/1.pdf"), native("a2", "ana", nil, "ana/2.pdf"))
	if _, err := w.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	delete(objects, "reports/ana/2.pdf") // deleted during the week
	sum, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.mailer.sent) != 1 || strings.Join(links(b.mailer.sent[0]), " ") != "ana/1.pdf" {
		t.Fatalf("sent %d emails linking %v; want one linking ana/1.pdf only", len(b.mailer.sent), b.mailer.to())
	}
	if b.queue.codes["m1"] != worker.CodeObjectMissing || sum.DeadLettered != 1 {
		t.Errorf("dead letters %v, summary %d; want m1 with %q", b.queue.codes, sum.DeadLettered, worker.CodeObjectMissing)
	}
	if n, _ := p.Count(context.Background()); n != 0 {
		t.Errorf("pending store holds %d, want 0", n)
	}
}

// TestDigestSlotStopsAtItsBudget: a slot whose budget runs out takes no
// more users, says it is not done (a retry), and the next run sends
// the rest, nothing twice.
func TestDigestSlotStopsAtItsBudget(t *testing.T) {
	var clock atomic.Int64
	w, b, p := setupPendingWith(t, 0, func(d *worker.Deps) {
		d.Now = func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	})
	clock.Store(b.now.UnixNano())
	b.enqueue(native("a1", "ana", nil, "ana/1.pdf"), native("b1", "bo", nil, "bo/1.pdf"), native("c1", "cy", nil, "cy/1.pdf"))
	if _, err := w.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	planned := time.Unix(0, clock.Load()).UTC()
	b.mailer.fail = func(worker.Email) error {
		clock.Add(int64(25 * time.Hour)) // each email outlasts the 24h budget
		return nil
	}
	sum, err := w.Deliver(context.Background(), worker.Slot{Planned: planned})
	if err != nil {
		t.Fatal(err)
	}
	first := len(b.mailer.sent)
	if first == 0 || first == 3 || sum.Retrying == 0 {
		t.Fatalf("a slot past its budget sent %d of 3 emails, retrying %d; want some, and a retry", first, sum.Retrying)
	}
	b.mailer.fail = nil
	if _, err := w.Deliver(context.Background(), worker.Slot{Planned: planned, Late: true}); err != nil {
		t.Fatal(err)
	}
	got := b.mailer.to()
	slices.Sort(got)
	if strings.Join(got, " ") != "ana@example.com bo@example.com cy@example.com" {
		t.Errorf("sent to %v over two runs; want each user once", got)
	}
	if n, _ := p.Count(context.Background()); n != 0 {
		t.Errorf("pending store holds %d, want 0", n)
	}
}

// TestDigestShutdownIsNotAFailure: a slot told to stop (serve shutting
// down) sends nothing more and ends without an error: its events wait.
func TestDigestShutdownIsNotAFailure(t *testing.T) {
	w, b, p := setupPending(t, 0)
	b.enqueue(native("a1", "ana", nil, "ana/1.pdf"))
	if _, err := w.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := w.Deliver(ctx, worker.Slot{Planned: b.now}); err != nil {
		t.Errorf("Deliver on shutdown = %v; want no error", err)
	}
	if n, _ := p.Count(context.Background()); n != 1 || len(b.mailer.sent) != 0 {
		t.Errorf("on shutdown: %d emails sent, %d pending; want none and 1", len(b.mailer.sent), n)
	}
}

// TestDigestSlotSummaryCountsEachEventOnce: a slot that ingests and
// delivers the same events counts them received and acked once, as
// messages, and due and delivered once, as pending events.
func TestDigestSlotSummaryCountsEachEventOnce(t *testing.T) {
	w, b, _ := setupPending(t, 0)
	b.enqueue(native("a1", "ana", nil, "ana/1.pdf"), native("b1", "bo", nil, "bo/1.pdf"))
	in, err := w.Drain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now})
	if err != nil {
		t.Fatal(err)
	}
	if sum := in.Plus(out); sum.Received != 2 || sum.Acked != 2 || sum.Sent != 2 || sum.Users != 2 || sum.Due != 2 || sum.Delivered != 2 {
		t.Errorf("slot summary received %d, acked %d, sent %d, users %d, due %d, delivered %d; want 2 each",
			sum.Received, sum.Acked, sum.Sent, sum.Users, sum.Due, sum.Delivered)
	}
}

// checkSentReachedRecipient fails t for each event the ledger records
// sent to a recipient although one of its reports was linked in no
// email that recipient got: reports are keys of events, by event id.
func checkSentReachedRecipient(t *testing.T, b *bundle, reports map[string][]string, recipients ...string) {
	t.Helper()
	got := map[string]bool{}
	for _, e := range b.mailer.sent {
		for _, l := range links(e) {
			got[e.To[0]+" "+l] = true
		}
	}
	for id, keys := range reports {
		for _, rcpt := range recipients {
			rec := b.ledger.recs[worker.DeliveryKey(id, rcpt)]
			if rec == nil || rec.state != "sent" {
				continue
			}
			for _, k := range keys {
				if !got[rcpt+" "+k] {
					t.Errorf("event %s is recorded sent to %s, but no email to them linked its report %s", id, rcpt, k)
				}
			}
		}
	}
}

// TestDigestShownEventIsRecordedOnlyWithWhatShowsIt: an older event is
// recorded sent only with the newer events that show its reports.
// Wholly shown by events in different parts, it is recorded sent only
// once all of them went, so a part rejected for good cannot take one
// of its reports with it: it waits, and goes alone at the next slot
// with that report (here rejected too); partly shown by an event whose
// link cannot be made, it waits and goes alone at the next slot.
func TestDigestShownEventIsRecordedOnlyWithWhatShowsIt(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxLinks int
		bodies   []string
		signer   worker.Signer
		fail     string // an email linking it is refused for good
		reports  map[string][]string
		// want is how many times each report reached ana over two slots.
		want map[string]int
		dead map[string]worker.Code
	}{
		{
			name:     "wholly shown across parts, a part refused",
			maxLinks: 2,
			bodies: []string{
				native("a1", "ana", nil, "ana/1.pdf", "ana/2.pdf"),
				native("a2", "ana", nil, "ana/1.pdf"),
				native("a3", "ana", nil, "ana/2.pdf"),
				native("a4", "ana", nil, "ana/4.pdf"),
			},
			fail:    "ana/1.pdf",
			reports: map[string][]string{"a1": {"ana/1.pdf", "ana/2.pdf"}, "a2": {"ana/1.pdf"}, "a3": {"ana/2.pdf"}, "a4": {"ana/4.pdf"}},
			want:    map[string]int{"ana/2.pdf": 1, "ana/4.pdf": 1},
			dead:    map[string]worker.Code{"m0": worker.CodeSESRejected, "m1": worker.CodeSESRejected},
		},
		{
			name:     "wholly shown across parts, all sent",
			maxLinks: 2,
			bodies: []string{
				native("a1", "ana", nil, "ana/1.pdf", "ana/2.pdf"),
				native("a2", "ana", nil, "ana/1.pdf"),
				native("a3", "ana", nil, "ana/2.pdf"),
				native("a4", "ana", nil, "ana/4.pdf"),
			},
			reports: map[string][]string{"a1": {"ana/1.pdf", "ana/2.pdf"}, "a2": {"ana/1.pdf"}, "a3": {"ana/2.pdf"}, "a4": {"ana/4.pdf"}},
			want:    map[string]int{"ana/1.pdf": 1, "ana/2.pdf": 1, "ana/4.pdf": 1},
			dead:    map[string]worker.Code{},
		},
		{
			name:     "partly shown by an event whose link fails",
			maxLinks: 50,
			bodies: []string{
				native("a1", "ana", nil, "ana/1.pdf", "ana/2.pdf"),
				native("a2", "ana", nil, "ana/1.pdf", "ana/3.pdf"),
			},
			signer:  pickySigner{bad: map[string]error{"ana/3.pdf": worker.Permanent(errors.New("key too long to sign"))}},
			reports: map[string][]string{"a1": {"ana/1.pdf", "ana/2.pdf"}, "a2": {"ana/1.pdf", "ana/3.pdf"}},
			want:    map[string]int{"ana/1.pdf": 1, "ana/2.pdf": 1},
			dead:    map[string]worker.Code{"m1": worker.CodeLinkFailed},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, b, p := setupPendingWith(t, tc.maxLinks, func(d *worker.Deps) {
				if tc.signer != nil {
					d.Signer = tc.signer
				}
			})
			for _, body := range tc.bodies {
				b.enqueue(body)
				b.now = b.now.Add(time.Minute)
				if _, err := w.Drain(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			b.mailer.fail = func(e worker.Email) error {
				if tc.fail != "" && slices.Contains(links(e), tc.fail) {
					return worker.PermanentCode(worker.CodeSESRejected, errors.New("MessageRejected"))
				}
				return nil
			}
			for range 2 {
				if _, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now}); err != nil {
					t.Fatal(err)
				}
				b.now = b.now.Add(time.Hour)
			}
			got := map[string]int{}
			for _, e := range b.mailer.sent {
				for _, l := range links(e) {
					got[l]++
				}
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("ana got %v over two slots, want %v", got, tc.want)
			}
			if !maps.Equal(b.queue.codes, tc.dead) {
				t.Errorf("dead letters %v, want %v", b.queue.codes, tc.dead)
			}
			checkSentReachedRecipient(t, b, tc.reports, "ana@example.com")
			if n, err := p.Count(context.Background()); err != nil || n != 0 {
				t.Errorf("pending store holds %d (%v), want 0", n, err)
			}
		})
	}
}

// TestDigestSentEventDoesNotHoldBackItsNewerOne: an older event already
// sent to one recipient, and left for retry for another, does not hold
// back the newer event showing its report to the first; for the other
// it does.
func TestDigestSentEventDoesNotHoldBackItsNewerOne(t *testing.T) {
	w, b, _ := setupPending(t, 0)
	for _, body := range []string{
		native("a1", "ana", []string{"cfo@example.com"}, "ana/1.pdf"),
		native("a2", "ana", []string{"cfo@example.com"}, "ana/1.pdf"),
	} {
		b.enqueue(body)
		b.now = b.now.Add(time.Minute)
		if _, err := w.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	b.ledger.recs = map[string]*memRecord{
		worker.DeliveryKey("a1", "ana@example.com"): {state: "claimed", at: b.now}, // another run's
		worker.DeliveryKey("a1", "cfo@example.com"): {state: "sent", at: b.now.Add(-time.Hour)},
	}
	sum, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(b.mailer.to(), " "); got != "cfo@example.com" || strings.Join(links(b.mailer.sent[0]), " ") != "ana/1.pdf" {
		t.Errorf("sent to %q; want cfo's email with a2's report only", got)
	}
	if sum.Pending != 2 {
		t.Errorf("pending %d, want 2 (a1 and a2, for ana)", sum.Pending)
	}
}

// TestDigestSlotKeepsToOneBudget: a slot's ingest and delivery share
// its budget. The ingest stops receiving at half of it, so a queue that
// never runs dry leaves the delivery time; an ingest that overran the
// whole budget leaves the delivery none (a retry).
func TestDigestSlotKeepsToOneBudget(t *testing.T) {
	for _, tc := range []struct {
		name      string
		receive   time.Duration // each receive takes this long
		receives  int
		sent      int
		retrying  int
		onQueue   int
		delivered int
	}{
		{name: "ingest stops at half the budget", receive: 13 * time.Hour, receives: 1, sent: 1, onQueue: 1, delivered: 1},
		{name: "ingest took it all", receive: 25 * time.Hour, receives: 1, retrying: 1, onQueue: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var clock atomic.Int64
			var b *bundle
			w, b, p := setupPendingWith(t, 0, func(d *worker.Deps) {
				d.Now = func() time.Time { return time.Unix(0, clock.Load()).UTC() }
				d.Queue = trickleQueue{d.Queue.(*fakeQueue), func() {
					clock.Add(int64(tc.receive))
					b.enqueue(native(fmt.Sprintf("t%d", clock.Load()), "bo", nil, "bo/1.pdf"))
				}}
			})
			clock.Store(b.now.UnixNano())
			b.enqueue(native("a1", "ana", nil, "ana/1.pdf"))
			sum, err := w.RunSlot(context.Background(), worker.Slot{Planned: time.Unix(0, clock.Load()).UTC().Add(48 * time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			if b.queue.receives != tc.receives || len(b.queue.pending) != tc.onQueue {
				t.Errorf("ingest received %d times and left %d on the queue; want %d and %d", b.queue.receives, len(b.queue.pending), tc.receives, tc.onQueue)
			}
			if len(b.mailer.sent) != tc.sent || sum.Retrying != tc.retrying || sum.Delivered != tc.delivered {
				t.Errorf("slot sent %d, retrying %d, delivered %d; want %d, %d, %d", len(b.mailer.sent), sum.Retrying, sum.Delivered, tc.sent, tc.retrying, tc.delivered)
			}
			if n, _ := p.Count(context.Background()); n != 1-tc.delivered {
				t.Errorf("pending store holds %d, want %d", n, 1-tc.delivered)
			}
		})
	}
}

// trickleQueue is a queue that is never empty: after each receive,
// more calls.
type trickleQueue struct {
	*fakeQueue
	more func()
}

func (q trickleQueue) Receive(ctx context.Context, max int, wait time.Duration) ([]worker.Message, error) {
	msgs, err := q.fakeQueue.Receive(ctx, max, wait)
	q.more()
	return msgs, err
}

// TestDigestPartlyShownEventGoesWhenItsNewerOneWasSent: an event partly
// shown by a newer one that was sent to the recipient before goes with
// its other reports: the shown one reached the recipient already. One
// wholly shown goes with no email, rather than wait and go alone at a
// later slot with the report again.
func TestDigestPartlyShownEventGoesWhenItsNewerOneWasSent(t *testing.T) {
	for _, tc := range []struct {
		name  string
		older string
		want  []string // the links sent over two slots
	}{
		{name: "partly shown", older: native("a1", "ana", nil, "ana/1.pdf", "ana/2.pdf"), want: []string{"ana/2.pdf"}},
		{name: "wholly shown", older: native("a1", "ana", nil, "ana/1.pdf")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, b, p := setupPending(t, 0)
			for _, body := range []string{tc.older, native("a2", "ana", nil, "ana/1.pdf")} {
				b.enqueue(body)
				b.now = b.now.Add(time.Minute)
				if _, err := w.Drain(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			b.ledger.recs = map[string]*memRecord{worker.DeliveryKey("a2", "ana@example.com"): {state: "sent", at: b.now.Add(-time.Hour)}}
			for range 2 {
				if _, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now}); err != nil {
					t.Fatal(err)
				}
				b.now = b.now.Add(time.Hour)
			}
			var got []string
			for _, e := range b.mailer.sent {
				got = append(got, links(e)...)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("two slots linked %q, want %q", got, tc.want)
			}
			if n, err := p.Count(context.Background()); err != nil || n != 0 {
				t.Errorf("pending store holds %d (%v), want 0", n, err)
			}
		})
	}
}

// TestDigestCrossPartRetrySendsEachReportOnce: an older event partly
// shown by a newer one goes in a later part than it; when that part is
// left for retry, the newer one's entry stays though it was sent, so
// the next slot finds it sent and the older one goes with its own
// report only.
func TestDigestCrossPartRetrySendsEachReportOnce(t *testing.T) {
	w, b, p := setupPending(t, 1)
	for _, body := range []string{
		native("a1", "ana", nil, "ana/1.pdf", "ana/2.pdf"),
		native("a2", "ana", nil, "ana/1.pdf"), // newer: shows 1.pdf
	} {
		b.enqueue(body)
		b.now = b.now.Add(time.Minute)
		if _, err := w.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	var failed atomic.Bool
	b.mailer.fail = func(e worker.Email) error {
		if slices.Contains(links(e), "ana/2.pdf") && failed.CompareAndSwap(false, true) {
			return errors.New("connection refused")
		}
		return nil
	}
	for range 2 {
		if _, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now}); err != nil {
			t.Fatal(err)
		}
		b.now = b.now.Add(time.Hour)
	}
	got := map[string]int{}
	for _, e := range b.mailer.sent {
		for _, l := range links(e) {
			got[l]++
		}
	}
	if !maps.Equal(got, map[string]int{"ana/1.pdf": 1, "ana/2.pdf": 1}) {
		t.Errorf("ana got %v over two slots; want each report once", got)
	}
	if n, _ := p.Count(context.Background()); n != 0 {
		t.Errorf("pending store holds %d after the second slot, want 0", n)
	}
}

// TestDigestPartsKeepTheirLabelsAcrossARetry: when one part of a
// user's digest is left for retry and another was sent, the sent
// events keep their entries, so the next run splits the same events
// alike and the part left over goes under its own label ("part 1 of 2"
// after "part 2 of 2"), not as a digest of its own. A replica killed
// mid-digest leaves its claims so (internal/digestcrash).
func TestDigestPartsKeepTheirLabelsAcrossARetry(t *testing.T) {
	w, b, p := setupPending(t, 2)
	for _, body := range []string{
		native("a1", "ana", nil, "ana/1.pdf"),
		native("a2", "ana", nil, "ana/2.pdf"),
		native("a3", "ana", nil, "ana/3.pdf"), // newest: part 1 with a2
	} {
		b.enqueue(body)
		b.now = b.now.Add(time.Minute)
		if _, err := w.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	var failed atomic.Bool
	b.mailer.fail = func(e worker.Email) error {
		if slices.Contains(links(e), "ana/3.pdf") && failed.CompareAndSwap(false, true) {
			return errors.New("connection refused")
		}
		return nil
	}
	for range 2 {
		if _, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now}); err != nil {
			t.Fatal(err)
		}
		b.now = b.now.Add(time.Hour)
	}
	var got []string
	for _, e := range b.mailer.sent {
		got = append(got, fmt.Sprintf("%s %q", e.Subject, links(e)))
	}
	want := []string{
		`Your reports: 1 new report (part 2 of 2) ["ana/1.pdf"]`,
		`Your reports: 2 new reports (part 1 of 2) ["ana/3.pdf" "ana/2.pdf"]`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("ana got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n, _ := p.Count(context.Background()); n != 0 {
		t.Errorf("pending store holds %d after the second run, want 0", n)
	}
}

// TestDigestPartWaitsWholeForAClaimElsewhere: a run killed while it
// claimed the events of a part leaves some claimed and some not; the
// next run sends neither half alone, under the part's label, but the
// part whole once the claim it cannot take has lapsed, so the user
// never gets the same "part 1 of 2" twice.
func TestDigestPartWaitsWholeForAClaimElsewhere(t *testing.T) {
	w, b, p := setupPending(t, 2)
	for _, body := range []string{
		native("a1", "ana", nil, "ana/1.pdf"),
		native("a2", "ana", nil, "ana/2.pdf"),
		native("a3", "ana", nil, "ana/3.pdf"), // newest: part 1 with a2
	} {
		b.enqueue(body)
		b.now = b.now.Add(time.Minute)
		if _, err := w.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// The killed run claimed a3 (part 1's first event), not a2.
	b.ledger.recs = map[string]*memRecord{worker.DeliveryKey("a3", "ana@example.com"): {state: "claimed", at: b.now}}
	for range 2 {
		if _, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now}); err != nil {
			t.Fatal(err)
		}
		b.now = b.now.Add(time.Hour) // past claim_timeout
	}
	var got []string
	for _, e := range b.mailer.sent {
		got = append(got, fmt.Sprintf("%s %q", e.Subject, links(e)))
	}
	want := []string{
		`Your reports: 1 new report (part 2 of 2) ["ana/1.pdf"]`,
		`Your reports: 2 new reports (part 1 of 2) ["ana/3.pdf" "ana/2.pdf"]`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("ana got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n, _ := p.Count(context.Background()); n != 0 {
		t.Errorf("pending store holds %d after the second run, want 0", n)
	}
}

// TestDigestUnreadableEntryIsDeadLettered: an entry of the pending
// store that is not an event goes to the dead-letter queue as it is
// (ledger_unreadable, naming its key) and is deleted; the user's other
// events go at the same slot, and the slot is done.
func TestDigestUnreadableEntryIsDeadLettered(t *testing.T) {
	ctx := context.Background()
	w, b, p := setupPending(t, 50)
	b.enqueue(native("a1", "ana", nil, "ana/1.pdf"))
	if _, err := w.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	var user string
	if err := p.Users(ctx, func(u string) error { user = u; return nil }); err != nil {
		t.Fatal(err)
	}
	key := p.Prefix + user + "/zz.json"
	if _, err := p.Client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(p.Bucket), Key: aws.String(key), Body: strings.NewReader("{truncated")}); err != nil {
		t.Fatal(err)
	}
	b.now = b.now.Add(time.Hour)
	sum, err := w.Deliver(ctx, worker.Slot{Planned: b.now})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.mailer.sent) != 1 || !slices.Equal(links(b.mailer.sent[0]), []string{"ana/1.pdf"}) {
		t.Errorf("sent %d emails; want ana's one with ana/1.pdf", len(b.mailer.sent))
	}
	if sum.Retrying != 0 || sum.DeadLettered != 1 || sum.Delivered != 1 {
		t.Errorf("slot retrying %d, dead-lettered %d, delivered %d; want 0, 1, 1", sum.Retrying, sum.DeadLettered, sum.Delivered)
	}
	if b.queue.codes[key] != worker.CodeLedgerUnreadable || !strings.Contains(b.queue.dead[key], key) || b.queue.bodies[key] != "{truncated" {
		t.Errorf("dead letters %v %v; want %s as ledger_unreadable, its reason naming it, with its body", b.queue.codes, b.queue.dead, key)
	}
	if n, err := p.Count(ctx); err != nil || n != 0 {
		t.Errorf("pending store holds %d (%v), want 0", n, err)
	}
}

// TestDigestUnreadableEntryTooLargeIsQuarantined: an unreadable entry
// larger than the dead-letter queue takes is kept under the quarantine
// prefix, whole; a note naming it, its size and why goes to the
// dead-letter queue; the entry leaves the store, and the user's other
// events go at the same slot, which is done.
// So is one the dead-letter queue takes no body like: empty (a
// console's "folder"), or not text.
func TestDigestUnreadableEntryTooLargeIsQuarantined(t *testing.T) {
	for name, huge := range map[string]string{
		"too large": `{"event": ` + strings.Repeat("x", queue.MaxMessageSize+1),
		"empty":     "",
		"binary":    "\x1f\x8b\x08\x00\x00\x00",
	} {
		t.Run(name, func(t *testing.T) { testUnsendableEntryIsQuarantined(t, huge) })
	}
}

func testUnsendableEntryIsQuarantined(t *testing.T, huge string) {
	ctx := context.Background()
	w, b, p := setupPending(t, 50)
	p.QuarantinePrefix = store.QuarantinePrefix("rm/ledger/", "weekly")
	b.enqueue(native("a1", "ana", nil, "ana/1.pdf"))
	if _, err := w.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	var user string
	if err := p.Users(ctx, func(u string) error { user = u; return nil }); err != nil {
		t.Fatal(err)
	}
	key := p.Prefix + user + "/zz.json"
	if _, err := p.Client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(p.Bucket), Key: aws.String(key), Body: strings.NewReader(huge)}); err != nil {
		t.Fatal(err)
	}
	b.now = b.now.Add(time.Hour)
	sum, err := w.Deliver(ctx, worker.Slot{Planned: b.now})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.mailer.sent) != 1 || !slices.Equal(links(b.mailer.sent[0]), []string{"ana/1.pdf"}) {
		t.Errorf("sent %d emails; want ana's one with ana/1.pdf", len(b.mailer.sent))
	}
	if sum.Retrying != 0 || sum.DeadLettered != 1 || sum.Delivered != 1 {
		t.Errorf("slot retrying %d, dead-lettered %d, delivered %d; want 0, 1, 1", sum.Retrying, sum.DeadLettered, sum.Delivered)
	}
	aside := p.QuarantinePrefix + user + "/zz.json"
	var note worker.QuarantineNote
	if err := json.Unmarshal([]byte(b.queue.bodies[key]), &note); err != nil ||
		note.Entry != key || note.Size != len(huge) || note.Quarantined != "s3://state/"+aside || note.Error == "" {
		t.Errorf("dead letter body %.300q (%v); want a note naming %s, %d bytes, kept at %s", b.queue.bodies[key], err, key, len(huge), aside)
	}
	if b.queue.codes[key] != worker.CodeLedgerUnreadable || !strings.Contains(b.queue.dead[key], aside) {
		t.Errorf("dead letter code %s, reason %q; want ledger_unreadable naming %s", b.queue.codes[key], b.queue.dead[key], aside)
	}
	out, err := p.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(p.Bucket), Key: aws.String(aside)})
	if err != nil {
		t.Fatalf("quarantined copy: %v", err)
	}
	kept, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(kept) != huge {
		t.Errorf("quarantined copy holds %d bytes, want the entry's %d", len(kept), len(huge))
	}
	if n, err := p.Count(ctx); err != nil || n != 0 {
		t.Errorf("pending store holds %d (%v), want 0", n, err)
	}
}

// ingestEach ingests each body in turn, a minute apart, so that the
// later ones are the newer events.
func ingestEach(t *testing.T, w *worker.Worker, b *bundle, bodies ...string) {
	t.Helper()
	for _, body := range bodies {
		b.enqueue(body)
		b.now = b.now.Add(time.Minute)
		if _, err := w.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// reportKeys returns n report keys of ana's named after prefix.
func reportKeys(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("ana/%s-%02d.pdf", prefix, i)
	}
	return out
}

// TestDigestPartsKeepToMaxLinks: every email of a digest carries at
// most max_links_per_email links, however the events that add none
// (their reports all shown by newer ones) chain the events that show
// them, and each report reaches the recipient once, every event
// recorded sent only once its reports went out.
func TestDigestPartsKeepToMaxLinks(t *testing.T) {
	// Five events of 40 reports each; four older ones each link one
	// report of two neighbours, so that they chain all five.
	chain := func() (bodies []string, reports map[string][]string) {
		reports = map[string][]string{}
		keys := make([][]string, 5)
		for i := range keys {
			keys[i] = reportKeys(fmt.Sprintf("b%d", i), 40)
		}
		for i := range 4 {
			id := fmt.Sprintf("x%d", i)
			reports[id] = []string{keys[i][0], keys[i+1][0]}
			bodies = append(bodies, native(id, "ana", nil, reports[id]...))
		}
		for i := range 5 {
			id := fmt.Sprintf("b%d", i)
			reports[id] = keys[i]
			bodies = append(bodies, native(id, "ana", nil, keys[i]...))
		}
		return bodies, reports
	}
	// One older event whose three reports three events of 30 show.
	spread := func() (bodies []string, reports map[string][]string) {
		reports = map[string][]string{}
		var old []string
		for i := range 3 {
			keys := reportKeys(fmt.Sprintf("s%d", i), 30)
			reports[fmt.Sprintf("s%d", i)] = keys
			old = append(old, keys[0])
		}
		reports["old"] = old
		bodies = append(bodies, native("old", "ana", nil, old...))
		for i := range 3 {
			id := fmt.Sprintf("s%d", i)
			bodies = append(bodies, native(id, "ana", nil, reports[id]...))
		}
		return bodies, reports
	}
	// An event of 60 reports, over the limit, goes alone; the older
	// one covered by it and a newer one of 10 waits for both.
	big := func() (bodies []string, reports map[string][]string) {
		reports = map[string][]string{"big": reportKeys("big", 60), "small": reportKeys("small", 10)}
		reports["old"] = []string{reports["big"][0], reports["small"][0]}
		for _, id := range []string{"old", "big", "small"} {
			bodies = append(bodies, native(id, "ana", nil, reports[id]...))
		}
		return bodies, reports
	}
	for _, tc := range []struct {
		name   string
		events func() ([]string, map[string][]string)
		links  int // in all
	}{
		{name: "covered events chain five events of 40", events: chain, links: 200},
		{name: "a covered event shown by three events of 30", events: spread, links: 90},
		{name: "an event over the limit goes alone", events: big, links: 70},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const maxLinks = 50
			w, b, p := setupPending(t, maxLinks)
			bodies, reports := tc.events()
			ingestEach(t, w, b, bodies...)
			if _, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now}); err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, e := range b.mailer.sent {
				ls := links(e)
				if len(ls) > maxLinks && len(e.EventIDs) > 1 {
					t.Errorf("an email carries %d links, over max_links_per_email %d: %q", len(ls), maxLinks, e.Subject)
				}
				for _, l := range ls {
					got[l]++
				}
			}
			if len(got) != tc.links {
				t.Errorf("ana got %d reports, want %d", len(got), tc.links)
			}
			for l, n := range got {
				if n != 1 {
					t.Errorf("ana got %s %d times", l, n)
				}
			}
			for id := range reports {
				if s := b.ledger.state(id, "ana@example.com"); s != "sent" {
					t.Errorf("ledger record of %s for ana is %q, want sent", id, s)
				}
			}
			checkSentReachedRecipient(t, b, reports, "ana@example.com")
			if n, err := p.Count(context.Background()); err != nil || n != 0 {
				t.Errorf("pending store holds %d (%v), want 0", n, err)
			}
		})
	}
}

// TestDigestRetrySlotKeepsPartLabels: a slot run again for the events
// an earlier run left for retry, beside the events sent then and kept,
// splits them alike and sends the rest under the labels their parts
// had: the recipient's emails of both runs together are "part 1 of n"
// to "part n of n", each once, not "part 1 of 2" twice or a "part 2 of
// 2" followed by an unlabelled email.
func TestDigestRetrySlotKeepsPartLabels(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bodies []string
		// failFirst fails, at the first slot, each email linking one.
		failFirst []string
		want      []string // the second slot's subjects, sorted
	}{
		{
			name: "one email left",
			bodies: []string{
				native("a1", "ana", nil, "ana/1.pdf", "ana/2.pdf"),
				native("a2", "ana", nil, "ana/1.pdf"),
			},
			failFirst: []string{"ana/2.pdf"},
			want:      []string{"Your reports: 1 new report (part 2 of 2)"},
		},
		{
			name: "two emails left",
			bodies: []string{
				native("a0", "ana", nil, "ana/0.pdf"),
				native("a1", "ana", nil, "ana/1.pdf", "ana/2.pdf"),
				native("a2", "ana", nil, "ana/1.pdf"),
			},
			failFirst: []string{"ana/0.pdf", "ana/2.pdf"},
			want:      []string{"Your reports: 1 new report (part 2 of 3)", "Your reports: 1 new report (part 3 of 3)"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, b, p := setupPending(t, 1)
			ingestEach(t, w, b, tc.bodies...)
			b.mailer.fail = func(e worker.Email) error {
				for _, l := range tc.failFirst {
					if slices.Contains(links(e), l) {
						return errors.New("connection refused")
					}
				}
				return nil
			}
			if _, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now}); err != nil {
				t.Fatal(err)
			}
			first := len(b.mailer.sent)
			b.mailer.fail = nil
			b.now = b.now.Add(time.Hour)
			if _, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now}); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range b.mailer.sent[first:] {
				got = append(got, e.Subject)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("the retry slot's subjects are %q, want %q", got, tc.want)
			}
			var all []string
			for _, e := range b.mailer.sent {
				all = append(all, e.Subject)
			}
			slices.Sort(all)
			n := len(all)
			for i, s := range all {
				if want := fmt.Sprintf("(part %d of %d)", i+1, n); !strings.HasSuffix(s, want) {
					t.Errorf("the recipient's emails are %q; want parts 1 to %d of %d, once each", all, n, n)
					break
				}
			}
			if n, err := p.Count(context.Background()); err != nil || n != 0 {
				t.Errorf("pending store holds %d (%v), want 0", n, err)
			}
		})
	}
}

// TestDigestCoveredEventIsRecorded: an event whose reports newer events
// all show, sent now or before, is recorded sent (covered, by their
// emails) before its entry goes, so that a later copy of its message
// (SQS delivers at least once; a producer may send again) is found
// sent at the next slot and emailed to no one. While one of those
// events is left for retry it waits, unrecorded, and is recorded at
// the slot that sends it.
func TestDigestCoveredEventIsRecorded(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxLinks int
		// older is a1's reports; newer are the events showing them.
		older []string
		newer []string
		// sentBefore names, for a newer event sent to ana before the
		// first slot, the email that took it there.
		sentBefore map[string]string
		failFirst  string // the first slot's email linking it fails
		slots      int    // until the store is empty
		want       map[string]int
	}{
		{
			name: "newer event sent before", maxLinks: 50, slots: 1,
			older: []string{"ana/1.pdf"}, newer: []string{native("a2", "ana", nil, "ana/1.pdf")},
			sentBefore: map[string]string{"a2": "e-old"},
			want:       map[string]int{},
		},
		{
			name: "newer event sent in the slot", maxLinks: 50, slots: 1,
			older: []string{"ana/1.pdf"}, newer: []string{native("a2", "ana", nil, "ana/1.pdf")},
			want: map[string]int{"ana/1.pdf": 1},
		},
		{
			name: "one of two newer events fails, then goes", maxLinks: 1, slots: 2,
			older:     []string{"ana/1.pdf", "ana/2.pdf"},
			newer:     []string{native("a2", "ana", nil, "ana/1.pdf"), native("a3", "ana", nil, "ana/2.pdf")},
			failFirst: "ana/2.pdf",
			want:      map[string]int{"ana/1.pdf": 1, "ana/2.pdf": 1},
		},
		{
			name: "one newer event sent before, one in the slot", maxLinks: 1, slots: 1,
			older:      []string{"ana/1.pdf", "ana/2.pdf"},
			newer:      []string{native("a2", "ana", nil, "ana/1.pdf"), native("a3", "ana", nil, "ana/2.pdf")},
			sentBefore: map[string]string{"a2": "e-old"},
			want:       map[string]int{"ana/2.pdf": 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, b, p := setupPending(t, tc.maxLinks)
			older := native("a1", "ana", nil, tc.older...)
			ingestEach(t, w, b, append([]string{older}, tc.newer...)...)
			b.ledger.recs = map[string]*memRecord{}
			for id, email := range tc.sentBefore {
				b.ledger.recs[worker.DeliveryKey(id, "ana@example.com")] = &memRecord{state: "sent", emailID: email, at: b.now.Add(-time.Hour)}
			}
			b.mailer.fail = func(e worker.Email) error {
				if tc.failFirst != "" && slices.Contains(links(e), tc.failFirst) {
					return errors.New("connection refused")
				}
				return nil
			}
			for i := range tc.slots {
				if _, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now}); err != nil {
					t.Fatal(err)
				}
				b.mailer.fail = nil
				b.now = b.now.Add(time.Hour)
				if rec := b.ledger.recs[worker.DeliveryKey("a1", "ana@example.com")]; i < tc.slots-1 && rec != nil && rec.state == "sent" {
					t.Errorf("after slot %d, with a newer event left for retry, a1 is recorded sent", i+1)
				}
			}
			got := map[string]int{}
			var wantBy []string
			for _, id := range tc.sentBefore {
				wantBy = append(wantBy, id)
			}
			for _, e := range b.mailer.sent {
				for _, l := range links(e) {
					got[l]++
					if slices.Contains(tc.older, l) {
						wantBy = append(wantBy, e.Tags[worker.EmailTag])
					}
				}
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("ana got %v, want %v", got, tc.want)
			}
			slices.Sort(wantBy)
			rec := b.ledger.recs[worker.DeliveryKey("a1", "ana@example.com")]
			if rec == nil || rec.state != "sent" {
				t.Errorf("ledger record of a1 for ana is %+v, want sent", rec)
			} else if !slices.Equal(slices.Sorted(slices.Values(rec.coveredBy)), wantBy) {
				t.Errorf("a1 is recorded covered by %q, want %q", rec.coveredBy, wantBy)
			}
			if n, err := p.Count(context.Background()); err != nil || n != 0 {
				t.Fatalf("pending store holds %d (%v) after %d slots, want 0", n, err, tc.slots)
			}
			// The same message again, after the slot.
			ingestEach(t, w, b, older)
			sent := len(b.mailer.sent)
			if _, err := w.Deliver(context.Background(), worker.Slot{Planned: b.now}); err != nil {
				t.Fatal(err)
			}
			if n := len(b.mailer.sent) - sent; n != 0 {
				t.Errorf("the next slot sent %d emails for the copy of a covered event (%q), want none", n, links(b.mailer.sent[sent]))
			}
			if n, err := p.Count(context.Background()); err != nil || n != 0 {
				t.Errorf("pending store holds %d (%v) after the next slot, want 0", n, err)
			}
		})
	}
}

// TestDigestRefusedRecipientWaitsWithTheUser: a newer event whose email
// reached the user, but whose extra recipient the policy refuses, is
// bound for the dead-letter queue; while an older event of the user
// whose report it shows waits for a retry, it keeps its entry, so that
// the rerun finds that report sent and the older event goes with its
// own only. It is dead-lettered once, by the run that finishes the user.
func TestDigestRefusedRecipientWaitsWithTheUser(t *testing.T) {
	ctx := context.Background()
	w, b, p := setupPending(t, 1)
	ingestEach(t, w, b,
		native("a1", "ana", nil, "ana/1.pdf", "ana/2.pdf"),
		native("a2", "ana", []string{"cfo@other.org"}, "ana/1.pdf"))
	b.mailer.fail = func(e worker.Email) error {
		if slices.Contains(links(e), "ana/2.pdf") {
			return errors.New("connection refused")
		}
		return nil
	}
	dead := 0
	for range 2 {
		sum, err := w.Deliver(ctx, worker.Slot{Planned: b.now})
		if err != nil {
			t.Fatal(err)
		}
		dead += sum.DeadLettered
		b.mailer.fail = nil
	}
	got := map[string]int{}
	for _, e := range b.mailer.sent {
		for _, l := range links(e) {
			got[l]++
		}
	}
	if want := map[string]int{"ana/1.pdf": 1, "ana/2.pdf": 1}; !maps.Equal(got, want) {
		t.Errorf("ana got %v over the slot's two runs, want %v", got, want)
	}
	if dead != 1 || b.queue.codes["m1"] != worker.CodeRecipientRefused {
		t.Errorf("%d dead letters, codes %v; want m1 once, %s", dead, b.queue.codes, worker.CodeRecipientRefused)
	}
	if n, err := p.Count(ctx); err != nil || n != 0 {
		t.Errorf("pending store holds %d (%v), want 0", n, err)
	}
}
