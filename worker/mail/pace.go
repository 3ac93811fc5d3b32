package mail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"golang.org/x/time/rate"

	"github.com/reportmailer/reportmailer/worker"
)

// Pacing defaults.
const (
	RateFractionDefault = 0.8
	RefreshDefault      = 5 * time.Minute
	MaxAttemptsDefault  = 6
	BackoffBaseDefault  = 250 * time.Millisecond
	BackoffMaxDefault   = 8 * time.Second
)

// recheckAfter is how stale the quota may be before Paced reads it
// again rather than halt a run on it.
const recheckAfter = 30 * time.Second

// AccountAPI is the part of *sesv2.Client that reads the sending quota.
type AccountAPI interface {
	GetAccount(context.Context, *sesv2.GetAccountInput, ...func(*sesv2.Options)) (*sesv2.GetAccountOutput, error)
}

// Paced is a worker.Mailer that keeps an SES account inside its sending
// quota. It reads the quota with GetAccount before its first send and
// again every Refresh, and then, for every email:
//
//   - if the recipients would take the account past its 24-hour quota
//     (SentLast24Hours, plus what was sent since the last read, plus
//     this email), it sends nothing and returns a [worker.Halt] error:
//     the run stops and the messages stay queued for a later run;
//   - it waits for one token per recipient from a token bucket filled
//     at RateFraction × MaxSendRate per second (SES counts recipients,
//     not calls), with a burst of one, and then, if need be, until the
//     last second of sends (plus a small margin) holds room for its
//     recipients within MaxSendRate (see wait in pace.go);
//   - on a throttle, which is an answer, so the email was certainly not
//     sent, it reads the quota again (see dailyQuota) and halts the run
//     if the 24-hour quota is spent; otherwise, the rate, it backs off
//     (exponential, with jitter), waits for tokens again and resends, at
//     most MaxAttempts times in all, then returns a transient error.
//
// Give the SES client [PacedRetryer], so that the SDK does not retry
// throttled sends on its own: the SDK's retries would bypass the
// bucket, and its retry quota runs dry under load.
//
// If GetAccount fails before the first send, Paced cannot know the rate
// or the quota. With FallbackRate set it warns and paces at that rate,
// with no 24-hour limit, until a read succeeds; otherwise it halts the
// run with the error (typically a missing ses:GetAccount permission), so
// that the problem shows on the first run rather than as a throttled or
// exhausted account. A failed later read keeps the last quota, with a
// warning.
//
// A Paced is safe for concurrent use; one should serve every schedule,
// since the quota belongs to the account.
type Paced struct {
	// Mailer sends the email: an *SES, whose errors Paced reads.
	Mailer worker.Mailer
	// Account reads the quota: the SES client, or another on the same
	// account and region.
	Account AccountAPI
	// RateFraction is the share of MaxSendRate to send at. Default 0.8.
	RateFraction float64
	// Refresh is how often the quota is read again. Default 5m.
	Refresh time.Duration
	// FallbackRate is the rate, in recipients per second, to send at
	// when GetAccount fails before the first send. Default 0: halt.
	FallbackRate float64
	// MaxAttempts bounds the sends of one email that SES throttles.
	// Default 6.
	MaxAttempts int
	// BackoffBase and BackoffMax shape the wait after a throttled send:
	// a random time in [d/2, d), where d doubles from BackoffBase with
	// each attempt, up to BackoffMax. Defaults 250ms and 8s.
	BackoffBase, BackoffMax time.Duration
	// Replicas is how many processes send on the account at once, each
	// with a Paced configured alike. Each takes 1/Replicas of the rate,
	// of the per-second limit, of the 24-hour quota left at each read,
	// and of Max24HourSend over its own sends of the last 24 hours, so
	// that together they stay within the quota. Default 1.
	Replicas int
	// Logger receives the quota, the sandbox warning and retries.
	// Default slog.Default().
	Logger *slog.Logger
	// Observer is told of each wait, throttle and quota read. Default
	// none.
	Observer worker.PaceObserver

	// Clock and randomness, replaced by tests.
	now    func() time.Time
	sleep  func(context.Context, time.Duration) error
	jitter func(time.Duration) time.Duration // uniform in [0, d)

	mu       sync.Mutex
	lim      *rate.Limiter
	win      window
	read     time.Time // last GetAccount attempt
	reads    uint64    // GetAccount attempts so far
	have     bool      // a GetAccount has succeeded
	fallback bool      // pacing at FallbackRate
	quota    types.SendQuota
	used     float64  // recipients sent, or maybe sent, since the last read
	own      daySends // recipients this process sent, or maybe sent, by hour
	sandbox  bool
	paused   bool
}

var _ worker.Mailer = (*Paced)(nil)

// Send waits until e may go, then sends it with Mailer; see [Paced].
// A halt says when to try again; see [Paced.Admit].
func (p *Paced) Send(ctx context.Context, e worker.Email) (id string, err error) {
	defer func() { err = p.haltUntil(err) }()
	n := len(e.To)
	if n == 0 {
		n = 1
	}
	if err := p.admit(ctx, n); err != nil {
		return "", err
	}
	judged := false // a quota read after a throttle of this email
	for attempt := 1; ; attempt++ {
		if err := p.wait(ctx, n); err != nil {
			p.unreserve(n)
			return "", fmt.Errorf("ses pacing: %w", err)
		}
		id, err := p.Mailer.Send(ctx, e)
		seen := p.readsSoFar()
		switch {
		case err == nil:
			return id, nil
		case !throttled(err):
			if !worker.IsAmbiguous(err) {
				p.unreserve(n) // certainly not sent
			}
			return "", err
		case p.dailyQuota(ctx, err, n, seen, !judged):
			p.unreserve(n)
			return "", worker.Halt(fmt.Errorf("ses 24-hour sending quota reached: %w", err))
		case attempt >= p.maxAttempts():
			p.unreserve(n)
			return "", fmt.Errorf("ses still throttling after %d attempts: %w", attempt, err)
		}
		judged = true
		p.observer().Throttled()
		d := p.backoff(attempt)
		p.logger(ctx).Info("ses throttled the send; backing off", "attempt", attempt, "wait", d)
		if err := p.sleepFor(ctx, d); err != nil {
			p.unreserve(n)
			return "", fmt.Errorf("ses pacing: %w", err)
		}
	}
}

var _ worker.SendGate = (*Paced)(nil)

// Admit reports whether an email to one recipient could go now, as far
// as the account's quota and sending status say, reading them when
// due, and reserves nothing: the worker asks before it receives, so
// that a run that cannot send does not receive messages only to hand
// them back, each receive counting towards maxReceiveCount. When it
// cannot, the error is a [worker.HaltUntil].
//
// Every halt from Paced, here or from Send, says to try again after
// Refresh (at least a minute), when Paced reads the quota again: the
// 24-hour quota frees gradually as sends age out, and account-wide
// refusals need someone to act, so there is no better moment to name.
// The worker keeps the messages it hands back hidden until then.
func (p *Paced) Admit(ctx context.Context) error {
	if err := p.admit(ctx, 1); err != nil {
		return p.haltUntil(err)
	}
	p.unreserve(1)
	return nil
}

// haltUntil gives a halt that says no time to retry one: the next
// quota read.
func (p *Paced) haltUntil(err error) error {
	if !worker.IsHalt(err) {
		return err
	}
	if _, ok := worker.RetryAfter(err); ok {
		return err
	}
	return worker.HaltUntil(err, p.clock().Add(max(p.refresh(), time.Minute)))
}

// admit reads the quota when due and reserves n recipients of it.
func (p *Paced) admit(ctx context.Context, n int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock()
	if p.read.IsZero() || now.Sub(p.read) >= p.refresh() || (!p.have && !p.fallback) {
		if err := p.readQuota(ctx, now); err != nil {
			return err
		}
	}
	if p.paused {
		return worker.Halt(errors.New("ses: sending is disabled for this account (GetAccount SendingEnabled is false)"))
	}
	if p.over(n) && p.have && now.Sub(p.read) >= recheckAfter {
		// The window slides: what was sent a day ago no longer counts,
		// and the last read may be stale. Look again before halting.
		if err := p.readQuota(ctx, now); err != nil {
			return err
		}
	}
	if p.over(n) {
		q := p.quota
		return worker.Halt(fmt.Errorf("ses 24-hour sending quota: %.0f of %.0f used, and this email has %d recipient(s); stopping until the quota frees up",
			q.SentLast24Hours+p.used, q.Max24HourSend, n))
	}
	if r := p.replicas(); p.overShare(now, n) {
		return worker.Halt(fmt.Errorf("ses 24-hour sending quota: this process sent %.0f in the last 24 hours, its share (1/%d, pacing.replicas) of %.0f, and this email has %d recipient(s); stopping until the share frees up",
			p.own.sum(now), r, p.quota.Max24HourSend, n))
	}
	p.used += float64(n)
	p.own.add(now, float64(n))
	return nil
}

// overShare reports whether n more recipients would take this process
// past its share of the 24-hour quota over its own sends of the last
// 24 hours. The share of what was left at a read (over) is not enough
// alone: a process that spent its share, read again and saw what the
// others had not spent yet would take half of it too, while they still
// held theirs. Counting its own sends keeps the replicas' sum within
// the quota however their reads interleave.
func (p *Paced) overShare(now time.Time, n int) bool {
	if !p.have || p.quota.Max24HourSend < 0 || p.replicas() == 1 {
		return false
	}
	return (p.own.sum(now)+float64(n))*float64(p.replicas()) > p.quota.Max24HourSend
}

// over reports whether n more recipients would exceed the 24-hour quota.
func (p *Paced) over(n int) bool {
	if !p.have || p.quota.Max24HourSend < 0 { // -1: unlimited
		return false
	}
	// This process may spend its share of what was left at the read.
	return (p.used+float64(n))*float64(p.replicas()) > p.quota.Max24HourSend-p.quota.SentLast24Hours
}

func (p *Paced) replicas() int { return max(1, p.Replicas) }

func (p *Paced) unreserve(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.used = max(0, p.used-float64(n))
	p.own.add(p.clock(), -float64(n))
}

// readQuota calls GetAccount and applies what it says. It returns an
// error only when sending cannot go on.
func (p *Paced) readQuota(ctx context.Context, now time.Time) error {
	p.read = now
	p.reads++
	out, err := p.Account.GetAccount(ctx, &sesv2.GetAccountInput{})
	if err == nil && (out.SendQuota == nil || out.SendQuota.MaxSendRate <= 0) {
		err = errors.New("GetAccount gave no MaxSendRate")
	}
	if err != nil {
		switch {
		case p.have:
			p.logger(ctx).Warn("ses quota: GetAccount failed; keeping the last quota", "err", err, "max_send_rate", p.quota.MaxSendRate, "max_24_hour_send", p.quota.Max24HourSend)
			return nil
		case p.FallbackRate > 0:
			if !p.fallback {
				p.logger(ctx).Warn("ses quota: GetAccount failed; pacing at pacing.fallback_rate with no 24-hour limit until it works", "err", err, "rate", p.FallbackRate)
			}
			p.fallback = true
			p.setRate(now, p.FallbackRate, 0) // SES's own limit is unknown; the rate is per process
			return nil
		}
		return worker.Halt(fmt.Errorf("ses quota: %w (sending is paced by the account's quota, which needs ses:GetAccount; set pacing.fallback_rate to send without it)", err))
	}

	q := *out.SendQuota
	p.observer().Quota(q.Max24HourSend, q.SentLast24Hours, q.MaxSendRate)
	first := !p.have
	p.have, p.fallback = true, false
	p.quota, p.used = q, 0
	p.paused = !out.SendingEnabled
	share := float64(p.replicas())
	r := p.fraction() * q.MaxSendRate / share
	p.setRate(now, r, q.MaxSendRate/share)
	log := p.logger(ctx)
	r = math.Round(r*1000) / 1000 // for the log
	if first {
		log.Info("ses quota", "max_send_rate", q.MaxSendRate, "max_24_hour_send", q.Max24HourSend, "sent_last_24_hours", q.SentLast24Hours, "pace", r)
	} else {
		log.Debug("ses quota", "max_send_rate", q.MaxSendRate, "max_24_hour_send", q.Max24HourSend, "sent_last_24_hours", q.SentLast24Hours, "pace", r)
	}
	if sandbox := !out.ProductionAccessEnabled; sandbox && (first || !p.sandbox) {
		log.Warn("ses account is in the sandbox: only verified addresses receive email, and the quota is small; request production access",
			"max_24_hour_send", q.Max24HourSend, "max_send_rate", q.MaxSendRate)
	}
	p.sandbox = !out.ProductionAccessEnabled
	if s := aws.ToString(out.EnforcementStatus); s != "" && s != "HEALTHY" {
		log.Warn("ses account enforcement status is not HEALTHY", "status", s)
	}
	return nil
}

// setRate sets the bucket to r and the window to limit, recipients
// per second; a limit of 0 means none.
func (p *Paced) setRate(now time.Time, r, limit float64) {
	p.win.limit = 0
	if limit > 0 {
		p.win.limit = int(math.Max(1, math.Floor(limit)))
	}
	if p.lim == nil {
		p.lim = rate.NewLimiter(rate.Limit(r), 1)
		return
	}
	p.lim.SetLimitAt(now, rate.Limit(r))
}

// wait holds an email of n recipients until it may go. Two things
// decide, and both count recipients:
//
//   - the token bucket sets the average: n tokens at RateFraction ×
//     MaxSendRate a second, with a burst of one. Tokens are reserved for
//     the time they fall due, so a late wake-up on a busy machine is
//     made up rather than lost;
//   - making up for a late send must not crowd the next ones together,
//     so a sliding window over the times sends actually started keeps
//     any second (and a margin, see windowSpan) from holding more than
//     MaxSendRate recipients, the limit SES enforces.
func (p *Paced) wait(ctx context.Context, n int) error {
	p.mu.Lock()
	lim := p.lim
	p.mu.Unlock()
	now := p.clock()
	rs := make([]*rate.Reservation, n)
	for i := range rs { // one at a time: the burst is 1
		rs[i] = lim.ReserveN(now, 1)
	}
	waited := rs[n-1].DelayFrom(now)
	defer func() { p.observer().Waited(waited) }()
	if err := p.sleepFor(ctx, waited); err != nil {
		now := p.clock()
		for _, r := range rs {
			r.CancelAt(now)
		}
		return err
	}
	for {
		p.mu.Lock()
		now := p.clock()
		d := p.win.delay(now, n)
		if d <= 0 {
			p.win.add(now, n)
		}
		p.mu.Unlock()
		if d <= 0 {
			return nil
		}
		waited += d
		if err := p.sleepFor(ctx, d); err != nil {
			return err
		}
	}
}

// windowSpan is the length of the pacer's sliding window: one second,
// as SES counts, plus a margin for the time between our starting a send
// and SES counting it, which varies with the network and the machine's
// load. Without it, a send delayed on its way and the next one on time
// arrive closer than we sent them, and SES throttles. The margin caps
// the pace at about 96% of MaxSendRate, whatever RateFraction says.
const windowSpan = time.Second + 40*time.Millisecond

// window is a sliding window, windowSpan long, over send start times.
// daySends counts recipients by the hour they were sent in, over the
// last 25 hours: an hour counts until a full day has passed since its
// end, so a send counts for 24 to 25 hours, never less than SES's 24.
type daySends struct {
	hours [25]struct {
		hour int64 // hours since the Unix epoch; the slot is stale if older
		n    float64
	}
}

// add counts n recipients sent at now, or, negative, takes back ones
// that were certainly not sent (never below zero).
func (d *daySends) add(now time.Time, n float64) {
	h := now.Unix() / 3600
	s := &d.hours[h%int64(len(d.hours))]
	if s.hour != h {
		s.hour, s.n = h, 0
	}
	s.n = max(0, s.n+n)
}

// sum returns the recipients counted in the 25 hours up to now.
func (d *daySends) sum(now time.Time) float64 {
	h := now.Unix() / 3600
	total := 0.0
	for _, s := range d.hours {
		if h-s.hour < int64(len(d.hours)) {
			total += s.n
		}
	}
	return total
}

type window struct {
	limit int // recipients per second; 0: no limit
	sent  []stamp
}

type stamp struct {
	at time.Time
	n  int
}

// delay returns how long after now n more recipients fit in the window.
func (w *window) delay(now time.Time, n int) time.Duration {
	keep := w.sent[:0]
	sum := 0
	for _, s := range w.sent {
		if now.Sub(s.at) < windowSpan {
			keep = append(keep, s)
			sum += s.n
		}
	}
	w.sent = keep
	if w.limit <= 0 || sum+n <= w.limit {
		return 0
	}
	excess := sum + n - w.limit // an email larger than the limit waits for an empty window
	for _, s := range w.sent {
		if excess -= s.n; excess <= 0 {
			return s.at.Add(windowSpan).Sub(now)
		}
	}
	return w.sent[len(w.sent)-1].at.Add(windowSpan).Sub(now)
}

func (w *window) add(now time.Time, n int) { w.sent = append(w.sent, stamp{now, n}) }

// backoff returns the wait after the attempt-th throttled send.
func (p *Paced) backoff(attempt int) time.Duration {
	base, ceil := p.BackoffBase, p.BackoffMax
	if base <= 0 {
		base = BackoffBaseDefault
	}
	if ceil <= 0 {
		ceil = BackoffMaxDefault
	}
	d := base
	for i := 1; i < attempt && d < ceil; i++ {
		d *= 2
	}
	d = min(d, ceil)
	j := p.jitter
	if j == nil {
		j = func(d time.Duration) time.Duration { return rand.N(d) }
	}
	return d/2 + j(d/2)
}

// throttled reports whether SES refused err's request for its rate: an
// answer, so the email was certainly not sent. It takes the SDK's view
// of what a throttle is (429, or a throttle error code such as
// TooManyRequestsException or LimitExceededException), so that what
// PacedRetryer leaves to Paced is what Paced retries.
func throttled(err error) bool {
	var tm *types.TooManyRequestsException
	if errors.As(err, &tm) {
		return true
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == 429 {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		_, ok := retry.DefaultThrottleErrorCodes[ae.ErrorCode()]
		return ok
	}
	return false
}

// readsSoFar returns how many times the quota has been read.
func (p *Paced) readsSoFar() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reads
}

// dailyQuota reports whether a throttled send of n recipients met the
// 24-hour quota rather than the rate: backing off for seconds cannot
// help then. SES has no error code of its own for it; its guide says
// both come as a throttle and tells them apart only in the message,
// which is no contract (AWS's own pages word it "Daily message quota
// exceeded" and "Daily sending quota exceeded"). So the code decides
// where it can, and the account's own figures otherwise:
//
//   - LimitExceededException: SES v2's error for a limit that is not a
//     rate of requests (that is TooManyRequestsException, 429). SendEmail
//     creates nothing, so the limit it exceeds is the sending quota;
//   - any other throttle: the quota is spent if SentLast24Hours leaves
//     no room for this email, as read after the throttle: another
//     sender on the account may have spent it a moment after a read
//     that showed room. So the quota is read again at the first
//     throttle of an email (first), and at later ones once the last
//     read is older than recheckAfter, so that a burst of rate
//     throttles costs one GetAccount, not one per attempt. A read made
//     since the throttle arrived (seen is the count of reads then),
//     for another email's throttle, serves this one too.
func (p *Paced) dailyQuota(ctx context.Context, err error, n int, seen uint64, first bool) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "LimitExceededException" {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.have {
		return false
	}
	if now := p.clock(); p.reads == seen && (first || now.Sub(p.read) >= recheckAfter) {
		_ = p.readQuota(ctx, now) // a failed read keeps the last quota
	}
	q := p.quota
	// used holds this email's n, unless the read above reset it.
	return q.Max24HourSend >= 0 && q.SentLast24Hours+max(p.used, float64(n)) > q.Max24HourSend
}

func (p *Paced) clock() time.Time {
	if p.now != nil {
		return p.now()
	}
	return time.Now()
}

// sleepFor waits d, or until ctx ends (the test clock's sleep when
// set). A wait gives up with worker.ErrStopping when the run is told to stop
// (worker.Stopping): nothing has been sent, and with many deliveries in
// flight at a low rate the last would otherwise outlast the process's
// shutdown grace.
func (p *Paced) sleepFor(ctx context.Context, d time.Duration) error {
	stop := worker.Stopping(ctx)
	if d > 0 {
		select {
		case <-stop:
			return worker.ErrStopping
		default:
		}
	}
	if p.sleep != nil {
		return p.sleep(ctx, d)
	}
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-stop:
		return worker.ErrStopping
	case <-t.C:
		return nil
	}
}

// logger is the logger for work done in ctx: with the schedule and
// run_id of the run ctx belongs to, if any, since one Paced serves every schedule.
func (p *Paced) logger(ctx context.Context) *slog.Logger {
	l := p.Logger
	if l == nil {
		l = slog.Default()
	}
	if kv := worker.LogAttrs(ctx); kv != nil {
		l = l.With(kv...)
	}
	return l
}

func (p *Paced) refresh() time.Duration {
	if p.Refresh > 0 {
		return p.Refresh
	}
	return RefreshDefault
}

func (p *Paced) fraction() float64 {
	if p.RateFraction > 0 {
		return p.RateFraction
	}
	return RateFractionDefault
}

func (p *Paced) maxAttempts() int {
	if p.MaxAttempts > 0 {
		return p.MaxAttempts
	}
	return MaxAttemptsDefault
}

// PacedRetryer is [Retryer] for a client behind [Paced]: it also leaves
// throttled requests to Paced, which resends them through its token
// bucket. The SDK would otherwise resend a throttled SendEmail up to
// twice on its own, outside the bucket, drawing on a retry quota that
// runs dry under load. Server errors and failed connections are still
// retried by the SDK, and a request SES may have acted on never is.
func PacedRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.Retryables = append([]retry.IsErrorRetryable{
			retry.IsErrorRetryableFunc(noRetryAfterSend),
			retry.IsErrorRetryableFunc(noRetryThrottled),
		}, o.Retryables...)
	})
}

func noRetryThrottled(err error) aws.Ternary {
	if throttled(err) {
		return aws.FalseTernary
	}
	return aws.UnknownTernary
}

func (p *Paced) observer() worker.PaceObserver {
	if p.Observer == nil {
		return worker.NopObserver{}
	}
	return p.Observer
}
