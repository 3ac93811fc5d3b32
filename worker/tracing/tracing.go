// Package tracing turns what the worker observes into OpenTelemetry
// spans: one span per message, from its receive to its settling, with
// a child span per stage (head, claim, sign, render, send, settle); and
// one per event a digest's slot delivers from its pending store, with
// the same stages. The
// AWS SDK's own spans (through its OpenTelemetry adapter) nest inside
// the stage spans, since each stage's AWS call runs in its context. A
// stage done once for several messages (see worker.SharedWith) gets a
// span in each message's trace, the others linked to the one the call
// runs in.
//
// Attributes carry the SQS message id and the schedule, the outcome's
// settlement, class and code; never an address, a link or a key.
package tracing

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/reportmailer/reportmailer/worker"
)

// Scope names the tracer.
const Scope = "github.com/reportmailer/reportmailer/worker"

// Observer opens spans for one schedule's runs. Build one with New.
type Observer struct {
	worker.NopObserver
	tracer   trace.Tracer
	schedule string

	mu      sync.Mutex
	receive time.Time // when the receive in progress started
	got     time.Time // when it returned
}

var _ worker.Observer = (*Observer)(nil)

// New returns an Observer on tp for schedule's runs.
func New(tp trace.TracerProvider, schedule string) *Observer {
	return &Observer{tracer: tp.Tracer(Scope), schedule: schedule}
}

// Received starts the message's span, dated from the start of the
// receive that brought it, with that receive as its first child.
func (o *Observer) Received(ctx context.Context, m worker.Message) context.Context {
	o.mu.Lock()
	start, got := o.receive, o.got
	o.mu.Unlock()
	if start.IsZero() {
		start, got = time.Now(), time.Now()
	}
	ctx, span := o.tracer.Start(ctx, "reportmailer.message", trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "aws_sqs"),
			attribute.String("messaging.message.id", m.ID),
			attribute.Int("messaging.aws_sqs.receive_count", m.ReceiveCount),
			attribute.String("reportmailer.schedule", o.schedule),
		))
	if !span.IsRecording() { // sampled out: no children either
		return ctx
	} // ended by Settled
	_, rs := o.tracer.Start(ctx, string(worker.StageReceive), trace.WithTimestamp(start))
	rs.End(trace.WithTimestamp(got))
	return ctx
}

// Stage starts a child span of the message's. The receive is not one
// yet: it is recorded as each message's first child once it returns.
func (o *Observer) Stage(ctx context.Context, s worker.Stage) (context.Context, func(error)) {
	if s == worker.StageReceive {
		o.mu.Lock()
		o.receive = time.Now()
		o.mu.Unlock()
		return ctx, func(error) {
			o.mu.Lock()
			o.got = time.Now()
			o.mu.Unlock()
		}
	}
	shared := worker.SharedWith(ctx)
	if len(shared) > 0 {
		return o.sharedStage(ctx, shared, s)
	}
	if !trace.SpanFromContext(ctx).IsRecording() {
		// Work of the run rather than of a message (its AWS calls start
		// no span: see cmd/reportmailer's callTracer), or a message
		// sampled out: no span to start, not even a dropped one.
		return ctx, nopEnd
	}
	ctx, span := o.tracer.Start(ctx, string(s))
	return ctx, func(err error) { endStage(span, err) }
}

// sharedStage starts the span of a stage done once for several
// messages: in the first of them that is recorded, where the stage's
// AWS call then runs, and in each other one a span of the same stage
// linked to it, so that every message's trace shows the stage.
func (o *Observer) sharedStage(ctx context.Context, shared []context.Context, s worker.Stage) (context.Context, func(error)) {
	var spans []trace.Span
	var first trace.SpanContext
	out := ctx
	for i := -1; i < len(shared); i++ {
		c := ctx
		if i >= 0 {
			c = shared[i]
		}
		if !trace.SpanFromContext(c).IsRecording() {
			continue
		}
		var opts []trace.SpanStartOption
		if first.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: first}))
		}
		c, span := o.tracer.Start(c, string(s), opts...)
		if !first.IsValid() {
			first, out = span.SpanContext(), c
		}
		spans = append(spans, span)
	}
	if len(spans) == 0 {
		return ctx, nopEnd
	}
	return out, func(err error) {
		for _, span := range spans {
			endStage(span, err)
		}
	}
}

// endStage ends a stage's span with its error.
func endStage(span trace.Span, err error) {
	if err != nil {
		// The class and code only: an error's text may name an
		// address or an object.
		span.SetStatus(codes.Error, string(worker.ClassOf(err)))
		span.SetAttributes(attribute.String("reportmailer.code", string(worker.CodeOf(err))))
	}
	span.End()
}

func nopEnd(error) {}

// Due starts the span of an event a digest's slot delivers from its
// pending store: its stages (claim, sign, render, send) nest in it as
// a message's do. It is a trace of its own, apart from the message's,
// which ended when the event was stored and the message deleted.
func (o *Observer) Due(ctx context.Context, m worker.Message) context.Context {
	ctx, _ = o.tracer.Start(ctx, "reportmailer.digest_event", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "aws_sqs"),
			attribute.String("messaging.message.id", m.ID),
			attribute.String("reportmailer.schedule", o.schedule),
		)) // ended by Delivered
	return ctx
}

// Delivered ends a pending event's span with its outcome.
func (o *Observer) Delivered(ctx context.Context, m worker.Message, out worker.MessageOutcome) {
	o.Settled(ctx, m, out)
}

// Settled ends the message's span with its outcome.
func (o *Observer) Settled(ctx context.Context, _ worker.Message, out worker.MessageOutcome) {
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attribute.String("reportmailer.settlement", string(out.Settlement)))
	if out.Class != "" {
		span.SetAttributes(attribute.String("reportmailer.class", string(out.Class)), attribute.String("reportmailer.code", string(out.Code)))
	}
	if out.Settlement == worker.SettleDeadLettered {
		span.SetStatus(codes.Error, string(out.Code))
	}
	span.End()
}
