package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/sesevents"
)

func TestSESEventsLine(t *testing.T) {
	tests := []struct {
		e    config.SESEvents
		want string
	}{
		{config.SESEvents{Grace: 15 * time.Minute, Unsettled: "dead_letter"},
			`ses events: not read; a delivery left "sending" is dead-lettered after 15m0s for an operator to settle`},
		{config.SESEvents{QueueURL: "https://sqs.eu-west-2.amazonaws.com/1/ev", Grace: time.Hour, Unsettled: "dead_letter"},
			`ses events: read from https://sqs.eu-west-2.amazonaws.com/1/ev before each run; a delivery they leave "sending" for 1h0m0s is dead-lettered`},
		{config.SESEvents{QueueURL: "https://sqs.eu-west-2.amazonaws.com/1/ev", Grace: time.Hour, Unsettled: "resend"},
			`is sent again`},
	}
	for _, tt := range tests {
		if got := sesEventsLine(tt.e); !strings.Contains(got, tt.want) {
			t.Errorf("sesEventsLine(%+v) = %q, want %q in it", tt.e, got, tt.want)
		}
	}
}

// TestSettleRunPolicy: resend applies only to a run that read SES's
// events to the end; any other run dead-letters what is unsettled.
func TestSettleRunPolicy(t *testing.T) {
	resend := config.SESEvents{QueueURL: "https://sqs.eu-west-2.amazonaws.com/1/ev", Unsettled: "resend"}
	deadLetter := config.SESEvents{QueueURL: resend.QueueURL, Unsettled: "dead_letter"}
	incomplete := fmt.Errorf("ses events: %w: stopped after 1000 messages", sesevents.ErrIncomplete)
	tests := []struct {
		name string
		cfg  config.SESEvents
		run  settleRun
		want worker.UnsettledPolicy
	}{
		{"resend, events read", resend, settleRun{configured: true, res: sesevents.Result{Emptied: true}}, worker.UnsettledResend},
		{"resend, queue unreadable", resend, settleRun{configured: true, err: errors.New("AccessDenied")}, worker.UnsettledDeadLetter},
		{"resend, more events than max_events", resend, settleRun{configured: true, err: incomplete}, worker.UnsettledDeadLetter},
		{"resend, no reader", resend, settleRun{}, worker.UnsettledDeadLetter},
		{"dead_letter, events read", deadLetter, settleRun{configured: true}, worker.UnsettledDeadLetter},
	}
	for _, tt := range tests {
		if got := tt.run.policy(tt.cfg); got != tt.want {
			t.Errorf("%s: policy = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestSettleRunSummary(t *testing.T) {
	tests := []struct {
		run  settleRun
		want string
	}{
		{settleRun{}, "settled 0"},
		{settleRun{configured: true, res: sesevents.Result{Settled: 3}}, "settled 3"},
		{settleRun{configured: true, res: sesevents.Result{Settled: 2}, err: fmt.Errorf("x: %w", sesevents.ErrIncomplete)}, "settled 2"},
		{settleRun{configured: true, err: errors.New("queue x: does not exist")}, "settled 0 (ses events queue unreadable)"},
	}
	for _, tt := range tests {
		if got := tt.run.summary(); got != tt.want {
			t.Errorf("summary() of %+v = %q, want %q", tt.run, got, tt.want)
		}
	}
}

// TestScheduleWorkersForRun: with resend configured, a run that did not
// read SES's events to the end gets the schedule's dead_letter worker.
func TestScheduleWorkersForRun(t *testing.T) {
	configured, deadLetter := &worker.Worker{}, &worker.Worker{}
	sw := &scheduleWorkers{configured: configured, deadLetter: deadLetter,
		cfg: config.SESEvents{QueueURL: "https://sqs.eu-west-2.amazonaws.com/1/ev", Unsettled: "resend"}, logger: slog.New(slog.DiscardHandler)}
	if got := sw.forRun(settleRun{configured: true}); got != configured {
		t.Error("a run that read every event did not get the resend worker")
	}
	for _, err := range []error{errors.New("AccessDenied"), fmt.Errorf("x: %w", sesevents.ErrIncomplete)} {
		if got := sw.forRun(settleRun{configured: true, err: err}); got != deadLetter {
			t.Errorf("a run whose events reading ended with %q got the resend worker", err)
		}
	}
}
