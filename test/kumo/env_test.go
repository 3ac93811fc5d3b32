package kumo

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudfront/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/sivchari/kumo"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/templates"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/iam"
	"github.com/reportmailer/reportmailer/worker/mail"
	"github.com/reportmailer/reportmailer/worker/queue"
	"github.com/reportmailer/reportmailer/worker/store"
)

// env is one kumo server, in-process on a 127.0.0.1 port, and the SDK
// clients pointed at it.
type env struct {
	url string
	s3  *s3.Client
	cf  *cloudfront.Client
	kms *kms.Client
	sqs *sqs.Client
	ses *sesv2.Client
}

var seq atomic.Int64

// unique returns a name no other test in this process uses: kumo's
// state is per server, but names read better when they differ.
func unique(prefix string) string { return fmt.Sprintf("%s-%d", prefix, seq.Add(1)) }

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := kumo.NewServer() // httptest: 127.0.0.1, a free port
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	// The CloudFront edge fetches S3 origins from this server.
	t.Setenv("KUMO_HOST", u.Hostname())
	t.Setenv("KUMO_PORT", u.Port())
	t.Setenv("KUMO_S3_BACKEND", srv.URL)
	cfg := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(srv.URL),
	}
	return &env{
		url: srv.URL,
		s3:  s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }),
		cf:  cloudfront.NewFromConfig(cfg),
		kms: kms.NewFromConfig(cfg),
		sqs: sqs.NewFromConfig(cfg),
		ses: sesv2.NewFromConfig(cfg),
	}
}

func (e *env) bucket(t *testing.T, name string) {
	t.Helper()
	if _, err := e.s3.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("bucket %s: %v", name, err)
	}
}

func (e *env) put(t *testing.T, bucket, key, body string) {
	t.Helper()
	_, err := e.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key,
		Body: strings.NewReader(body), ContentType: aws.String("application/pdf")})
	if err != nil {
		t.Fatalf("put s3://%s/%s: %v", bucket, key, err)
	}
}

// publicKey uploads pub to CloudFront and returns its id.
func (e *env) publicKey(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	name := unique("key")
	out, err := e.cf.CreatePublicKey(context.Background(), &cloudfront.CreatePublicKeyInput{PublicKeyConfig: &cftypes.PublicKeyConfig{
		CallerReference: aws.String(name), Name: aws.String(name),
		EncodedKey: aws.String(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))),
	}})
	if err != nil {
		t.Fatalf("create public key: %v", err)
	}
	return aws.ToString(out.PublicKey.Id)
}

// distribution makes a distribution of bucket whose default behaviour
// trusts one key group holding keyIDs, and returns its id.
func (e *env) distribution(t *testing.T, bucket string, keyIDs ...string) string {
	t.Helper()
	ctx := context.Background()
	name := unique("group")
	kg, err := e.cf.CreateKeyGroup(ctx, &cloudfront.CreateKeyGroupInput{KeyGroupConfig: &cftypes.KeyGroupConfig{Name: aws.String(name), Items: keyIDs}})
	if err != nil {
		t.Fatalf("create key group: %v", err)
	}
	out, err := e.cf.CreateDistribution(ctx, &cloudfront.CreateDistributionInput{DistributionConfig: &cftypes.DistributionConfig{
		CallerReference: aws.String(unique("dist")), Comment: aws.String("reportmailer test"), Enabled: aws.Bool(true),
		Origins: &cftypes.Origins{Quantity: aws.Int32(1), Items: []cftypes.Origin{{
			Id: aws.String("reports"), DomainName: aws.String(bucket + ".s3.amazonaws.com"),
			S3OriginConfig: &cftypes.S3OriginConfig{OriginAccessIdentity: aws.String("")},
		}}},
		DefaultCacheBehavior: &cftypes.DefaultCacheBehavior{
			TargetOriginId: aws.String("reports"), ViewerProtocolPolicy: cftypes.ViewerProtocolPolicyAllowAll,
			TrustedKeyGroups: &cftypes.TrustedKeyGroups{Enabled: aws.Bool(true), Quantity: aws.Int32(1), Items: []string{aws.ToString(kg.KeyGroup.Id)}},
		},
	}})
	if err != nil {
		t.Fatalf("create distribution: %v", err)
	}
	return aws.ToString(out.Distribution.Id)
}

// edge is the base URL of a distribution at kumo's CloudFront edge.
func (e *env) edge(dist string) string { return e.url + "/kumo/cdn/" + dist }

// status fetches a link at the edge and returns the HTTP status.
func status(t *testing.T, link string) int {
	t.Helper()
	resp, err := http.Get(link)
	if err != nil {
		t.Fatalf("GET %s: %v", link, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// kmsKey creates a KMS signing key of spec, tagged as keys rotate tags
// its keys, and returns its ARN.
func (e *env) kmsKey(t *testing.T, spec kmstypes.KeySpec) string {
	t.Helper()
	out, err := e.kms.CreateKey(context.Background(), &kms.CreateKeyInput{KeySpec: spec, KeyUsage: kmstypes.KeyUsageTypeSignVerify,
		Tags: []kmstypes.Tag{{TagKey: aws.String(iam.KMSTagKey), TagValue: aws.String(iam.KMSTagValue)}}})
	if err != nil {
		t.Fatalf("kms create key: %v", err)
	}
	return aws.ToString(out.KeyMetadata.Arn)
}

// sentEmail is an email kumo's SES kept.
type sentEmail struct {
	MessageID   string `json:"MessageId"`
	Destination struct {
		ToAddresses []string `json:"ToAddresses"`
	} `json:"Destination"`
	Subject  string    `json:"Subject"`
	Body     string    `json:"Body"`
	HTMLBody string    `json:"HTMLBody"`
	SentAt   time.Time `json:"SentAt"`
}

func (e *env) sent(t *testing.T) []sentEmail {
	t.Helper()
	resp, err := http.Get(e.url + "/kumo/ses/v2/sent-emails")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		SentEmails []sentEmail `json:"SentEmails"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("sent emails: %v", err)
	}
	return out.SentEmails
}

// keyRecords are where the signer records each key's latest expiry,
// and ring the key ring's state, in bucket.
func keyRecords(e *env, bucket string) (*store.KeyExpiries, *store.RingStore) {
	return &store.KeyExpiries{Client: e.s3, Bucket: bucket, Prefix: "keys/"},
		&store.RingStore{Client: e.s3, Bucket: bucket, Prefix: "keys/"}
}

// rsaStart is where a rotation test starts: a distribution over a
// fresh reports bucket that trusts one RSA file key, A, and the ring's
// state in a fresh state bucket.
type rsaStart struct {
	reports, state, idA, dist string
	keyA                      *rsa.PrivateKey
	expiries                  *store.KeyExpiries
	ring                      *store.RingStore
}

func (e *env) rsaStart(t *testing.T) rsaStart {
	t.Helper()
	// kumo's state is the process's, so names differ per test.
	s := rsaStart{reports: unique("reports"), state: unique("state")}
	e.bucket(t, s.reports)
	e.bucket(t, s.state)
	var err error
	if s.keyA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	s.idA = e.publicKey(t, s.keyA.Public())
	s.dist = e.distribution(t, s.reports, s.idA)
	s.expiries, s.ring = keyRecords(e, s.state)
	return s
}

// worker is a mode-each worker that reads queueURL (dead letters to
// dlqURL) for reports under prefix in reports, signs with signer, sends
// through kumo's SES and keeps its ledger in state.
func (e *env) worker(t *testing.T, signer worker.Signer, reports, state, prefix, queueURL, dlqURL string) *worker.Worker {
	t.Helper()
	return e.workerAt(t, nil, signer, reports, state, prefix, queueURL, dlqURL)
}

// workerAt is [env.worker] on the clock now (nil for time.Now), which
// gives the time the worker signs its links at.
func (e *env) workerAt(t *testing.T, now func() time.Time, signer worker.Signer, reports, state, prefix, queueURL, dlqURL string) *worker.Worker {
	t.Helper()
	sets, err := templates.LoadSets("")
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Config{
		Schedule: "on-demand", Mode: worker.ModeEach, WaitTime: time.Second, Bucket: reports, KeyPrefix: prefix,
		From: "Reports <reports@example.com>",
	}, worker.Deps{
		Queue:     &queue.SQS{Client: e.sqs, URL: queueURL, DeadLetterURL: dlqURL, VisibilityTimeout: 30 * time.Second},
		Objects:   &store.Objects{Client: e.s3},
		Signer:    signer,
		Templates: sets,
		Mailer:    &mail.SES{Client: e.ses},
		Ledger:    &store.Ledger{Client: e.s3, Bucket: state, Prefix: "ledger/"},
		Now:       now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// operator is an operator's S3, CloudFront and KMS clients, each
// through awsproxy in front of kumo enforcing the policy worker/iam
// declares for cmds (keys rotate, keys retire), and the proxies.
type operator struct {
	s3      *s3.Client
	cf      *cloudfront.Client
	kms     *kms.Client
	proxies map[awsproxy.Service]*awsproxy.Proxy
}

// operator starts the proxies for the commands, with in's names and
// kumo's region and account. The test fails on each call the policy
// denied.
func (e *env) operator(t *testing.T, in iam.Inputs, cmds ...iam.Command) operator {
	t.Helper()
	in.Region, in.Account = awsproxy.RegionDefault, awsproxy.AccountDefault
	if err := in.Check(cmds...); err != nil {
		t.Fatal(err)
	}
	policy := iam.For(in, cmds...)
	o := operator{proxies: map[awsproxy.Service]*awsproxy.Proxy{}}
	cfg := func(svc awsproxy.Service) aws.Config {
		p := awsproxy.Start(t, awsproxy.Options{Service: svc, Target: e.url, Policy: &policy})
		t.Cleanup(func() {
			for _, d := range p.Denials() {
				t.Errorf("under the policy declared for %v, %s was denied %s on %s", cmds, d.Operation, d.Action, d.Resource)
			}
		})
		o.proxies[svc] = p
		return aws.Config{Region: in.Region, Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""), BaseEndpoint: aws.String(p.URL)}
	}
	o.s3 = s3.NewFromConfig(cfg(awsproxy.S3), func(o *s3.Options) { o.UsePathStyle = true })
	o.cf = cloudfront.NewFromConfig(cfg(awsproxy.CloudFront))
	o.kms = kms.NewFromConfig(cfg(awsproxy.KMS))
	return o
}
