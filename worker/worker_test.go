package worker_test

import (
	"bytes"
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
	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/queue"
)

// fakeQueue hands out its messages in batches and records what the
// worker did with each.
type fakeQueue struct {
	mu       sync.Mutex
	pending  []worker.Message
	deleted  []string
	dead     map[string]string      // message id -> reason
	codes    map[string]worker.Code // message id -> code
	bodies   map[string]string      // message id -> the body dead-lettered
	released []string
	extended []string
	hidden   map[string]time.Duration // message id -> the latest Extend
	onExtend func()
	receives int
	// undeletable, when set, makes Delete fail for these receipt
	// handles, as DeleteMessageBatch can.
	undeletable map[string]bool
}

func (q *fakeQueue) Receive(_ context.Context, max int, _ time.Duration) ([]worker.Message, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.receives++
	n := min(max, len(q.pending))
	out := q.pending[:n]
	q.pending = q.pending[n:]
	return out, nil
}

func (q *fakeQueue) Delete(_ context.Context, msgs []worker.Message) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	var failed []string
	for _, m := range msgs {
		if q.undeletable[m.ReceiptHandle] {
			failed = append(failed, m.ReceiptHandle)
			continue
		}
		q.deleted = append(q.deleted, m.ID)
	}
	if len(failed) > 0 {
		return &worker.BatchError{Failed: failed, Err: fmt.Errorf("delete %v: ReceiptHandleIsInvalid", failed)}
	}
	return nil
}

func (q *fakeQueue) Release(_ context.Context, msgs []worker.Message) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, m := range msgs {
		q.released = append(q.released, m.ID)
	}
	return nil
}

func (q *fakeQueue) Extend(_ context.Context, msgs []worker.Message, d time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.hidden == nil {
		q.hidden = map[string]time.Duration{}
	}
	for _, m := range msgs {
		q.extended = append(q.extended, m.ID)
		q.hidden[m.ID] = d
	}
	if q.onExtend != nil {
		q.onExtend()
	}
	return nil
}

func (q *fakeQueue) DeadLetter(_ context.Context, m worker.Message, f worker.Failure) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(m.Body) > queue.MaxMessageSize {
		// As queue.SQS refuses it.
		return fmt.Errorf("dead-letter: %d bytes: %w", len(m.Body), worker.ErrTooLarge)
	}
	if err := queue.Sendable(m.Body); err != nil {
		return fmt.Errorf("dead-letter: %w: %w", err, worker.ErrUnsendable)
	}
	if q.dead == nil {
		q.dead = map[string]string{}
		q.codes = map[string]worker.Code{}
		q.bodies = map[string]string{}
	}
	q.dead[m.ID] = f.Reason
	q.bodies[m.ID] = m.Body
	q.codes[m.ID] = f.Code
	return nil
}

// fakeObjects holds the objects that exist, by "bucket/key".
type fakeObjects map[string]worker.ObjectInfo

func (o fakeObjects) Head(_ context.Context, bucket, key string) (worker.ObjectInfo, error) {
	info, ok := o[bucket+"/"+key]
	if !ok {
		return info, worker.PermanentCode(worker.CodeObjectMissing, fmt.Errorf("object does not exist"))
	}
	return info, nil
}

// anyObjects holds every object, with no metadata: what native events
// need.
type anyObjects struct{}

func (anyObjects) Head(context.Context, string, string) (worker.ObjectInfo, error) {
	return worker.ObjectInfo{}, nil
}

type fakeSigner struct{}

func (fakeSigner) Sign(_ context.Context, r event.Report, now time.Time) (worker.Link, error) {
	return worker.Link{URL: "https://cdn.test/" + r.Key + "?sig", Expires: now.Add(48 * time.Hour)}, nil
}

// fakeMailer records sends; fail, when set, decides an error per email.
type fakeMailer struct {
	sent []worker.Email
	fail func(worker.Email) error
}

func (m *fakeMailer) Send(ctx context.Context, e worker.Email) (string, error) {
	if err := worker.BeforeSend(ctx); err != nil {
		return "", err
	}
	if m.fail != nil {
		if err := m.fail(e); err != nil {
			return "", err
		}
	}
	m.sent = append(m.sent, e)
	return fmt.Sprintf("msg-%d", len(m.sent)), nil
}

func (m *fakeMailer) to() []string {
	var out []string
	for _, e := range m.sent {
		out = append(out, strings.Join(e.To, ","))
	}
	return out
}

// memLedger is an in-memory worker.Ledger with the S3 ledger's states;
// the age of a record is by now, the store's clock (time.Now when nil).
type memLedger struct {
	mu   sync.Mutex
	recs map[string]*memRecord
	now  func() time.Time
	// emails maps each email id to its delivery keys, as Sending
	// indexes them.
	emails map[string][]string
	// sendingErr and completeErr, when set, fail Sending and Complete.
	sendingErr, completeErr error
}

type memRecord struct {
	state     string // claimed, sending, sent, released
	owner     worker.Owner
	emailID   string
	messageID string
	at        time.Time
	version   int
	attempts  int
	// coveredBy names the emails that showed a covered event's
	// reports (Cover).
	coveredBy []string
}

func (l *memLedger) clock() time.Time {
	if l.now != nil {
		return l.now()
	}
	return time.Now()
}

func (l *memLedger) Claim(_ context.Context, req worker.ClaimRequest) (worker.Claim, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.recs == nil {
		l.recs = map[string]*memRecord{}
	}
	now := l.clock()
	me := worker.Owner{RunID: req.RunID, Token: worker.NewID()}
	rec, ok := l.recs[req.Key]
	c := worker.Claim{Key: req.Key, Record: "mem:" + req.Key}
	if ok {
		c.Since, c.Age, c.EmailID, c.Attempts = rec.at, now.Sub(rec.at), rec.emailID, rec.attempts
		take := rec.state == "released" ||
			(rec.state == "claimed" && req.Timeout > 0 && c.Age >= req.Timeout) ||
			(rec.state == "sending" && req.ResendAfter > 0 && c.Age >= req.ResendAfter)
		switch {
		case rec.state == "sent":
			c.State = worker.AlreadySent
			return c, nil
		case !take && rec.state == "claimed":
			c.State = worker.InProgress
			return c, nil
		case !take:
			c.State = worker.Unsettled
			return c, nil
		}
		c.TookOver = rec.state
	}
	n := &memRecord{state: "claimed", owner: me, at: now, attempts: c.Attempts}
	if ok {
		n.version = rec.version + 1
	}
	l.recs[req.Key] = n
	c.State, c.Owner, c.Version, c.EmailID = worker.Claimed, me, fmt.Sprint(n.version), ""
	return c, nil
}

// mine returns the record c holds, or an error if it holds none.
func (l *memLedger) mine(c *worker.Claim) (*memRecord, error) {
	rec, ok := l.recs[c.Key]
	if !ok || rec.owner != c.Owner || fmt.Sprint(rec.version) != c.Version {
		return nil, fmt.Errorf("ledger %s: not ours any more", c.Key)
	}
	return rec, nil
}

func (l *memLedger) Sending(_ context.Context, emailID string, cs []*worker.Claim) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sendingErr != nil {
		return l.sendingErr
	}
	if l.emails == nil {
		l.emails = map[string][]string{}
	}
	for _, c := range cs {
		l.emails[emailID] = append(l.emails[emailID], c.Key)
	}
	for _, c := range cs {
		rec, err := l.mine(c)
		if err != nil {
			return err
		}
		rec.state, rec.emailID, rec.at = "sending", emailID, l.clock()
		rec.attempts++
		rec.version++
		c.Version = fmt.Sprint(rec.version)
	}
	return nil
}

func (l *memLedger) Complete(_ context.Context, c *worker.Claim, messageID string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.completeErr != nil {
		return l.completeErr
	}
	rec, err := l.mine(c)
	if err != nil {
		return err
	}
	rec.state, rec.messageID, rec.at = "sent", messageID, l.clock()
	rec.version++
	c.Version = fmt.Sprint(rec.version)
	return nil
}

func (l *memLedger) Release(_ context.Context, c *worker.Claim) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.mine(c); err != nil {
		return nil // another run's now
	}
	delete(l.recs, c.Key)
	return nil
}

func (l *memLedger) Cover(_ context.Context, c *worker.Claim, emailIDs []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec, err := l.mine(c)
	if err != nil {
		return err
	}
	rec.state, rec.coveredBy, rec.at = "sent", emailIDs, l.clock()
	rec.version++
	c.Version = fmt.Sprint(rec.version)
	return nil
}

// state returns the state of a delivery's record, "" when there is none.
func (l *memLedger) state(eventID, rcpt string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if rec, ok := l.recs[worker.DeliveryKey(eventID, rcpt)]; ok {
		return rec.state
	}
	return ""
}

type bundle struct {
	queue  *fakeQueue
	mailer *fakeMailer
	ledger *memLedger
	logs   *bytes.Buffer
	now    time.Time
}

// setup returns a worker on fakes serving bucket "reports", and the
// fakes. A nil objects holds every object (anyObjects).
func setup(t *testing.T, mode worker.Mode, objects worker.ObjectStore, bodies ...string) (*worker.Worker, *bundle) {
	t.Helper()
	if objects == nil {
		objects = anyObjects{}
	}
	b := &bundle{queue: &fakeQueue{}, mailer: &fakeMailer{}, ledger: &memLedger{}, logs: &bytes.Buffer{},
		now: time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)}
	b.ledger.now = func() time.Time { return b.now }
	for i, body := range bodies {
		b.queue.pending = append(b.queue.pending, worker.Message{ID: fmt.Sprintf("m%d", i), ReceiptHandle: fmt.Sprintf("r%d", i), Body: body})
	}
	w, err := worker.New(worker.Config{
		Schedule: "test", Mode: mode, From: "reports@example.com", WaitTime: time.Second, Bucket: "reports",
		Recipients: worker.RecipientPolicy{AllowedDomains: []string{"example.com"}},
	}, worker.Deps{
		Queue: b.queue, Objects: objects, Signer: fakeSigner{}, Templates: templates.Default(),
		Mailer: b.mailer, Ledger: b.ledger,
		Logger: slog.New(slog.NewTextHandler(b.logs, nil)),
		Now:    func() time.Time { return b.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return w, b
}

func native(id, user string, recipients []string, keys ...string) string {
	var reps []string
	for _, k := range keys {
		reps = append(reps, fmt.Sprintf(`{"bucket":"reports","key":%q,"title":"Report %s"}`, k, k))
	}
	var rc []string
	for _, r := range recipients {
		rc = append(rc, fmt.Sprintf("%q", r))
	}
	return fmt.Sprintf(`{"version":1,"type":"report.ready","id":%q,"user":{"id":%q,"email":"%s@example.com","name":"Ana Lima","time_zone":"Europe/London"},"recipients":[%s],"reports":[%s]}`,
		id, user, user, strings.Join(rc, ","), strings.Join(reps, ","))
}

const testEvent = `{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-26T07:00:00Z","Bucket":"reports","RequestId":"x","HostId":"y"}`

func s3Notification(key string) string {
	return fmt.Sprintf(`{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put","eventTime":"2026-11-26T07:00:00.000Z","s3":{"bucket":{"name":"reports"},"object":{"key":%q,"size":10,"eTag":"e","sequencer":"0055AED6DCD90281E5"}}}]}`, key)
}

func TestDrain(t *testing.T) {
	objects := fakeObjects{
		"reports/Q3 results+notes.pdf": {Size: 2048, ContentType: "application/pdf", Metadata: map[string]string{
			"user-id": "u-9", "user-email": "bo@example.com", "title": "Q3 results", "recipients": "cfo@example.com"}},
		"reports/a.pdf": {}, "reports/b.pdf": {}, "reports/c.pdf": {},
	}
	tests := []struct {
		name   string
		mode   worker.Mode
		bodies []string
		to     []string // recipients of each email sent, in order
		want   worker.Summary
		dead   map[string]string      // message id -> part of the reason
		codes  map[string]worker.Code // message id -> dead-letter code
		log    string                 // must appear in the logs
	}{{
		name:   "native event goes to the user and the allowed recipient",
		bodies: []string{native("e1", "ana", []string{"cfo@example.com"}, "a.pdf")},
		to:     []string{"ana@example.com", "cfo@example.com"},
		want:   worker.Summary{Received: 1, Acked: 1, Sent: 2},
	}, {
		name:   "recipient outside the allowed domains is refused, logged, and its message dead-lettered after the user's email",
		bodies: []string{native("e1", "ana", []string{"mallory@evil.test"}, "a.pdf")},
		to:     []string{"ana@example.com"},
		want:   worker.Summary{Received: 1, DeadLettered: 1, Sent: 1, Refused: 1},
		log:    `recipient=mallory@evil.test reason="domain evil.test is not allowed"`,
		dead:   map[string]string{"m0": "mallory@evil.test: domain evil.test is not allowed"},
		codes:  map[string]worker.Code{"m0": worker.CodeRecipientRefused},
	}, {
		name:   "a malformed extra recipient is refused and logged; no config change could allow it",
		bodies: []string{native("e1", "ana", []string{"not an address"}, "a.pdf")},
		to:     []string{"ana@example.com"},
		want:   worker.Summary{Received: 1, Acked: 1, Sent: 1, Refused: 1},
		log:    `recipient="not an address"`,
	}, {
		name:   "S3 notification is resolved through the object's metadata",
		bodies: []string{s3Notification("Q3+results%2Bnotes.pdf")},
		to:     []string{"bo@example.com", "cfo@example.com"},
		want:   worker.Summary{Received: 1, Acked: 1, Sent: 2},
	}, {
		name:   "S3 test event is deleted without an email",
		bodies: []string{testEvent},
		want:   worker.Summary{Received: 1, Dropped: 1},
	}, {
		name:   "poison message is dead-lettered and the batch goes on",
		bodies: []string{`{"version":2}`, native("e1", "ana", nil, "a.pdf")},
		to:     []string{"ana@example.com"},
		want:   worker.Summary{Received: 2, Acked: 1, Sent: 1, DeadLettered: 1},
		dead:   map[string]string{"m0": "version"},
		codes:  map[string]worker.Code{"m0": worker.CodeInvalidEvent},
	}, {
		name:   "a body that is not JSON is dead-lettered as invalid_json",
		bodies: []string{`{"version":1,`},
		want:   worker.Summary{Received: 1, DeadLettered: 1},
		dead:   map[string]string{"m0": "is not JSON"},
		codes:  map[string]worker.Code{"m0": worker.CodeInvalidJSON},
	}, {
		name:   "a body without a required field is dead-lettered as missing_field",
		bodies: []string{`{"version":1,"id":"e1"}`},
		want:   worker.Summary{Received: 1, DeadLettered: 1},
		dead:   map[string]string{"m0": "type: is required"},
		codes:  map[string]worker.Code{"m0": worker.CodeMissingField},
	}, {
		name:   "notification for a deleted object is dead-lettered",
		bodies: []string{s3Notification("gone.pdf")},
		want:   worker.Summary{Received: 1, DeadLettered: 1},
		dead:   map[string]string{"m0": "reports/gone.pdf"},
		codes:  map[string]worker.Code{"m0": worker.CodeObjectMissing},
	}, {
		name:   "native event for a deleted object is dead-lettered, and nothing is sent",
		bodies: []string{native("e1", "ana", []string{"cfo@example.com"}, "a.pdf", "gone.pdf"), native("e2", "ana", nil, "b.pdf")},
		to:     []string{"ana@example.com"},
		want:   worker.Summary{Received: 2, Acked: 1, Sent: 1, DeadLettered: 1},
		dead:   map[string]string{"m0": "head s3://reports/gone.pdf: object does not exist"},
		codes:  map[string]worker.Code{"m0": worker.CodeObjectMissing},
	}, {
		name:   "notification whose object has no user is dead-lettered",
		bodies: []string{s3Notification("a.pdf")},
		want:   worker.Summary{Received: 1, DeadLettered: 1},
		dead:   map[string]string{"m0": "user-email"},
		codes:  map[string]worker.Code{"m0": worker.CodeInvalidMetadata},
	}, {
		name:   "a report in a bucket the worker does not serve is refused, never linked",
		bodies: []string{strings.Replace(native("e1", "ana", nil, "a.pdf"), `"bucket":"reports"`, `"bucket":"payroll"`, 1)},
		want:   worker.Summary{Received: 1, DeadLettered: 1},
		dead:   map[string]string{"m0": `report s3://payroll/a.pdf: bucket "payroll" is not the bucket this worker serves, "reports"`},
		codes:  map[string]worker.Code{"m0": worker.CodeBucketNotServed},
	}, {
		name:   "two copies of one message in a run send once",
		bodies: []string{native("e1", "ana", nil, "a.pdf"), native("e1", "ana", nil, "a.pdf")},
		to:     []string{"ana@example.com"},
		want:   worker.Summary{Received: 2, Acked: 2, Sent: 1},
	}, {
		name:   "each mode sends one email per event",
		bodies: []string{native("e1", "ana", nil, "a.pdf"), native("e2", "ana", nil, "b.pdf")},
		to:     []string{"ana@example.com", "ana@example.com"},
		want:   worker.Summary{Received: 2, Acked: 2, Sent: 2},
	}, {
		name:   "digest mode sends one email per user",
		mode:   worker.ModeDigest,
		bodies: []string{native("e1", "ana", nil, "a.pdf"), native("e2", "ana", nil, "b.pdf"), native("e3", "bo", nil, "c.pdf")},
		to:     []string{"ana@example.com", "bo@example.com"},
		want:   worker.Summary{Received: 3, Acked: 3, Sent: 2},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, b := setup(t, tt.mode, objects, tt.bodies...)
			sum, err := w.Drain(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if sum != tt.want {
				t.Errorf("summary = %+v, want %+v", sum, tt.want)
			}
			if got := strings.Join(b.mailer.to(), " "); got != strings.Join(tt.to, " ") {
				t.Errorf("emails to %q, want %q", got, strings.Join(tt.to, " "))
			}
			if len(b.queue.dead) != len(tt.dead) {
				t.Errorf("dead-lettered %v, want %v", b.queue.dead, tt.dead)
			}
			for id, part := range tt.dead {
				if !strings.Contains(b.queue.dead[id], part) {
					t.Errorf("dead-letter reason for %s = %q, want it to mention %q", id, b.queue.dead[id], part)
				}
			}
			for id, code := range tt.codes {
				if b.queue.codes[id] != code {
					t.Errorf("dead-letter code for %s = %q, want %q", id, b.queue.codes[id], code)
				}
			}
			if tt.log != "" && !strings.Contains(b.logs.String(), tt.log) {
				t.Errorf("logs lack %q:\n%s", tt.log, b.logs)
			}
		})
	}
}

func TestDrainDigestKeepsEachEventToItsOwnRecipients(t *testing.T) {
	w, b := setup(t, worker.ModeDigest, nil,
		native("e1", "ana", []string{"cfo@example.com"}, "shared.pdf"),
		native("e2", "ana", nil, "private.pdf"))
	if _, err := w.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(b.mailer.sent) != 2 {
		t.Fatalf("sent %d emails, want 2 (ana's digest, cfo's)", len(b.mailer.sent))
	}
	ana, cfo := b.mailer.sent[0], b.mailer.sent[1]
	if !strings.Contains(ana.Text, "shared.pdf") || !strings.Contains(ana.Text, "private.pdf") {
		t.Errorf("ana's digest should list both reports:\n%s", ana.Text)
	}
	if cfo.To[0] != "cfo@example.com" || strings.Contains(cfo.Text, "private.pdf") || strings.Contains(cfo.HTML, "private.pdf") {
		t.Errorf("cfo must see only the report shared with them; got to %v:\n%s", cfo.To, cfo.Text)
	}
}

func TestDrainRedeliveryDoesNotSendTwice(t *testing.T) {
	body := native("e1", "ana", []string{"cfo@example.com"}, "a.pdf")
	w, b := setup(t, worker.ModeEach, nil, body)
	if _, err := w.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	// SQS delivers the same event again, as it may.
	b.queue.pending = []worker.Message{{ID: "again", ReceiptHandle: "r", Body: body}}
	sum, err := w.Drain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(b.mailer.sent) != 2 || sum.Duplicates != 2 || sum.Acked != 1 {
		t.Errorf("after redelivery: %d emails, summary %+v; want 2 emails in all, 2 duplicates, acked", len(b.mailer.sent), sum)
	}
}

func TestDrainTransientFailureRetriesOnlyWhatFailed(t *testing.T) {
	body := native("e1", "ana", []string{"cfo@example.com"}, "a.pdf")
	w, b := setup(t, worker.ModeEach, nil, body)
	b.mailer.fail = func(e worker.Email) error {
		if e.To[0] == "cfo@example.com" {
			return errors.New("ses send: 503 service unavailable")
		}
		return nil
	}
	sum, _ := w.Drain(context.Background())
	if sum.Retrying != 1 || sum.Acked != 0 || len(b.queue.deleted) != 0 {
		t.Fatalf("first run: summary %+v, deleted %v; want the message left for retry", sum, b.queue.deleted)
	}
	b.mailer.fail = nil
	b.queue.pending = []worker.Message{{ID: "m0", ReceiptHandle: "r2", Body: body}}
	sum, _ = w.Drain(context.Background())
	if got := strings.Join(b.mailer.to(), " "); got != "ana@example.com cfo@example.com" {
		t.Errorf("emails over both runs went to %q; want ana once and cfo once", got)
	}
	if sum.Acked != 1 || sum.Duplicates != 1 {
		t.Errorf("second run summary %+v; want acked 1, duplicates 1", sum)
	}
}

func TestDrainAmbiguousSendIsNeverRepeated(t *testing.T) {
	body := native("e1", "ana", nil, "a.pdf")
	w, b := setup(t, worker.ModeEach, nil, body)
	b.mailer.fail = func(worker.Email) error {
		return worker.Ambiguous(errors.New("use of closed network connection"))
	}
	key := worker.DeliveryKey("e1", "ana@example.com")
	// What an operator needs to settle it: who, which record, and how.
	says := []string{"ana@example.com", "may have been accepted", "mem:" + key,
		"reportmailer ledger settle -config FILE -record " + key + " -sent", "-unsent"}
	sum, _ := w.Drain(context.Background())
	if sum.DeadLettered != 1 || sum.MaybeSent != 1 || !strings.Contains(b.queue.dead["m0"], "closed network connection") {
		t.Fatalf("summary %+v, dead %v; want dead-lettered, maybe sent 1, with the transport error", sum, b.queue.dead)
	}
	for _, s := range says {
		if !strings.Contains(b.queue.dead["m0"], s) {
			t.Errorf("dead-letter reason %q does not say %q", b.queue.dead["m0"], s)
		}
	}
	if st := b.ledger.state("e1", "ana@example.com"); st != "sending" {
		t.Errorf("ledger record is %q after an ambiguous send; want sending", st)
	}
	// An operator redrives it hours later: still not sent again.
	b.mailer.fail = nil
	b.now = b.now.Add(2 * time.Hour)
	b.queue.pending = []worker.Message{{ID: "m1", ReceiptHandle: "r", Body: body}}
	sum, _ = w.Drain(context.Background())
	if len(b.mailer.sent) != 0 {
		t.Errorf("sent %d emails after an ambiguous failure; want 0 without an explicit resend", len(b.mailer.sent))
	}
	if sum.DeadLettered != 1 || sum.MaybeSent != 1 {
		t.Errorf("summary %+v; want it dead-lettered again, maybe sent 1", sum)
	}
	for _, s := range says {
		if !strings.Contains(b.queue.dead["m1"], s) {
			t.Errorf("dead-letter reason %q does not say %q", b.queue.dead["m1"], s)
		}
	}
}

func TestDrainPermanentSendFailureDeadLetters(t *testing.T) {
	w, b := setup(t, worker.ModeEach, nil, native("e1", "ana", nil, "a.pdf"))
	b.mailer.fail = func(worker.Email) error { return worker.Permanent(errors.New("MessageRejected: address blacklisted")) }
	sum, _ := w.Drain(context.Background())
	if sum.DeadLettered != 1 || !strings.Contains(b.queue.dead["m0"], "MessageRejected") {
		t.Fatalf("summary %+v, dead %v", sum, b.queue.dead)
	}
	if len(b.ledger.recs) != 0 {
		t.Errorf("ledger kept %d claims for an email that was certainly not sent; a redrive could never deliver it", len(b.ledger.recs))
	}
}

func TestDrainShutdownReleasesDigestMessages(t *testing.T) {
	_, b := setup(t, worker.ModeDigest, nil, native("e1", "ana", nil, "a.pdf"))
	ctx, cancel := context.WithCancel(context.Background())
	b.mailer.fail = func(worker.Email) error { t.Error("sent during shutdown"); return nil }
	// Cancel as soon as the first receive has returned.
	q := &cancelAfterReceive{fakeQueue: b.queue, cancel: cancel}
	w2, err := worker.New(worker.Config{Schedule: "t", Mode: worker.ModeDigest, From: "r@example.com", WaitTime: time.Second, Bucket: "reports"},
		worker.Deps{Queue: q, Objects: anyObjects{}, Signer: fakeSigner{}, Templates: templates.Default(), Mailer: b.mailer, Ledger: b.ledger})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := w2.Drain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.queue.released) != 1 || sum.Retrying != 1 || b.queue.receives != 1 {
		t.Errorf("released %v, summary %+v, receives %d; want the one message released after one receive", b.queue.released, sum, b.queue.receives)
	}
}

type cancelAfterReceive struct {
	*fakeQueue
	cancel func()
}

func (q *cancelAfterReceive) Receive(ctx context.Context, max int, wait time.Duration) ([]worker.Message, error) {
	m, err := q.fakeQueue.Receive(ctx, max, wait)
	q.cancel()
	return m, err
}

func TestNewValidatesConfig(t *testing.T) {
	deps := worker.Deps{Queue: &fakeQueue{}, Objects: anyObjects{}, Signer: fakeSigner{}, Templates: templates.Default(), Mailer: &fakeMailer{}, Ledger: &memLedger{}}
	tests := []struct {
		name string
		cfg  worker.Config
		want string
	}{
		{"no sender", worker.Config{}, "from: is required"},
		{"bad mode", worker.Config{From: "a@b.c", Mode: "weekly"}, `mode: "weekly"`},
		{"batch too big", worker.Config{From: "a@b.c", BatchSize: 11}, "batch size: 11"},
		{"wait too long", worker.Config{From: "a@b.c", WaitTime: time.Minute}, "wait time: 1m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := worker.New(tt.cfg, deps)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDrainHaltStopsTheRunAndHandsMessagesBack(t *testing.T) {
	var bodies []string
	for i := range 15 {
		bodies = append(bodies, native(fmt.Sprintf("e%d", i), fmt.Sprintf("u%d", i), nil, "a.pdf"))
	}
	w, b := setup(t, worker.ModeEach, nil, bodies...)
	b.mailer.fail = func(worker.Email) error {
		if len(b.mailer.sent) == 3 {
			return worker.Halt(errors.New("daily sending quota reached"))
		}
		return nil
	}
	sum, err := w.Drain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(b.mailer.sent) != 3 || sum.Acked != 3 {
		t.Errorf("sent %d, acked %d; want the 3 sent before the quota acked", len(b.mailer.sent), sum.Acked)
	}
	// The rest of the first batch goes back at once; the second batch is
	// never received.
	if len(b.queue.released) != 7 || b.queue.receives != 1 || len(b.queue.pending) != 5 {
		t.Errorf("released %d, receives %d, still queued %d; want 7 released, 1 receive, 5 untouched",
			len(b.queue.released), b.queue.receives, len(b.queue.pending))
	}
	if len(b.ledger.recs) != 3 {
		t.Errorf("ledger holds %d records; want only the 3 sent (the halted send must be released)", len(b.ledger.recs))
	}
}

func TestDrainStopsWhenBudgetIsSpent(t *testing.T) {
	var bodies []string
	for i := range 30 {
		bodies = append(bodies, native(fmt.Sprintf("e%d", i), "ana", nil, "a.pdf"))
	}
	w, b := setup(t, worker.ModeEach, nil, bodies...)
	// Each send takes a simulated minute against the 5-minute budget.
	b.mailer.fail = func(worker.Email) error { b.now = b.now.Add(time.Minute); return nil }
	sum, _ := w.Drain(context.Background())
	if b.queue.receives != 1 || sum.Received != 10 || len(b.queue.pending) != 20 {
		t.Errorf("receives %d, received %d, left %d; want one batch of 10 and then a stop", b.queue.receives, sum.Received, len(b.queue.pending))
	}
}

type batchSigner struct {
	fakeSigner
	calls int
}

func (s *batchSigner) SignAll(ctx context.Context, rs []event.Report, now time.Time) ([]worker.Link, error) {
	s.calls++
	out := make([]worker.Link, len(rs))
	for i, r := range rs {
		out[i] = worker.Link{URL: "https://cdn.test/" + r.Key + "?Policy=one", Expires: now.Add(time.Hour)}
	}
	return out, nil
}

func TestComposeUsesBatchSigner(t *testing.T) {
	_, b := setup(t, worker.ModeEach, nil)
	bs := &batchSigner{}
	w, err := worker.New(worker.Config{Schedule: "t", From: "r@example.com", WaitTime: time.Second, Bucket: "reports"}, worker.Deps{
		Queue:   &fakeQueue{pending: []worker.Message{{ID: "m", Body: native("e1", "ana", nil, "a.pdf", "b.pdf")}}},
		Objects: anyObjects{}, Signer: bs, Templates: templates.Default(), Mailer: b.mailer, Ledger: b.ledger})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if bs.calls != 1 || !strings.Contains(b.mailer.sent[0].Text, "b.pdf?Policy=one") {
		t.Errorf("SignAll called %d times; want once for the email's two links", bs.calls)
	}
}

func TestDrainShutdownFinishesTheEmailInFlightAndReleasesTheRest(t *testing.T) {
	var bodies []string
	for i := range 12 {
		bodies = append(bodies, native(fmt.Sprintf("e%d", i), fmt.Sprintf("u%d", i), nil, "a.pdf"))
	}
	_, b := setup(t, worker.ModeEach, nil, bodies...)
	ctx, cancel := context.WithCancel(context.Background())
	// SIGTERM arrives while the first email is being sent.
	b.mailer.fail = func(worker.Email) error { cancel(); return nil }
	w, err := worker.New(worker.Config{Schedule: "t", From: "r@example.com", WaitTime: time.Second, Bucket: "reports"},
		worker.Deps{Queue: b.queue, Objects: anyObjects{}, Signer: fakeSigner{}, Templates: templates.Default(), Mailer: b.mailer, Ledger: b.ledger})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := w.Drain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.mailer.sent) != 1 || sum.Acked != 1 || len(b.queue.released) != 9 || b.queue.receives != 1 || len(b.queue.pending) != 2 {
		t.Errorf("sent %d, acked %d, released %d, receives %d, untouched %d; want 1, 1, 9, 1, 2",
			len(b.mailer.sent), sum.Acked, len(b.queue.released), b.queue.receives, len(b.queue.pending))
	}
	if len(b.ledger.recs) != 1 {
		t.Errorf("ledger holds %d records; only the email that went out should be recorded", len(b.ledger.recs))
	}
}

func TestDrainHeartbeatKeepsSlowWorkInvisible(t *testing.T) {
	_, b := setup(t, worker.ModeEach, nil, native("e1", "ana", nil, "a.pdf"))
	beat := make(chan struct{})
	var once sync.Once
	b.queue.onExtend = func() { once.Do(func() { close(beat) }) }
	// The send is slow: it only returns once the heartbeat has extended
	// the message it is working on.
	b.mailer.fail = func(worker.Email) error {
		select {
		case <-beat:
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("no heartbeat while the message was held")
		}
	}
	w, err := worker.New(worker.Config{Schedule: "t", From: "r@example.com", WaitTime: time.Second, VisibilityTimeout: 20 * time.Millisecond, Bucket: "reports"},
		worker.Deps{Queue: b.queue, Objects: anyObjects{}, Signer: fakeSigner{}, Templates: templates.Default(), Mailer: b.mailer, Ledger: b.ledger})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := w.Drain(context.Background())
	if err != nil || sum.Acked != 1 {
		t.Fatalf("summary %+v, err %v", sum, err)
	}
	b.queue.mu.Lock()
	defer b.queue.mu.Unlock()
	if len(b.queue.extended) == 0 || b.queue.extended[0] != "m0" {
		t.Errorf("extended %v, want the held message m0", b.queue.extended)
	}
}

func TestDrainSecondCopyIsNotAckedWhenTheFirstFailed(t *testing.T) {
	for _, mode := range []worker.Mode{worker.ModeEach, worker.ModeDigest} {
		t.Run(string(mode), func(t *testing.T) {
			body := native("e1", "ana", nil, "a.pdf")
			_, b := setup(t, mode, nil)
			// Two deliveries of the same SQS message in one batch, with
			// different receipt handles: deleting either deletes it.
			b.queue.pending = []worker.Message{{ID: "m", ReceiptHandle: "r1", Body: body}, {ID: "m", ReceiptHandle: "r2", Body: body}}
			b.mailer.fail = func(worker.Email) error { return errors.New("ses send: 503") }
			w, err := worker.New(worker.Config{Schedule: "t", Mode: mode, From: "r@example.com", WaitTime: time.Second, Bucket: "reports"},
				worker.Deps{Queue: b.queue, Objects: anyObjects{}, Signer: fakeSigner{}, Templates: templates.Default(), Mailer: b.mailer, Ledger: b.ledger})
			if err != nil {
				t.Fatal(err)
			}
			sum, _ := w.Drain(context.Background())
			if len(b.queue.deleted) != 0 || sum.Retrying != 2 {
				t.Errorf("deleted %v, summary %+v; the email failed, so neither copy may be deleted", b.queue.deleted, sum)
			}
		})
	}
}
