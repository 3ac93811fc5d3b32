package mail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/smithy-go"

	"github.com/reportmailer/reportmailer/worker"
)

// fakeClock is a clock whose sleeps only move its time. late makes the
// i-th sleep (counting from 0, sleeps of 0 excluded) oversleep, as on a
// busy machine.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	sleeps []time.Duration
	late   map[int]time.Duration
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 3, 1, 7, 0, 0, 0, time.UTC)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		d += c.late[len(c.sleeps)]
		c.sleeps = append(c.sleeps, d)
		c.t = c.t.Add(d)
	}
	return nil
}

func (c *fakeClock) advance(d time.Duration) { _ = c.sleep(context.Background(), d) }

// fakeAccount answers GetAccount from its fields.
type fakeAccount struct {
	mu    sync.Mutex
	out   sesv2.GetAccountOutput
	err   error
	calls int
}

func account(maxRate, max24, sent float64) *fakeAccount {
	return &fakeAccount{out: sesv2.GetAccountOutput{
		ProductionAccessEnabled: true,
		SendingEnabled:          true,
		EnforcementStatus:       aws.String("HEALTHY"),
		SendQuota:               &types.SendQuota{MaxSendRate: maxRate, Max24HourSend: max24, SentLast24Hours: sent},
	}}
}

func (f *fakeAccount) GetAccount(context.Context, *sesv2.GetAccountInput, ...func(*sesv2.Options)) (*sesv2.GetAccountOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	out := f.out
	return &out, nil
}

func (f *fakeAccount) set(fn func(*sesv2.GetAccountOutput)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.out)
}

// scriptMailer answers sends from a script, then succeeds; it records
// when each send happened.
type scriptMailer struct {
	clock  *fakeClock
	script []error
	at     []time.Time
}

func (m *scriptMailer) Send(_ context.Context, e worker.Email) (string, error) {
	m.at = append(m.at, m.clock.now())
	if i := len(m.at) - 1; i < len(m.script) && m.script[i] != nil {
		return "", m.script[i]
	}
	return fmt.Sprintf("m-%d", len(m.at)), nil
}

type paceBundle struct {
	p      *Paced
	clock  *fakeClock
	acct   *fakeAccount
	mailer *scriptMailer
	logs   *bytes.Buffer
}

func setupPaced(acct *fakeAccount, script ...error) *paceBundle {
	clock := newFakeClock()
	m := &scriptMailer{clock: clock, script: script}
	logs := &bytes.Buffer{}
	p := &Paced{
		Mailer:  m,
		Account: acct,
		Logger:  slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		now:     clock.now,
		sleep:   clock.sleep,
		jitter:  func(d time.Duration) time.Duration { return d / 2 }, // mid-range
	}
	return &paceBundle{p: p, clock: clock, acct: acct, mailer: m, logs: logs}
}

func to(addrs ...string) worker.Email { return worker.Email{To: addrs} }

func throttleErr(msg string) error {
	return Classify(fmt.Errorf("ses send: %w", responseErr(429, &types.TooManyRequestsException{Message: aws.String(msg)})))
}

func TestPacedBucketCountsRecipients(t *testing.T) {
	b := setupPaced(account(5, -1, 0)) // 0.8 × 5 = 4 recipients/s
	ctx := context.Background()
	start := b.clock.now()
	for i := range 21 {
		if _, err := b.p.Send(ctx, to(fmt.Sprintf("r%d@example.com", i))); err != nil {
			t.Fatal(err)
		}
	}
	// The first goes at once (burst 1), then one every 250ms.
	if got := b.clock.now().Sub(start); got != 5*time.Second {
		t.Errorf("21 single-recipient emails took %v, want 5s at 4/s", got)
	}
	for i := 1; i < len(b.mailer.at); i++ {
		if gap := b.mailer.at[i].Sub(b.mailer.at[i-1]); gap != 250*time.Millisecond {
			t.Fatalf("gap %d = %v, want 250ms: no burst above the rate", i, gap)
		}
	}
	before := b.clock.now()
	if _, err := b.p.Send(ctx, to("a@example.com", "b@example.com", "c@example.com", "d@example.com")); err != nil {
		t.Fatal(err)
	}
	if got := b.clock.now().Sub(before); got != time.Second {
		t.Errorf("a 4-recipient email waited %v, want 1s: recipients count, not calls", got)
	}
	if b.acct.calls != 1 {
		t.Errorf("GetAccount called %d times within the refresh, want 1", b.acct.calls)
	}
}

// A late wake-up is made up by the bucket, but the sends after it must
// not crowd closer than SES's per-second limit.
func TestPacedLateWakeUps(t *testing.T) {
	b := setupPaced(account(5, -1, 0)) // window: 5 per second
	b.p.RateFraction = 0.95            // bucket: 4.75 per second, 6 sends span 1.053s
	b.clock.late = map[int]time.Duration{3: 60 * time.Millisecond, 10: 30 * time.Millisecond, 11: 50 * time.Millisecond}
	start := b.clock.now()
	const n = 40
	for range n {
		if _, err := b.p.Send(context.Background(), to("a@example.com")); err != nil {
			t.Fatal(err)
		}
	}
	at := b.mailer.at
	for i := 5; i < len(at); i++ {
		if span := at[i].Sub(at[i-5]); span < windowSpan {
			t.Errorf("sends %d to %d span %v: six within %v, over the limit of 5", i-5, i, span, windowSpan)
		}
	}
	// Lateness is made up: the run ends within a few ms of the schedule
	// (39 intervals at 4.75/s is 8.21s), not 140ms behind it.
	if got, due := b.clock.now().Sub(start), 8210526*time.Microsecond; got > due+50*time.Millisecond {
		t.Errorf("40 sends took %v, want about %v", got, due)
	}
}

func TestWindow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := window{limit: 3}
	for i, ms := range []int{0, 100, 200} {
		now := t0.Add(time.Duration(ms) * time.Millisecond)
		if d := w.delay(now, 1); d != 0 {
			t.Fatalf("send %d delayed %v", i, d)
		}
		w.add(now, 1)
	}
	now := t0.Add(300 * time.Millisecond)
	if d := w.delay(now, 1); d != windowSpan-300*time.Millisecond {
		t.Errorf("fourth send delayed %v, want until the first leaves the window", d)
	}
	if d := w.delay(now, 2); d != windowSpan-200*time.Millisecond {
		t.Errorf("two recipients delayed %v, want until two have left", d)
	}
	if d := w.delay(now, 5); d != windowSpan-100*time.Millisecond {
		t.Errorf("an email over the limit delayed %v, want until the window is empty", d)
	}
	if d := (&window{}).delay(now, 100); d != 0 {
		t.Errorf("no limit: delayed %v", d)
	}
}

func TestPacedRefreshesTheQuota(t *testing.T) {
	b := setupPaced(account(5, -1, 0))
	b.p.Refresh = time.Minute
	ctx := context.Background()
	if _, err := b.p.Send(ctx, to("a@example.com")); err != nil {
		t.Fatal(err)
	}
	b.acct.set(func(o *sesv2.GetAccountOutput) { o.SendQuota.MaxSendRate = 50 }) // raised
	b.clock.advance(time.Minute)
	for range 3 {
		if _, err := b.p.Send(ctx, to("a@example.com")); err != nil {
			t.Fatal(err)
		}
	}
	if b.acct.calls != 2 {
		t.Errorf("GetAccount calls = %d, want 2 (start, and after the refresh interval)", b.acct.calls)
	}
	at := b.mailer.at
	if gap := at[3].Sub(at[2]); gap != 25*time.Millisecond {
		t.Errorf("gap after the refresh = %v, want 25ms (0.8 × 50/s)", gap)
	}
}

func TestPacedBacksOffOnThrottling(t *testing.T) {
	b := setupPaced(account(10, -1, 0), throttleErr("Maximum sending rate exceeded."), throttleErr("Maximum sending rate exceeded."))
	id, err := b.p.Send(context.Background(), to("a@example.com"))
	if err != nil || id != "m-3" {
		t.Fatalf("Send = %q, %v; want the third try's id", id, err)
	}
	if len(b.mailer.at) != 3 {
		t.Errorf("sent %d times, want 3: two throttled, one accepted", len(b.mailer.at))
	}
	// Backoffs with the jitter at mid-range: 250ms → [125,250) → 187.5ms;
	// then 500ms → 375ms. Each resend also waits for a token (125ms at 8/s).
	want := []time.Duration{187500 * time.Microsecond, 375 * time.Millisecond}
	var backoffs []time.Duration
	for _, d := range b.clock.sleeps {
		if d != 125*time.Millisecond {
			backoffs = append(backoffs, d)
		}
	}
	if fmt.Sprint(backoffs) != fmt.Sprint(want) {
		t.Errorf("backoffs = %v, want %v", backoffs, want)
	}
	if !strings.Contains(b.logs.String(), "backing off") {
		t.Error("throttling not logged")
	}
}

func TestBackoffBounds(t *testing.T) {
	p := &Paced{}
	for attempt := 1; attempt <= 12; attempt++ {
		d := min(BackoffBaseDefault<<(attempt-1), BackoffMaxDefault)
		for range 200 {
			got := p.backoff(attempt)
			if got < d/2 || got >= d {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v)", attempt, got, d/2, d)
			}
		}
	}
}

func TestPacedGivesUpOnEndlessThrottling(t *testing.T) {
	var script []error
	for range 10 {
		script = append(script, throttleErr("Maximum sending rate exceeded."))
	}
	b := setupPaced(account(10, 1, 0), script...) // a quota of one recipient
	b.p.MaxAttempts = 3
	_, err := b.p.Send(context.Background(), to("a@example.com"))
	if err == nil || worker.IsHalt(err) || worker.IsPermanent(err) || worker.IsAmbiguous(err) || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("err = %v; want a transient error after 3 attempts", err)
	}
	if len(b.mailer.at) != 3 {
		t.Errorf("sent %d times, want 3", len(b.mailer.at))
	}
	// Nothing was sent, so the one-recipient quota is still free.
	b.mailer.script = nil
	if _, err := b.p.Send(context.Background(), to("a@example.com")); err != nil {
		t.Errorf("after a throttled email, the quota should be unused: %v", err)
	}
}

// TestPacedHaltsOnDailyQuotaThrottle: SES's throttle for a spent
// 24-hour quota halts the run at once, judged by the error code or the
// account's figures, not by the words of SES's message; a throttle for
// the rate is backed off and resent. The errors are the ones the real
// client builds from SES's answers on the wire. Before, only a message
// holding "daily message quota" or "24 hour" halted, so AWS's other
// wording, "Daily sending quota exceeded", was backed off and retried
// until the email was given up and its message released.
func TestPacedHaltsOnDailyQuotaThrottle(t *testing.T) {
	t.Parallel()
	t.Run("LimitExceededException", func(t *testing.T) {
		for _, msg := range []string{"Daily message quota exceeded.", "Daily sending quota exceeded."} {
			b := setupPaced(account(10, -1, 0), sesErr(t, 400, "LimitExceededException", msg))
			_, err := b.p.Send(context.Background(), to("a@example.com"))
			if !worker.IsHalt(err) || len(b.mailer.at) != 1 {
				t.Errorf("%q: err = %v after %d sends; want a halt at once", msg, err, len(b.mailer.at))
			}
		}
	})
	t.Run("a throttle when the account's quota is spent", func(t *testing.T) {
		// Another sender on the account spends the quota between our reads;
		// SES throttles, and a fresh GetAccount shows why.
		b := setupPaced(account(10, 100, 0), nil, sesErr(t, 429, "TooManyRequestsException", "Daily sending quota exceeded."))
		ctx := context.Background()
		if _, err := b.p.Send(ctx, to("a@example.com")); err != nil {
			t.Fatal(err)
		}
		b.acct.set(func(o *sesv2.GetAccountOutput) { o.SendQuota.SentLast24Hours = 100 })
		b.clock.advance(recheckAfter)
		_, err := b.p.Send(ctx, to("b@example.com"))
		if !worker.IsHalt(err) || len(b.mailer.at) != 2 {
			t.Errorf("err = %v after %d sends; want a halt at the throttle, without a resend", err, len(b.mailer.at))
		}
		if b.acct.calls != 2 {
			t.Errorf("%d GetAccount calls; want the quota read again at the throttle", b.acct.calls)
		}
	})
	t.Run("a throttle soon after a read that showed room", func(t *testing.T) {
		t.Parallel()
		// The last read is a second old and showed room; another sender
		// has spent the quota since. Before, a read younger than
		// recheckAfter was trusted, so the throttle was backed off and
		// resent MaxAttempts times and the email given up, as send_failed.
		daily := sesErr(t, 429, "TooManyRequestsException", "Daily sending quota exceeded.")
		b := setupPaced(account(10, 100, 0), nil, daily, daily, daily, daily, daily, daily, daily)
		ctx := context.Background()
		if _, err := b.p.Send(ctx, to("a@example.com")); err != nil {
			t.Fatal(err)
		}
		b.acct.set(func(o *sesv2.GetAccountOutput) { o.SendQuota.SentLast24Hours = 100 })
		b.clock.advance(time.Second)
		_, err := b.p.Send(ctx, to("b@example.com"))
		if !worker.IsHalt(err) || len(b.mailer.at) != 2 {
			t.Errorf("err = %v after %d sends; want a halt at the first throttle, without a resend", err, len(b.mailer.at))
		}
		if b.acct.calls != 2 {
			t.Errorf("%d GetAccount calls; want the quota read again at the throttle", b.acct.calls)
		}
	})
	t.Run("a burst of rate throttles reads the quota once", func(t *testing.T) {
		t.Parallel()
		rate := sesErr(t, 429, "TooManyRequestsException", "Maximum sending rate exceeded.")
		b := setupPaced(account(10, 100, 0), rate, rate, rate)
		if _, err := b.p.Send(context.Background(), to("a@example.com")); err != nil || len(b.mailer.at) != 4 {
			t.Fatalf("err = %v after %d sends; want three back-offs and a fourth send", err, len(b.mailer.at))
		}
		if b.acct.calls != 2 {
			t.Errorf("%d GetAccount calls; want 2: the first read, and one for the burst", b.acct.calls)
		}
	})
	t.Run("a read since the throttle serves it", func(t *testing.T) {
		t.Parallel()
		// Another email's throttle read the quota after this one's
		// arrived: that read judges this throttle too.
		b := setupPaced(account(10, 100, 0))
		ctx := context.Background()
		if _, err := b.p.Send(ctx, to("a@example.com")); err != nil {
			t.Fatal(err)
		}
		rate := throttleErr("Maximum sending rate exceeded.")
		if b.p.dailyQuota(ctx, rate, 1, 0, true) || b.acct.calls != 1 {
			t.Errorf("%d GetAccount calls; want 1: the read after the throttle serves", b.acct.calls)
		}
		if b.p.dailyQuota(ctx, rate, 1, 1, true) || b.acct.calls != 2 {
			t.Errorf("%d GetAccount calls; want 2: no read since the throttle, so read", b.acct.calls)
		}
	})
	t.Run("a throttle with room in the quota", func(t *testing.T) {
		b := setupPaced(account(10, 100, 0), sesErr(t, 429, "TooManyRequestsException", "Maximum sending rate exceeded."))
		_, err := b.p.Send(context.Background(), to("a@example.com"))
		if err != nil || len(b.mailer.at) != 2 {
			t.Errorf("err = %v after %d sends; want a back-off and a resend", err, len(b.mailer.at))
		}
	})
}

func TestPacedStopsBeforeThe24HourQuota(t *testing.T) {
	b := setupPaced(account(10, 10, 7))
	ctx := context.Background()
	for range 3 {
		if _, err := b.p.Send(ctx, to("a@example.com")); err != nil {
			t.Fatal(err)
		}
	}
	_, err := b.p.Send(ctx, to("a@example.com"))
	if !worker.IsHalt(err) || !strings.Contains(err.Error(), "10 of 10 used") {
		t.Fatalf("err = %v, want a halt naming the quota", err)
	}
	if len(b.mailer.at) != 3 {
		t.Errorf("sent %d, want 3: the halted email must not be sent", len(b.mailer.at))
	}
	if _, err := b.p.Send(ctx, to("a@example.com", "b@example.com")); !worker.IsHalt(err) {
		t.Errorf("err = %v, want a halt again", err)
	}
	calls := b.acct.calls

	// Later, the 24-hour window has moved on: the pacer looks again
	// rather than halt on a stale count.
	b.acct.set(func(o *sesv2.GetAccountOutput) { o.SendQuota.SentLast24Hours = 2 })
	b.clock.advance(recheckAfter)
	if _, err := b.p.Send(ctx, to("a@example.com")); err != nil {
		t.Errorf("after the window moved: %v", err)
	}
	if b.acct.calls != calls+1 {
		t.Errorf("GetAccount calls = %d, want one more before halting", b.acct.calls)
	}
}

func TestPacedCountsWhatMayHaveBeenSent(t *testing.T) {
	b := setupPaced(account(10, 2, 0),
		worker.Permanent(errors.New("rejected")),    // certainly not sent: not counted
		worker.Ambiguous(errors.New("conn closed")), // may be out: counted
	)
	ctx := context.Background()
	for i, want := range []func(error) bool{worker.IsPermanent, worker.IsAmbiguous, func(err error) bool { return err == nil }, worker.IsHalt} {
		if _, err := b.p.Send(ctx, to("a@example.com")); !want(err) {
			t.Fatalf("send %d: err = %v", i+1, err)
		}
	}
	if len(b.mailer.at) != 3 {
		t.Errorf("sent %d, want 3", len(b.mailer.at))
	}
}

func TestPacedUnlimitedQuota(t *testing.T) {
	b := setupPaced(account(100, -1, 1e9))
	for range 5 {
		if _, err := b.p.Send(context.Background(), to("a@example.com")); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPacedWarnsInTheSandbox(t *testing.T) {
	for _, sandbox := range []bool{true, false} {
		a := account(1, 200, 0)
		a.out.ProductionAccessEnabled = !sandbox
		b := setupPaced(a)
		if _, err := b.p.Send(context.Background(), to("a@example.com")); err != nil {
			t.Fatal(err)
		}
		logged := strings.Contains(b.logs.String(), "level=WARN msg=\"ses account is in the sandbox")
		if logged != sandbox {
			t.Errorf("sandbox %v: warning logged %v\n%s", sandbox, logged, b.logs)
		}
	}
}

func TestPacedHaltsWhenSendingIsDisabled(t *testing.T) {
	a := account(10, 100, 0)
	a.out.SendingEnabled = false
	b := setupPaced(a)
	if _, err := b.p.Send(context.Background(), to("a@example.com")); !worker.IsHalt(err) || len(b.mailer.at) != 0 {
		t.Errorf("err = %v, sent %d; want a halt and nothing sent", err, len(b.mailer.at))
	}
}

func TestPacedWithoutGetAccount(t *testing.T) {
	denied := &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "not authorized to perform: ses:GetAccount"}
	t.Run("halts by default", func(t *testing.T) {
		a := account(10, 100, 0)
		a.err = denied
		b := setupPaced(a)
		_, err := b.p.Send(context.Background(), to("a@example.com"))
		if !worker.IsHalt(err) || !strings.Contains(err.Error(), "pacing.fallback_rate") || len(b.mailer.at) != 0 {
			t.Fatalf("err = %v, sent %d; want a halt that says what to do, and nothing sent", err, len(b.mailer.at))
		}
		// The next run tries again, and goes once it works.
		a.err = nil
		if _, err := b.p.Send(context.Background(), to("a@example.com")); err != nil || a.calls != 2 {
			t.Errorf("second run: %v, GetAccount calls %d", err, a.calls)
		}
	})
	t.Run("fallback rate", func(t *testing.T) {
		a := account(10, 100, 0)
		a.err = denied
		b := setupPaced(a)
		b.p.FallbackRate = 2
		b.p.Refresh = time.Minute
		for range 3 {
			if _, err := b.p.Send(context.Background(), to("a@example.com")); err != nil {
				t.Fatal(err)
			}
		}
		if gap := b.mailer.at[2].Sub(b.mailer.at[1]); gap != 500*time.Millisecond {
			t.Errorf("gap = %v, want 500ms at the fallback rate", gap)
		}
		if !strings.Contains(b.logs.String(), "pacing.fallback_rate") || a.calls != 1 {
			t.Errorf("GetAccount calls %d; logs:\n%s", a.calls, b.logs)
		}
		a.err = nil
		b.clock.advance(time.Minute)
		if _, err := b.p.Send(context.Background(), to("a@example.com")); err != nil || a.calls != 2 {
			t.Errorf("after the refresh: %v, calls %d", err, a.calls)
		}
	})
	t.Run("a failed refresh keeps the quota", func(t *testing.T) {
		a := account(10, 100, 0)
		b := setupPaced(a)
		b.p.Refresh = time.Minute
		if _, err := b.p.Send(context.Background(), to("a@example.com")); err != nil {
			t.Fatal(err)
		}
		a.err = errors.New("connection reset")
		b.clock.advance(time.Minute)
		if _, err := b.p.Send(context.Background(), to("a@example.com")); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.logs.String(), "keeping the last quota") {
			t.Errorf("no warning:\n%s", b.logs)
		}
	})
}

func TestPacedCancelledWhileWaiting(t *testing.T) {
	b := setupPaced(account(1, 2, 0))
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := b.p.Send(ctx, to("a@example.com")); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := b.p.Send(ctx, to("b@example.com")); !errors.Is(err, context.Canceled) || len(b.mailer.at) != 1 {
		t.Fatalf("err = %v, sent %d; want cancelled and not sent", err, len(b.mailer.at))
	}
	// The cancelled email gave back its share of the quota (2 of 2).
	if _, err := b.p.Send(context.Background(), to("c@example.com")); err != nil {
		t.Errorf("quota not given back: %v", err)
	}
}

// TestPacedStopsWaitingOnShutdown: a send waiting its turn gives up
// when its run is told to stop, sends nothing and gives back its share
// of the quota; one that need not wait still goes.
func TestPacedStopsWaitingOnShutdown(t *testing.T) {
	b := setupPaced(account(1, 3, 0))
	stop := make(chan struct{})
	ctx := worker.WithStop(context.Background(), stop)
	if _, err := b.p.Send(ctx, to("a@example.com")); err != nil {
		t.Fatal(err)
	}
	close(stop)
	if _, err := b.p.Send(ctx, to("b@example.com")); !errors.Is(err, worker.ErrStopping) || len(b.mailer.at) != 1 {
		t.Fatalf("err = %v, sent %d; want ErrStopping and nothing sent", err, len(b.mailer.at))
	}
	// Its share of the quota (3 in all) is back: two more go.
	for _, addr := range []string{"c@example.com", "d@example.com"} {
		if _, err := b.p.Send(context.Background(), to(addr)); err != nil {
			t.Errorf("send to %s: %v; want the stopped email's quota given back", addr, err)
		}
	}
}

func TestPacedRetryer(t *testing.T) {
	r := PacedRetryer()
	if r.IsErrorRetryable(responseErr(429, &types.TooManyRequestsException{})) {
		t.Error("the SDK must leave throttled sends to the pacer")
	}
	if r.IsErrorRetryable(responseErr(400, &types.LimitExceededException{})) {
		t.Error("the SDK must leave throttle codes to the pacer")
	}
	if r.IsErrorRetryable(transportErr(fmt.Errorf("write: %w", net.ErrClosed))) {
		t.Error("a send that may have reached SES must never be retried")
	}
	if !r.IsErrorRetryable(responseErr(503, errors.New("unavailable"))) {
		t.Error("the retryer itself retries server errors; SES.Send decides per call (RetryServerErrors)")
	}
	if !Retryer().IsErrorRetryable(responseErr(429, &types.TooManyRequestsException{})) {
		t.Error("the plain Retryer still retries throttles, for a client without a pacer")
	}
}

// TestPacedLinesNameTheRun: the shared pacer's lines carry the schedule
// and run_id of the run whose send they are about.
func TestPacedLinesNameTheRun(t *testing.T) {
	b := setupPaced(account(1, 200, 0), throttleErr("Maximum sending rate exceeded."))
	ctx := worker.WithSchedule(worker.WithRunID(context.Background(), "run-7"), "daily")
	if _, err := b.p.Send(ctx, to("a@example.com")); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.logs.String()), "\n")
	if len(lines) < 2 {
		t.Fatalf("want the quota and the back-off lines:\n%s", b.logs)
	}
	for _, l := range lines {
		if !strings.Contains(l, "schedule=daily") || !strings.Contains(l, "run_id=run-7") {
			t.Errorf("a line lacks the schedule and run_id: %s", l)
		}
	}
}
