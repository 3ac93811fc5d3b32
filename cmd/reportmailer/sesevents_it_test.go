package main

// End to end: SES accepted an email, its answer was lost, and SES's own
// Send event, written the way SES documents it, settles the delivery.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/iam"
)

// The samples' ids, which sesEvent replaces.
const (
	sampleEmailID   = "6b1f0c3e9d2a4f5b8c7d6e5f4a3b2c1d"
	sampleMessageID = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"
)

// sesEvent is the sample event in worker/sesevents/testdata (AWS's
// documented example with our tag) for the email emailID, which SES
// accepted as messageID.
func sesEvent(t *testing.T, sample, emailID, messageID string) string {
	t.Helper()
	b, err := os.ReadFile("../../worker/sesevents/testdata/" + sample)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), sampleEmailID, emailID)
	return strings.ReplaceAll(s, sampleMessageID, messageID)
}

// ledgerRecord returns the ledger record of the delivery of event to
// recipient, read straight from the emulator.
func (e *itEnv) ledgerRecord(t *testing.T, eventID, recipient string) map[string]any {
	t.Helper()
	key := "reportmailer/ledger/" + worker.DeliveryKey(eventID, recipient)
	out, err := e.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(itBucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("ledger record %s: %v", key, err)
	}
	defer out.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(out.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSESEventSettlesAMaybeSentEmail: SES accepts an email and the
// connection is reset before its answer, so the delivery stays
// "sending". With SES's events read, the message is not dead-lettered:
// it is hidden for the grace. SES's Send event for that email
// (EventBridge on goaws, SNS on fauxqs) settles the delivery at the
// start of the next run, with no operator. (That the message, back
// after the grace, is then acknowledged without a second email is the
// fault suite's "SES reset and 500 after acceptance, with SES's events
// read".) All under the declared policy.
func TestSESEventSettlesAMaybeSentEmail(t *testing.T) {
	samples := map[string]string{"goaws": "eventbridge-send.json", "fauxqs": "sns-send.json"}
	for _, emu := range sqsEmulators {
		t.Run(emu, func(t *testing.T) {
			e := newITEnv(t, emu)
			q, dlq := e.queues(t)
			events, err := e.sqs.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(fmt.Sprintf("ses-events-%s-%d", emu, time.Now().UnixNano()%1e9))})
			if err != nil {
				t.Fatal(err)
			}
			eventsURL := aws.ToString(events.QueueUrl)
			cfg := e.config(t, q, dlq)
			appendConfig(t, cfg, fmt.Sprintf("ses_events: {queue_url: %q, grace: %s}\n", eventsURL, sesEventsGrace))
			e.allow(t, cfg, iam.Drain) // the events queue too
			set := e.lp.set
			lost := set.SES.Inject(awsproxy.Fault{Operation: "SendEmail", After: true, Reset: true, Times: 1})

			e.put(t, "se/q3.pdf", nil)
			e.send(t, q, nativeBody("se-1", "ana", nil, "se/q3.pdf"))

			// Run 1: SES accepts, the answer is lost. The message waits,
			// hidden, for the events to settle it.
			code, out, logs := drain(t, cfg)
			if lost.Injected() != 1 || code != ExitPartial || !strings.Contains(out, "retrying 1") || !strings.Contains(out, "maybe sent 1") || !strings.Contains(out, "dead-lettered 0") {
				t.Fatalf("run 1: exit %d, %q (faults %d); want the email counted maybe sent and its message left for retry\n%s", code, out, lost.Injected(), logs)
			}
			if hides := set.SQS.Counts("ChangeMessageVisibilityBatch").Seen + set.SQS.Counts("ChangeMessageVisibility").Seen; hides == 0 || !strings.Contains(logs, "message hidden while its delivery is settled") {
				t.Fatalf("run 1 did not hide the message for the grace (%d visibility calls)\n%s", hides, logs)
			}
			sent := e.emails(t, "ana@acme.example")
			if len(sent) != 1 {
				t.Fatalf("SES accepted %d emails to ana, want 1", len(sent))
			}
			rec := e.ledgerRecord(t, "se-1", "ana@acme.example")
			emailID, _ := rec["email_id"].(string)
			if rec["state"] != "sending" || emailID == "" {
				t.Fatalf("ledger record after run 1 = %v; want sending, with an email id", rec)
			}

			// SES publishes its Send event for the email, tagged with
			// its id; another sender's email on the set publishes one
			// too.
			e.send(t, eventsURL, sesEvent(t, samples[emu], emailID, sent[0].MessageID))
			e.send(t, eventsURL, sesEvent(t, "raw-send-untagged.json", emailID, "someone-elses"))

			// Run 2: the event settles the delivery; the message is
			// still hidden.
			code, out, logs = drain(t, cfg)
			if code != ExitOK || !strings.Contains(out, "settled 1") || !strings.Contains(out, "received 0") {
				t.Fatalf("run 2: exit %d, %q; want the delivery settled by the event\n%s", code, out, logs)
			}
			rec = e.ledgerRecord(t, "se-1", "ana@acme.example")
			if rec["state"] != "sent" || rec["message_id"] != sent[0].MessageID || rec["settled_by"] != "ses-event" {
				t.Errorf("ledger record after run 2 = %v; want sent with SES's message id, settled by the event", rec)
			}
			if !e.queueEmpty(t, eventsURL) {
				t.Error("messages left on the events queue")
			}
			if dead := e.dead(t, dlq); len(dead) != 0 {
				t.Errorf("dead letters %q; want none: the events settle it", dead)
			}

			if got := e.emails(t, "ana@acme.example"); len(got) != 1 {
				t.Errorf("SES accepted %d emails to ana in all, want 1: a second was sent", len(got))
			}
			if c := set.SES.Counts("SendEmail"); c.Seen != 1 {
				t.Errorf("SendEmail was called %d times, want 1", c.Seen)
			}
		})
	}
}

// sesEventsGrace is the shortest grace the config accepts.
const sesEventsGrace = time.Minute

// appendConfig adds YAML to the config file at path.
func appendConfig(t *testing.T, path, yaml string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(yaml); err != nil {
		t.Fatal(err)
	}
}
