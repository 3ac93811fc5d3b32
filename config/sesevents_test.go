package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/config"
)

func TestSESEventsDefaults(t *testing.T) {
	c, err := config.Parse([]byte(minimal), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := config.SESEvents{Grace: 15 * time.Minute, Unsettled: "dead_letter", MaxEvents: 1000}
	if c.SESEvents != want {
		t.Errorf("ses_events = %+v, want %+v: no queue, and the documented defaults", c.SESEvents, want)
	}
}

func TestSESEventsSettings(t *testing.T) {
	const events = "https://sqs.eu-west-2.amazonaws.com/1/ses-events"
	tests := []struct {
		name string
		yaml string // appended to minimal
		env  []string
		err  string // "" means valid
		want config.SESEvents
	}{
		{name: "all set", yaml: `
ses_events: {queue_url: ` + events + `, grace: 30m, unsettled: resend, max_events: 50}
`, env: []string{"REPORTMAILER_SENDER_CONFIGURATION_SET=reports"}, want: config.SESEvents{QueueURL: events, Grace: 30 * time.Minute, Unsettled: "resend", MaxEvents: 50}},
		{name: "from the environment", env: []string{
			"REPORTMAILER_SES_EVENTS_QUEUE_URL=" + events,
			"REPORTMAILER_SES_EVENTS_GRACE=1h",
			"REPORTMAILER_SES_EVENTS_UNSETTLED=resend",
			"REPORTMAILER_SES_EVENTS_MAX_EVENTS=200",
			"REPORTMAILER_SENDER_CONFIGURATION_SET=reports",
		}, want: config.SESEvents{QueueURL: events, Grace: time.Hour, Unsettled: "resend", MaxEvents: 200}},
		{name: "grace without a queue", yaml: "ses_events: {grace: 1h}",
			want: config.SESEvents{Grace: time.Hour, Unsettled: "dead_letter", MaxEvents: 1000}},

		{name: "resend without a queue", yaml: "ses_events: {unsettled: resend}",
			err: `ses_events.unsettled: "resend" needs ses_events.queue_url`},
		{name: "resend without a configuration set", yaml: "ses_events: {queue_url: " + events + ", unsettled: resend}",
			err: `ses_events.unsettled: "resend" needs sender.configuration_set`},
		{name: "unknown policy", yaml: "ses_events: {queue_url: " + events + ", unsettled: retry}",
			err: `ses_events.unsettled: "retry" is not dead_letter or resend`},
		{name: "grace too short", yaml: "ses_events: {grace: 30s}",
			err: `ses_events.grace: 30s is not between 1m and 336h`},
		{name: "grace past SQS retention", yaml: "ses_events: {grace: 400h}",
			err: `ses_events.grace: 400h0m0s is not between 1m and 336h`},
		{name: "negative grace", env: []string{"REPORTMAILER_SES_EVENTS_GRACE=-5m"},
			err: `ses_events.grace: -5m0s is not between 1m and 336h`},
		{name: "not a queue URL", yaml: "ses_events: {queue_url: ses-events}",
			err: `ses_events.queue_url: "ses-events" is not a queue URL`},
		{name: "the schedule's own queue", yaml: "ses_events: {queue_url: https://sqs.eu-west-2.amazonaws.com/1/q}",
			err: `ses_events.queue_url: "https://sqs.eu-west-2.amazonaws.com/1/q" is schedules[0].queue_url`},
		{name: "the schedule's dead-letter queue", yaml: "ses_events: {queue_url: https://sqs.eu-west-2.amazonaws.com/1/dlq}",
			err: `ses_events.queue_url: "https://sqs.eu-west-2.amazonaws.com/1/dlq" is schedules[0].dead_letter_queue_url`},
		{name: "max events too low", yaml: "ses_events: {max_events: 5}",
			err: `ses_events.max_events: 5 is less than 10`},
		{name: "unknown field", yaml: "ses_events: {queue: " + events + "}",
			err: `field queue not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse([]byte(minimal+tt.yaml), tt.env)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("error = %v\nwant it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if c.SESEvents != tt.want {
				t.Errorf("ses_events = %+v, want %+v", c.SESEvents, tt.want)
			}
		})
	}
}
