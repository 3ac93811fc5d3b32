package main

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/internal/awsproxy"
)

// TestDrainHaltHoldsAcrossRuns: SES refuses every email because the
// sender is not verified. The first drain halts, exit 1, and hides its
// message; the second, a new process, must not receive at all while
// that halt holds, since every receive counts towards maxReceiveCount
// and SQS would dead-letter the healthy message with no reason. The
// whole run is under the declared policy, so the halt record's reads
// and writes must be allowed too.
func TestDrainHaltHoldsAcrossRuns(t *testing.T) {
	for _, emu := range sqsEmulators {
		t.Run(emu, func(t *testing.T) {
			e := newITEnv(t, emu)
			q, dlq := e.queues(t)
			cfg := e.config(t, q, dlq)
			set := e.lp.set
			// SES's text for an unverified sender (see worker/mail's
			// refusal tests); aws-ses-v2-local verifies nothing.
			set.SES.Inject(awsproxy.Fault{Operation: "SendEmail", Status: 400, Code: "MessageRejected",
				Message: "Email address is not verified. The following identities failed the check in region US-EAST-1: reports@acme.example"})

			e.put(t, "halt/q3.pdf", nil)
			e.send(t, q, nativeBody("halt-1", "ana", nil, "halt/q3.pdf"))

			code, out, logs := drain(t, cfg)
			want := `drain it: failed: received 1, sent 0 emails, acked 0, dropped 0, dead-lettered 0, retrying 1, duplicates 0, maybe sent 0, maybe duplicated 0, refused 0, settled 0: ` +
				`schedule "it": could not start sending: ses sender identity not verified: reports@acme.example`
			if code != ExitFailure || !strings.HasPrefix(out, want) {
				t.Fatalf("first run: exit %d, %q\nwant exit %d and %q\n%s", code, out, ExitFailure, want, logs)
			}
			record := e.object(t, config.LedgerPrefixDefault+"halt.json")
			if !strings.Contains(record, `"code":"halted"`) || !strings.Contains(record, "reports@acme.example") || !strings.Contains(record, `"schedule":"it"`) {
				t.Errorf("halt record: %s", record)
			}

			receives := set.SQS.Counts("ReceiveMessage").Forwarded
			sends := set.SES.Counts("SendEmail").Seen
			code, out, logs = drain(t, cfg)
			want = `drain it: failed: received 0, sent 0 emails, acked 0, dropped 0, dead-lettered 0, retrying 0, duplicates 0, maybe sent 0, maybe duplicated 0, refused 0, settled 0: ` +
				`schedule "it": could not start sending: sending halted until `
			if code != ExitFailure || !strings.HasPrefix(out, want) ||
				!strings.Contains(out, "ses sender identity not verified: reports@acme.example") ||
				!strings.Contains(out, "delete s3://"+itBucket+"/"+config.LedgerPrefixDefault+"halt.json") {
				t.Errorf("second run: exit %d, %q\nwant exit %d, %q, the first run's cause and the record to delete\n%s", code, out, ExitFailure, want, logs)
			}
			if n := set.SQS.Counts("ReceiveMessage").Forwarded - receives; n != 0 {
				t.Errorf("the second run received %d times while the halt held", n)
			}
			if n := set.SES.Counts("SendEmail").Seen - sends; n != 0 {
				t.Errorf("the second run tried %d sends", n)
			}
			if d := e.dead(t, dlq); len(d) != 0 {
				t.Errorf("dead-lettered %v: the message is not at fault", d)
			}
		})
	}
}

// object returns the contents of key in the test bucket, or "" with
// an error reported.
func (e *itEnv) object(t *testing.T, key string) string {
	t.Helper()
	out, err := e.s3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(itBucket), Key: aws.String(key)})
	if err != nil {
		t.Errorf("get %s: %v", key, err)
		return ""
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
