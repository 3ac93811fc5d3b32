package worker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/reportmailer/reportmailer/templates"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/metrics"
	"github.com/reportmailer/reportmailer/worker/tracing"
)

// BenchmarkDrainObserved is BenchmarkDrain with no Observer, with the
// Prometheus one, and with Prometheus and OpenTelemetry (spans batched
// to an exporter that drops them): the seam's overhead per email, as a
// ratio of the first (docs/benchmarks.md).
func BenchmarkDrainObserved(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	defer tp.Shutdown(context.Background())
	m := metrics.New()
	for _, bc := range []struct {
		name string
		obs  worker.Observer
	}{
		{"off", nil},
		{"metrics", m.Observer("bench")},
		{"metrics+tracing", worker.Observers(tracing.New(tp, "bench"), m.Observer("bench"))},
	} {
		b.Run(bc.name, func(b *testing.B) { benchDrain(b, bc.obs) })
	}
}

func benchDrain(b *testing.B, obs worker.Observer) {
	const n = 100
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = native(fmt.Sprintf("e%d", i), fmt.Sprintf("u%d", i), []string{fmt.Sprintf("team%d@example.com", i)}, "2026/11/Q3 results+notes.pdf")
	}
	b.ReportAllocs()
	for b.Loop() {
		q := &fakeQueue{}
		for i, body := range bodies {
			q.pending = append(q.pending, worker.Message{ID: fmt.Sprint(i), ReceiptHandle: fmt.Sprint(i), Body: body})
		}
		w, err := worker.New(worker.Config{Schedule: "bench", From: "r@example.com", WaitTime: time.Second, Bucket: "reports"},
			worker.Deps{Queue: q, Objects: anyObjects{}, Signer: fakeSigner{}, Templates: templates.Default(),
				Mailer: &fakeMailer{}, Ledger: &memLedger{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Observer: obs})
		if err != nil {
			b.Fatal(err)
		}
		sum, err := w.Drain(context.Background())
		if err != nil || sum.Sent != 2*n {
			b.Fatalf("sent %d, err %v", sum.Sent, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*2*n), "ns/email")
}
