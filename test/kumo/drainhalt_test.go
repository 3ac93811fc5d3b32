package kumo

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/link"
	"github.com/reportmailer/reportmailer/worker/rotate"
	"github.com/reportmailer/reportmailer/worker/store"
)

// TestKMSThrottleHaltsDrain: a worker whose KMS key is throttled past
// the SDK's retries halts its run: nothing is sent or dead-lettered,
// and the message stays on the queue, hidden, for a later run.
func TestKMSThrottleHaltsDrain(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	reports, state := unique("reports"), unique("state")
	e.bucket(t, reports)
	e.bucket(t, state)
	arn := e.kmsKey(t, kmstypes.KeySpecRsa2048)
	keyID := e.publicKey(t, kmsPublic(t, e, arn))
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
	prefix := "kumo/cdn/" + dist + "/"
	e.put(t, reports, prefix+"r/q4.pdf", "%PDF q4")

	th := &throttler{next: http.DefaultTransport}
	client := kms.NewFromConfig(aws.Config{
		Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(e.url), HTTPClient: &http.Client{Transport: th},
	}, func(o *kms.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = 2
			so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
		})
	})
	src := &rotate.Source{Keys: []rotate.ConfiguredKey{{ID: keyID, KMSKeyID: arn, Active: true}}, KMS: client, State: ring}
	signer := &link.CloudFront{Domain: e.edge(dist), Bucket: reports, Ring: &link.LoadedRing{Load: src.Load},
		Hash: link.HashSHA256, TTL: time.Hour, Expiries: expiries}
	w := e.worker(t, signer, reports, state, prefix, aws.ToString(q.QueueUrl), aws.ToString(dlq.QueueUrl))
	body := `{"version":1,"type":"report.ready","id":"evt-throttled-1",
		"user":{"id":"u-ann","email":"ann@example.com","name":"Ann"},
		"reports":[{"bucket":"` + reports + `","key":"` + prefix + `r/q4.pdf","title":"Q4 results"}]}`
	if _, err := e.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String(body)}); err != nil {
		t.Fatal(err)
	}

	th.n.Store(1 << 30) // every kms:Sign throttled
	drainHalts(t, e, w, th, "kms:Sign", q.QueueUrl, dlq.QueueUrl)
}

// drainHalts drains w and checks that the run halted with its one
// message handed back, after th saw the KMS call what: nothing sent,
// nothing dead-lettered.
func drainHalts(t *testing.T, e *env, w *worker.Worker, th *throttler, what string, queueURL, dlqURL *string) {
	t.Helper()
	sum, err := w.Drain(context.Background())
	if err != nil {
		t.Fatalf("drain: %v", err)
	}
	if !sum.Halted || sum.Sent != 0 || sum.DeadLettered != 0 || sum.Retrying != 1 {
		t.Fatalf("run: %+v; want halted, the message handed back, nothing sent or dead-lettered", sum)
	}
	if th.hits.Load() == 0 {
		t.Fatalf("%s was never called", what)
	}
	if got := len(e.sent(t)); got != 0 {
		t.Errorf("%d emails sent, want none", got)
	}
	handedBack(t, e, queueURL, dlqURL)
}

// handedBack checks that the queue holds its one message hidden, and
// the dead-letter queue none.
func handedBack(t *testing.T, e *env, queueURL, dlqURL *string) {
	t.Helper()
	ctx := context.Background()
	for _, u := range []*string{queueURL, dlqURL} {
		a, err := e.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: u,
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
		if err != nil {
			t.Fatal(err)
		}
		visible, hidden := a.Attributes["ApproximateNumberOfMessages"], a.Attributes["ApproximateNumberOfMessagesNotVisible"]
		if u == queueURL && hidden != "1" {
			t.Errorf("the queue holds %s visible and %s hidden messages, want the message hidden", visible, hidden)
		}
		if u == dlqURL && (visible != "0" || hidden != "0") {
			t.Errorf("the dead-letter queue holds %s visible and %s hidden messages, want none", visible, hidden)
		}
	}
}

// TestUnloadableKeyHaltsDrain: when the key scheduled after a retired
// key cannot be loaded (KMS throttles GetPublicKey past the SDK's
// retries), no key is left to sign, and the worker's run halts and
// hands its message back, hidden, rather than failing it towards the
// dead-letter queue.
func TestUnloadableKeyHaltsDrain(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.rsaStart(t)
	arn := e.kmsKey(t, kmstypes.KeySpecRsa2048)
	idB := e.publicKey(t, kmsPublic(t, e, arn))
	past := time.Now().Add(-time.Hour)
	if _, err := s.ring.Save(ctx, store.RingState{
		Keys:    []store.RingStateKey{{ID: idB, KMSKeyID: arn, ActivatesAt: past, AddedAt: past}},
		Retired: []store.RetiredKey{{ID: s.idA, RetiredAt: past}},
	}, ""); err != nil {
		t.Fatal(err)
	}
	q, err := e.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(unique("ready"))})
	if err != nil {
		t.Fatal(err)
	}
	dlq, err := e.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(unique("ready-dlq"))})
	if err != nil {
		t.Fatal(err)
	}
	prefix := "kumo/cdn/" + s.dist + "/"
	e.put(t, s.reports, prefix+"r/q4.pdf", "%PDF q4")

	th := &throttler{next: http.DefaultTransport, target: "TrentService.GetPublicKey"}
	th.n.Store(1 << 30)
	client := kms.NewFromConfig(aws.Config{
		Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(e.url), HTTPClient: &http.Client{Transport: th},
	}, func(o *kms.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = 2
			so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
		})
	})
	src := &rotate.Source{Keys: []rotate.ConfiguredKey{{ID: s.idA, Signer: s.keyA, Active: true}}, KMS: client, State: s.ring}
	signer := &link.CloudFront{Domain: e.edge(s.dist), Bucket: s.reports, Ring: &link.LoadedRing{Load: src.Load},
		Hash: link.HashSHA256, TTL: time.Hour, Expiries: s.expiries}
	w := e.worker(t, signer, s.reports, s.state, prefix, aws.ToString(q.QueueUrl), aws.ToString(dlq.QueueUrl))
	body := `{"version":1,"type":"report.ready","id":"evt-unloadable-1",
		"user":{"id":"u-ann","email":"ann@example.com","name":"Ann"},
		"reports":[{"bucket":"` + s.reports + `","key":"` + prefix + `r/q4.pdf","title":"Q4 results"}]}`
	if _, err := e.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String(body)}); err != nil {
		t.Fatal(err)
	}
	drainHalts(t, e, w, th, "kms:GetPublicKey", q.QueueUrl, dlq.QueueUrl)
}
