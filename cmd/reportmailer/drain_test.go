package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/reportmailer/reportmailer/internal/emulator"
)

// TestDrainNamesAMissingQueue: a queue or dead-letter queue that does
// not exist fails the run (exit 1) with one line that names the
// schedule, which queue and its URL, on both SQS emulators: fauxqs
// answers with the typed QueueDoesNotExist, goaws with the bare code
// AWS.SimpleQueueService.NonExistentQueue.
func TestDrainNamesAMissingQueue(t *testing.T) {
	for _, emu := range sqsEmulators {
		t.Run(emu, func(t *testing.T) {
			e := newITEnv(t, emu)
			tests := []struct {
				name   string
				body   string // sent to the queue, if it exists
				queues func(q, dlq string) (string, string)
				code   int
				want   func(q, dlq string) string // the summary line's cause
			}{
				{"queue", "", func(q, dlq string) (string, string) { return q + "-missing", dlq }, ExitFailure,
					func(q, _ string) string {
						return `drain it: failed: received 0, sent 0 emails, acked 0, dropped 0, dead-lettered 0, retrying 0, duplicates 0, maybe sent 0, maybe duplicated 0, refused 0, settled 0: ` +
							`schedule "it": queue ` + q + `-missing: does not exist in this account and region`
					}},
				{"queue and dead-letter queue", "", func(q, dlq string) (string, string) { return q + "-missing", dlq + "-missing" }, ExitFailure,
					func(q, _ string) string { return `schedule "it": queue ` + q + `-missing: does not exist` }},
				{"dead-letter queue, with a message to dead-letter", "not an event", func(q, dlq string) (string, string) { return q, dlq + "-missing" }, ExitFailure,
					// The run checks its queues first where the emulator lets
					// it see a missing queue (fauxqs), and receives nothing;
					// goaws answers that check ambiguously, so there the
					// missing DLQ shows when the message is dead-lettered.
					func(_, dlq string) string {
						return `schedule "it": dead-letter queue ` + dlq + `-missing: does not exist in this account and region`
					}},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					q, dlq := e.queues(t)
					if tt.body != "" {
						e.send(t, q, tt.body)
					}
					useQ, useDLQ := tt.queues(q, dlq)
					code, out, logs := drain(t, e.config(t, useQ, useDLQ))
					if code != tt.code || !strings.Contains(out, tt.want(q, dlq)) {
						t.Errorf("exit %d, stdout %q\nwant exit %d and %q\n%s", code, out, tt.code, tt.want(q, dlq), logs)
					}
					if strings.Count(strings.TrimSpace(out), "\n") != 0 {
						t.Errorf("drain printed more than its summary line:\n%s", out)
					}
				})
			}
		})
	}
}

// TestDrainFailsWhenSendingCannotStart: when SES's GetAccount fails and
// no pacing.fallback_rate is set, the run cannot start sending; that is
// a failure (exit 1) with the cause in the summary line, not messages
// left for retry (exit 3). The quota gate sees it before the first
// receive, so the message stays queued, not received, for the next run.
func TestDrainFailsWhenSendingCannotStart(t *testing.T) {
	e := newITEnv(t, "goaws")
	// aws-ses-v2-local answers GetAccount with "Bad Request Exception"
	// when its account lacks a field.
	e.useSES(t, `{}`)
	q, dlq := e.queues(t)
	e.put(t, "halt/a.pdf", nil)
	e.send(t, q, nativeBody("evt-halt", "hal", nil, "halt/a.pdf"))
	code, out, logs := drain(t, e.config(t, q, dlq))
	// The quota is asked before the first receive, so the message is not
	// even received: a receive would count towards maxReceiveCount.
	want := `drain it: failed: received 0, sent 0 emails, acked 0, dropped 0, dead-lettered 0, retrying 0, duplicates 0, maybe sent 0, maybe duplicated 0, refused 0, settled 0: ` +
		`schedule "it": could not start sending: ses quota: operation error SESv2: GetAccount`
	if code != ExitFailure || !strings.HasPrefix(out, want) {
		t.Errorf("exit %d, stdout %q\nwant exit %d and %q\n%s", code, out, ExitFailure, want, logs)
	}
	if !strings.Contains(out, "set pacing.fallback_rate") {
		t.Errorf("the summary does not say how to send without GetAccount: %q", out)
	}
	if d := e.dead(t, dlq); len(d) != 0 {
		t.Errorf("dead-lettered %v: the message is not at fault", d)
	}
	// Not received: still visible at once, not hidden by a halted run.
	out2, err := e.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &q, WaitTimeSeconds: 0, MaxNumberOfMessages: 1})
	if err != nil || len(out2.Messages) != 1 {
		t.Errorf("the message is not visible after a run that could not send (err %v): it was received and hidden", err)
	}
}

// TestServeNamesAMissingQueue: serve logs each failed run with the
// schedule and the queue that does not exist.
func TestServeNamesAMissingQueue(t *testing.T) {
	e := newITEnv(t, "fauxqs")
	q, dlq := e.queues(t)
	cfg := e.config(t, q+"-missing", dlq)
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, bytes.Replace(b, []byte("{name: it, mode: each,"), []byte(`{name: it, cron: "@every 1s", mode: each,`), 1), 0o644)

	want := `schedule \"it\": queue ` + q + `-missing: does not exist in this account and region`
	seen := make(chan struct{})
	logs := &signalWriter{want: want, seen: seen}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		m := &Main{Stdout: io.Discard, Stderr: logs, Getenv: os.Getenv, Environ: os.Environ}
		done <- m.Run(ctx, []string{"serve", "-config", cfg})
	}()
	select {
	case <-seen:
	case <-time.After(30 * time.Second): // only stops a broken build from hanging
		t.Errorf("serve never logged %q:\n%s", want, logs.String())
	}
	cancel()
	<-done
	if !strings.Contains(logs.String(), `msg="run failed" schedule=it`) {
		t.Errorf("no run failed line for the schedule:\n%s", logs.String())
	}
}

// signalWriter is a log buffer that closes seen once it holds want.
type signalWriter struct {
	mu   sync.Mutex
	b    bytes.Buffer
	want string
	seen chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.b.Write(p)
	if w.seen != nil && strings.Contains(w.b.String(), w.want) {
		close(w.seen)
		w.seen = nil
	}
	return n, err
}

func (w *signalWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestDrainReceivesNothingWithTheQuotaSpent: with the 24-hour quota
// already spent, drain asks SES before it receives, so the message is
// not received (a receive counts towards maxReceiveCount) and the run
// says why.
func TestDrainReceivesNothingWithTheQuotaSpent(t *testing.T) {
	e := newITEnv(t, "fauxqs")
	spent := strings.Replace(emulator.DefaultSESAccount, `"SentLast24Hours": 0`, `"SentLast24Hours": 50000`, 1)
	if spent == emulator.DefaultSESAccount {
		t.Fatal("the default account no longer has SentLast24Hours 0")
	}
	e.useSES(t, spent)
	q, dlq := e.queues(t)
	e.put(t, "quota/a.pdf", nil)
	e.send(t, q, nativeBody("evt-quota", "quin", nil, "quota/a.pdf"))
	code, out, logs := drain(t, e.config(t, q, dlq))
	if code != ExitFailure || !strings.HasPrefix(out, "drain it: failed: received 0,") || !strings.Contains(out, "could not start sending") {
		t.Errorf("exit %d, stdout %q; want exit %d, nothing received, and the cause\n%s", code, out, ExitFailure, logs)
	}
	out2, err := e.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &q, MaxNumberOfMessages: 1,
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount}})
	if err != nil || len(out2.Messages) != 1 {
		t.Fatalf("the message is not visible after the run (err %v)", err)
	}
	if n := out2.Messages[0].Attributes["ApproximateReceiveCount"]; n != "1" {
		t.Errorf("ApproximateReceiveCount %s after the test's own receive; want 1: the run received it", n)
	}
}
