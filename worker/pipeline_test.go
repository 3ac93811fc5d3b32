package worker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/templates"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/link"
)

// countingObjects records every Head.
type countingObjects struct {
	worker.ObjectStore
	mu    sync.Mutex
	heads []string
}

func (o *countingObjects) Head(ctx context.Context, bucket, key string) (worker.ObjectInfo, error) {
	o.mu.Lock()
	o.heads = append(o.heads, bucket+"/"+key)
	o.mu.Unlock()
	return o.ObjectStore.Head(ctx, bucket, key)
}

func TestDrainChecksEveryReportOncePerBatch(t *testing.T) {
	objects := &countingObjects{ObjectStore: fakeObjects{
		"reports/a.pdf":     {Size: 2048, ContentType: "application/pdf"},
		"reports/b.csv":     {Size: 5 << 20, ContentType: "text/csv"},
		"reports/sized.pdf": {Size: 999999, ContentType: "application/octet-stream"},
		"reports/Q3 results+notes.pdf": {Size: 10, ContentType: "application/pdf", Metadata: map[string]string{
			"user-id": "u-9", "user-email": "bo@example.com"}},
	}}
	sized := `{"version":1,"type":"report.ready","id":"e3","user":{"id":"cy","email":"cy@example.com"},` +
		`"reports":[{"bucket":"reports","key":"sized.pdf","size":3072,"content_type":"application/pdf"}]}`
	w, b := setup(t, worker.ModeEach, objects,
		native("e1", "ana", nil, "a.pdf", "b.csv"),
		native("e2", "ana", nil, "a.pdf"),
		sized,
		s3Notification("Q3+results%2Bnotes.pdf"),
		s3Notification("Q3+results%2Bnotes.pdf"), // a second copy
	)
	sum, err := w.Drain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 4 || sum.Acked != 5 {
		t.Fatalf("summary %+v; want 4 emails and every message acked", sum)
	}
	slices.Sort(objects.heads)
	if got := strings.Join(objects.heads, " "); got != "reports/Q3 results+notes.pdf reports/a.pdf reports/b.csv reports/sized.pdf" {
		t.Errorf("heads %q; want each object headed once in the batch", got)
	}
	// Size and type come from the object when the event has none, and
	// the event's own win.
	e1 := b.mailer.sent[0].Text
	if !strings.Contains(e1, templates.HumanSize(2048)) || !strings.Contains(e1, templates.HumanSize(5<<20)) {
		t.Errorf("e1's email should show the objects' sizes:\n%s", e1)
	}
	e3 := b.mailer.sent[2].Text
	if !strings.Contains(e3, templates.HumanSize(3072)) || strings.Contains(e3, templates.HumanSize(999999)) {
		t.Errorf("e3's email should show the size the event gave:\n%s", e3)
	}
}

func TestDrainHeadFailures(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		dead    bool
		code    worker.Code
		summary worker.Summary
	}{
		{"a missing object with no code is object_missing", worker.Permanent(errors.New("gone")),
			true, worker.CodeObjectMissing, worker.Summary{Received: 1, DeadLettered: 1}},
		{"a timeout is retried", errors.New("i/o timeout"),
			false, worker.CodeHeadFailed, worker.Summary{Received: 1, Retrying: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, b := setup(t, worker.ModeEach, failingObjects{tt.err}, native("e1", "ana", nil, "a.pdf"))
			sum, err := w.Drain(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if sum != tt.summary || len(b.mailer.sent) != 0 || len(b.ledger.recs) != 0 {
				t.Fatalf("summary %+v, %d emails, %d ledger records; want %+v and nothing sent or recorded", sum, len(b.mailer.sent), len(b.ledger.recs), tt.summary)
			}
			if tt.dead && (b.queue.codes["m0"] != tt.code || !strings.Contains(b.queue.dead["m0"], "head s3://reports/a.pdf: ")) {
				t.Errorf("dead-lettered with %q: %q", b.queue.codes["m0"], b.queue.dead["m0"])
			}
			if !tt.dead && !strings.Contains(b.logs.String(), "code="+string(tt.code)) {
				t.Errorf("logs lack code %s:\n%s", tt.code, b.logs)
			}
		})
	}
}

type failingObjects struct{ err error }

// deniedObjects holds every object, but answers Head on the keys in
// denied with a halt, as store.Objects does S3's 403; it records each
// Head.
type deniedObjects struct {
	denied map[string]error
	heads  []string
}

func (o *deniedObjects) Head(_ context.Context, bucket, key string) (worker.ObjectInfo, error) {
	o.heads = append(o.heads, key)
	return worker.ObjectInfo{}, o.denied[key]
}

// TestDrainHeadDeniedHaltsTheRun: a report the worker may not read
// (S3's 403, under a policy that grants s3:ListBucket) halts the run as
// a refused send does, rather than dead-lettering each message one by
// one: nothing more is headed, received or sent, and every message held
// goes back to the queue, hidden until the halt's time.
func TestDrainHeadDeniedHaltsTheRun(t *testing.T) {
	for _, mode := range []worker.Mode{worker.ModeEach, worker.ModeDigest} {
		t.Run(string(mode), func(t *testing.T) {
			var bodies []string
			for i := range 15 {
				key := "a.pdf"
				if i == 3 {
					key = "denied.pdf"
				}
				bodies = append(bodies, native(fmt.Sprintf("e%d", i), fmt.Sprintf("u%d", i), nil, key))
			}
			objects := &deniedObjects{}
			w, b := setup(t, mode, objects, bodies...)
			objects.denied = map[string]error{"denied.pdf": worker.HaltUntil(
				worker.Fail(worker.CodeObjectAccessDenied, worker.ClassHalt, errors.New("access denied to s3://reports/denied.pdf")), b.now.Add(10*time.Minute))}
			sum, err := w.Drain(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			want := worker.Summary{Received: 10, Retrying: 10, Halted: true, Halt: worker.Failure{
				Class: worker.ClassHalt, Code: worker.CodeObjectAccessDenied, Reason: "access denied to s3://reports/denied.pdf"}}
			if sum != want {
				t.Errorf("summary %+v; want %+v", sum, want)
			}
			if len(b.mailer.sent) != 0 || len(b.ledger.recs) != 0 || len(b.queue.dead) != 0 {
				t.Errorf("%d sent, %d ledger records, dead-lettered %v; want nothing", len(b.mailer.sent), len(b.ledger.recs), b.queue.dead)
			}
			if got := strings.Join(objects.heads, " "); got != "a.pdf denied.pdf" {
				t.Errorf("headed %q; want nothing after the denied report", got)
			}
			if b.queue.receives != 1 || len(b.queue.pending) != 5 || len(b.queue.released) != 0 {
				t.Errorf("%d receives, %d left, released %v; want 1 receive, 5 never received, none released", b.queue.receives, len(b.queue.pending), b.queue.released)
			}
			if len(b.queue.hidden) != 10 {
				t.Fatalf("hid %v; want the 10 received", b.queue.hidden)
			}
			for id, d := range b.queue.hidden {
				if d != 10*time.Minute {
					t.Errorf("%s hidden for %s, want 10m", id, d)
				}
			}
		})
	}
}

func (o failingObjects) Head(context.Context, string, string) (worker.ObjectInfo, error) {
	return worker.ObjectInfo{}, o.err
}

// TestDrainLinksOnlyWhatTheDistributionServes: CloudFront URLs name a
// path, not a bucket, so a report in another bucket must never get a
// link: it would open the object with the same key in the origin.
func TestDrainLinksOnlyWhatTheDistributionServes(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	inBucket := func(id, bucket, key string) string {
		return strings.Replace(native(id, "ana", nil, key), `"bucket":"reports"`, fmt.Sprintf(`"bucket":%q`, bucket), 1)
	}
	tests := []struct {
		name      string
		keyPrefix string // the worker's; wire.go sets it to cover the origin path
		body      string
		heads     int
		path      string // of the link sent; "" when refused
		reason    string
	}{
		{"served", "exports/", inBucket("e1", "reports", "exports/2026/a.pdf"), 1, "/2026/a.pdf", ""},
		{"another bucket", "exports/", inBucket("e1", "payroll", "exports/2026/a.pdf"), 0, "",
			`report s3://payroll/exports/2026/a.pdf: bucket "payroll" is not the bucket this worker serves, "reports"`},
		{"outside the prefix", "exports/", inBucket("e1", "reports", "private/a.pdf"), 0, "",
			`key "private/a.pdf" is outside the key prefix this worker serves, "exports/"`},
		{"outside the origin path, caught by the signer", "", inBucket("e1", "reports", "private/a.pdf"), 1, "",
			`key "private/a.pdf" is outside the origin path "/exports"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, b := setup(t, worker.ModeEach, nil)
			b.queue.pending = []worker.Message{{ID: "m0", ReceiptHandle: "r0", Body: tt.body}}
			objects := &countingObjects{ObjectStore: anyObjects{}}
			cf := &link.CloudFront{Domain: "https://d111111abcdef8.cloudfront.net", Bucket: "reports", OriginPath: "/exports",
				KeyID: "K2JCJMDEHXQW5F", Key: key, TTL: time.Hour}
			w, err := worker.New(worker.Config{Schedule: "t", From: "r@example.com", WaitTime: time.Second, Bucket: "reports", KeyPrefix: tt.keyPrefix},
				worker.Deps{Queue: b.queue, Objects: objects, Signer: cf, Templates: templates.Default(), Mailer: b.mailer, Ledger: b.ledger,
					Logger: slog.New(slog.NewTextHandler(b.logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			if len(objects.heads) != tt.heads {
				t.Errorf("%d heads, want %d (a report not served is refused before it is looked up)", len(objects.heads), tt.heads)
			}
			if tt.path == "" {
				if len(b.mailer.sent) != 0 {
					t.Fatalf("sent an email with a link to a report the distribution does not serve:\n%s", b.mailer.sent[0].Text)
				}
				if b.queue.codes["m0"] != worker.CodeBucketNotServed || !strings.Contains(b.queue.dead["m0"], tt.reason) {
					t.Fatalf("dead-lettered %q with %q; want %q saying %q", b.queue.dead["m0"], b.queue.codes["m0"], worker.CodeBucketNotServed, tt.reason)
				}
				if len(b.ledger.recs) != 0 {
					t.Errorf("the ledger kept %d records for a refused report", len(b.ledger.recs))
				}
				return
			}
			if len(b.mailer.sent) != 1 {
				t.Fatalf("sent %d emails, dead %v", len(b.mailer.sent), b.queue.dead)
			}
			var found bool
			for f := range strings.FieldsSeq(b.mailer.sent[0].Text) {
				if u, err := url.Parse(f); err == nil && u.Host == "d111111abcdef8.cloudfront.net" {
					found = true
					if u.Path != tt.path {
						t.Errorf("link path %q, want %q", u.Path, tt.path)
					}
				}
			}
			if !found {
				t.Errorf("no link in:\n%s", b.mailer.sent[0].Text)
			}
		})
	}
}

// pickySigner fails for the keys in bad, with their errors; with
// batch, it is a BatchSigner whose SignAll fails if any report does.
type pickySigner struct {
	bad   map[string]error
	batch bool
}

func (s pickySigner) Sign(ctx context.Context, r event.Report, now time.Time) (worker.Link, error) {
	if err := s.bad[r.Key]; err != nil {
		return worker.Link{}, err
	}
	return fakeSigner{}.Sign(ctx, r, now)
}

type pickyBatchSigner struct{ pickySigner }

func (s pickyBatchSigner) SignAll(ctx context.Context, rs []event.Report, now time.Time) ([]worker.Link, error) {
	out := make([]worker.Link, len(rs))
	for i, r := range rs {
		l, err := s.Sign(ctx, r, now)
		if err != nil {
			return nil, fmt.Errorf("s3://%s/%s: %w", r.Bucket, r.Key, err)
		}
		out[i] = l
	}
	return out, nil
}

// TestDrainDigestOneBadLinkFailsOnlyItsEvent: a report that cannot be
// linked must not take every message of the recipient's digest with it.
func TestDrainDigestOneBadLinkFailsOnlyItsEvent(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		summary worker.Summary
	}{
		{"permanent", worker.Permanent(errors.New("cloudfront: URL over the 8192-byte limit")),
			worker.Summary{Received: 3, Acked: 2, DeadLettered: 1, Sent: 1}},
		{"transient", errors.New("cloudfront: record expiry of key K: 503"),
			worker.Summary{Received: 3, Acked: 2, Retrying: 1, Sent: 1}},
	}
	for _, tt := range tests {
		for _, batch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/batch signer %v", tt.name, batch), func(t *testing.T) {
				var signer worker.Signer = pickySigner{bad: map[string]error{"unsignable.pdf": tt.err}}
				if batch {
					signer = pickyBatchSigner{pickySigner{bad: map[string]error{"unsignable.pdf": tt.err}}}
				}
				_, b := setup(t, worker.ModeDigest, nil)
				for i, body := range []string{native("e1", "ana", nil, "a.pdf"), native("e2", "ana", nil, "unsignable.pdf"), native("e3", "ana", nil, "c.pdf")} {
					b.queue.pending = append(b.queue.pending, worker.Message{ID: fmt.Sprintf("m%d", i), ReceiptHandle: fmt.Sprintf("r%d", i), Body: body})
				}
				w := newWorker(t, worker.ModeDigest, templates.Default(), signer, b)
				sum, err := w.Drain(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if sum != tt.summary {
					t.Errorf("summary %+v, want %+v", sum, tt.summary)
				}
				if len(b.mailer.sent) != 1 {
					t.Fatalf("sent %d emails, want ana's digest without the bad report", len(b.mailer.sent))
				}
				if txt := b.mailer.sent[0].Text; !strings.Contains(txt, "a.pdf") || !strings.Contains(txt, "c.pdf") || strings.Contains(txt, "unsignable") {
					t.Errorf("the digest should list a.pdf and c.pdf only:\n%s", txt)
				}
				if slices.Contains(b.queue.deleted, "m1") || !slices.Contains(b.queue.deleted, "m0") || !slices.Contains(b.queue.deleted, "m2") {
					t.Errorf("deleted %v; want m0 and m2, not m1", b.queue.deleted)
				}
				if worker.IsPermanent(tt.err) && (b.queue.codes["m1"] != worker.CodeLinkFailed || !strings.Contains(b.queue.dead["m1"], "8192-byte")) {
					t.Errorf("m1 dead-lettered with %q: %q", b.queue.codes["m1"], b.queue.dead["m1"])
				}
				if _, ok := b.ledger.recs[worker.DeliveryKey("e2", "ana@example.com")]; ok {
					t.Error("the claim of the event that was not sent is still in the ledger")
				}
			})
		}
	}
}

// gatedMailer is a fakeMailer with a SendGate.
type gatedMailer struct {
	*fakeMailer
	admit  func() error
	admits int
}

func (m *gatedMailer) Admit(context.Context) error {
	m.admits++
	return m.admit()
}

func TestDrainChecksTheQuotaBeforeReceiving(t *testing.T) {
	quota := worker.Halt(errors.New("ses 24-hour sending quota: 200 of 200 used"))
	halt := worker.Failure{Class: worker.ClassHalt, Code: worker.CodeHalted, Reason: "ses 24-hour sending quota: 200 of 200 used"}
	tests := []struct {
		name     string
		admit    func(n int) error // for the nth Admit, from 1
		receives int
		left     int // messages never received
		summary  worker.Summary
	}{
		{"spent before the run", func(int) error { return quota }, 0, 15, worker.Summary{Halted: true, Halt: halt}},
		{"spent after the first batch", func(n int) error {
			if n > 1 {
				return quota
			}
			return nil
		}, 1, 5, worker.Summary{Received: 10, Acked: 10, Sent: 10, Halted: true, Halt: halt}},
		{"a gate that cannot tell does not stop the run", func(int) error { return errors.New("GetAccount: timeout") }, 3, 0,
			worker.Summary{Received: 15, Acked: 15, Sent: 15}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var bodies []string
			for i := range 15 {
				bodies = append(bodies, native(fmt.Sprintf("e%d", i), fmt.Sprintf("u%d", i), nil, "a.pdf"))
			}
			_, b := setup(t, worker.ModeEach, nil, bodies...)
			m := &gatedMailer{fakeMailer: b.mailer}
			m.admit = func() error { return tt.admit(m.admits) }
			w, err := worker.New(worker.Config{Schedule: "t", From: "r@example.com", WaitTime: time.Second, Bucket: "reports"},
				worker.Deps{Queue: b.queue, Objects: anyObjects{}, Signer: fakeSigner{}, Templates: templates.Default(), Mailer: m, Ledger: b.ledger,
					Logger: slog.New(slog.NewTextHandler(b.logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			sum, err := w.Drain(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if sum != tt.summary || b.queue.receives != tt.receives || len(b.queue.pending) != tt.left || len(b.queue.released) != 0 {
				t.Errorf("summary %+v, %d receives, %d left, %d released; want %+v, %d, %d, 0",
					sum, b.queue.receives, len(b.queue.pending), len(b.queue.released), tt.summary, tt.receives, tt.left)
			}
			if sum.Halted && sum.OK() {
				t.Error("a halted run reports OK")
			}
		})
	}
}

// TestDrainQuotaHaltHidesMessagesUntilItFrees: a message handed back
// after a quota halt must not be received again before the quota can
// have freed, since each receive counts towards maxReceiveCount.
func TestDrainQuotaHaltHidesMessagesUntilItFrees(t *testing.T) {
	tests := []struct {
		name     string
		after    time.Duration // until the halt's retry time; 0: none
		hidden   time.Duration // 0: released at once
		released int
	}{
		{"hidden until the retry time", 10 * time.Minute, 10 * time.Minute, 0},
		{"capped below SQS's 12 hours", 30 * time.Hour, 12*time.Hour - time.Minute, 0},
		{"a halt with no time releases at once", 0, 0, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var bodies []string
			for i := range 10 {
				bodies = append(bodies, native(fmt.Sprintf("e%d", i), fmt.Sprintf("u%d", i), nil, "a.pdf"))
			}
			w, b := setup(t, worker.ModeEach, nil, bodies...)
			b.mailer.fail = func(worker.Email) error {
				if len(b.mailer.sent) < 3 {
					return nil
				}
				err := errors.New("ses 24-hour sending quota reached")
				if tt.after == 0 {
					return worker.Halt(err)
				}
				return worker.HaltUntil(err, b.now.Add(tt.after))
			}
			sum, err := w.Drain(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if sum.Acked != 3 || sum.Retrying != 7 || !sum.Halted {
				t.Fatalf("summary %+v; want 3 acked, 7 handed back, halted", sum)
			}
			if len(b.queue.released) != tt.released {
				t.Errorf("released %v; want %d", b.queue.released, tt.released)
			}
			if tt.hidden > 0 {
				if len(b.queue.hidden) != 7 {
					t.Fatalf("hid %v; want the 7 unsent messages", b.queue.hidden)
				}
				for id, d := range b.queue.hidden {
					if d != tt.hidden {
						t.Errorf("%s hidden for %s, want %s", id, d, tt.hidden)
					}
				}
			}
			if len(b.ledger.recs) != 3 {
				t.Errorf("ledger holds %d records, want the 3 sent", len(b.ledger.recs))
			}
		})
	}
}

func TestDrainPartialDeleteCountsOnlyTheFailed(t *testing.T) {
	w, b := setup(t, worker.ModeEach, nil,
		native("e1", "ana", nil, "a.pdf"), native("e2", "bo", nil, "a.pdf"), testEvent, native("e3", "cy", nil, "a.pdf"))
	b.queue.undeletable = map[string]bool{"r1": true}
	sum, err := w.Drain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := (worker.Summary{Received: 4, Acked: 2, Dropped: 1, Retrying: 1, Sent: 3}); sum != want {
		t.Errorf("summary %+v, want %+v: only the message that was not deleted is retrying", sum, want)
	}
}

// checkedQueue is a fakeQueue that is a worker.Checker.
type checkedQueue struct {
	*fakeQueue
	check      error
	deadLetter error
}

func (q *checkedQueue) Check(context.Context) error { return q.check }

func (q *checkedQueue) DeadLetter(ctx context.Context, m worker.Message, f worker.Failure) error {
	if q.deadLetter != nil {
		return q.deadLetter
	}
	return q.fakeQueue.DeadLetter(ctx, m, f)
}

func TestDrainStopsWhenTheDeadLetterQueueIsMissing(t *testing.T) {
	const dlq = "https://sqs.eu-west-2.amazonaws.com/1/reports-dlq"
	missing := fmt.Errorf("dead-letter queue %s: %w", dlq, worker.ErrNoQueue)
	tests := []struct {
		name       string
		check      error
		deadLetter error
		receives   int
	}{
		{"found before the run", missing, nil, 0},
		{"found when dead-lettering", nil, missing, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, b := setup(t, worker.ModeEach, nil, `{"version":2}`, `{"version":2}`, `{"version":2}`)
			q := &checkedQueue{fakeQueue: b.queue, check: tt.check, deadLetter: tt.deadLetter}
			w, err := worker.New(worker.Config{Schedule: "t", From: "r@example.com", WaitTime: time.Second, Bucket: "reports", BatchSize: 1},
				worker.Deps{Queue: q, Objects: anyObjects{}, Signer: fakeSigner{}, Templates: templates.Default(), Mailer: b.mailer, Ledger: b.ledger,
					Logger: slog.New(slog.NewTextHandler(b.logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			_, err = w.Drain(context.Background())
			if !errors.Is(err, worker.ErrNoQueue) || !strings.Contains(err.Error(), dlq) {
				t.Errorf("Drain error = %v; want it to name the missing dead-letter queue", err)
			}
			if b.queue.receives != tt.receives {
				t.Errorf("%d receives, want %d: no poison message should be received to cycle", b.queue.receives, tt.receives)
			}
		})
	}
}
