package kumo

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudfront/types"

	"github.com/reportmailer/reportmailer/worker/rotate"
)

// recorder passes requests to kumo and keeps "METHOD /path" of each.
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	reqs []string
}

func (rc *recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, r.Method+" "+r.URL.Path)
	rc.mu.Unlock()
	return rc.next.RoundTrip(r)
}

func (rc *recorder) take() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := rc.reqs
	rc.reqs = nil
	return out
}

func (e *env) keyGroup(t *testing.T, name string, ids ...string) string {
	t.Helper()
	kg, err := e.cf.CreateKeyGroup(context.Background(), &cloudfront.CreateKeyGroupInput{KeyGroupConfig: &cftypes.KeyGroupConfig{Name: aws.String(name), Items: ids}})
	if err != nil {
		t.Fatalf("create key group: %v", err)
	}
	return aws.ToString(kg.KeyGroup.Id)
}

// groupKeys returns the key ids of the groups a behaviour trusts.
func (e *env) groupKeys(t *testing.T, tk *cftypes.TrustedKeyGroups) [][]string {
	t.Helper()
	var out [][]string
	for _, g := range tk.Items {
		kg, err := e.cf.GetKeyGroup(context.Background(), &cloudfront.GetKeyGroupInput{Id: aws.String(g)})
		if err != nil {
			t.Fatalf("key group %s: %v", g, err)
		}
		out = append(out, slices.Sorted(slices.Values(kg.KeyGroup.KeyGroupConfig.Items)))
	}
	return out
}

// TestRotateRetireScope: rotation and retirement change only the cache
// behaviours that trust reportmailer's key, never one that trusts
// another application's key group, and retire deletes only the key
// groups rotate made: a group Terraform made that holds the old key is
// left, and so is the old public key, which that group still holds.
// A retirement resumed after it changed the distribution still waits
// for Deployed before it deletes anything.
func TestRotateRetireScope(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	reports, state := unique("reports"), unique("state")
	e.bucket(t, reports)
	e.bucket(t, state)
	pub := func() string {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return e.publicKey(t, k.Public())
	}
	idA, idX := pub(), pub()
	dist := e.distribution(t, reports, idA) // its group is named like Terraform's, not reportmailer-*
	other := e.keyGroup(t, unique("other-app"), idX)
	cfgOut, err := e.cf.GetDistributionConfig(ctx, &cloudfront.GetDistributionConfigInput{Id: aws.String(dist)})
	if err != nil {
		t.Fatal(err)
	}
	terraformGroup := cfgOut.DistributionConfig.DefaultCacheBehavior.TrustedKeyGroups.Items[0]
	cfg := cfgOut.DistributionConfig
	cfg.CacheBehaviors = &cftypes.CacheBehaviors{Quantity: aws.Int32(1), Items: []cftypes.CacheBehavior{{
		PathPattern: aws.String("other/*"), TargetOriginId: aws.String("reports"), ViewerProtocolPolicy: cftypes.ViewerProtocolPolicyAllowAll,
		TrustedKeyGroups: &cftypes.TrustedKeyGroups{Enabled: aws.Bool(true), Quantity: aws.Int32(1), Items: []string{other}},
	}}}
	if _, err := e.cf.UpdateDistribution(ctx, &cloudfront.UpdateDistributionInput{Id: aws.String(dist), IfMatch: cfgOut.ETag, DistributionConfig: cfg}); err != nil {
		t.Fatal(err)
	}
	behaviours := func() (*cftypes.TrustedKeyGroups, *cftypes.TrustedKeyGroups) {
		t.Helper()
		out, err := e.cf.GetDistributionConfig(ctx, &cloudfront.GetDistributionConfigInput{Id: aws.String(dist)})
		if err != nil {
			t.Fatal(err)
		}
		c := out.DistributionConfig
		if c.CacheBehaviors == nil || len(c.CacheBehaviors.Items) != 1 {
			t.Fatalf("the distribution lost its other behaviour: %+v", c.CacheBehaviors)
		}
		return c.DefaultCacheBehavior.TrustedKeyGroups, c.CacheBehaviors.Items[0].TrustedKeyGroups
	}

	rec := &recorder{next: http.DefaultTransport}
	cf := cloudfront.NewFromConfig(aws.Config{
		Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(e.url), HTTPClient: &http.Client{Transport: rec},
	})
	expiries, ring := keyRecords(e, state)
	clock := time.Now()
	rot := &rotate.Rotator{CloudFront: cf, Ring: ring, Expiries: expiries, DistributionID: dist, ActiveKeyID: idA,
		Poll: time.Millisecond, Now: func() time.Time { return clock }}
	kB, err := rot.Rotate(ctx, rotate.RotateOptions{Kind: rotate.KindRSA, KeyDir: t.TempDir()})
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	// The generated private key is its owner's alone.
	if fi, err := os.Stat(kB.PrivateKeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the generated key file %q: %v, %v; want mode 0600", kB.PrivateKeyFile, fi, err)
	}
	def, oth := behaviours()
	if got, want := e.groupKeys(t, def), [][]string{slices.Sorted(slices.Values([]string{idA, kB.ID}))}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("after rotate the default behaviour trusts %v, want %v", got, want)
	}
	if !slices.Equal(oth.Items, []string{other}) {
		t.Errorf("after rotate the other application's behaviour trusts %v, want only its group %s", oth.Items, other)
	}
	rotGroup := def.Items[0]

	// A retirement that stopped after it changed the distribution: the
	// default behaviour trusts a group without A already.
	clock = kB.ActivatesAt.Add(time.Minute)
	out, err := e.cf.GetDistributionConfig(ctx, &cloudfront.GetDistributionConfigInput{Id: aws.String(dist)})
	if err != nil {
		t.Fatal(err)
	}
	out.DistributionConfig.DefaultCacheBehavior.TrustedKeyGroups.Items = []string{e.keyGroup(t, unique("group"), kB.ID)}
	if _, err := e.cf.UpdateDistribution(ctx, &cloudfront.UpdateDistributionInput{Id: aws.String(dist), IfMatch: out.ETag, DistributionConfig: out.DistributionConfig}); err != nil {
		t.Fatal(err)
	}
	rec.take()
	res, err := rot.Retire(ctx, rotate.RetireOptions{KeyID: idA})
	if err != nil {
		t.Fatalf("retire: %v", err)
	}
	reqs := rec.take()
	firstDelete := slices.IndexFunc(reqs, func(r string) bool { return strings.HasPrefix(r, "DELETE ") })
	waited := slices.Index(reqs, "GET /2020-05-31/distribution/"+dist)
	if firstDelete < 0 || waited < 0 || waited > firstDelete {
		t.Errorf("resumed retire: requests %v; want the distribution's status read before anything is deleted", reqs)
	}
	if !res.Retired || res.PublicKeyDeleted || len(res.ForeignGroups) != 1 || !strings.Contains(res.ForeignGroups[0], terraformGroup) {
		t.Errorf("retire: %+v; want retired, the public key left, and Terraform's group %s named", res, terraformGroup)
	}
	if _, err := e.cf.GetKeyGroup(ctx, &cloudfront.GetKeyGroupInput{Id: aws.String(terraformGroup)}); err != nil {
		t.Errorf("retire deleted the key group it did not make: %v", err)
	}
	if _, err := e.cf.GetKeyGroup(ctx, &cloudfront.GetKeyGroupInput{Id: aws.String(rotGroup)}); err == nil {
		t.Errorf("retire left the key group rotate made, %s, that held the old key", rotGroup)
	}
	if _, err := e.cf.GetPublicKey(ctx, &cloudfront.GetPublicKeyInput{Id: aws.String(idA)}); err != nil {
		t.Errorf("retire deleted public key %s, which Terraform's group still holds: %v", idA, err)
	}
	if _, oth := behaviours(); !slices.Equal(oth.Items, []string{other}) {
		t.Errorf("after retire the other application's behaviour trusts %v, want only its group %s", oth.Items, other)
	}
}
