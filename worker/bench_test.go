package worker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/templates"
	"github.com/reportmailer/reportmailer/worker"
)

// BenchmarkDrain is the worker's own cost per message (decode, plan,
// claim, compose, render, settle) with in-memory fakes for everything
// outside it; each message becomes two emails.
func BenchmarkDrain(b *testing.B) {
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
				Mailer: &fakeMailer{}, Ledger: &memLedger{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
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
