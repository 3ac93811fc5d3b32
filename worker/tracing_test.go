package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/reportmailer/reportmailer/templates"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/tracing"
)

// TestTracingOneTracePerMessage: a run traced through worker/tracing
// leaves one trace per message, its root span from receive to settle,
// with the stages as children.
func TestTracingOneTracePerMessage(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	q := &fakeQueue{}
	for i, body := range []string{native("e1", "ana", nil, "a.pdf"), native("e2", "bo", nil, "missing.pdf")} {
		q.pending = append(q.pending, worker.Message{ID: fmt.Sprintf("m%d", i), ReceiptHandle: fmt.Sprintf("r%d", i), Body: body})
	}
	w, err := worker.New(worker.Config{Schedule: "test", From: "reports@example.com", WaitTime: time.Second, Bucket: "reports"},
		worker.Deps{Queue: q, Objects: fakeObjects{"reports/a.pdf": {}}, Signer: fakeSigner{}, Templates: templates.Default(),
			Mailer: &fakeMailer{}, Ledger: &memLedger{}, Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)),
			Observer: tracing.New(tp, "test")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	roots := map[string]tracetest.SpanStub{} // message id -> its root span
	for _, s := range spans {
		if s.Name != "reportmailer.message" {
			continue
		}
		for _, a := range s.Attributes {
			if a.Key == "messaging.message.id" {
				roots[a.Value.AsString()] = s
			}
		}
	}
	if len(roots) != 2 {
		t.Fatalf("%d message spans, want 2: %v", len(roots), names(spans))
	}
	if roots["m0"].SpanContext.TraceID() == roots["m1"].SpanContext.TraceID() {
		t.Error("two messages share a trace")
	}
	children := func(root tracetest.SpanStub) []string {
		var out []string
		for _, s := range spans {
			if s.Parent.SpanID() == root.SpanContext.SpanID() {
				out = append(out, s.Name)
			}
		}
		slices.Sort(out)
		return out
	}
	if got, want := children(roots["m0"]), []string{"claim", "head", "receive", "render", "send", "settle", "sign"}; !slices.Equal(got, want) {
		t.Errorf("stages of the delivered message %q, want %q", got, want)
	}
	if got, want := children(roots["m1"]), []string{"head", "receive", "settle"}; !slices.Equal(got, want) {
		t.Errorf("stages of the dead-lettered message %q, want %q", got, want)
	}
	for _, r := range roots {
		if r.EndTime.IsZero() {
			t.Errorf("message span %v never ended", r.SpanContext.SpanID())
		}
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}
