package kumo

import (
	"context"
	"crypto"
	"net/http"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/reportmailer/reportmailer/worker/link"
	"github.com/reportmailer/reportmailer/worker/rotate"
)

var edgeLinkRE = regexp.MustCompile(`http://127\.0\.0\.1:[0-9]+/kumo/cdn/[^\s<>"]+`)

// TestKMSKeyDelivery runs the worker with its only key in KMS (RSA_2048,
// signing SHA-256 digests through kms:Sign) on kumo's SQS, S3, SES, KMS
// and CloudFront: an event delivered twice on the queue, then once more
// after the run, gives one email per recipient, whose links verify
// with the KMS key's public key and open at the edge.
func TestKMSKeyDelivery(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// kumo's state is the process's, so names differ per test.
	reports, state := unique("reports"), unique("state")
	e.bucket(t, reports)
	e.bucket(t, state)
	arn := e.kmsKey(t, kmstypes.KeySpecRsa2048)
	pub := kmsPublic(t, e, arn)
	keyID := e.publicKey(t, pub)
	dist := e.distribution(t, reports, keyID)
	expiries, ring := keyRecords(e, state)

	q, err := e.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(unique("ready"))})
	if err != nil {
		t.Fatal(err)
	}
	dlq, err := e.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(unique("ready-dlq"))})
	if err != nil {
		t.Fatal(err)
	}
	// The report at its key for the worker's HeadObject, and where the
	// edge serves it (see TestRotationAtTheEdge).
	prefix := "kumo/cdn/" + dist + "/"
	e.put(t, reports, prefix+"r/q4.pdf", "%PDF q4")
	e.put(t, reports, "r/q4.pdf", "%PDF q4")

	src := &rotate.Source{Keys: []rotate.ConfiguredKey{{ID: keyID, KMSKeyID: arn, Active: true}}, KMS: e.kms, State: ring}
	signer := &link.CloudFront{Domain: e.edge(dist), Bucket: reports, Ring: &link.LoadedRing{Load: src.Load},
		Hash: link.HashSHA256, TTL: time.Hour, Expiries: expiries}
	w := e.worker(t, signer, reports, state, prefix, aws.ToString(q.QueueUrl), aws.ToString(dlq.QueueUrl))
	body := `{"version":1,"type":"report.ready","id":"evt-kms-1",
		"user":{"id":"u-ann","email":"ann@example.com","name":"Ann"},
		"recipients":["bob@example.com"],
		"reports":[{"bucket":"` + reports + `","key":"` + prefix + `r/q4.pdf","title":"Q4 results"}]}`
	enqueue := func(n int) {
		for range n {
			if _, err := e.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String(body)}); err != nil {
				t.Fatal(err)
			}
		}
	}

	enqueue(2) // at-least-once delivery: the same event twice
	sum, err := w.Drain(ctx)
	if err != nil {
		t.Fatalf("drain: %v", err)
	}
	if sum.Sent != 2 || sum.DeadLettered != 0 {
		t.Fatalf("first run: %+v, want 2 emails sent (ann and bob) and no dead letter", sum)
	}
	enqueue(1) // and once more after the run
	if sum, err = w.Drain(ctx); err != nil || sum.Sent != 0 {
		t.Fatalf("second run: %+v, %v; want nothing sent again", sum, err)
	}

	emails := e.sent(t)
	var to []string
	for _, m := range emails {
		to = append(to, m.Destination.ToAddresses...)
		links := edgeLinkRE.FindAllString(m.Body, -1)
		if len(links) == 0 {
			t.Fatalf("email to %v has no link:\n%s", m.Destination.ToAddresses, m.Body)
		}
		for _, l := range links {
			v, err := link.Verify(l, func(id string) (crypto.PublicKey, bool) { return pub, id == keyID }, time.Now())
			if err != nil {
				t.Errorf("link %s does not verify with the KMS key's public key: %v", l, err)
			} else if v.KeyID != keyID {
				t.Errorf("link %s is signed by %s, want %s", l, v.KeyID, keyID)
			}
			if got := status(t, l); got != http.StatusOK {
				t.Errorf("link %s answered %d at the edge, want 200", l, got)
			}
		}
	}
	slices.Sort(to)
	if !slices.Equal(to, []string{"ann@example.com", "bob@example.com"}) {
		t.Errorf("emails went to %v, want ann and bob once each", to)
	}
	if latest, err := expiries.Latest(ctx, keyID); err != nil || latest.IsZero() {
		t.Errorf("the KMS key's latest expiry was not recorded: %v, %v", latest, err)
	}
}
