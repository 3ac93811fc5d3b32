package kumo

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/link"
)

// throttler is a fault layer in front of kumo's KMS: it answers the
// next n kms:Sign requests with KMS's ThrottlingException, as KMS does
// over its request quota (or with code, when set, and to the requests
// of target, when set, e.g. "TrentService.GetPublicKey"), and forwards
// everything else to kumo.
type throttler struct {
	next   http.RoundTripper
	code   string
	target string
	n      atomic.Int64
	hits   atomic.Int64
}

func (th *throttler) RoundTrip(r *http.Request) (*http.Response, error) {
	target := th.target
	if target == "" {
		target = "TrentService.Sign"
	}
	if r.Header.Get("X-Amz-Target") == target && th.n.Add(-1) >= 0 {
		th.hits.Add(1)
		body := `{"__type":"ThrottlingException","message":"You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."}`
		if th.code != "" {
			body = `{"__type":"` + th.code + `","message":"refused by the test's fault layer"}`
		}
		return &http.Response{StatusCode: http.StatusBadRequest, Status: "400 Bad Request", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:  http.Header{"Content-Type": {"application/x-amz-json-1.1"}, "X-Amzn-Requestid": {"throttled"}},
			Body:    io.NopCloser(bytes.NewBufferString(body)),
			Request: r}, nil
	}
	return th.next.RoundTrip(r)
}

// TestKMSThrottleHalts: throttling that outlasts the SDK's retries
// comes back from the KMS signer as a halt of sending until about
// link.KMSThrottleBackoff from now (the worker then hands its messages
// back hidden, never dead-letters them), and signing works again once
// KMS stops throttling.
func TestKMSThrottleHalts(t *testing.T) {
	e := newEnv(t)
	arn := e.kmsKey(t, kmstypes.KeySpecEccNistP256)
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
	s, err := link.NewKMSSigner(context.Background(), client, arn)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("policy"))

	th.n.Store(2) // both attempts
	start := time.Now()
	_, err = s.Sign(nil, digest[:], crypto.SHA256)
	if err == nil || !worker.IsHalt(err) || worker.IsPermanent(err) {
		t.Fatalf("throttled Sign: %v; want a halt, not a permanent failure", err)
	}
	if until, ok := worker.RetryAfter(err); !ok || until.Before(start.Add(link.KMSThrottleBackoff)) {
		t.Errorf("halt until %v (%v), want about %s from now", until, ok, link.KMSThrottleBackoff)
	}
	if th.hits.Load() != 2 {
		t.Errorf("%d throttled attempts, want the SDK's 2", th.hits.Load())
	}

	th.n.Store(1) // one throttle, then KMS answers: the SDK's retry signs
	sig, err := s.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign after one throttle: %v", err)
	}
	if pub, ok := s.Public().(*ecdsa.PublicKey); !ok || !ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Errorf("the ECC_NIST_P256 signature does not verify with the KMS key's public key")
	}
}

// TestKMSKeyRefusedHalts: KMS answers that every signature with the key
// would get (the role denied, the key disabled, pending deletion, gone
// or unavailable) come back from the KMS signer as a halt of sending
// for link.KMSRefusedHalt, so the worker hides its messages rather than
// dead-letter them one by one. A key disabled in kumo is the real case;
// the others come from the fault layer.
func TestKMSKeyRefusedHalts(t *testing.T) {
	e := newEnv(t)
	digest := sha256.Sum256([]byte("policy"))
	check := func(t *testing.T, s *link.KMSSigner, start time.Time) {
		t.Helper()
		_, err := s.Sign(nil, digest[:], crypto.SHA256)
		if err == nil || !worker.IsHalt(err) || worker.IsPermanent(err) {
			t.Fatalf("Sign: %v; want a halt, not a message's failure", err)
		}
		if until, ok := worker.RetryAfter(err); !ok || until.Before(start.Add(link.KMSRefusedHalt)) {
			t.Errorf("halt until %v (%v), want about %s from now", until, ok, link.KMSRefusedHalt)
		}
	}
	t.Run("disabled in kumo", func(t *testing.T) {
		arn := e.kmsKey(t, kmstypes.KeySpecRsa2048)
		s, err := link.NewKMSSigner(context.Background(), e.kms, arn)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.kms.DisableKey(context.Background(), &kms.DisableKeyInput{KeyId: aws.String(arn)}); err != nil {
			t.Fatal(err)
		}
		check(t, s, time.Now())
	})
	t.Run("its public key refused at start", func(t *testing.T) {
		arn := e.kmsKey(t, kmstypes.KeySpecRsa2048)
		th := &throttler{next: http.DefaultTransport, code: "AccessDeniedException", target: "TrentService.GetPublicKey"}
		th.n.Store(100)
		client := kms.NewFromConfig(aws.Config{
			Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
			BaseEndpoint: aws.String(e.url), HTTPClient: &http.Client{Transport: th},
		})
		_, err := link.NewKMSSigner(context.Background(), client, arn)
		if !worker.IsHalt(err) {
			t.Errorf("NewKMSSigner with kms:GetPublicKey denied: %v; want a halt", err)
		}
	})
	for _, code := range []string{"AccessDeniedException", "DisabledException", "KMSInvalidStateException", "NotFoundException", "KeyUnavailableException"} {
		t.Run(code, func(t *testing.T) {
			arn := e.kmsKey(t, kmstypes.KeySpecEccNistP256)
			th := &throttler{next: http.DefaultTransport, code: code}
			client := kms.NewFromConfig(aws.Config{
				Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
				BaseEndpoint: aws.String(e.url), HTTPClient: &http.Client{Transport: th},
			})
			s, err := link.NewKMSSigner(context.Background(), client, arn)
			if err != nil {
				t.Fatal(err)
			}
			th.n.Store(100)
			check(t, s, time.Now())
		})
	}
}

// hang is a fault layer in front of kumo's KMS whose kms:Sign requests
// never get an answer: it says when one arrived, then waits for the
// request's context to end.
type hang struct {
	next    http.RoundTripper
	arrived chan struct{}
	once    sync.Once
}

func (h *hang) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("X-Amz-Target") == "TrentService.Sign" {
		h.once.Do(func() { close(h.arrived) })
		<-r.Context().Done()
		return nil, r.Context().Err()
	}
	return h.next.RoundTrip(r)
}

// TestKMSSignTakesTheCallersContext: a link signed with a KMS key waits
// on kms:Sign within the caller's context (the run's), so a shutdown
// ends it at once rather than after the signer's own timeout.
func TestKMSSignTakesTheCallersContext(t *testing.T) {
	e := newEnv(t)
	arn := e.kmsKey(t, kmstypes.KeySpecRsa2048)
	h := &hang{next: http.DefaultTransport, arrived: make(chan struct{})}
	client := kms.NewFromConfig(aws.Config{
		Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(e.url), HTTPClient: &http.Client{Transport: h},
	})
	s, err := link.NewKMSSigner(context.Background(), client, arn)
	if err != nil {
		t.Fatal(err)
	}
	signer := &link.CloudFront{Domain: "https://d111111abcdef8.cloudfront.net", Ring: link.Ring{{Key: link.Key{ID: "K2JCJMDEHXQW5F", Signer: s}}},
		Hash: link.HashSHA256, TTL: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-h.arrived
		cancel()
	}()
	_, err = signer.Sign(ctx, event.Report{Bucket: "reports", Key: "a.pdf"}, time.Now())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Sign with its context cancelled during kms:Sign: %v; want context.Canceled", err)
	}
}
