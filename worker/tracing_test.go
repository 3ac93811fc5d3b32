package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/reportmailer/reportmailer/templates"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/tracing"
)

// calls stands in for the AWS SDK's tracing as cmd/reportmailer sets it
// up: a span per call, named "call.NAME", started only inside a sampled
// span; it lists the calls made outside any.
type calls struct {
	tr trace.Tracer

	mu      sync.Mutex
	outside []string
}

func (c *calls) start(ctx context.Context, name string) func() {
	if !trace.SpanContextFromContext(ctx).IsSampled() {
		c.mu.Lock()
		c.outside = append(c.outside, name)
		c.mu.Unlock()
		return func() {}
	}
	_, span := c.tr.Start(ctx, "call."+name, trace.WithSpanKind(trace.SpanKindClient))
	return func() { span.End() }
}

type callQueue struct {
	*fakeQueue
	c *calls
}

func (q callQueue) Receive(ctx context.Context, max int, wait time.Duration) ([]worker.Message, error) {
	defer q.c.start(ctx, "Receive")()
	return q.fakeQueue.Receive(ctx, max, wait)
}

func (q callQueue) Delete(ctx context.Context, msgs []worker.Message) error {
	defer q.c.start(ctx, "Delete")()
	return q.fakeQueue.Delete(ctx, msgs)
}

func (q callQueue) Release(ctx context.Context, msgs []worker.Message) error {
	defer q.c.start(ctx, "Release")()
	return q.fakeQueue.Release(ctx, msgs)
}

func (q callQueue) Extend(ctx context.Context, msgs []worker.Message, d time.Duration) error {
	defer q.c.start(ctx, "Extend")()
	return q.fakeQueue.Extend(ctx, msgs, d)
}

func (q callQueue) DeadLetter(ctx context.Context, m worker.Message, f worker.Failure) error {
	defer q.c.start(ctx, "DeadLetter")()
	return q.fakeQueue.DeadLetter(ctx, m, f)
}

type callObjects struct {
	fakeObjects
	c *calls
}

func (o callObjects) Head(ctx context.Context, bucket, key string) (worker.ObjectInfo, error) {
	defer o.c.start(ctx, "Head")()
	return o.fakeObjects.Head(ctx, bucket, key)
}

type callSigner struct{ c *calls }

func (s callSigner) Sign(ctx context.Context, r event.Report, now time.Time) (worker.Link, error) {
	defer s.c.start(ctx, "Sign")()
	return fakeSigner{}.Sign(ctx, r, now)
}

type callMailer struct {
	syncMailer
	c *calls
}

func (m *callMailer) Send(ctx context.Context, e worker.Email) (string, error) {
	defer m.c.start(ctx, "Send")()
	return m.syncMailer.Send(ctx, e)
}

type callLedger struct {
	*memLedger
	c *calls
}

func (l callLedger) Claim(ctx context.Context, req worker.ClaimRequest) (worker.Claim, error) {
	defer l.c.start(ctx, "Claim")()
	return l.memLedger.Claim(ctx, req)
}

func (l callLedger) Sending(ctx context.Context, emailID string, cs []*worker.Claim) error {
	defer l.c.start(ctx, "Sending")()
	return l.memLedger.Sending(ctx, emailID, cs)
}

func (l callLedger) Complete(ctx context.Context, c *worker.Claim, messageID string) error {
	defer l.c.start(ctx, "Complete")()
	return l.memLedger.Complete(ctx, c, messageID)
}

func (l callLedger) Release(ctx context.Context, c *worker.Claim) error {
	defer l.c.start(ctx, "Release")()
	return l.memLedger.Release(ctx, c)
}

// TestTracingOneTracePerMessage: a run traced through worker/tracing
// leaves one trace per message and no other, its root span from
// receive to settle, with the stages as children and each call inside
// the stage (or the message) it belongs to, one at a time and
// concurrently. Messages share objects: each one's trace still has a
// head span per object it links, while each object is headed once, in
// the first linking message's head span, which the others' link to.
func TestTracingOneTracePerMessage(t *testing.T) {
	// Message i links objects[i]; missing.pdf does not exist.
	objects := [][]string{{"a.pdf", "b.pdf"}, {"a.pdf", "c.pdf"}, {"b.pdf", "c.pdf"}, {"c.pdf"}, {"missing.pdf", "a.pdf"}}
	delivered := []string{"claim", "head", "receive", "render", "send", "settle", "sign"}
	stages := map[string][]string{ // message id -> its stage spans' names, once each
		"m0": delivered, "m1": delivered, "m2": delivered, "m3": delivered,
		"m4": {"head", "receive", "settle"}, // dead-lettered: missing.pdf
	}
	// Each message gets a head span per object it links: m4's a.pdf
	// was headed for m0 before m4's missing.pdf failed.
	heads := map[string]int{"m0": 2, "m1": 2, "m2": 2, "m3": 1, "m4": 2}
	// The stage each call runs in ("" for the message's span itself).
	callStage := map[string]string{"call.Head": "head", "call.Claim": "claim", "call.Sign": "sign", "call.Send": "send",
		"call.Sending": "send", "call.Complete": "", "call.Delete": "settle", "call.DeadLetter": "settle"}
	for _, concurrency := range []int{1, 4} {
		t.Run(fmt.Sprintf("concurrency %d", concurrency), func(t *testing.T) {
			exp := tracetest.NewInMemoryExporter()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
			c := &calls{tr: tp.Tracer("test")}
			q := &fakeQueue{}
			for i, keys := range objects {
				q.pending = append(q.pending, worker.Message{ID: fmt.Sprintf("m%d", i), ReceiptHandle: fmt.Sprintf("r%d", i),
					Body: native(fmt.Sprintf("e%d", i), fmt.Sprintf("u%d", i), nil, keys...)})
			}
			objs := fakeObjects{"reports/a.pdf": {}, "reports/b.pdf": {}, "reports/c.pdf": {}}
			w, err := worker.New(worker.Config{Schedule: "test", From: "reports@example.com", WaitTime: time.Second, Bucket: "reports",
				Concurrency: concurrency},
				worker.Deps{Queue: callQueue{q, c}, Objects: callObjects{objs, c}, Signer: callSigner{c}, Templates: templates.Default(),
					Mailer: &callMailer{c: c}, Ledger: callLedger{&memLedger{}, c}, Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)),
					Observer: tracing.New(tp, "test")})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			spans := exp.GetSpans()
			byID := map[trace.SpanID]tracetest.SpanStub{}
			for _, s := range spans {
				byID[s.SpanContext.SpanID()] = s
			}
			roots := map[string]tracetest.SpanStub{} // message id -> its root span
			traces := map[trace.TraceID]string{}     // trace id -> message id
			for _, s := range spans {
				if s.Parent.IsValid() {
					continue
				}
				if s.Name != "reportmailer.message" {
					t.Errorf("a stray root span %q", s.Name)
					continue
				}
				for _, a := range s.Attributes {
					if a.Key == "messaging.message.id" {
						id := a.Value.AsString()
						if _, ok := roots[id]; ok {
							t.Errorf("message %s has two traces", id)
						}
						roots[id] = s
						traces[s.SpanContext.TraceID()] = id
					}
				}
				if s.EndTime.IsZero() {
					t.Errorf("message span %v never ended", s.SpanContext.SpanID())
				}
			}
			if len(roots) != len(objects) || len(traces) != len(objects) {
				t.Fatalf("%d message spans in %d traces, want %d each: %v", len(roots), len(traces), len(objects), names(spans))
			}
			// Every span is in a message's trace, under its root.
			for _, s := range spans {
				if _, ok := traces[s.SpanContext.TraceID()]; !ok {
					t.Errorf("span %q is in no message's trace", s.Name)
				}
				if s.Parent.IsValid() {
					p, ok := byID[s.Parent.SpanID()]
					if !ok || p.SpanContext.TraceID() != s.SpanContext.TraceID() {
						t.Errorf("span %q has a parent outside its trace", s.Name)
					}
				}
			}
			for id, root := range roots {
				var got []string
				n := 0
				for _, s := range spans {
					if s.Parent.SpanID() != root.SpanContext.SpanID() || s.Name == "call.Complete" {
						continue
					}
					if !slices.Contains(got, s.Name) {
						got = append(got, s.Name)
					}
					if s.Name == "head" {
						n++
					}
				}
				slices.Sort(got)
				if !slices.Equal(got, stages[id]) {
					t.Errorf("stages of %s %q, want %q", id, got, stages[id])
				}
				if n != heads[id] {
					t.Errorf("%s has %d head spans, want %d", id, n, heads[id])
				}
			}
			// Each call in the stage it belongs to; each object headed
			// once, the head spans without the call linking to the one
			// with it.
			headed := map[trace.SpanID]bool{}
			count := map[string]int{}
			for _, s := range spans {
				want, ok := callStage[s.Name]
				if !ok {
					continue
				}
				count[s.Name]++
				p := byID[s.Parent.SpanID()]
				if got := p.Name; want == "" && got != "reportmailer.message" || want != "" && got != want {
					t.Errorf("%s runs in %q, want %q", s.Name, got, cmpOr(want, "reportmailer.message"))
				}
				if s.Name == "call.Head" {
					headed[p.SpanContext.SpanID()] = true
				}
			}
			if count["call.Head"] != 4 {
				t.Errorf("%d HeadObject calls, want 4 (one per object)", count["call.Head"])
			}
			for _, s := range spans {
				if s.Name != "head" || headed[s.SpanContext.SpanID()] {
					continue
				}
				if len(s.Links) != 1 || !headed[s.Links[0].SpanContext.SpanID()] {
					t.Errorf("a head span without the call links to %v, want the head span with it", s.Links)
				}
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			if len(c.outside) == 0 || slices.ContainsFunc(c.outside, func(n string) bool { return n != "Receive" }) {
				t.Errorf("calls made outside any span %q, want only the receives", c.outside)
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

// TestDigestDeliveryIsTraced: a digest's slot delivers events from its
// pending store, not from received messages: each event gets a span of
// its own (reportmailer.digest_event, naming the message it came in),
// and the slot's claims, signing, rendering and sending nest in those
// spans, none outside; each ends with what became of its event.
func TestDigestDeliveryIsTraced(t *testing.T) {
	ctx := context.Background()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	w, b, _ := setupPendingWith(t, 50, func(d *worker.Deps) { d.Observer = tracing.New(tp, "weekly") })
	b.enqueue(native("a1", "ana", nil, "ana/1.pdf"), native("a2", "ana", []string{"bo@example.com"}, "ana/2.pdf"))
	if _, err := w.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	exp.Reset() // the ingest's message spans are TestDrainTraces's
	b.now = b.now.Add(time.Hour)
	if _, err := w.Deliver(ctx, worker.Slot{Planned: b.now}); err != nil {
		t.Fatal(err)
	}
	if len(b.mailer.sent) != 2 {
		t.Fatalf("sent %d emails, want ana's digest and bo's", len(b.mailer.sent))
	}
	spans := exp.GetSpans()
	events := map[trace.SpanID]tracetest.SpanStub{}
	for _, s := range spans {
		if s.Name == "reportmailer.digest_event" {
			events[s.SpanContext.SpanID()] = s
		}
	}
	if len(events) != 2 {
		t.Fatalf("%d digest_event spans, want one per event (2)", len(events))
	}
	stages := map[string]int{}
	for _, s := range spans {
		if s.Name == "reportmailer.digest_event" {
			continue
		}
		if _, ok := events[s.Parent.SpanID()]; !ok {
			t.Errorf("span %s is not a child of an event's span", s.Name)
		}
		stages[s.Name]++
	}
	for _, st := range []string{"claim", "sign", "render", "send"} {
		if stages[st] == 0 {
			t.Errorf("no %s span under the events' spans (stages %v)", st, stages)
		}
	}
	for _, s := range events {
		var settlement, id string
		for _, a := range s.Attributes {
			switch a.Key {
			case "reportmailer.settlement":
				settlement = a.Value.AsString()
			case "messaging.message.id":
				id = a.Value.AsString()
			}
		}
		if settlement != "acked" || id == "" || s.EndTime.IsZero() {
			t.Errorf("event span ended %v with settlement %q, message id %q; want ended, acked, the message's id", !s.EndTime.IsZero(), settlement, id)
		}
	}
}
