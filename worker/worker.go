package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/reportmailer/reportmailer/templates"
	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/secret"
)

// Mode says how a run groups events into emails.
type Mode string

const (
	// ModeEach sends one email per event, as soon as its batch arrives.
	ModeEach Mode = "each"
	// ModeDigest drains the queue first, then sends one email per user
	// listing every report that user received in the run.
	ModeDigest Mode = "digest"
)

// Defaults for Config.
const (
	BatchSizeDefault    = 10
	WaitTimeDefault     = 20 * time.Second
	BudgetDefault       = 5 * time.Minute
	MaxMessagesDefault  = 1000
	ClaimTimeoutDefault = 15 * time.Minute
	SettleGraceDefault  = 15 * time.Minute
)

// ClaimTimeoutMin is the shortest ClaimTimeout: a claim is taken over
// after it even when its run is alive and merely slow (signing, waiting
// for its turn to send). That run then finds its claim gone and does
// not send, so nothing is sent twice, but the work is wasted.
const ClaimTimeoutMin = time.Second

// UnsettledPolicy is what a run does with a delivery whose email an
// earlier run started sending and never recorded the result of, once
// [Config.SettleGrace] has passed.
type UnsettledPolicy string

const (
	// UnsettledDeadLetter dead-letters the message with code maybe_sent
	// and a reason naming the recipient, the ledger record and the
	// command that settles it. Nothing is sent twice without an
	// operator.
	UnsettledDeadLetter UnsettledPolicy = "dead_letter"
	// UnsettledResend takes the delivery over and sends it again,
	// counted as maybe duplicated. It is meant for a worker that reads
	// SES's sending events, where a Send event settles every accepted
	// email well within the grace, so one without an event was not sent.
	UnsettledResend UnsettledPolicy = "resend"
)

// visibilityMax is SQS's ceiling on how long a received message can be
// kept invisible, counted from its receive.
const visibilityMax = 12 * time.Hour

// Config is how one queue is drained.
type Config struct {
	// Schedule names the run in logs and email tags.
	Schedule string
	// Mode is ModeEach (the default) or ModeDigest.
	Mode Mode
	// BatchSize is how many messages one receive asks for, 1 to 10.
	// Default 10.
	BatchSize int
	// WaitTime is the long-poll wait of one receive, 1s to 20s.
	// Default 20s.
	WaitTime time.Duration
	// Budget bounds a run: no receive starts after it is spent.
	// Default 5m.
	Budget time.Duration
	// MaxMessages bounds how many messages a run takes. Default 1000.
	MaxMessages int
	// VisibilityTimeout is the visibility timeout messages are received
	// with. While the worker still holds messages it extends it, every
	// half of it, so slow work (a paced send, a large digest) does not
	// hand them to another receiver. 0 turns the heartbeat off.
	VisibilityTimeout time.Duration
	// ClaimTimeout is how long a delivery claimed by another run, which
	// has not started sending it, is left to that run. After it, by the
	// ledger store's clock, this run takes the claim over and sends the
	// email: nothing was sent under it. At least ClaimTimeoutMin.
	// Default 15m.
	ClaimTimeout time.Duration
	// SettleGrace is how long a delivery whose email another run started
	// sending, without a recorded result, is left for that run to record
	// it or for SES's sending events to settle it. Until then the message
	// is retried later; after it, UnsettledPolicy applies. Default 15m.
	SettleGrace time.Duration
	// UnsettledPolicy is UnsettledDeadLetter (the default) or
	// UnsettledResend.
	UnsettledPolicy UnsettledPolicy
	// AwaitSettlement is set when SES's sending events are read. A
	// delivery whose email may have been accepted, by this run or by
	// another within SettleGrace, then waits for them instead of being
	// dead-lettered at once: its message is hidden until the grace
	// ends, and the run that receives it next finds the delivery sent
	// (the events settled it) or applies UnsettledPolicy.
	AwaitSettlement bool
	// Bucket is the S3 bucket the reports are in: the one their links
	// serve, such as the CloudFront distribution's origin. A report in
	// any other bucket is refused, as permanent, before the worker heads
	// it: a link to it could open a different object. Required.
	Bucket string
	// KeyPrefix, when set, narrows what is served to keys that start
	// with it; a report outside it is refused like one in another
	// bucket. Default "": every key in Bucket.
	KeyPrefix string
	// From is the sender address, e.g. "Reports <reports@example.com>".
	// Required.
	From string
	// ReplyTo addresses, optional.
	ReplyTo []string
	// Recipients is the policy for extra recipients.
	Recipients RecipientPolicy
	// Concurrency is how many emails a run works on at once (claim,
	// sign, render, send), 1 to ConcurrencyMax. Default 1: one at a
	// time, the next receive waiting for the batch. Above 1, the run
	// keeps receiving while emails go out; see concurrent.go.
	Concurrency int
	// OnlyRecipients, when set, limits the run to deliveries to these
	// addresses (compared case-insensitively), after the policy: the
	// operator's resend.
	OnlyRecipients []string
	// MaxLinksPerEmail splits a digest delivered from the pending store
	// into parts of at most this many links ("part 2 of 3", numbered
	// among the emails the slot sends the recipient); an event is never
	// split, so one with more links is a part of its own. Default
	// MaxLinksPerEmailDefault.
	MaxLinksPerEmail int
}

// ConcurrencyMax bounds Config.Concurrency.
const ConcurrencyMax = 256

func (c Config) withDefaults() Config {
	c.Mode = cmp.Or(c.Mode, ModeEach)
	c.BatchSize = cmp.Or(c.BatchSize, BatchSizeDefault)
	c.WaitTime = cmp.Or(c.WaitTime, WaitTimeDefault)
	c.Budget = cmp.Or(c.Budget, BudgetDefault)
	c.MaxMessages = cmp.Or(c.MaxMessages, MaxMessagesDefault)
	c.ClaimTimeout = cmp.Or(c.ClaimTimeout, ClaimTimeoutDefault)
	c.SettleGrace = cmp.Or(c.SettleGrace, SettleGraceDefault)
	c.UnsettledPolicy = cmp.Or(c.UnsettledPolicy, UnsettledDeadLetter)
	c.Concurrency = cmp.Or(c.Concurrency, 1)
	c.MaxLinksPerEmail = cmp.Or(c.MaxLinksPerEmail, MaxLinksPerEmailDefault)
	return c
}

func (c Config) validate() error {
	switch {
	case c.Mode != ModeEach && c.Mode != ModeDigest:
		return fmt.Errorf("mode: %q is not %q or %q", c.Mode, ModeEach, ModeDigest)
	case c.BatchSize < 1 || c.BatchSize > 10:
		return fmt.Errorf("batch size: %d is not between 1 and 10", c.BatchSize)
	case c.WaitTime < time.Second || c.WaitTime > 20*time.Second:
		return fmt.Errorf("wait time: %s is not between 1s and 20s", c.WaitTime)
	case c.Budget < 0:
		return fmt.Errorf("budget: %s is negative", c.Budget)
	case c.MaxMessages < 0:
		return fmt.Errorf("max messages: %d is negative", c.MaxMessages)
	case c.ClaimTimeout < ClaimTimeoutMin:
		return fmt.Errorf("claim timeout: %s is shorter than %s", c.ClaimTimeout, ClaimTimeoutMin)
	case c.SettleGrace < 0:
		return fmt.Errorf("settle grace: %s is negative", c.SettleGrace)
	case c.UnsettledPolicy != UnsettledDeadLetter && c.UnsettledPolicy != UnsettledResend:
		return fmt.Errorf("unsettled policy: %q is not %q or %q", c.UnsettledPolicy, UnsettledDeadLetter, UnsettledResend)
	case c.MaxLinksPerEmail < 1:
		return fmt.Errorf("max links per email: %d is not positive", c.MaxLinksPerEmail)
	case c.Concurrency < 1 || c.Concurrency > ConcurrencyMax:
		return fmt.Errorf("concurrency: %d is not between 1 and %d", c.Concurrency, ConcurrencyMax)
	case c.From == "":
		return errors.New("from: is required")
	case c.Bucket == "":
		return errors.New("bucket: is required: the worker links reports in that bucket only")
	}
	return nil
}

// Worker drains a queue into emails. Build one with New.
type Worker struct {
	cfg       Config
	queue     Queue
	objects   ObjectStore
	signer    Signer
	templates Templates
	mailer    Mailer
	ledger    Ledger
	halts     HaltRecord
	pending   Pending
	obs       Observer
	logger    *slog.Logger
	now       func() time.Time
	linkToken func(eventID, recipient string) string
}

// Deps are the worker's collaborators. All but Halts, Logger and Now
// are required.
type Deps struct {
	Queue     Queue
	Objects   ObjectStore
	Signer    Signer
	Templates Templates
	Mailer    Mailer
	Ledger    Ledger
	// Halts keeps halts across runs; nil keeps each halt to its run.
	Halts  HaltRecord
	Logger *slog.Logger     // default slog.Default()
	Now    func() time.Time // default time.Now

	// Observer is told what each run does; default NopObserver.
	Observer Observer

	// Pending, with ModeDigest, makes Drain an ingest: it moves the
	// queue's events into this store, and Deliver sends them at the
	// slot. Nil keeps a digest to what one Drain receives.
	Pending Pending

	// LinkToken, when set, traces links (links.trace): it returns the
	// token of the delivery of an event to a recipient, which every link
	// of that delivery carries, so links are signed per recipient
	// rather than once per event. Default nil: links carry no token.
	LinkToken func(eventID, recipient string) string
}

// Templates picks the template set for an email's report type.
// *templates.Sets has a set per report type; a single *templates.Set
// serves every type.
type Templates interface {
	For(reportType string) *templates.Set
}

// New returns a worker for cfg, after filling in defaults and checking
// the result.
func New(cfg Config, d Deps) (*Worker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("worker config: %w", err)
	}
	if d.Queue == nil || d.Objects == nil || d.Signer == nil || d.Templates == nil || d.Mailer == nil || d.Ledger == nil {
		return nil, errors.New("worker: a required dependency is nil")
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Worker{
		cfg: cfg, queue: d.Queue, objects: d.Objects, signer: d.Signer,
		templates: d.Templates, mailer: d.Mailer, ledger: d.Ledger, halts: d.Halts, obs: d.Observer, pending: d.Pending,
		logger: d.Logger.With("schedule", cfg.Schedule),
		now:    d.Now, linkToken: d.LinkToken,
	}, nil
}

// Summary counts what a run did.
type Summary struct {
	Received     int // messages received
	Acked        int // messages deleted after their work was done
	Dropped      int // messages deleted with nothing to do (S3 test events), not in Acked
	DeadLettered int // messages moved to the dead-letter queue
	Retrying     int // messages left on the queue for another try
	Sent         int // emails accepted by the mail service
	Duplicates   int // deliveries skipped because the ledger had them
	// MaybeSent counts emails that may or may not have been accepted:
	// this run's sends that ended without knowing, and earlier runs'
	// that this run found unsettled past the grace and dead-lettered.
	// Their ledger records stay "sending", so they are not sent again
	// unless settled.
	MaybeSent int
	// MaybeDuplicated counts sends that may have delivered an email a
	// second time: retries after SES answered 5xx to an email it may
	// have accepted (sender.retry_server_errors), and resends of
	// unsettled deliveries (UnsettledResend).
	MaybeDuplicated int
	// Unrecorded counts emails accepted whose ledger record could not be
	// marked sent: it still says "sending", which SES's sending events,
	// or an operator, can settle.
	Unrecorded int
	Refused    int // recipients refused by the policy
	// Pending counts the digest events left in the pending store after
	// Deliver: ingested after the slot, or not delivered yet.
	Pending int
	// Users, Due and Delivered count what Deliver did with a digest
	// slot: the users with events due, those events, and the events
	// delivered (or found delivered before) and removed from the
	// pending store. Received and Acked count queue messages only: in
	// a slot, those of its ingest.
	Users, Due, Delivered int
	// Halted is set when the run stopped sending for a [Halt] (the
	// quota spent, the account unable to send, an earlier run's halt
	// still holding), whether or not it had received anything: the
	// queue may still hold messages. Halt says why.
	Halted bool
	Halt   Failure
}

// OK reports whether every message received was dealt with for good,
// and the run was not halted.
func (s Summary) OK() bool { return s.DeadLettered == 0 && s.Retrying == 0 && !s.Halted }

// LogValue makes a Summary log as a group of counts.
func (s Summary) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.Int("received", s.Received), slog.Int("acked", s.Acked),
		slog.Int("dropped", s.Dropped), slog.Int("dead_lettered", s.DeadLettered),
		slog.Int("retrying", s.Retrying), slog.Int("sent", s.Sent),
		slog.Int("duplicates", s.Duplicates), slog.Int("maybe_sent", s.MaybeSent),
		slog.Int("maybe_duplicated", s.MaybeDuplicated), slog.Int("unrecorded", s.Unrecorded),
		slog.Int("refused", s.Refused), slog.Int("pending", s.Pending),
		slog.Int("users", s.Users), slog.Int("due", s.Due), slog.Int("delivered", s.Delivered),
		slog.Bool("halted", s.Halted),
	}
	if s.Halted {
		attrs = append(attrs, slog.String("halt_code", string(s.Halt.Code)))
	}
	return slog.GroupValue(attrs...)
}

// Drain runs once: it receives until the queue is empty, the budget is
// spent, MaxMessages are taken or ctx is cancelled, and processes what
// it received: in ModeEach each batch as it arrives, up to
// Config.Concurrency emails at once, while it keeps receiving (see
// concurrent.go); in ModeDigest all of it once the receiving is done.
// Cancelling ctx stops new receives but not the one in flight, whose
// messages would otherwise stay invisible for the whole visibility
// timeout; no new email is started after it, the ones being sent
// finish, and the messages not yet done are released.
//
// Before it receives, Drain checks the queues when the Queue is a
// [Checker], reads the [HaltRecord] when there is one, and before each
// receive it asks the Mailer when it is a [SendGate]: a run that could
// not send receives nothing. An ingest (a digest with a pending store)
// sends nothing and does neither. When sending halts mid-run, the messages
// not done are handed back, hidden until the time the halt gives
// ([HaltUntil]), or at once when it gives none; a halt that gives a
// time is recorded in the HaltRecord, so that until then no other run
// receives either.
//
// The error is non-nil only when the queue itself failed; the fate of
// each message is in the Summary.
func (w *Worker) Drain(ctx context.Context) (Summary, error) {
	return w.drain(ctx, w.now().Add(w.cfg.Budget))
}

// drain is Drain with no receive started at or after deadline.
func (w *Worker) drain(ctx context.Context, deadline time.Time) (Summary, error) {
	id := cmp.Or(RunID(ctx), NewID()[:16])
	// For the lines of the parts every schedule shares (the mailer).
	ctx = WithSchedule(WithRunID(ctx, id), w.cfg.Schedule)
	w = w.forRun(id)
	start := w.now()
	if c, ok := w.queue.(Checker); ok {
		if err := c.Check(ctx); err != nil {
			w.logger.Error("run not started", "err", err)
			return Summary{}, err
		}
	}
	// Work in flight must finish even after ctx is cancelled; each AWS
	// call is bounded by its client's own timeouts.
	work := WithStop(context.WithoutCancel(ctx), ctx.Done())

	r := &run{w: w, ctx: work, stop: ctx, start: start, headNative: true, keep: true, held: map[string]Message{},
		id: id, unsettled: map[string]bool{}, slots: make(chan struct{}, w.cfg.Concurrency)}
	// An ingest sends nothing: a halt of sending (recorded, or the
	// quota's) must not keep events on the queue, whose retention a
	// digest period can outlast. The slot's Deliver honours both.
	if !r.ingesting() {
		r.recorded()
	}
	stop := r.heartbeat()
	defer stop()
	var held []*msgState // received, not yet processed (digest mode)
	// batches bounds the received batches being worked on (mode each):
	// the loop receives the next while earlier ones are delivered.
	batches := make(chan struct{}, w.cfg.batchesInFlight())
	var inFlight sync.WaitGroup
	received := 0
	for {
		// Taking a slot first makes the checks see what the batches in
		// flight did: with one slot, the previous batch is settled.
		batches <- struct{}{}
		if ctx.Err() != nil || r.halting() != nil || r.failing() != nil || !w.now().Before(deadline) || (received >= w.cfg.MaxMessages && !r.ingesting()) || (!r.ingesting() && !r.admit()) {
			<-batches
			break
		}
		n := w.cfg.BatchSize
		if !r.ingesting() {
			n = min(n, w.cfg.MaxMessages-received)
		}
		rctx, end := r.stage(nil, StageReceive)
		msgs, err := w.queue.Receive(rctx, n, w.cfg.WaitTime)
		end(err)
		if err != nil {
			<-batches
			r.failRun(fmt.Errorf("receive: %w", err))
			break
		}
		if len(msgs) == 0 {
			<-batches
			break
		}
		received += len(msgs)
		r.tally(func(s *Summary) { s.Received += len(msgs) })
		r.hold(msgs...)
		r.received(msgs)
		w.logger.Debug("received", "messages", len(msgs))
		if w.cfg.Mode == ModeEach {
			inFlight.Go(func() {
				defer func() { <-batches }()
				batch := r.decode(msgs)
				r.process(batch)
				r.settle(batch)
			})
		} else if w.pending != nil {
			inFlight.Go(func() {
				defer func() { <-batches }()
				batch := r.decode(msgs)
				r.ingest(batch)
				r.settle(batch)
			})
		} else {
			held = append(held, r.decode(msgs)...)
			<-batches
		}
	}
	inFlight.Wait()
	if len(held) > 0 {
		if ctx.Err() != nil {
			// Shut down before the digest was built: hand everything back.
			r.handBack(held, 0)
		} else {
			r.process(held)
			r.settle(held)
		}
	}
	if r.halt != nil && r.halt != errShutdown {
		r.sum.Halted = true
		r.sum.Halt = Failure{Class: ClassHalt, Code: cmp.Or(CodeOf(r.halt), CodeHalted), Reason: secret.Redact(r.halt.Error())}
	}
	w.logger.Info("run finished", "run", r.id, "summary", r.sum, "took", w.now().Sub(start).Round(time.Millisecond))
	w.observer().RunFinished(r.sum, w.now().Sub(start), r.fatal)
	return r.sum, r.fatal
}

// halted stops the run's sending for err, unless it is stopped
// already, and records the halt when it gives a time.
func (r *run) halted(err error) {
	r.smu.Lock()
	if r.halt != nil {
		r.smu.Unlock()
		return
	}
	r.halt = err
	r.smu.Unlock()
	until, ok := RetryAfter(err)
	if !ok || !r.keep || r.w.halts == nil {
		return
	}
	now := r.w.now().UTC()
	n := HaltNote{
		Code:     cmp.Or(CodeOf(err), CodeHalted),
		Reason:   clip(secret.Redact(err.Error()), maxHaltReason),
		Until:    until.UTC(),
		Schedule: r.w.cfg.Schedule,
		At:       now,
	}
	// The same halt again, soon after the last one ended: its cause is
	// still there (an unverified sender, a lost permission) and needs a
	// person. Each such run costs its messages a receive, and enough of
	// them would move healthy messages to the DLQ, so the halt doubles,
	// up to HaltMax.
	// A throttle is not such a cause: it clears by itself, and a halt
	// grown to hours would outlast it by as much.
	if p := r.prev; p != nil && p.Code == n.Code && n.Code != CodeThrottled && now.Sub(p.Until) < p.Until.Sub(p.At)+time.Hour {
		if d := min(2*p.Until.Sub(p.At), HaltMax); now.Add(d).After(n.Until) {
			n.Until = now.Add(d)
		}
	}
	if err := r.w.halts.Put(r.ctx, n); err != nil {
		r.w.logger.Error("halt record: not written; other runs will receive and meet the same halt", "err", err)
		return
	}
	r.w.logger.Info("halt recorded: no run receives before it ends", "until", n.Until, "code", n.Code)
}

// HaltMax bounds how long a repeated halt is recorded for: well under
// SQS's 12 hours of visibility from a receive.
const HaltMax = 6 * time.Hour

// maxHaltReason bounds the reason a HaltNote keeps, in bytes.
const maxHaltReason = 2000

// clip cuts s to at most n bytes, on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// recorded halts the run before it receives when the HaltRecord holds
// a halt that has not ended. A record that cannot be read halts
// nothing: the run goes on, and meets the cause itself if it is still
// there.
func (r *run) recorded() {
	if r.w.halts == nil {
		return
	}
	n, ok, err := r.w.halts.Get(r.ctx)
	switch {
	case err != nil:
		r.w.logger.Warn("halt record: cannot read it; receiving anyway", "err", err)
		return
	case !ok:
		return
	case !n.Until.After(r.w.now()):
		r.w.logger.Debug("halt record: ended; ignored", "until", n.Until, "code", n.Code)
		r.prev = &n
		return
	}
	where := cmp.Or(n.Where, "the halt record")
	r.halt = HaltUntil(Fail(cmp.Or(n.Code, CodeHalted), ClassHalt, fmt.Errorf(
		"sending halted until %s by an earlier run (schedule %q on %q at %s): %s; once its cause is fixed, delete %s to send sooner",
		n.Until.UTC().Format(time.RFC3339), n.Schedule, n.Host, n.At.UTC().Format(time.RFC3339), n.Reason, where)), n.Until)
	r.w.logger.Warn("not receiving: an earlier run's halt holds; messages stay on the queue", "until", n.Until, "code", n.Code, "record", where)
}

// errShutdown halts a run that was told to stop mid-way.
var errShutdown = Fail(CodeShutdown, ClassHalt, errors.New("shutting down"))

// run is the state of one Drain.
type run struct {
	w    *Worker
	ctx  context.Context // for work in flight: never cancelled
	stop context.Context // cancelled on shutdown: start no new email
	sum  Summary
	halt error // set when sending must stop for this run
	// fatal is a failure of the queue itself, which ends the run and
	// is Drain's error.
	fatal error
	start time.Time // when the run started, before any receive
	// headNative makes decode head the reports of native events too;
	// Preview, which calls no AWS API it need not, leaves it off.
	headNative bool
	// id names the run in its ledger claims.
	id string
	// prev is the halt record an earlier run left, ended: a new halt
	// with its code lasts longer.
	prev *HaltNote
	// unsettled holds the email ids counted in MaybeSent, once each.
	unsettled map[string]bool
	// keep makes a halt with a retry time go to the HaltRecord; Preview
	// leaves it off.
	keep bool

	mu   sync.Mutex
	held map[string]Message // by receipt handle: received, not yet settled
	obs  observation

	// smu guards sum, halt, fatal and unsettled once deliveries run
	// concurrently (concurrent.go).
	smu sync.Mutex
	// slots holds one token per delivery in flight, Concurrency at most.
	slots chan struct{}
	// slot is the digest slot Deliver sends; nil in Drain.
	slot *Slot
}

func (r *run) hold(msgs ...Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		r.held[m.ReceiptHandle] = m
	}
}

func (r *run) unhold(msgs ...Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		delete(r.held, m.ReceiptHandle)
	}
}

// extendHeld extends the visibility of every held message. It holds
// the lock across the call, so a message settled or released meanwhile
// is changed after the extension, never hidden again by it.
func (r *run) extendHeld(vt time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.held) == 0 {
		return
	}
	msgs := make([]Message, 0, len(r.held))
	for _, m := range r.held {
		msgs = append(msgs, m)
	}
	if err := r.w.queue.Extend(r.ctx, msgs, vt); err != nil {
		r.w.logger.Error("heartbeat: extend visibility", "messages", len(msgs), "err", err)
		return
	}
	r.w.logger.Debug("heartbeat: extended visibility", "messages", len(msgs), "by", vt)
}

// heartbeat extends the visibility of held messages every half
// visibility timeout until the returned stop is called.
func (r *run) heartbeat() (stop func()) {
	vt := r.w.cfg.VisibilityTimeout
	if vt <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(vt / 2)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			r.extendHeld(vt)
		}
	}()
	return func() { close(done); <-finished }
}

// admit asks the Mailer, when it is a SendGate, whether the run may
// send before it receives more, and halts the run if not.
func (r *run) admit() bool {
	g, ok := r.w.mailer.(SendGate)
	if !ok {
		return true
	}
	err := g.Admit(r.ctx)
	switch {
	case err == nil:
		return true
	case IsHalt(err):
		r.halted(err)
		r.w.logger.Warn("not receiving: sending is halted; messages stay on the queue", "err", err)
		return false
	}
	r.w.logger.Warn("send gate: receiving anyway", "err", err)
	return true
}

// msgState is one message and what has become of its events.
type msgState struct {
	mu     sync.Mutex // guards failed and hide while deliveries run
	msg    Message
	events []event.Event
	drop   bool     // nothing to do: delete
	failed *Failure // why the message is not done; nil while it may be
	// follows are the messages that carry this one's events for it: an
	// earlier copy of the same message in the same batch.
	follows []*msgState
	// hide, when the message is left for retry, hides it for that long
	// instead of the queue's visibility timeout: a delivery waiting for
	// SES's events to settle it is not worth a receive before then.
	hide time.Duration
	// pending is the store's entry the event came from (Deliver); msg
	// is then not a queue message.
	pending *PendingEvent
	// reached is set once an email of its events reached a recipient,
	// sent now or found sent before, though the message may fail
	// still (a refused extra recipient).
	reached bool
}

// setReached records that an email of m's events reached a recipient.
func (m *msgState) setReached() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reached = true
}

// hasReached reports whether an email of m's events reached a
// recipient.
func (m *msgState) hasReached() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reached
}

// wait records that the message is left for retry until a delivery of
// it may be settled or taken over, d from now: err says why.
func (m *msgState) wait(err error, what string, code Code, d time.Duration) {
	m.fail(Fail(code, ClassTransient, err), what, code)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hide = max(m.hide, d)
}

// fail records err against the message, with what was being done and
// the code to use if err carries none. A failure that dead-letters
// replaces one that does not; otherwise the first one stays.
func (m *msgState) fail(err error, what string, code Code) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := Failure{Class: ClassOf(err), Code: cmp.Or(CodeOf(err), code), Reason: what + ": " + err.Error()}
	switch {
	case m.failed == nil || (f.deadLetters() && !m.failed.deadLetters()):
		m.failed = &f
	case f.Class == ClassAmbiguous && m.failed.Class == ClassPermanent:
		// A maybe-sent email needs the operator first (resend, not redrive).
		m.failed = &f
	case f.Class == ClassAmbiguous && m.failed.Class == ClassAmbiguous && !strings.Contains(m.failed.Reason, f.Reason):
		// Each ambiguous delivery of the message names its own
		// recipient and record: an operator settles them one by one.
		m.failed.Reason += "; " + f.Reason
	}
}

// ok reports whether the message may still be delivered.
func (m *msgState) ok() bool { return !m.drop && m.failed == nil }

// decode turns messages into events. Every report is checked before it
// can be linked: it must be in the bucket (and under the key prefix)
// this worker serves, and, in a run, HeadObject must find it; its size
// and content type come from the object when the event gives none. S3
// notifications are resolved into events from their object's metadata.
// Messages that cannot become events are marked here.
func (r *run) decode(msgs []Message) []*msgState {
	heads := map[string]headResult{} // one HeadObject per object per batch
	out := make([]*msgState, 0, len(msgs))
	decoded := make([]decodeResult, len(msgs))
	for i, m := range msgs {
		decoded[i].d, decoded[i].err = event.Decode([]byte(m.Body))
	}
	objs := r.linked(msgs, decoded)
	linkedBy := make(map[string][]string, len(objs))
	for _, o := range objs {
		linkedBy[o.bucket+"/"+o.key] = o.by
	}
	r.prefetch(heads, objs)
	for i, m := range msgs {
		st := &msgState{msg: m}
		out = append(out, st)
		d, err := decoded[i].d, decoded[i].err
		switch {
		case errors.Is(err, event.ErrTestEvent):
			st.drop = true
			continue
		case err != nil:
			st.fail(Permanent(err), "decode", decodeCode(err))
			continue
		}
		st.events = d.Events
		if len(d.Unknown) > 0 {
			r.w.logger.Warn("event has fields its schema does not know: ignored (misspelt?)", "message_id", m.ID, "fields", d.Unknown, "events", messageEventIDs(st))
		}
	native:
		for i := range st.events {
			for j := range st.events[i].Reports {
				rep := &st.events[i].Reports[j]
				obj := fmt.Sprintf("s3://%s/%s", rep.Bucket, rep.Key)
				if err := r.w.served(rep.Bucket, rep.Key); err != nil {
					st.fail(err, "report "+obj, CodeBucketNotServed)
					break native
				}
				if !r.headNative {
					continue
				}
				info, err := r.head(st, heads, linkedBy, rep.Bucket, rep.Key)
				if err != nil {
					st.fail(err, "head "+obj, headCode(err))
					break native
				}
				if rep.Size == 0 {
					rep.Size = info.Size
				}
				if rep.ContentType == "" {
					rep.ContentType = contentType(info.ContentType)
				}
			}
		}
		for _, ref := range d.Objects {
			if st.failed != nil {
				break
			}
			obj := fmt.Sprintf("s3://%s/%s", ref.Bucket, ref.Key)
			if err := r.w.served(ref.Bucket, ref.Key); err != nil {
				st.fail(err, "report "+obj, CodeBucketNotServed)
				break
			}
			info, err := r.head(st, heads, linkedBy, ref.Bucket, ref.Key)
			if err != nil {
				st.fail(err, "head "+obj, headCode(err))
				break
			}
			ev, err := event.FromObject(ref, info.Size, info.ContentType, info.Metadata)
			if err != nil {
				st.fail(Permanent(err), obj, CodeInvalidMetadata)
				break
			}
			st.events = append(st.events, ev)
		}
	}
	return out
}

// served refuses a report in a bucket, or outside the key prefix, that
// this worker does not serve.
func (w *Worker) served(bucket, key string) error {
	switch {
	case bucket != w.cfg.Bucket:
		return PermanentCode(CodeBucketNotServed, fmt.Errorf("bucket %q is not the bucket this worker serves, %q (reports.bucket); a link could open a different object", bucket, w.cfg.Bucket))
	case !strings.HasPrefix(key, w.cfg.KeyPrefix):
		return PermanentCode(CodeBucketNotServed, fmt.Errorf("key %q is outside the key prefix this worker serves, %q (reports.prefix)", key, w.cfg.KeyPrefix))
	}
	return nil
}

// headResult is one HeadObject's answer.
type headResult struct {
	info ObjectInfo
	err  error
}

// head asks the ObjectStore about an object once per batch, in a head
// stage of st shared with the messages after it that link the object
// too (linkedBy). A halt (the reports cannot be read) halts the run,
// and no object is asked about after it.
func (r *run) head(st *msgState, cache map[string]headResult, linkedBy map[string][]string, bucket, key string) (ObjectInfo, error) {
	if halt := r.halting(); halt != nil {
		return ObjectInfo{}, Fail(CodeHalted, ClassHalt, fmt.Errorf("not checked: the run halted: %w", halt))
	}
	k := bucket + "/" + key // bucket names hold no "/"
	if h, ok := cache[k]; ok {
		return h.info, h.err
	}
	ctx, end := r.sharedStage(st.obsKey(), after(linkedBy[k], st.obsKey()), StageHead)
	info, err := r.w.objects.Head(ctx, bucket, key)
	end(err)
	cache[k] = headResult{info, err}
	if ClassOf(err) == ClassHalt {
		r.halted(err)
		r.w.logger.Warn("stopping this run: a report cannot be read; held messages go back to the queue", "object", "s3://"+k, "err", err)
	}
	return info, err
}

// headCode is the code of a failed HeadObject that carries none.
func headCode(err error) Code {
	switch ClassOf(err) {
	case ClassPermanent:
		return CodeObjectMissing
	case ClassHalt:
		return CodeHalted
	}
	return CodeHeadFailed
}

// contentType returns an object's content type if it is one, for the
// email to show; S3 stores whatever the uploader sent.
func contentType(s string) string {
	if _, _, err := mime.ParseMediaType(s); err != nil || strings.ContainsFunc(s, unicode.IsControl) {
		return ""
	}
	return s
}

// delivery is one email to one recipient: the events it covers and the
// messages they came from.
type delivery struct {
	user      event.User
	recipient string
	events    []event.Event
	from      []*msgState
	// signs holds the links signed for the batch, which every
	// recipient of an event shares.
	signs *signCache
	// part of parts, when a digest is split (Config.MaxLinksPerEmail)
	// and the slot sends the recipient more than one email; both 0
	// otherwise.
	part, parts int
	// with names, for each event of a digest some of whose reports
	// show under newer events of the email, those events: it is
	// recorded sent only with them (see together).
	with map[string][]string
	// sent holds the events claim found sent to the recipient before.
	sent map[string]bool
	// emails names, for each event that reached the recipient, sent
	// before (as claim found it) or by this delivery, the email that
	// took it there ("" when the ledger does not say).
	emails map[string]string
	// covered, for a part of a digest, is the recipient's events that
	// add no links (see split): one of them left for retry holds back
	// the events of the part that show its reports (see together).
	covered *delivery
	// ready and links are what prepare claimed and signed, for finish
	// to send; now is when prepare began.
	ready []claim
	links [][]Link
	now   time.Time
	// elsewhere is set when claim found an event claimed by another
	// run that has not started sending it.
	elsewhere bool
}

// reached records that event id reached the recipient in emailID.
func (d *delivery) reached(id, emailID string) {
	if d.emails == nil {
		d.emails = map[string]string{}
	}
	d.emails[id] = emailID
}

// process groups the events of healthy messages into emails and sends
// them, Concurrency at a time.
func (r *run) process(batch []*msgState) {
	r.deliverAll(r.plan(batch))
}

// plan groups the events of healthy messages into emails, one per
// recipient, applying the recipient policy.
func (r *run) plan(batch []*msgState) []*delivery {
	var out []*delivery
	signs := newSignCache(r.w.now())
	// Group events: per event (each) or per user (digest). Order is kept
	// as received so logs and emails are stable.
	type group struct {
		user   event.User
		events []event.Event
		from   []*msgState
	}
	var groups []*group
	byUser := map[string]*group{}
	first := map[string]*msgState{} // event id -> the message that carries it
	for _, st := range batch {
		if !st.ok() {
			continue
		}
		for _, ev := range st.events {
			// SQS may hand over two copies of one message at once. The
			// first copy carries the event; the second shares its fate
			// in settle, so it is acked only if the email went out.
			if f, ok := first[ev.ID]; ok {
				if f != st {
					st.follows = append(st.follows, f)
				}
				continue
			}
			first[ev.ID] = st
			if r.w.cfg.Mode == ModeDigest {
				if g, ok := byUser[ev.User.ID]; ok {
					g.user = ev.User // the latest name and time zone win
					g.events = append(g.events, ev)
					g.from = append(g.from, st)
					continue
				}
			}
			g := &group{user: ev.User, events: []event.Event{ev}, from: []*msgState{st}}
			byUser[ev.User.ID] = g
			groups = append(groups, g)
		}
	}

	for _, g := range groups {
		// Each event's own recipients see only that event's reports.
		var order []string
		perRecipient := map[string]*delivery{}
		for i, ev := range g.events {
			allowed, refused := r.w.cfg.Recipients.Apply(ev.User.Email, ev.Recipients)
			for _, ref := range refused {
				r.tally(func(s *Summary) { s.Refused++ })
				r.w.observer().Refused(RefusalCode(ref))
				r.w.logger.Warn("recipient refused", "event", ev.ID, "message_id", g.from[i].msg.ID, "user", ev.User.ID, "recipient", ref.Address, "reason", ref.Reason)
				if ref.domainOnly() && r.w.cfg.wants(ref.Address) {
					// A config change can allow it: the message goes to the
					// dead-letter queue after its other emails, for a redrive.
					g.from[i].fail(PermanentCode(CodeRecipientRefused, fmt.Errorf("%s: %s", ref.Address, ref.Reason)), "recipient refused", CodeRecipientRefused)
				}
			}
			for _, rcpt := range allowed {
				if !r.w.cfg.wants(rcpt) {
					continue
				}
				k := strings.ToLower(rcpt)
				d, ok := perRecipient[k]
				if !ok {
					d = &delivery{user: g.user, recipient: rcpt, signs: signs}
					perRecipient[k] = d
					order = append(order, k)
				}
				d.events = append(d.events, ev)
				d.from = append(d.from, g.from[i])
			}
		}
		for _, k := range order {
			out = append(out, perRecipient[k])
		}
	}
	return out
}

// claim is one event of a delivery that this run has claimed in the
// ledger, and the message it came from.
type claim struct {
	ev   event.Event
	c    *Claim
	from *msgState
}

// deliver claims, signs, renders and sends one email, and records the
// result on the messages involved.
func (r *run) deliver(d *delivery) {
	if r.prepare(d) {
		r.finish(d)
	}
}

// logger is the run's logger for d.
func (r *run) logger(d *delivery) *slog.Logger {
	return r.w.logger.With("user", d.user.ID, "recipient", d.recipient, "message_ids", messageIDs(d.from))
}

// prepare claims the events of d and signs their links, leaving in
// d.ready and d.links what finish is to send. It reports whether
// there is anything to send.
func (r *run) prepare(d *delivery) bool {
	log := r.logger(d)
	halt, reported := r.stopping()
	if reported {
		log.Info("shutting down: no new emails; held messages go back to the queue")
	}
	if halt != nil {
		for _, st := range d.from {
			st.fail(halt, "not sent", CodeHalted)
		}
		return false
	}
	d.now = r.w.now()

	// Claim each event for this recipient. Only the claimed ones go in
	// the email; the rest were sent before or are someone else's.
	claims := r.together(d, r.claim(d, log), log)
	if d.elsewhere && r.slot != nil && len(claims) > 0 {
		// A digest's email goes whole. Another run holds the claim of
		// one of its events (a replica killed while it claimed them):
		// the rest wait with it, lest they go now under the email's
		// label ("part 1 of 2") and it later under the same label.
		r.release(log, claims, errors.New("another run holds the claim of an event of this email, which goes whole once that claim is sent or lapses"), "digest", CodeClaimedElsewhere)
		log.Info("left for the next run with the event another run claimed", "events", claimEventIDs(claims))
		return false
	}
	if len(claims) == 0 {
		return false
	}

	// An event whose links cannot be signed fails alone: in a digest,
	// the other events still go out.
	evs := make([]event.Event, len(claims))
	for i, c := range claims {
		evs[i] = c.ev
	}
	ctx, end := r.stage(claims[0].from, StageSign)
	links, errs := r.signEvents(ctx, d.signs, d.recipient, evs)
	end(errors.Join(errs...))
	var ok []claim
	for i, c := range claims {
		if errs[i] != nil {
			if IsHalt(errs[i]) {
				// The signer's service refuses every link for a while
				// (KMS throttling or a refused key): stop the run as a
				// HeadObject halt does, so messages are hidden, not
				// retried one by one into the dead-letter queue.
				r.halted(errs[i])
			}
			r.release(log, []claim{c}, errs[i], "link", CodeLinkFailed)
			log.Error("sign: the email goes without this event", "event", c.ev.ID, "code", cmp.Or(CodeOf(errs[i]), CodeLinkFailed), "err", errs[i])
			continue
		}
		ok = append(ok, c)
	}
	ok = r.together(d, ok, log)
	d.ready, d.links = ok, nil
	for _, c := range ok {
		i := slices.IndexFunc(claims, func(o claim) bool { return o.ev.ID == c.ev.ID })
		d.links = append(d.links, links[i])
	}
	return len(ok) > 0
}

// finish renders and sends the email prepare made ready.
func (r *run) finish(d *delivery) {
	log, ok := r.logger(d), d.ready
	okEvents := make([]event.Event, len(ok))
	for i, c := range ok {
		okEvents[i] = c.ev
	}
	_, end := r.stage(ok[0].from, StageRender)
	email, err := r.render(d, okEvents, d.links, d.now)
	end(err)
	if err != nil {
		r.release(log, ok, err, "compose", CodeComposeFailed)
		log.Error("compose", "events", eventIDList(okEvents), "err", err)
		return
	}
	if emailID, sent := r.send(log, d.recipient, email, ok); sent {
		for _, c := range ok {
			d.reached(c.ev.ID, emailID)
		}
	}
}

// claim claims each event of d for its recipient in the ledger, and
// returns the claims won. Each event it cannot claim is recorded on
// its message: skipped as sent, left for later, or dead-lettered as
// maybe sent.
func (r *run) claim(d *delivery, log *slog.Logger) []claim {
	cfg := r.w.cfg
	var claims []claim
	for i, ev := range d.events {
		req := ClaimRequest{
			Key:      DeliveryKey(ev.ID, d.recipient),
			Delivery: Delivery{EventID: ev.ID, Recipient: strings.ToLower(d.recipient), Schedule: cfg.Schedule},
			RunID:    r.id, Timeout: cfg.ClaimTimeout,
		}
		if cfg.UnsettledPolicy == UnsettledResend {
			req.ResendAfter = cfg.SettleGrace
		}
		from := d.from[i]
		ctx, end := r.stage(from, StageClaim)
		c, err := r.w.ledger.Claim(ctx, req)
		end(err)
		switch {
		case err != nil:
			code := CodeLedgerFailed
			if IsPermanent(err) {
				code = CodeLedgerUnreadable
			}
			from.fail(err, "ledger claim", code)
			log.Error("ledger claim", "event", ev.ID, "err", err)
		case c.State == Claimed:
			if c.TookOver != "" {
				log.Warn("took over a ledger record "+c.TookOver+" "+c.Age.Round(time.Second).String()+" ago",
					"event", ev.ID, "record", c.Record, "was", c.TookOver, "age", c.Age.Round(time.Second), "attempts", c.Attempts)
			}
			claims = append(claims, claim{ev: ev, c: &c, from: from})
		case c.State == AlreadySent:
			if d.sent == nil {
				d.sent = map[string]bool{}
			}
			d.sent[ev.ID] = true
			d.reached(ev.ID, c.EmailID)
			from.setReached()
			r.tally(func(s *Summary) { s.Duplicates++ })
			r.w.observer().Duplicate()
			log.Info("already sent; skipping", "event", ev.ID, "sent_at", c.Since)
			r.observe(DeliveryResult{EventID: ev.ID, Recipient: d.recipient, Outcome: OutcomeDuplicate})
		case c.State == InProgress:
			// Hidden until the claim may be taken over: each receive
			// before then counts towards maxReceiveCount for nothing.
			from.wait(fmt.Errorf("another run claimed it %s ago and has not started sending; after %s it is taken over",
				c.Age.Round(time.Second), cfg.ClaimTimeout), "ledger", CodeClaimedElsewhere, cfg.ClaimTimeout-c.Age)
			log.Info("delivery claimed by another run; will retry", "event", ev.ID, "record", c.Record, "age", c.Age.Round(time.Second))
			d.elsewhere = true
		case c.Age < cfg.SettleGrace:
			err := fmt.Errorf("another run started sending it %s ago (email %s) with no result recorded yet; waiting up to %s for it to be recorded or settled",
				c.Age.Round(time.Second), c.EmailID, cfg.SettleGrace)
			if cfg.AwaitSettlement {
				from.wait(err, "ledger", CodeMaybeSent, cfg.SettleGrace-c.Age)
			} else {
				from.wait(err, "ledger", CodeClaimedElsewhere, cfg.SettleGrace-c.Age)
			}
			log.Info("delivery being sent by another run, or unsettled; will retry", "event", ev.ID, "record", c.Record, "email_id", c.EmailID, "age", c.Age.Round(time.Second))
		default:
			email := "email " + c.EmailID
			if c.EmailID == "" {
				email = "an email with no id (a record from an older version)"
			}
			cause := fmt.Sprintf("an earlier run started sending it %s ago as %s and never recorded the result", c.Age.Round(time.Second), email)
			from.fail(Ambiguous(errors.New(maybeSentReason(d.recipient, cause, []*Claim{&c}))), "ledger", CodeMaybeSent)
			r.maybeSent(c.EmailID)
			log.Error("delivery outcome unknown", "event", ev.ID, "record", c.Record, "email_id", c.EmailID, "age", c.Age.Round(time.Second))
		}
	}
	return claims
}

// maybeSentReason is the reason of a dead letter whose email may have
// been accepted: the recipient, the cause, and for each ledger record
// the command that settles it.
func maybeSentReason(rcpt, cause string, cs []*Claim) string {
	settle := fmt.Sprintf("`reportmailer ledger settle -config FILE -record %s -sent`", cs[0].Key)
	if len(cs) > 1 {
		keys := make([]string, len(cs))
		for i, c := range cs {
			keys[i] = c.Key
		}
		settle = fmt.Sprintf("`reportmailer ledger settle -config FILE -record KEY -sent` for each KEY of %s", strings.Join(keys, " "))
	}
	return fmt.Sprintf("the email to %s may have been accepted (%s); ledger record %s stays \"sending\", so it is not sent twice. "+
		"To settle: if it arrived, run %s; if not, run it with -unsent instead and redrive this message",
		rcpt, cause, records(cs), settle)
}

// byMessage groups claims by the message they came from, in order: a
// message's dead letter names only its own records.
func byMessage(cs []claim) (msgs []*msgState, claims map[*msgState][]*Claim) {
	claims = map[*msgState][]*Claim{}
	for _, c := range cs {
		if _, ok := claims[c.from]; !ok {
			msgs = append(msgs, c.from)
		}
		claims[c.from] = append(claims[c.from], c.c)
	}
	return msgs, claims
}

// records names the ledger records of cs.
func records(cs []*Claim) string {
	recs := make([]string, len(cs))
	for i, c := range cs {
		recs[i] = c.Record
	}
	return strings.Join(recs, ", ")
}

// maybeSent counts an email that may have been accepted, once per
// email id (a record written before email ids has none).
func (r *run) maybeSent(emailID string) {
	r.smu.Lock()
	defer r.smu.Unlock()
	if emailID != "" {
		if r.unsettled[emailID] {
			return
		}
		r.unsettled[emailID] = true
	}
	r.sum.MaybeSent++
}

// release gives up claims whose email was certainly not sent, and
// records err on their messages.
func (r *run) release(log *slog.Logger, cs []claim, err error, what string, code Code) {
	for _, c := range cs {
		if rerr := r.w.ledger.Release(r.msgCtx(c.from), c.c); rerr != nil {
			log.Error("ledger release: the record stays as it was; nothing was sent under it", "event", c.ev.ID, "record", c.c.Record, "err", rerr)
		}
		c.from.fail(err, what, code)
	}
}

// send sends the email for the claims, recording in the ledger that it
// is being sent immediately before it leaves (BeforeSend), and then
// its result. It returns the email's id, and whether the mail service
// accepted it.
func (r *run) send(log *slog.Logger, rcpt string, email Email, cs []claim) (emailID string, sent bool) {
	handles := make([]*Claim, len(cs))
	keys := make([]string, len(cs))
	resend := false
	for i, c := range cs {
		handles[i], keys[i] = c.c, c.c.Key
		resend = resend || c.c.TookOver == "sending"
	}
	emailID = NewEmailID(keys)
	email.Tags[EmailTag] = emailID
	log = log.With("email_id", emailID)
	tr := &sendTrace{before: func(ctx context.Context) error {
		return r.w.ledger.Sending(ctx, emailID, handles)
	}}
	ctx, end := r.stage(cs[0].from, StageSend)
	id, err := r.w.mailer.Send(withSendTrace(ctx, tr), email)
	end(err)
	called, beforeErr, retries := tr.state()
	if beforeErr != nil {
		// Nothing was sent: the ledger could not say it would be.
		r.release(log, cs, beforeErr, "ledger sending", cmp.Or(CodeOf(beforeErr), CodeLedgerFailed))
		log.Error("ledger sending: not sent", "events", claimEventIDs(cs), "err", beforeErr)
		return emailID, false
	}
	if !called && (err == nil || IsAmbiguous(err)) {
		// A Mailer that does not call BeforeSend: record it now, late,
		// so an unknown outcome is not taken for a claim that sent
		// nothing.
		if serr := r.w.ledger.Sending(r.msgCtx(cs[0].from), emailID, handles); serr != nil {
			log.Error("ledger sending, after the send", "err", serr)
		}
		called = true
	}
	if retries > 0 {
		r.tally(func(s *Summary) { s.MaybeDuplicated += retries })
		log.Warn("SES answered 5xx and the send was retried: the email may have been sent twice", "retries", retries)
	}
	if resend && called {
		r.tally(func(s *Summary) { s.MaybeDuplicated++ })
		log.Warn("resent an unsettled delivery: the earlier email may have been accepted too")
	}
	if err != nil {
		if IsHalt(err) && r.halting() == nil {
			r.halted(err)
			log.Warn("stopping this run's sending; held messages go back to the queue", "err", err)
		}
		switch {
		case errors.Is(err, ErrStopping):
			// The pacer gave up its wait: nothing was sent, and the
			// message goes back to the queue as on any shutdown.
			halt, _ := r.stopping()
			r.release(log, cs, cmp.Or(halt, errShutdown), "not sent", CodeShutdown)
			log.Info("shutting down: not sent, the message goes back to the queue")
			return emailID, false
		case IsAmbiguous(err) && r.w.cfg.AwaitSettlement:
			// Keep the records "sending", and give SES's events the
			// grace to say whether it was accepted.
			r.maybeSent(emailID)
			msgs, claims := byMessage(cs)
			for _, m := range msgs {
				wait := fmt.Errorf("the email to %s may have been accepted (send: %s); SES's sending events have %s to settle ledger record %s before it is dead-lettered",
					rcpt, err, r.w.cfg.SettleGrace, records(claims[m]))
				m.wait(wait, "send", CodeMaybeSent, r.w.cfg.SettleGrace)
			}
		case IsAmbiguous(err):
			// Keep the records "sending": the email may be out, and a
			// retry must not send it again.
			r.maybeSent(emailID)
			msgs, claims := byMessage(cs)
			for _, m := range msgs {
				m.fail(Ambiguous(errors.New(maybeSentReason(rcpt, "send: "+err.Error(), claims[m]))), "send", CodeMaybeSent)
			}
		default:
			r.release(log, cs, err, "send", sendCode(err))
		}
		log.Error("send", "events", claimEventIDs(cs), "err", err, "class", ClassOf(err), "code", cmp.Or(CodeOf(err), sendCode(err)))
		return emailID, false
	}
	r.tally(func(s *Summary) { s.Sent++ })
	r.w.observer().Sent()
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ev.ID
		if err := r.w.ledger.Complete(r.msgCtx(c.from), c.c, id); err != nil {
			// The email is out; a record left "sending" makes a
			// redelivery hold off rather than send twice.
			r.tally(func(s *Summary) { s.Unrecorded++ })
			log.Error("ledger complete: the email was sent, but its record still says sending", "event", c.ev.ID, "record", c.c.Record, "ses_message_id", id, "err", err)
		}
		c.from.setReached()
		r.observe(DeliveryResult{EventID: c.ev.ID, Recipient: rcpt, MessageID: id, Outcome: OutcomeDelivered})
	}
	log.Info("sent", "ses_message_id", id, "events", ids)
	return emailID, true
}

// sendCode is the code of a failed send that carries none.
func sendCode(err error) Code {
	switch ClassOf(err) {
	case ClassAmbiguous:
		return CodeMaybeSent
	case ClassPermanent:
		return CodeSESRejected
	case ClassHalt:
		return CodeHalted
	}
	return CodeSendFailed
}

// render renders the email for one recipient, given each event's
// links, with the template set of the report type all its reports
// share (the default set when they differ or have none).
func (r *run) render(d *delivery, evs []event.Event, eventLinks [][]Link, now time.Time) (Email, error) {
	u, rcpt := d.user, d.recipient
	loc := time.UTC
	if u.TimeZone != "" {
		l, err := loadLocation(u.TimeZone)
		if err != nil {
			return Email{}, Permanent(fmt.Errorf("user time zone %q: %w", u.TimeZone, err))
		}
		loc = l
	}
	var reports []event.Report
	var links []Link
	for i, ev := range evs {
		reports = append(reports, ev.Reports...)
		links = append(links, eventLinks[i]...)
	}
	data := templates.Data{
		User:       templates.User{Name: u.Name, Email: u.Email},
		Recipient:  rcpt,
		Shared:     !strings.EqualFold(rcpt, u.Email),
		Digest:     r.w.cfg.Mode == ModeDigest,
		Schedule:   r.w.cfg.Schedule,
		ReportType: commonType(reports),
		Locale:     u.Locale,
		Generated:  now.In(loc),
		Part:       d.part,
		Parts:      d.parts,
	}
	if r.slot != nil && r.slot.Late {
		data.Late, data.Due = true, r.slot.Planned.In(loc)
	}
	var reportTypes []string
	for i, rep := range reports {
		data.Links = append(data.Links, templates.Link{
			Title:       rep.Title,
			FileName:    path.Base(rep.Key),
			URL:         links[i].URL,
			Size:        templates.HumanSize(rep.Size),
			ContentType: rep.ContentType,
			Type:        rep.Type,
		}.Expiring(links[i].Expires, now, loc, u.Locale))
		if rep.Type != "" {
			reportTypes = append(reportTypes, rep.Type)
		}
	}
	msg, err := r.w.templates.For(data.ReportType).Render(data)
	if err != nil {
		return Email{}, Permanent(err)
	}
	tags := map[string]string{"schedule": r.w.cfg.Schedule}
	if len(reportTypes) > 0 {
		sort.Strings(reportTypes)
		tags["report_type"] = reportTypes[0]
	}
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	return Email{
		User:     u,
		Schedule: r.w.cfg.Schedule,
		Digest:   r.w.cfg.Mode == ModeDigest,
		EventIDs: ids,
		From:     r.w.cfg.From,
		ReplyTo:  r.w.cfg.ReplyTo,
		To:       []string{rcpt},
		Subject:  msg.Subject,
		HTML:     msg.HTML,
		Text:     msg.Text,
		Tags:     tags,
	}, nil
}

// commonType is the report type every report shares, or "" when they
// differ or none has one.
func commonType(reports []event.Report) string {
	if len(reports) == 0 {
		return ""
	}
	for _, rep := range reports[1:] {
		if rep.Type != reports[0].Type {
			return ""
		}
	}
	return reports[0].Type
}

// signEvents makes the links to each event's reports, for one email:
// links[i] are event i's, in order, unless errs[i] says why they could
// not be made. It signs all of them at once first; only when that
// fails does it sign event by event, to find the events at fault.
//
// With traced links, each report carries the token of its event's
// delivery to recipient, which the sign cache keys on: every recipient
// gets links of their own.
func (r *run) signEvents(ctx context.Context, signs *signCache, recipient string, evs []event.Event) (links [][]Link, errs []error) {
	links = make([][]Link, len(evs))
	errs = make([]error, len(evs))
	if r.w.linkToken != nil {
		evs = slices.Clone(evs)
		for i, ev := range evs {
			tok := r.w.linkToken(ev.ID, recipient)
			ev.Reports = slices.Clone(ev.Reports)
			for j := range ev.Reports {
				ev.Reports[j].Token = tok
			}
			evs[i] = ev
		}
	}
	var all []event.Report
	for _, ev := range evs {
		all = append(all, ev.Reports...)
	}
	flat, err := signs.links(ctx, all, r.sign)
	switch {
	case err == nil:
		for i, ev := range evs {
			links[i], flat = flat[:len(ev.Reports):len(ev.Reports)], flat[len(ev.Reports):]
		}
	case len(evs) == 1:
		errs[0] = err
	default:
		for i, ev := range evs {
			links[i], errs[i] = signs.links(ctx, ev.Reports, r.sign)
		}
	}
	return links, errs
}

// sign makes the links for reports, all at once when the signer can.
func (r *run) sign(ctx context.Context, reports []event.Report, now time.Time) ([]Link, error) {
	if bs, ok := r.w.signer.(BatchSigner); ok {
		links, err := bs.SignAll(ctx, reports, now)
		if err != nil {
			return nil, fmt.Errorf("sign: %w", err)
		}
		if len(links) != len(reports) {
			return nil, fmt.Errorf("sign: got %d links for %d reports", len(links), len(reports))
		}
		return links, nil
	}
	links := make([]Link, len(reports))
	for i, rep := range reports {
		l, err := r.w.signer.Sign(ctx, rep, now)
		if err != nil {
			return nil, fmt.Errorf("sign s3://%s/%s: %w", rep.Bucket, rep.Key, err)
		}
		links[i] = l
	}
	return links, nil
}

// settle acknowledges, dead-letters or leaves each message according to
// what became of its events.
func (r *run) settle(batch []*msgState) {
	for _, st := range batch {
		for _, f := range st.follows {
			if f.failed != nil && st.failed == nil {
				st.fail(errors.New("another copy of this message in the batch was not delivered"), "copy", CodeCopyFailed)
			}
		}
	}
	var ack, back, wait []*msgState
	for _, st := range batch {
		r.unhold(st.msg)
		log := r.w.logger.With("message_id", st.msg.ID, "events", messageEventIDs(st))
		switch f := st.failed; {
		case f != nil && f.deadLetters():
			f.Schedule, f.EventIDs, f.User = r.w.cfg.Schedule, eventIDs(st.events), userOf(st.events)
			ctx, end := r.stage(st, StageSettle)
			err := r.w.queue.DeadLetter(ctx, st.msg, *f)
			end(err)
			if err != nil {
				// Left alone, the queue's RedrivePolicy will still move it.
				r.tally(func(s *Summary) { s.Retrying++ })
				r.settled(st, SettleRetrying)
				log.Error("dead-letter", "code", f.Code, "reason", f.Reason, "err", err)
				if errors.Is(err, ErrNoQueue) {
					r.failRun(err)
				}
				continue
			}
			r.tally(func(s *Summary) { s.DeadLettered++ })
			r.settled(st, SettleDeadLettered)
			r.observeMessage(st, *f, f.Outcome())
			log.Warn("dead-lettered", "code", f.Code, "reason", f.Reason, "receive_count", st.msg.ReceiveCount)
		case f != nil && r.halting() != nil && st.hide == 0:
			back = append(back, st)
			r.observeMessage(st, *f, OutcomeHalted)
		case f != nil:
			r.tally(func(s *Summary) { s.Retrying++ })
			r.settled(st, SettleRetrying)
			r.observeMessage(st, *f, OutcomeRetry)
			log.Warn("left for retry", "code", f.Code, "reason", f.Reason, "receive_count", st.msg.ReceiveCount)
			if st.hide > 0 {
				wait = append(wait, st)
			}
		default:
			if st.drop {
				log.Info("dropping S3 test event")
			}
			ack = append(ack, st)
		}
	}
	if len(back) > 0 {
		r.handBack(back, r.hideFor())
	}
	r.hide(wait)
	if len(ack) == 0 {
		return
	}
	msgs := make([]Message, len(ack))
	for i, st := range ack {
		msgs[i] = st.msg
	}
	failed := map[string]bool{}
	// One delete for the batch, but a settle stage per message, so that
	// each message's trace ends with its settling and the stage metrics
	// count messages, as for the other stages. The delete runs in the
	// first one's, as a digest's send runs in its first message's.
	ends := make([]func(error), len(ack))
	var ctx context.Context
	for i, st := range ack {
		c, end := r.stage(st, StageSettle)
		if i == 0 {
			ctx = c
		}
		ends[i] = end
	}
	err := r.w.queue.Delete(ctx, msgs)
	if err != nil {
		// The work is done and recorded in the ledger: a redelivery is
		// skipped as a duplicate, so nothing is sent twice.
		var be *BatchError
		if errors.As(err, &be) {
			for _, h := range be.Failed {
				failed[h] = true
			}
		} else {
			for _, m := range msgs {
				failed[m.ReceiptHandle] = true
			}
		}
		r.w.logger.Error("delete", "messages", len(failed), "of", len(msgs), "err", err)
	}
	for i, st := range ack {
		if failed[st.msg.ReceiptHandle] {
			ends[i](err)
		} else {
			ends[i](nil)
		}
	}
	r.tally(func(s *Summary) {
		for _, st := range ack {
			switch {
			case failed[st.msg.ReceiptHandle]:
				s.Retrying++
			case st.drop:
				s.Dropped++
			default:
				s.Acked++
			}
		}
	})
	for _, st := range ack {
		switch {
		case failed[st.msg.ReceiptHandle]:
			r.settled(st, SettleRetrying)
		case st.drop:
			r.settled(st, SettleDropped)
		default:
			r.settled(st, SettleAcked)
		}
	}
}

// hideFor returns how long messages handed back after the run's halt
// should stay hidden: until the time the halt gives, capped below SQS's
// 12 hours from the receive, or 0 (visible at once) when it gives none.
func (r *run) hideFor() time.Duration {
	until, ok := RetryAfter(r.halting())
	if !ok {
		return 0
	}
	now := r.w.now()
	// Every message was received after the run started; a minute of
	// slack covers the clock skew between here and SQS.
	d := min(until.Sub(now), visibilityMax-now.Sub(r.start)-time.Minute)
	if d < time.Second {
		return 0
	}
	return d.Truncate(time.Second)
}

// hide keeps messages left for retry hidden for as long as each asks,
// within SQS's 12 hours from the receive. A message it cannot hide is
// received again after the queue's visibility timeout, and waits again.
func (r *run) hide(batch []*msgState) {
	now := r.w.now()
	for _, st := range batch {
		// As in hideFor: received after the run started, with a minute
		// of slack for the clock skew between here and SQS.
		d := min(st.hide, visibilityMax-now.Sub(r.start)-time.Minute).Truncate(time.Second)
		if d < time.Second {
			continue
		}
		if err := r.w.queue.Extend(r.ctx, []Message{st.msg}, d); err != nil {
			r.w.logger.Error("hide a message left for retry; it is received again after the visibility timeout", "message_id", st.msg.ID, "events", messageEventIDs(st), "err", err)
			continue
		}
		r.w.logger.Info("message hidden while its delivery is settled", "message_id", st.msg.ID, "events", messageEventIDs(st), "for", d)
	}
}

// handBack returns messages to the queue unprocessed: visible at once
// when hide is 0 (on shutdown, so another worker can take them), or
// after hide (after a halt, so that they are not received again, each
// receive counting towards maxReceiveCount, before sending can work).
func (r *run) handBack(batch []*msgState, hide time.Duration) {
	msgs := make([]Message, len(batch))
	for i, st := range batch {
		msgs[i] = st.msg
	}
	r.unhold(msgs...)
	r.tally(func(s *Summary) { s.Retrying += len(msgs) })
	for _, st := range batch {
		r.settled(st, SettleHandedBack)
	}
	if hide > 0 {
		err := r.w.queue.Extend(r.ctx, msgs, hide)
		if err == nil {
			r.w.logger.Info("handed back unprocessed messages, hidden until sending may work again", "messages", len(msgs), "for", hide)
			return
		}
		r.w.logger.Error("hide handed-back messages; releasing them instead", "messages", len(msgs), "err", err)
	}
	if err := r.w.queue.Release(r.ctx, msgs); err != nil {
		r.w.logger.Error("release", "messages", len(msgs), "err", err)
	}
	r.w.logger.Info("released unprocessed messages", "messages", len(msgs))
}
