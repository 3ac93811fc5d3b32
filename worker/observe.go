package worker

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/reportmailer/reportmailer/worker/event"
)

// Stage is one step of a message's way through a run.
type Stage string

// The stages a run reports to its Observer.
const (
	StageReceive Stage = "receive" // ReceiveMessage
	StageHead    Stage = "head"    // HeadObject on a report
	StageClaim   Stage = "claim"   // the ledger claim of one delivery
	StageSign    Stage = "sign"    // the links of one email
	StageRender  Stage = "render"  // the templates of one email
	StageSend    Stage = "send"    // SendEmail, pacing included
	StageSettle  Stage = "settle"  // delete or dead-letter
)

// Stages lists every Stage, for adapters that declare their label
// values up front.
var Stages = []Stage{StageReceive, StageHead, StageClaim, StageSign, StageRender, StageSend, StageSettle}

// Settlement is what became of a message at the end of a run.
type Settlement string

// The settlements of a message.
const (
	SettleAcked        Settlement = "acked"         // deleted: its work is done
	SettleDropped      Settlement = "dropped"       // deleted: nothing to do (an S3 test event)
	SettleDeadLettered Settlement = "dead_lettered" // moved to the dead-letter queue
	SettleRetrying     Settlement = "retrying"      // left on the queue for another try
	SettleHandedBack   Settlement = "handed_back"   // released unprocessed (a halt, a shutdown)
)

// MessageOutcome is what became of one message, and why when it was not
// acked: the class and code of its [Failure]. Reason is left out on
// purpose: it names addresses and objects, which have no place in a
// metric label.
type MessageOutcome struct {
	Settlement Settlement
	Class      Class // "" when acked or dropped
	Code       Code  // "" when acked or dropped
}

// Observer is told what a run does, for metrics and traces. The worker
// calls it from one goroutine per run; an Observer shared by several
// workers must be safe for concurrent use. Deps.Observer defaults to
// [NopObserver].
//
// Received and Stage return the context that the work that follows
// runs in, so that an Observer can open a span per message and child
// spans per stage, with the AWS SDK's own spans inside them.
type Observer interface {
	// Received is called for each message as it is received.
	Received(ctx context.Context, m Message) context.Context
	// Stage is called as a stage starts; the returned end is called
	// once, with the stage's error, when it ends.
	Stage(ctx context.Context, s Stage) (_ context.Context, end func(error))
	// Settled is called once per received message, with its outcome.
	Settled(ctx context.Context, m Message, o MessageOutcome)
	// Due is called for each event a digest's slot delivers from its
	// pending store, as Received is for a message: m is the queue
	// message the event came in (its id and body; no receipt handle),
	// and the event's work runs in the context returned.
	Due(ctx context.Context, m Message) context.Context
	// Delivered is called once per event Due was called for, with what
	// became of it: acked when sent (or found sent) and its entry gone or
	// going, dead_lettered, or retrying when its entry stays for the
	// next slot.
	Delivered(ctx context.Context, m Message, o MessageOutcome)
	// Sent is called for each email the mail service accepted.
	Sent()
	// Duplicate is called for each delivery the ledger said was sent
	// already: an email not sent twice.
	Duplicate()
	// Refused is called for each recipient the policy turned away, with
	// a short reason code (see [RefusalCode]).
	Refused(code string)
	// RunFinished is called at the end of each run.
	RunFinished(sum Summary, took time.Duration, err error)
}

// PaceObserver is told how the mailer paces sending. It is separate
// from Observer because one mailer serves every schedule.
type PaceObserver interface {
	// Waited is called after each wait for the sending rate.
	Waited(d time.Duration)
	// Throttled is called for each send SES refused for its rate.
	Throttled()
	// Quota is called after each read of the account's quota.
	Quota(max24h, sent24h, maxRate float64)
}

// NopObserver observes nothing. Embed it to implement only some of
// Observer's and PaceObserver's methods.
type NopObserver struct{}

var (
	_ Observer     = NopObserver{}
	_ PaceObserver = NopObserver{}
)

// Received returns ctx.
func (NopObserver) Received(ctx context.Context, _ Message) context.Context { return ctx }

// Stage returns ctx and an end that does nothing.
func (NopObserver) Stage(ctx context.Context, _ Stage) (context.Context, func(error)) {
	return ctx, func(error) {}
}

// Settled does nothing.
func (NopObserver) Settled(context.Context, Message, MessageOutcome) {}

// Due returns ctx.
func (NopObserver) Due(ctx context.Context, _ Message) context.Context { return ctx }

// Delivered does nothing.
func (NopObserver) Delivered(context.Context, Message, MessageOutcome) {}

// Sent does nothing.
func (NopObserver) Sent() {}

// Duplicate does nothing.
func (NopObserver) Duplicate() {}

// Refused does nothing.
func (NopObserver) Refused(string) {}

// RunFinished does nothing.
func (NopObserver) RunFinished(Summary, time.Duration, error) {}

// Waited does nothing.
func (NopObserver) Waited(time.Duration) {}

// Throttled does nothing.
func (NopObserver) Throttled() {}

// Quota does nothing.
func (NopObserver) Quota(float64, float64, float64) {}

// Observers returns an Observer that tells each of obs in turn; each
// gets the context the one before it returned.
func Observers(obs ...Observer) Observer { return tee(obs) }

type tee []Observer

func (t tee) Received(ctx context.Context, m Message) context.Context {
	for _, o := range t {
		ctx = o.Received(ctx, m)
	}
	return ctx
}

func (t tee) Stage(ctx context.Context, s Stage) (context.Context, func(error)) {
	ends := make([]func(error), len(t))
	for i, o := range t {
		ctx, ends[i] = o.Stage(ctx, s)
	}
	return ctx, func(err error) {
		for i := len(ends) - 1; i >= 0; i-- {
			ends[i](err)
		}
	}
}

func (t tee) Settled(ctx context.Context, m Message, o MessageOutcome) {
	for _, x := range t {
		x.Settled(ctx, m, o)
	}
}

func (t tee) Due(ctx context.Context, m Message) context.Context {
	for _, o := range t {
		ctx = o.Due(ctx, m)
	}
	return ctx
}

func (t tee) Delivered(ctx context.Context, m Message, o MessageOutcome) {
	for _, x := range t {
		x.Delivered(ctx, m, o)
	}
}

func (t tee) Sent() {
	for _, o := range t {
		o.Sent()
	}
}

func (t tee) Duplicate() {
	for _, o := range t {
		o.Duplicate()
	}
}

func (t tee) Refused(code string) {
	for _, o := range t {
		o.Refused(code)
	}
}

func (t tee) RunFinished(sum Summary, took time.Duration, err error) {
	for _, o := range t {
		o.RunFinished(sum, took, err)
	}
}

// RefusalCode is a short, bounded name for why a recipient was
// refused: domain_not_allowed, extras_off, over_limit or
// invalid_address. The Reason itself may name the address.
func RefusalCode(r Refusal) string {
	switch {
	case strings.HasPrefix(r.Reason, "domain "):
		return "domain_not_allowed"
	case strings.HasPrefix(r.Reason, "extra recipients are turned off"):
		return "extras_off"
	case strings.HasPrefix(r.Reason, "over the limit"):
		return "over_limit"
	}
	return "invalid_address"
}

// observation is a run's bookkeeping for its Observer: the context of
// each message held, by receipt handle, so that its stages and its
// settling are reported in it.
type observation struct {
	mu   sync.Mutex
	ctxs map[string]context.Context
}

func (w *Worker) observer() Observer {
	if w.obs == nil {
		return NopObserver{}
	}
	return w.obs
}

// received tells the Observer about msgs and keeps each one's context.
func (r *run) received(msgs []Message) {
	o := &r.obs
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ctxs == nil {
		o.ctxs = map[string]context.Context{}
	}
	for _, m := range msgs {
		o.ctxs[m.ReceiptHandle] = r.w.observer().Received(r.ctx, m)
	}
}

// msgCtx is the context st's work runs in: the run's, as the Observer
// saw fit to extend it for the message.
func (r *run) msgCtx(st *msgState) context.Context {
	if st == nil {
		return r.ctx
	}
	return r.ctxOf(st.obsKey())
}

// obsKey is what the run's observation keeps st's context under: its
// receipt handle, or, for a pending store's event, its entry's key.
func (st *msgState) obsKey() string {
	if st.pending != nil {
		return "pending:" + st.pending.Key
	}
	return st.msg.ReceiptHandle
}

// due tells the Observer that st, a pending store's event, is being
// delivered, and keeps its context.
func (r *run) due(st *msgState) {
	ctx := r.w.observer().Due(r.ctx, Message{ID: st.pending.MessageID, Body: st.pending.Body})
	r.obs.mu.Lock()
	defer r.obs.mu.Unlock()
	if r.obs.ctxs == nil {
		r.obs.ctxs = map[string]context.Context{}
	}
	r.obs.ctxs[st.obsKey()] = ctx
}

// delivered tells the Observer what became of st, a pending store's
// event, once.
func (r *run) delivered(st *msgState, s Settlement) {
	ctx := r.msgCtx(st)
	r.obs.mu.Lock()
	delete(r.obs.ctxs, st.obsKey())
	r.obs.mu.Unlock()
	o := MessageOutcome{Settlement: s}
	if f := st.failed; f != nil && s != SettleAcked {
		o.Class, o.Code = f.Class, f.Code
	}
	r.w.observer().Delivered(ctx, Message{ID: st.pending.MessageID, Body: st.pending.Body}, o)
}

// ctxOf is msgCtx by the message's receipt handle.
func (r *run) ctxOf(handle string) context.Context {
	r.obs.mu.Lock()
	defer r.obs.mu.Unlock()
	if ctx, ok := r.obs.ctxs[handle]; ok {
		return ctx
	}
	return r.ctx
}

// stage starts stage s of st's work (of the run's when st is nil).
func (r *run) stage(st *msgState, s Stage) (context.Context, func(error)) {
	return r.w.observer().Stage(r.msgCtx(st), s)
}

// sharedStage starts stage s of the work of the message whose receipt
// handle is first, done for the messages of others too (see
// [SharedWith]).
func (r *run) sharedStage(first string, others []string, s Stage) (context.Context, func(error)) {
	ctx := r.ctxOf(first)
	if len(others) > 0 {
		ctxs := make([]context.Context, len(others))
		for i, h := range others {
			ctxs[i] = r.ctxOf(h)
		}
		ctx = context.WithValue(ctx, sharedKey{}, ctxs)
	}
	return r.w.observer().Stage(ctx, s)
}

type sharedKey struct{}

// SharedWith returns, in the context an Observer's Stage is given, the
// contexts of the other messages that the stage's work serves as well:
// a HeadObject of an object that several messages of a batch link is
// made once, in the head stage of the first of them. An Observer that
// traces messages gives each of the others a span of the stage too
// (worker/tracing links them to the first one's, where the AWS call's
// span is); one that counts stages counts the call once.
func SharedWith(ctx context.Context) []context.Context {
	ctxs, _ := ctx.Value(sharedKey{}).([]context.Context)
	return ctxs
}

// settled tells the Observer what became of st, once.
func (r *run) settled(st *msgState, s Settlement) {
	ctx := r.msgCtx(st)
	r.obs.mu.Lock()
	delete(r.obs.ctxs, st.obsKey())
	r.obs.mu.Unlock()
	o := MessageOutcome{Settlement: s}
	switch f := st.failed; {
	case s == SettleAcked || s == SettleDropped:
	case f != nil:
		o.Class, o.Code = f.Class, f.Code
	case s == SettleHandedBack:
		o.Class, o.Code = ClassHalt, CodeShutdown
	}
	r.w.observer().Settled(ctx, st.msg, o)
}

type stopKey struct{}

// WithStop returns ctx carrying stop, a run's shutdown signal. Drain
// gives its work in flight such a context, never cancelled, so that an
// email being sent is not cut off, while a wait that has sent nothing
// yet (the pacer's) can give up on stop with [Stopping].
func WithStop(ctx context.Context, stop <-chan struct{}) context.Context {
	return context.WithValue(ctx, stopKey{}, stop)
}

// Stopping returns the shutdown signal of the run ctx belongs to: it
// is closed when the run is told to stop. It is nil, and never closes,
// outside a run. A wait before a send that gives up on it returns
// [ErrStopping].
func Stopping(ctx context.Context) <-chan struct{} {
	stop, _ := ctx.Value(stopKey{}).(<-chan struct{})
	return stop
}

// ErrStopping is what a wait before a send returns when the run is told
// to stop during it: nothing was sent, and the run hands the message
// back.
var ErrStopping = errors.New("not sent: the run is shutting down")

type runIDKey struct{}

// WithRunID returns ctx carrying id, which Drain then uses as its run's
// id (in its ledger claims and on every log line as run_id) instead of
// making one, so that the caller's own lines about the run carry it too.
func WithRunID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, runIDKey{}, id)
}

// RunID returns the run id ctx carries, or "".
func RunID(ctx context.Context) string {
	id, _ := ctx.Value(runIDKey{}).(string)
	return id
}

type scheduleKey struct{}

// WithSchedule returns ctx carrying the name of the schedule whose run
// it belongs to; Drain sets it, for the lines of the parts that serve
// every schedule (the mailer's pacing, SES's events).
func WithSchedule(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, scheduleKey{}, name)
}

// LogAttrs returns the schedule and run_id that ctx carries, as
// key-value pairs for a logger's With; none when it carries neither.
func LogAttrs(ctx context.Context) []any {
	var kv []any
	if s, _ := ctx.Value(scheduleKey{}).(string); s != "" {
		kv = append(kv, "schedule", s)
	}
	if id := RunID(ctx); id != "" {
		kv = append(kv, "run_id", id)
	}
	return kv
}

// forRun returns a copy of w whose every log line names the run.
func (w *Worker) forRun(id string) *Worker {
	c := *w
	c.logger = w.logger.With("run_id", id)
	return &c
}

// messageIDs are the SQS message ids of a delivery's messages, once
// each.
func messageIDs(from []*msgState) []string {
	var ids []string
	for _, st := range from {
		if !slices.Contains(ids, st.msg.ID) {
			ids = append(ids, st.msg.ID)
		}
	}
	return ids
}

// eventIDList are the ids of evs, for a log line.
func eventIDList(evs []event.Event) []string {
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	return ids
}

// claimEventIDs are the ids of the events of an email's claims.
func claimEventIDs(cs []claim) []string {
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ev.ID
	}
	return ids
}

// messageEventIDs are the ids of the events a message carries.
func messageEventIDs(st *msgState) []string {
	ids := make([]string, len(st.events))
	for i, ev := range st.events {
		ids[i] = ev.ID
	}
	return ids
}
