package kumo

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudfront/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/iam"
	"github.com/reportmailer/reportmailer/worker/link"
	"github.com/reportmailer/reportmailer/worker/rotate"
	"github.com/reportmailer/reportmailer/worker/store"
)

// kmsPublic returns a KMS key's public key, as CloudFront gets it.
func kmsPublic(t *testing.T, e *env, arn string) crypto.PublicKey {
	t.Helper()
	out, err := e.kms.GetPublicKey(context.Background(), &kms.GetPublicKeyInput{KeyId: aws.String(arn)})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(out.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func keyPairID(t *testing.T, signed string) string {
	t.Helper()
	_, after, ok := strings.Cut(signed, "Key-Pair-Id=")
	if !ok {
		t.Fatalf("no Key-Pair-Id in %s", signed)
	}
	id, _, _ := strings.Cut(after, "&")
	return id
}

// TestRotationAtTheEdge takes a worker from an RSA file key A to a KMS
// RSA_2048 key B with the rotation the keys rotate command runs, then
// retires A as keys retire does, against kumo's CloudFront API, KMS
// and signed-URL-checking edge. Links made before the rotation, during
// it (B trusted, A still signing) and after B's activation all open;
// A's links open until A is retired, which is refused before A's
// safe-removal date and done after it; B's links outlive it.
//
// The rotation and retirement run under the policy worker/iam declares
// for keys rotate and keys retire, through awsproxy.
//
// The object keys need no percent-encoding: kumo's edge compares the
// decoded path, CloudFront the encoded one (see ../../docs/design.md).
func TestRotationAtTheEdge(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.rsaStart(t)
	reports, state, keyA, idA, dist, expiries, ring := s.reports, s.state, s.keyA, s.idA, s.dist, s.expiries, s.ring
	first, err := e.cf.GetDistributionConfig(ctx, &cloudfront.GetDistributionConfigInput{Id: aws.String(dist)})
	if err != nil {
		t.Fatal(err)
	}
	firstGroup := first.DistributionConfig.DefaultCacheBehavior.TrustedKeyGroups.Items[0]

	// The worker's signer, as cmd/reportmailer wires it: a ring that
	// reads the ring's state (here on every signature, not every minute).
	var workerNow time.Time
	src := &rotate.Source{Keys: []rotate.ConfiguredKey{{ID: idA, Signer: keyA, Active: true}}, KMS: e.kms, State: ring,
		Now: func() time.Time { return workerNow }}
	signer := &link.CloudFront{Domain: e.edge(dist), Bucket: reports, Ring: &link.LoadedRing{Load: src.Load, Refresh: time.Nanosecond},
		Hash: link.HashSHA256, TTL: time.Hour, Expiries: expiries}
	if err := signer.Validate(); err != nil {
		t.Fatal(err)
	}
	// The worker, reading a queue on kumo's SQS and sending through its
	// SES, signs its links at the time its clock says.
	q, err := e.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(unique("ready"))})
	if err != nil {
		t.Fatal(err)
	}
	dlq, err := e.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(unique("ready-dlq"))})
	if err != nil {
		t.Fatal(err)
	}
	prefix := "kumo/cdn/" + dist + "/"
	w := e.workerAt(t, func() time.Time { return workerNow }, signer, reports, state, prefix, aws.ToString(q.QueueUrl), aws.ToString(dlq.QueueUrl))
	// sign has the worker deliver an event with report name to one
	// recipient at the time at, and returns the link in its email. The
	// edge serves "r/NAME" from the bucket at <edge>/r/NAME; the signer
	// links a report's key less the domain's path, so the report's key
	// carries that path, where the worker heads it.
	sign := func(name string, at time.Time) string {
		t.Helper()
		e.put(t, reports, "r/"+name, "%PDF "+name)
		e.put(t, reports, prefix+"r/"+name, "%PDF "+name)
		body := `{"version":1,"type":"report.ready","id":"evt-` + name + `",
			"user":{"id":"u-ann","email":"ann@example.com","name":"Ann"},
			"reports":[{"bucket":"` + reports + `","key":"` + prefix + `r/` + name + `","title":"` + name + `"}]}`
		if _, err := e.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
		workerNow = at
		sum, err := w.Drain(ctx)
		if err != nil || sum.Sent != 1 || sum.DeadLettered != 0 {
			t.Fatalf("the worker's run for %s: %+v, %v; want one email sent", name, sum, err)
		}
		var links []string
		for _, m := range e.sent(t) {
			for _, l := range edgeLinkRE.FindAllString(m.Body, -1) {
				if strings.Contains(l, "/r/"+name+"?") {
					links = append(links, l)
				}
			}
		}
		if len(links) != 1 {
			t.Fatalf("emails link %s %d times (%v), want once", name, len(links), links)
		}
		return links[0]
	}
	opens := func(when string, links map[string]int) {
		t.Helper()
		for l, want := range links {
			if got := status(t, l); got != want {
				t.Errorf("%s: %s answered %d, want %d", when, l, got, want)
			}
		}
	}

	before := sign("before.pdf", time.Now())
	if id := keyPairID(t, before); id != idA {
		t.Fatalf("before the rotation the link is signed by %s, want key A %s", id, idA)
	}
	opens("before the rotation", map[string]int{before: http.StatusOK})

	// Two deliveries claimed while A signed, in the ledger's event index.
	ledger := &store.Ledger{Client: e.s3, Bucket: state, Prefix: "ledger/"}
	for _, ev := range []string{"e1", "e2"} {
		d := worker.Delivery{EventID: ev, Recipient: "ana@example.com", Schedule: "daily"}
		if c, err := ledger.Claim(ctx, worker.ClaimRequest{Key: worker.DeliveryKey(ev, d.Recipient), RunID: "run-1", Delivery: d}); err != nil || c.State != worker.Claimed {
			t.Fatalf("claim %s: %+v, %v", ev, c, err)
		}
	}
	clock := time.Now()
	// Rotate and retire as the operator's commands do: under the policy
	// worker/iam declares for keys rotate and keys retire, enforced by
	// awsproxy in front of kumo's S3, CloudFront and KMS (kms:GetPublicKey
	// is granted by the key's tag, which the proxy reads from kumo).
	op := e.operator(t, iam.Inputs{StateBucket: state, LedgerPrefix: "ledger/", KeyRecordsPrefix: "keys/", CloudFront: true, DistributionID: dist},
		iam.KeysRotate, iam.KeysRetire)
	rot := &rotate.Rotator{CloudFront: op.cf, KMS: op.kms, DistributionID: dist,
		Ring:        &store.RingStore{Client: op.s3, Bucket: state, Prefix: ring.Prefix},
		Expiries:    &store.KeyExpiries{Client: op.s3, Bucket: state, Prefix: expiries.Prefix},
		Deliveries:  &rotate.DeliveryIndex{Client: op.s3, Bucket: state, Prefix: "ledger/"},
		ActiveKeyID: idA, MaxTTL: time.Hour, Poll: time.Millisecond, Now: func() time.Time { return clock }}
	t.Cleanup(func() {
		// The calls went through the proxies, which enforced the policy.
		for svc, ops := range map[awsproxy.Service][]string{
			awsproxy.CloudFront: {"CreatePublicKey", "CreateKeyGroup", "UpdateDistribution", "GetDistribution", "DeletePublicKey", "DeleteKeyGroup"},
			awsproxy.KMS:        {"CreateKey", "GetPublicKey"},
			awsproxy.S3:         {"PutObject", "ListObjectsV2"},
		} {
			for _, name := range ops {
				if c := op.proxies[svc].Counts(name); c.Forwarded == 0 {
					t.Errorf("%s %s: %+v; want calls through the proxy", svc, name, c)
				}
			}
		}
	})
	if _, err := rot.Rotate(ctx, rotate.RotateOptions{Kind: rotate.KindKMSRSA, DryRun: true}); err != nil {
		t.Fatalf("rotate -dry-run: %v", err)
	}
	if st, _, _ := ring.Load(ctx); st.Rotation != nil || len(st.Keys) > 0 {
		t.Fatalf("rotate -dry-run changed the ring's state: %+v", st)
	}
	kB, err := rot.Rotate(ctx, rotate.RotateOptions{Kind: rotate.KindKMSRSA, ActivateAfter: rotate.ActivateAfterMin})
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if kB.KMSKeyID == "" || kB.ID == idA || !kB.ActivatesAt.After(clock) {
		t.Fatalf("rotate scheduled %+v", kB)
	}

	during := sign("during.pdf", time.Now())
	if id := keyPairID(t, during); id != idA {
		t.Errorf("before B's activation the link is signed by %s, want key A %s", id, idA)
	}
	after := sign("after.pdf", kB.ActivatesAt.Add(time.Second))
	if id := keyPairID(t, after); id != kB.ID {
		t.Errorf("after B's activation the link is signed by %s, want key B %s", id, kB.ID)
	}
	pubB := kmsPublic(t, e, kB.KMSKeyID)
	if _, err := link.Verify(after, func(id string) (crypto.PublicKey, bool) { return pubB, id == kB.ID }, kB.ActivatesAt.Add(2*time.Second)); err != nil {
		t.Errorf("the link signed after the activation does not verify with the KMS key's public key: %v", err)
	}
	opens("after the rotation", map[string]int{before: http.StatusOK, during: http.StatusOK, after: http.StatusOK})

	// Retiring: never the key that signs, and not A before its links expire.
	clock = kB.ActivatesAt.Add(time.Minute)
	if _, err := rot.Retire(ctx, rotate.RetireOptions{KeyID: kB.ID}); err == nil {
		t.Error("retire of the active key B succeeded")
	}
	safe, err := expiries.Latest(ctx, idA)
	if err != nil || safe.IsZero() {
		t.Fatalf("key A's safe-removal date: %v, %v", safe, err)
	}
	res, err := rot.Retire(ctx, rotate.RetireOptions{KeyID: idA})
	if !errors.Is(err, rotate.ErrTooEarly) || !strings.Contains(err.Error(), safe.UTC().Format(time.RFC3339)) {
		t.Fatalf("retire before the safe date: %v, want a refusal naming %s", err, safe.UTC().Format(time.RFC3339))
	}
	if res.LiveDeliveries != 4 || !strings.Contains(err.Error(), "up to 4 deliveries") {
		t.Errorf("the refusal counts %d deliveries (%v), want the 4 claimed while A signed (2 here, and the worker's before and during)", res.LiveDeliveries, err)
	}
	opens("after the refused retirement", map[string]int{before: http.StatusOK, during: http.StatusOK, after: http.StatusOK})

	clock = safe.Add(time.Second)
	res, err = rot.Retire(ctx, rotate.RetireOptions{KeyID: idA})
	if err != nil || !res.Retired {
		t.Fatalf("retire after the safe date: %+v, %v", res, err)
	}
	opens("after A's retirement", map[string]int{before: http.StatusForbidden, during: http.StatusForbidden, after: http.StatusOK})
	// The distribution's first key group was made outside reportmailer
	// (as Terraform would): retire leaves it, and A's public key, which
	// it holds, and says so.
	if res.PublicKeyDeleted || len(res.ForeignGroups) != 1 {
		t.Errorf("retire: %+v; want A's public key left while the deployment's own key group holds it", res)
	}
	hasA := func() bool {
		t.Helper()
		keys, err := e.cf.ListPublicKeys(ctx, &cloudfront.ListPublicKeysInput{})
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(keys.PublicKeyList.Items, func(k cftypes.PublicKeySummary) bool { return aws.ToString(k.Id) == idA })
	}
	if !hasA() {
		t.Errorf("retire deleted key A's public key while a key group it did not make holds it")
	}
	kg, err := e.cf.GetKeyGroup(ctx, &cloudfront.GetKeyGroupInput{Id: aws.String(firstGroup)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cf.DeleteKeyGroup(ctx, &cloudfront.DeleteKeyGroupInput{Id: aws.String(firstGroup), IfMatch: kg.ETag}); err != nil {
		t.Fatalf("delete the deployment's key group, as its owner would: %v", err)
	}
	st, _, err := ring.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.IsRetired(idA) || !slices.ContainsFunc(st.Keys, func(k store.RingStateKey) bool { return k.ID == kB.ID }) {
		t.Errorf("ring state after retirement: %+v, want A retired and B scheduled", st)
	}
	// A second retirement, once that group is gone, deletes A's public
	// key and fails nothing.
	if res, err := rot.Retire(ctx, rotate.RetireOptions{KeyID: idA}); err != nil || !res.PublicKeyDeleted {
		t.Errorf("retiring A again: %+v, %v", res, err)
	}
	if hasA() {
		t.Errorf("key A's public key is still in CloudFront")
	}
	if l := sign("later.pdf", clock); keyPairID(t, l) != kB.ID || status(t, l) != http.StatusOK {
		t.Errorf("after A's retirement, %s does not open with key B", l)
	}
}

// TestRotateResumes: a rotation that stopped after creating its KMS key
// and uploading the public key (the state says so for the first, and
// CloudFront holds the second) resumes with both, rather than making
// another key; a rotation of another kind is refused until it is done.
func TestRotateResumes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := e.rsaStart(t)
	idA, dist, expiries, ring := s.idA, s.dist, s.expiries, s.ring

	arn := e.kmsKey(t, kmstypes.KeySpecRsa2048)
	uploaded := e.publicKey(t, kmsPublic(t, e, arn))
	if _, err := ring.Save(ctx, store.RingState{Rotation: &store.Rotation{StartedAt: time.Now().UTC(), Kind: rotate.KindKMSRSA, KMSKeyID: arn}}, ""); err != nil {
		t.Fatal(err)
	}
	rot := &rotate.Rotator{CloudFront: e.cf, KMS: e.kms, Ring: ring, Expiries: expiries, DistributionID: dist, ActiveKeyID: idA, Poll: time.Millisecond}
	if _, err := rot.Rotate(ctx, rotate.RotateOptions{Kind: rotate.KindECDSA, KeyDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "is not finished") {
		t.Fatalf("a rotation of another kind while one is pending: %v", err)
	}
	k, err := rot.Rotate(ctx, rotate.RotateOptions{Kind: rotate.KindKMSRSA})
	if err != nil {
		t.Fatal(err)
	}
	if k.KMSKeyID != arn || k.ID != uploaded {
		t.Errorf("resumed rotation scheduled %+v, want KMS key %s with public key %s", k, arn, uploaded)
	}
	cfg, err := e.cf.GetDistributionConfig(ctx, &cloudfront.GetDistributionConfigInput{Id: aws.String(dist)})
	if err != nil {
		t.Fatal(err)
	}
	groups := cfg.DistributionConfig.DefaultCacheBehavior.TrustedKeyGroups.Items
	if len(groups) != 1 {
		t.Fatalf("trusted key groups %v, want one", groups)
	}
	kg, err := e.cf.GetKeyGroup(ctx, &cloudfront.GetKeyGroupInput{Id: aws.String(groups[0])})
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(slices.Values(kg.KeyGroup.KeyGroupConfig.Items))
	if want := slices.Sorted(slices.Values([]string{idA, uploaded})); !slices.Equal(got, want) {
		t.Errorf("the distribution trusts %v, want %v", got, want)
	}
	if st, _, err := ring.Load(ctx); err != nil || st.Rotation != nil {
		t.Errorf("after the rotation the state still has one in progress: %+v, %v", st.Rotation, err)
	}
}
