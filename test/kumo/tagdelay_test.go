package kumo

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/reportmailer/reportmailer/worker/link"
	"github.com/reportmailer/reportmailer/worker/rotate"
)

// TestRotateKMSTagDelay: AWS may take minutes to authorize requests by
// the tag a new KMS key was created with. A rotation saves the KMS key
// in the ring's state as soon as it exists, tries kms:GetPublicKey
// again while it is denied, and, if denied past its wait, stops with
// the key saved, so the next run resumes with it rather than making
// another; and it activates a KMS key no sooner than the tag's delay
// plus twice the ring's refresh after the tag was set.
func TestRotateKMSTagDelay(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.rsaStart(t)
	idA, dist, expiries, ring := s.idA, s.dist, s.expiries, s.ring

	th := &throttler{next: http.DefaultTransport, code: "AccessDeniedException", target: "TrentService.GetPublicKey"}
	client := kms.NewFromConfig(aws.Config{
		Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(e.url), HTTPClient: &http.Client{Transport: th},
	})
	clock := time.Now().UTC().Truncate(time.Second)
	rot := &rotate.Rotator{CloudFront: e.cf, KMS: client, Ring: ring, Expiries: expiries, DistributionID: dist, ActiveKeyID: idA,
		Poll: time.Millisecond, TagWait: 50 * time.Millisecond, Now: func() time.Time { return clock }}

	th.n.Store(1 << 30) // denied past the wait
	if _, err := rot.Rotate(ctx, rotate.RotateOptions{Kind: rotate.KindKMSRSA, ActivateAfter: rotate.ActivateAfterMin}); err == nil {
		t.Fatal("rotate with kms:GetPublicKey denied throughout: no error")
	}
	if th.hits.Load() < 2 {
		t.Errorf("kms:GetPublicKey tried %d times, want it tried again while denied", th.hits.Load())
	}
	st, _, err := ring.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Rotation == nil || st.Rotation.KMSKeyID == "" || !st.Rotation.KMSTaggedAt.Equal(clock) {
		t.Fatalf("after the denied run the state holds %+v; want the KMS key and when it was tagged", st.Rotation)
	}
	arn := st.Rotation.KMSKeyID

	th.n.Store(3) // denied three times more, then allowed: the retry gets it
	th.hits.Store(0)
	k, err := rot.Rotate(ctx, rotate.RotateOptions{Kind: rotate.KindKMSRSA, ActivateAfter: rotate.ActivateAfterMin})
	if err != nil {
		t.Fatalf("resumed rotate: %v", err)
	}
	if th.hits.Load() != 3 {
		t.Errorf("%d denied kms:GetPublicKey, want 3 then a success", th.hits.Load())
	}
	if k.KMSKeyID != arn {
		t.Errorf("resumed rotation scheduled KMS key %s, want the one made before, %s", k.KMSKeyID, arn)
	}
	if earliest := clock.Add(rotate.KMSTagDelay + 2*link.RingRefresh); k.ActivatesAt.Before(earliest) {
		t.Errorf("KMS key activates at %s, before %s (tag set at %s, plus %s and twice the ring's refresh)", k.ActivatesAt, earliest, clock, rotate.KMSTagDelay)
	}
}
