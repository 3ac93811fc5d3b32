package store_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/internal/s3test"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/store"
)

// client returns a real S3 client (standard retries) on url.
func client(url string) *s3.Client {
	return s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(url), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		DisableLogOutputChecksumValidationSkipped: true,
	})
}

// newProxied starts gofakes3 with bucket "state" behind awsproxy, and
// returns the proxy and a real S3 client through it.
func newFaulty(t *testing.T) (*awsproxy.Proxy, *s3.Client) {
	t.Helper()
	url, _ := s3test.Start(t, "state")
	p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.S3, Target: url})
	return p, client(p.URL)
}

// s3Clock is S3's clock in a test: this host's plus an offset that the
// test moves. It stamps both LastModified and the Date of every answer.
type s3Clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *s3Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset).In(time.FixedZone("GMT", 0))
}

func (c *s3Clock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

func (c *s3Clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// newSkewed starts gofakes3 on a clock offset from this host's by
// offset, behind awsproxy, and returns the clock and a client.
func newSkewed(t *testing.T, offset time.Duration) (*s3Clock, *s3.Client) {
	t.Helper()
	clock := &s3Clock{offset: offset}
	fake := gofakes3.New(s3mem.New(s3mem.WithTimeSource(clock)), gofakes3.WithTimeSource(clock), gofakes3.WithTimeSkewLimit(0)).Server()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", clock.Now().UTC().Format(http.TimeFormat))
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.S3, Target: srv.URL})
	c := client(p.URL)
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("state")}); err != nil {
		t.Fatal(err)
	}
	return clock, c
}

// onRecord matches requests for the ledger record of key only.
func onRecord(key string) func(awsproxy.Call) bool {
	return func(c awsproxy.Call) bool { return c.Key == "ledger/"+key }
}

// quick is a ledger whose retries do not wait.
func quick(c *s3.Client) *store.Ledger {
	return &store.Ledger{Client: c, Bucket: "state", Prefix: "ledger/",
		Sleep: func(context.Context, time.Duration) error { return nil }}
}

// TestLedgerClaimSurvivesRetryAfterApply: S3 applies the claim's
// conditional PutObject, the answer is lost (a reset), the SDK retries
// and gets 412 against the claim it just made. The claim is ours: the
// record names us as its owner.
func TestLedgerClaimSurvivesRetryAfterApply(t *testing.T) {
	ctx := context.Background()
	p, c := newFaulty(t)
	l := &store.Ledger{Client: c, Bucket: "state", Prefix: "ledger/"}
	key := worker.DeliveryKey("evt-1", "ana@example.com")
	rule := p.Inject(awsproxy.Fault{Operation: "PutObject", After: true, Reset: true, Times: 1})

	got, err := l.Claim(ctx, claimReq(key))
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if rule.Injected() != 1 || p.Counts("PutObject").Forwarded < 2 {
		t.Fatalf("the fault did not happen as planned: injected %d, PutObject %+v", rule.Injected(), p.Counts("PutObject"))
	}
	if got.State != worker.Claimed {
		t.Fatalf("Claim after the SDK retried our own applied write = %+v; want Claimed (the record is ours)", got)
	}
	// Someone else still loses.
	other, err := l.Claim(ctx, claimReq(key))
	if err != nil || other.State == worker.Claimed {
		t.Fatalf("a second claim = %+v, %v; want it refused", other, err)
	}
}

// TestLedgerWritesSurviveRetryAfterApply: each later write of a claim
// is conditional on the ETag it last wrote; when S3 applied one and its
// answer was lost, the SDK's retry gets 412, and the write is still
// recognised as done (Sending, Complete) or finished on the new ETag
// (Release).
func TestLedgerWritesSurviveRetryAfterApply(t *testing.T) {
	ctx := context.Background()
	key := worker.DeliveryKey("evt-1", "ana@example.com")
	tests := []struct {
		name  string
		op    string
		do    func(l *store.Ledger, cl *worker.Claim) error
		state string // the record after; "" gone
	}{
		{"sending", "PutObject", func(l *store.Ledger, cl *worker.Claim) error {
			return l.Sending(ctx, "email-1", []*worker.Claim{cl})
		}, "sending"},
		{"complete", "PutObject", func(l *store.Ledger, cl *worker.Claim) error {
			return l.Complete(ctx, cl, "ses-1")
		}, "sent"},
		{"release", "DeleteObject", func(l *store.Ledger, cl *worker.Claim) error {
			return l.Release(ctx, cl)
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, c := newFaulty(t)
			l := quick(c)
			cl, err := l.Claim(ctx, claimReq(key))
			if err != nil || cl.State != worker.Claimed {
				t.Fatalf("claim = %+v, %v", cl, err)
			}
			if tt.name == "complete" {
				if err := l.Sending(ctx, "email-1", []*worker.Claim{&cl}); err != nil {
					t.Fatal(err)
				}
			}
			rule := p.Inject(awsproxy.Fault{Operation: tt.op, Match: onRecord(key), After: true, Reset: true, Times: 1})
			if err := tt.do(l, &cl); err != nil {
				t.Fatalf("%s after a reset that followed S3 applying it: %v", tt.name, err)
			}
			if rule.Injected() != 1 {
				t.Fatalf("fault injected %d times, want 1", rule.Injected())
			}
			if tt.state == "" {
				if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("state"), Key: aws.String("ledger/" + key)}); err == nil {
					t.Fatal("the record is still there after Release")
				}
				return
			}
			if got := readRecord(t, c, "ledger/"+key); got["state"] != tt.state {
				t.Fatalf("record = %v; want state %s", got, tt.state)
			}
		})
	}
}

// TestLedgerConditionalConflictIsARace: S3's 409
// ConditionalRequestConflict (another conditional write to the key was
// in flight) is a lost race: the ledger reads the record again and
// decides, rather than failing.
func TestLedgerConditionalConflictIsARace(t *testing.T) {
	ctx := context.Background()
	key := worker.DeliveryKey("evt-1", "ana@example.com")
	p, c := newFaulty(t)
	l := quick(c)
	conflict := awsproxy.Fault{Operation: "PutObject", Match: onRecord(key), Status: http.StatusConflict, Code: "ConditionalRequestConflict", Times: 1}
	p.Inject(conflict)
	cl, err := l.Claim(ctx, claimReq(key))
	if err != nil || cl.State != worker.Claimed {
		t.Fatalf("claim after a 409 = %+v, %v; want claimed", cl, err)
	}
	p.Inject(conflict)
	if err := l.Sending(ctx, "email-1", []*worker.Claim{&cl}); err != nil {
		t.Fatalf("sending after a 409: %v", err)
	}
	p.Inject(conflict)
	if err := l.Complete(ctx, &cl, "ses-1"); err != nil {
		t.Fatalf("complete after a 409: %v", err)
	}
	if got := readRecord(t, c, "ledger/"+key); got["state"] != "sent" {
		t.Fatalf("record = %v; want sent", got)
	}
}

// TestLedgerAgeIsS3s: a claim's age is S3's LastModified against the
// Date of S3's answer. This host's clock is two hours ahead of S3's
// here, so by it every record would look two hours old and be taken
// over at once.
func TestLedgerAgeIsS3s(t *testing.T) {
	ctx := context.Background()
	clock, c := newSkewed(t, -2*time.Hour)
	l := quick(c)
	key := worker.DeliveryKey("evt-1", "ana@example.com")
	req := claimReq(key)
	req.Timeout = 15 * time.Minute

	first, err := l.Claim(ctx, req)
	if err != nil || first.State != worker.Claimed {
		t.Fatalf("first claim = %+v, %v", first, err)
	}
	young, err := l.Claim(ctx, req)
	if err != nil || young.State != worker.InProgress || young.Age > time.Minute {
		t.Fatalf("claim of a fresh record = %+v, %v; want in progress, age under a minute (S3's clock)", young, err)
	}

	clock.advance(16 * time.Minute)
	taken, err := l.Claim(ctx, req)
	if err != nil || taken.State != worker.Claimed || taken.TookOver != "claimed" || taken.Age < 15*time.Minute {
		t.Fatalf("claim of a record 16 minutes old by S3 = %+v, %v; want it taken over", taken, err)
	}
	// The first claimant wakes up: its claim is gone, and it must not send.
	err = l.Sending(ctx, "email-1", []*worker.Claim{&first})
	if err == nil || worker.CodeOf(err) != worker.CodeClaimedElsewhere {
		t.Fatalf("Sending on a claim taken over = %v (code %q); want claimed_elsewhere", err, worker.CodeOf(err))
	}
	if err := l.Sending(ctx, "email-2", []*worker.Claim{&taken}); err != nil {
		t.Fatalf("Sending by the new owner: %v", err)
	}

	// "sending" is not taken over after the claim timeout: the email
	// may be out. Only ResendAfter does, past it.
	clock.advance(time.Hour)
	if u, err := l.Claim(ctx, req); err != nil || u.State != worker.Unsettled || u.EmailID != "email-2" {
		t.Fatalf("claim of a sending record an hour old = %+v, %v; want unsettled, email-2", u, err)
	}
	resend := req
	resend.ResendAfter = 2 * time.Hour
	if u, err := l.Claim(ctx, resend); err != nil || u.State != worker.Unsettled {
		t.Fatalf("claim within ResendAfter = %+v, %v; want unsettled", u, err)
	}
	resend.ResendAfter = 30 * time.Minute
	r, err := l.Claim(ctx, resend)
	if err != nil || r.State != worker.Claimed || r.TookOver != "sending" || r.Attempts != 1 {
		t.Fatalf("claim past ResendAfter = %+v, %v; want it taken over from sending, 1 attempt before", r, err)
	}
}

// TestLedgerReleaseThatCannotDelete: a release whose delete keeps
// failing marks the record released, which the next claim takes over
// at once: a certainly unsent email does not turn ambiguous.
func TestLedgerReleaseThatCannotDelete(t *testing.T) {
	ctx := context.Background()
	key := worker.DeliveryKey("evt-1", "ana@example.com")
	for _, f := range []awsproxy.Fault{
		{Operation: "DeleteObject", Status: http.StatusInternalServerError},
		{Operation: "DeleteObject", Status: http.StatusForbidden, Code: "AccessDenied"},
	} {
		t.Run(f.Code+" "+http.StatusText(f.Status), func(t *testing.T) {
			p, c := newFaulty(t)
			l := quick(c)
			cl, err := l.Claim(ctx, claimReq(key))
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Sending(ctx, "email-1", []*worker.Claim{&cl}); err != nil {
				t.Fatal(err)
			}
			p.Inject(f)
			if err := l.Release(ctx, &cl); err != nil {
				t.Fatalf("Release: %v", err)
			}
			if got := readRecord(t, c, "ledger/"+key); got["state"] != "released" {
				t.Fatalf("record = %v; want released", got)
			}
			next, err := l.Claim(ctx, claimReq(key))
			if err != nil || next.State != worker.Claimed || next.TookOver != "released" {
				t.Fatalf("claim of a released record = %+v, %v; want it taken over", next, err)
			}
		})
	}
}

// TestLedgerCompleteGivesUp: a completion that S3 keeps refusing is
// tried Attempts times, then reported; the record stays "sending".
func TestLedgerCompleteGivesUp(t *testing.T) {
	ctx := context.Background()
	key := worker.DeliveryKey("evt-1", "ana@example.com")
	p, c := newFaulty(t)
	var waits []time.Duration
	l := &store.Ledger{Client: c, Bucket: "state", Prefix: "ledger/", Attempts: 3, Backoff: 10 * time.Millisecond,
		Sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }}
	cl, err := l.Claim(ctx, claimReq(key))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Sending(ctx, "email-1", []*worker.Claim{&cl}); err != nil {
		t.Fatal(err)
	}
	p.Inject(awsproxy.Fault{Operation: "PutObject", Match: onRecord(key), Status: http.StatusServiceUnavailable})
	err = l.Complete(ctx, &cl, "ses-1")
	if err == nil || !strings.Contains(err.Error(), "ledger complete s3://state/ledger/"+key) {
		t.Fatalf("Complete under 503s = %v; want an error naming the record", err)
	}
	if len(waits) != 2 || waits[0] != 10*time.Millisecond || waits[1] != 20*time.Millisecond {
		t.Errorf("waits between tries = %v; want [10ms 20ms]", waits)
	}
	if got := readRecord(t, c, "ledger/"+key); got["state"] != "sending" {
		t.Fatalf("record = %v; want it still sending", got)
	}
}

// TestLedgerSettleEmail: SES's record of an email settles each of its
// deliveries still "sending", once; the run that sent it then
// completes without error.
func TestLedgerSettleEmail(t *testing.T) {
	ctx := context.Background()
	_, c := newFaulty(t)
	l := quick(c)
	var cls []*worker.Claim
	for _, ev := range []string{"e1", "e2"} {
		cl, err := l.Claim(ctx, claimReq(worker.DeliveryKey(ev, "ana@example.com")))
		if err != nil {
			t.Fatal(err)
		}
		cls = append(cls, &cl)
	}
	if err := l.Sending(ctx, "email-1", cls); err != nil {
		t.Fatal(err)
	}
	n, err := l.SettleEmail(ctx, "email-1", "ses-1")
	if err != nil || n != 2 {
		t.Fatalf("SettleEmail = %d, %v; want 2", n, err)
	}
	for _, cl := range cls {
		if got := readRecord(t, c, "ledger/"+cl.Key); got["state"] != "sent" || got["message_id"] != "ses-1" || got["settled_by"] != "ses-event" {
			t.Errorf("record %s = %v; want sent by the SES event", cl.Key, got)
		}
	}
	if n, err := l.SettleEmail(ctx, "email-1", "ses-1"); err != nil || n != 0 {
		t.Errorf("SettleEmail again = %d, %v; want 0", n, err)
	}
	if n, err := l.SettleEmail(ctx, "no-such-email", "ses-2"); err != nil || n != 0 {
		t.Errorf("SettleEmail of an unknown email = %d, %v; want 0, nil", n, err)
	}
	for _, cl := range cls {
		if err := l.Complete(ctx, cl, "ses-1"); err != nil {
			t.Errorf("Complete after the event settled it: %v", err)
		}
	}
}

// TestLedgerSettleRecord: an operator marks an ambiguous delivery sent
// (a redrive skips it) or unsent (a redrive sends it).
func TestLedgerSettleRecord(t *testing.T) {
	ctx := context.Background()
	_, c := newFaulty(t)
	l := quick(c)
	for _, sent := range []bool{true, false} {
		key := worker.DeliveryKey(map[bool]string{true: "e-sent", false: "e-unsent"}[sent], "ana@example.com")
		cl, err := l.Claim(ctx, claimReq(key))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Sending(ctx, "email-"+key[:6], []*worker.Claim{&cl}); err != nil {
			t.Fatal(err)
		}
		st, err := l.SettleRecord(ctx, key, sent, false)
		if err != nil || st.Was != "sending" || st.EmailID != "email-"+key[:6] {
			t.Fatalf("SettleRecord(sent=%v) = %+v, %v", sent, st, err)
		}
		next, err := l.Claim(ctx, claimReq(key))
		want := map[bool]worker.ClaimState{true: worker.AlreadySent, false: worker.Claimed}[sent]
		if err != nil || next.State != want {
			t.Errorf("claim after settling sent=%v = %+v, %v; want %v", sent, next, err, want)
		}
	}
	if _, err := l.SettleRecord(ctx, "nope", true, false); err == nil {
		t.Error("marking a record that does not exist sent succeeded")
	}
}

// TestLedgerSettleRecordRefusesWhatIsNotInDoubt: only a "sending"
// record is in doubt. Without force, a sent record is not deleted (a
// redrive would send it again), and a claimed one is not marked sent
// (its email would never go); with force, both are done.
func TestLedgerSettleRecordRefusesWhatIsNotInDoubt(t *testing.T) {
	ctx := context.Background()
	_, c := newFaulty(t)
	l := quick(c)
	tests := []struct {
		name       string
		sending    bool // else claimed
		complete   bool
		sent       bool
		wantRefuse bool
	}{
		{"unsent on a sent record", true, true, false, true},
		{"sent on a claimed record", false, false, true, true},
		{"unsent on a claimed record", false, false, false, true},
		{"sent on a sent record does nothing", true, true, true, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := worker.DeliveryKey(fmt.Sprintf("e-doubt-%d", i), "ana@example.com")
			cl, err := l.Claim(ctx, claimReq(key))
			if err != nil {
				t.Fatal(err)
			}
			if tt.sending {
				if err := l.Sending(ctx, "email-doubt", []*worker.Claim{&cl}); err != nil {
					t.Fatal(err)
				}
			}
			if tt.complete {
				if err := l.Complete(ctx, &cl, "ses-1"); err != nil {
					t.Fatal(err)
				}
			}
			_, err = l.SettleRecord(ctx, key, tt.sent, false)
			if got := errors.Is(err, store.ErrNotInDoubt); got != tt.wantRefuse {
				t.Fatalf("SettleRecord(sent=%v) = %v; want refused %v", tt.sent, err, tt.wantRefuse)
			}
			if !tt.wantRefuse {
				return
			}
			if _, err := l.SettleRecord(ctx, key, tt.sent, true); err != nil {
				t.Fatalf("forced: %v", err)
			}
			next, err := l.Claim(ctx, claimReq(key))
			want := map[bool]worker.ClaimState{true: worker.AlreadySent, false: worker.Claimed}[tt.sent]
			if err != nil || next.State != want {
				t.Errorf("claim after forcing sent=%v = %+v, %v; want %v", tt.sent, next, err, want)
			}
		})
	}
}
