package main

import (
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/config"
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
