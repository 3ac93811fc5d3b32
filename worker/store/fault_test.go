package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/internal/s3test"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/store"
)

// newProxied starts gofakes3 with bucket "state" behind awsproxy, and
// returns the proxy and a real S3 client (standard retries) through it.
func newProxied(t *testing.T) (*awsproxy.Proxy, *s3.Client) {
	t.Helper()
	url, _ := s3test.Start(t, "state")
	p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.S3, Target: url})
	c := s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(p.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		DisableLogOutputChecksumValidationSkipped: true,
	})
	return p, c
}

// TestLedgerClaimSurvivesRetryAfterApply: S3 applies the claim's
// conditional PutObject, the answer is lost (a reset), the SDK retries
// and gets 412 against the claim it just made. The claim is ours: the
// record names us as its owner.
func TestLedgerClaimSurvivesRetryAfterApply(t *testing.T) {
	ctx := context.Background()
	p, c := newProxied(t)
	l := &store.Ledger{Client: c, Bucket: "state", Prefix: "ledger/"}
	key := worker.DeliveryKey("evt-1", "ana@example.com")
	rule := p.Inject(awsproxy.Fault{Operation: "PutObject", After: true, Reset: true, Times: 1})

	got, err := l.Claim(ctx, key, time.Now())
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if rule.Injected() != 1 || p.Counts("PutObject").Forwarded < 2 {
		t.Fatalf("the fault did not happen as planned: injected %d, PutObject %+v", rule.Injected(), p.Counts("PutObject"))
	}
	if got.State != worker.Claimed {
		t.Fatalf("Claim after the SDK retried our own applied write = %+v; want Claimed (the record is ours)", got)
	}
	// Someone else still loses.
	other, err := l.Claim(ctx, key, time.Now())
	if err != nil || other.State == worker.Claimed {
		t.Fatalf("a second claim = %+v, %v; want it refused", other, err)
	}
}
