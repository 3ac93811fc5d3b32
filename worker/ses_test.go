package worker_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/internal/emulator"
	"github.com/reportmailer/reportmailer/internal/s3test"
	"github.com/reportmailer/reportmailer/templates"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/mail"
	"github.com/reportmailer/reportmailer/worker/store"
	"github.com/reportmailer/reportmailer/worker/transport"
)

// TestDrainSES5xxAfterAcceptance: SES accepts an email, then answers
// 500. Whether the send is retried is sender.retry_server_errors' to
// say; either way the summary says what may have happened, and the
// emails that arrived show it. Real SES v2 client, aws-ses-v2-local
// behind awsproxy, and the S3 ledger on gofakes3.
func TestDrainSES5xxAfterAcceptance(t *testing.T) {
	sesURL := emulator.StartSESLocal(t, "")
	tests := []struct {
		name    string
		user    string // one per case: they share the emulator
		retry   bool
		emails  int
		summary worker.Summary
		record  string
		// then fails the retry, if any, before SES has it: whatever
		// the last attempt got, the first may have been accepted.
		then *awsproxy.Fault
	}{
		{"not retried (the default): ambiguous, one email", "once", false, 1,
			worker.Summary{Received: 1, DeadLettered: 1, MaybeSent: 1}, "sending", nil},
		{"retried: two emails, counted", "twice", true, 2,
			worker.Summary{Received: 1, Acked: 1, Sent: 1, MaybeDuplicated: 1}, "sent", nil},
		{"retried, and the retry refused: still ambiguous", "refused", true, 1,
			worker.Summary{Received: 1, DeadLettered: 1, MaybeSent: 1, MaybeDuplicated: 1}, "sending",
			&awsproxy.Fault{Operation: "SendEmail", Status: 400, Code: "BadRequestException", Times: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			start := time.Now().Add(-time.Second)
			p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.SES, Target: sesURL})
			p.Inject(awsproxy.Fault{Operation: "SendEmail", After: true, Status: 500, Times: 1})
			if tt.then != nil {
				var calls atomic.Int32
				f := *tt.then
				f.Match = func(awsproxy.Call) bool { return calls.Add(1) == 2 }
				p.Inject(f)
			}
			client := sesv2.New(sesv2.Options{
				Region: "us-east-1", BaseEndpoint: aws.String(p.URL),
				Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
				Retryer:     mail.PacedRetryer(), HTTPClient: transport.Wrap(nil),
			})
			_, s3c := s3test.Start(t, "state")
			ledger := &store.Ledger{Client: s3c, Bucket: "state", Prefix: "ledger/"}
			rcpt := tt.user + "@example.com"
			key := worker.DeliveryKey("e1", rcpt)
			q := &fakeQueue{pending: []worker.Message{{ID: "m0", ReceiptHandle: "r0", Body: native("e1", tt.user, nil, "a.pdf")}}}
			w, err := worker.New(worker.Config{Schedule: "test", From: "reports@example.com", Bucket: "reports", WaitTime: time.Second},
				worker.Deps{Queue: q, Objects: anyObjects{}, Signer: fakeSigner{}, Templates: templates.Default(),
					Mailer: &mail.SES{Client: client, RetryServerErrors: tt.retry}, Ledger: ledger})
			if err != nil {
				t.Fatal(err)
			}
			sum, err := w.Drain(ctx)
			if err != nil {
				t.Fatal(err)
			}
			all, err := emulator.SESLocalEmails(ctx, sesURL, start)
			if err != nil {
				t.Fatal(err)
			}
			arrived := 0
			for _, e := range all {
				if strings.Join(e.To(), ",") == rcpt {
					arrived++
				}
			}
			if arrived != tt.emails || sum != tt.summary {
				t.Fatalf("%d emails arrived, summary %+v; want %d, %+v", arrived, sum, tt.emails, tt.summary)
			}
			out, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("state"), Key: aws.String("ledger/" + key)})
			if err != nil {
				t.Fatal(err)
			}
			var rec map[string]any
			json.NewDecoder(out.Body).Decode(&rec)
			out.Body.Close()
			if rec["state"] != tt.record {
				t.Errorf("ledger record %v; want state %s", rec, tt.record)
			}
			if tt.summary.DeadLettered == 1 {
				for _, s := range []string{rcpt, "s3://state/ledger/" + key, "ledger settle -config FILE -record " + key, "may have been accepted"} {
					if !strings.Contains(q.dead["m0"], s) {
						t.Errorf("dead-letter reason %q does not say %q", q.dead["m0"], s)
					}
				}
			}
		})
	}
}
