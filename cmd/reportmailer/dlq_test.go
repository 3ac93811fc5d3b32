package main

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/queue"
)

// TestDeadLetterClass: dlq list and redrive show a dead letter's class
// as an outcome (permanent, ambiguous, retry), whether it carries
// reportmailer-failure, only the code an older version wrote (a
// maybe_sent one is then still ambiguous, so redrive skips it), or
// nothing of ours (moved by the RedrivePolicy).
func TestDeadLetterClass(t *testing.T) {
	str := func(v string) sqstypes.MessageAttributeValue {
		return sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	body := aws.String(nativeBody("e1", "u1", nil, "k.pdf"))
	for _, tt := range []struct {
		name      string
		attrs     map[string]sqstypes.MessageAttributeValue
		wantClass worker.Outcome
		wantCode  worker.Code
	}{
		{"failure attribute", map[string]sqstypes.MessageAttributeValue{
			queue.AttrCode: str("maybe_sent"), queue.AttrFailure: str(`{"class":"ambiguous","code":"maybe_sent","event_ids":["e1"]}`)}, worker.OutcomeAmbiguous, worker.CodeMaybeSent},
		{"old maybe_sent, code only", map[string]sqstypes.MessageAttributeValue{queue.AttrCode: str("maybe_sent")}, worker.OutcomeAmbiguous, worker.CodeMaybeSent},
		{"old object_missing, code only", map[string]sqstypes.MessageAttributeValue{queue.AttrCode: str("object_missing")}, worker.OutcomePermanent, worker.CodeObjectMissing},
		{"moved by the RedrivePolicy", nil, worker.OutcomeRetry, codeMaxReceives},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := readDeadLetter(config.Schedule{Name: "s"}, sqstypes.Message{MessageId: aws.String("m1"), Body: body, MessageAttributes: tt.attrs})
			if d.Class != tt.wantClass || d.Code != tt.wantCode || len(d.EventIDs) != 1 || d.EventIDs[0] != "e1" {
				t.Errorf("class %q, code %q, events %v; want %q, %q, [e1]", d.Class, d.Code, d.EventIDs, tt.wantClass, tt.wantCode)
			}
		})
	}
}

// TestResendHold: a resend hides its dead letter for longer than its
// run may take (dlq list's short hold is not enough), within SQS's
// 12-hour limit.
func TestResendHold(t *testing.T) {
	for _, tt := range []struct {
		budget, want time.Duration
	}{
		{5 * time.Minute, 7 * time.Minute},
		{time.Minute, 3 * time.Minute},
		{20 * time.Hour, 12 * time.Hour},
	} {
		got := resendHold(config.Schedule{Budget: tt.budget})
		if got != tt.want || got <= dlqHold {
			t.Errorf("resendHold(budget %s) = %s, want %s", tt.budget, got, tt.want)
		}
	}
}
