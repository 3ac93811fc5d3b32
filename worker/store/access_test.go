package store_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/internal/s3test"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/iam"
	"github.com/reportmailer/reportmailer/worker/store"
)

// The tests in this file run the store through internal/awsproxy in
// front of gofakes3, under a policy, so that S3 answers as it does on
// AWS: a read of a missing key is 403 AccessDenied, not 404, unless the
// policy grants s3:ListBucket for the key's prefix (S3 API reference,
// HeadObject and GetObject, "Permissions"), and an action the policy
// lacks is refused.

// Policies for bucket "state".
var (
	// objectsOnly grants reads and writes of every object, and no
	// s3:ListBucket: S3 says 403 for a missing key.
	objectsOnly = policy(grant("s3:GetObject", "s3:PutObject", "s3:DeleteObject"))
	// objectsAndList is objectsOnly plus s3:ListBucket, as worker/iam
	// declares it for each prefix read: S3 says 404 for a missing key.
	objectsAndList = policy(grant("s3:GetObject", "s3:PutObject", "s3:DeleteObject"),
		iam.Statement{Effect: "Allow", Action: []string{"s3:ListBucket"}, Resource: []string{"arn:aws:s3:::state"}})
	// writeOnly grants writes and s3:ListBucket, and no s3:GetObject, as
	// when a role lost it or a bucket policy or KMS key refuses reads.
	writeOnly = policy(grant("s3:PutObject", "s3:DeleteObject"),
		iam.Statement{Effect: "Allow", Action: []string{"s3:ListBucket"}, Resource: []string{"arn:aws:s3:::state"}})
)

func grant(actions ...string) iam.Statement {
	return iam.Statement{Effect: "Allow", Action: actions, Resource: []string{"arn:aws:s3:::state/*"}}
}

func policy(s ...iam.Statement) *iam.Document {
	return &iam.Document{Version: iam.Version, Statement: s}
}

// newProxied starts gofakes3 with bucket "state" and returns a client
// with full access straight to it, and one through an awsproxy that
// enforces p (change it with proxy.SetPolicy).
func newProxied(t *testing.T, p *iam.Document) (plain, proxied *s3.Client, proxy *awsproxy.Proxy) {
	t.Helper()
	url, plain := s3test.Start(t, "state")
	proxy = awsproxy.Start(t, awsproxy.Options{Service: awsproxy.S3, Target: url, Policy: p})
	proxied = s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(proxy.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		DisableLogOutputChecksumValidationSkipped: true,
	})
	return plain, proxied, proxy
}

func TestProxyAnswers403ForAMissingKey(t *testing.T) {
	_, c, _ := newProxied(t, objectsOnly)
	_, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("state"), Key: aws.String("nope")})
	if err == nil || !strings.Contains(err.Error(), "StatusCode: 403") || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("GetObject of a missing key = %v, want 403 AccessDenied", err)
	}
}

// TestObjectsHeadRefused: a 404 dead-letters the one message, but a
// 403 halts the run: under the declared policy, which grants
// s3:ListBucket, it means the worker may not read the reports, which
// every message would meet.
func TestObjectsHeadRefused(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)
	const denied = "access denied to s3://state/q3.pdf: the worker's role lacks s3:GetObject there, or a bucket policy or KMS key refuses it; " +
		"without s3:ListBucket S3 also answers 403 for a missing key — run `reportmailer check -aws`"
	tests := []struct {
		name   string
		policy *iam.Document
		exists bool
		class  worker.Class
		code   worker.Code
		reason string
	}{
		{"missing, with s3:ListBucket: 404", objectsAndList, false, worker.ClassPermanent, worker.CodeObjectMissing, "object does not exist"},
		{"s3:GetObject denied: 403", writeOnly, true, worker.ClassHalt, worker.CodeObjectAccessDenied, denied},
		{"missing, without s3:ListBucket: 403", objectsOnly, false, worker.ClassHalt, worker.CodeObjectAccessDenied, denied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain, proxied, _ := newProxied(t, tt.policy)
			if tt.exists {
				if _, err := plain.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("state"), Key: aws.String("q3.pdf"), Body: strings.NewReader("%PDF")}); err != nil {
					t.Fatal(err)
				}
			}
			o := &store.Objects{Client: proxied, HaltFor: 10 * time.Minute, Now: func() time.Time { return t0 }}
			_, err := o.Head(ctx, "state", "q3.pdf")
			if worker.ClassOf(err) != tt.class || worker.CodeOf(err) != tt.code || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("Head = %v (class %q, code %q); want %s, %q, saying %q", err, worker.ClassOf(err), worker.CodeOf(err), tt.class, tt.code, tt.reason)
			}
			until, ok := worker.RetryAfter(err)
			if want := tt.class == worker.ClassHalt; ok != want || (ok && !until.Equal(t0.Add(10*time.Minute))) {
				t.Errorf("RetryAfter = %v, %v; want a halt until %v: %v", until, ok, t0.Add(10*time.Minute), want)
			}
		})
	}
}

// TestKeyExpiriesWithoutListBucket: the first record of a key must be
// written although reading it first would answer 403, or no link could
// ever be signed with a new key.
func TestKeyExpiriesWithoutListBucket(t *testing.T) {
	ctx := context.Background()
	plain, forbidden, _ := newProxied(t, objectsOnly)
	t0 := time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)
	k := &store.KeyExpiries{Client: forbidden, Bucket: "state", Prefix: "keys/"}

	if err := k.Extend(ctx, "KNEW", t0.Add(24*time.Hour)); err != nil {
		t.Fatalf("first Extend of a new key: %v", err)
	}
	if err := k.Extend(ctx, "KNEW", t0.Add(48*time.Hour)); err != nil {
		t.Fatalf("raising it: %v", err)
	}
	if err := k.Extend(ctx, "KNEW", t0.Add(time.Hour)); err != nil {
		t.Fatalf("an earlier expiry: %v", err)
	}
	// Another replica, which has not seen the record yet.
	other := &store.KeyExpiries{Client: forbidden, Bucket: "state", Prefix: "keys/"}
	if err := other.Extend(ctx, "KNEW", t0.Add(12*time.Hour)); err != nil {
		t.Fatalf("a second replica's first Extend: %v", err)
	}
	if got, err := k.Latest(ctx, "KNEW"); err != nil || !got.Equal(t0.Add(48*time.Hour)) {
		t.Fatalf("Latest = %v, %v; want %v", got, err, t0.Add(48*time.Hour))
	}

	// An operator deletes the record; the next Extend writes it again.
	if _, err := plain.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("state"), Key: aws.String("keys/KNEW.json")}); err != nil {
		t.Fatal(err)
	}
	if err := k.Extend(ctx, "KNEW", t0.Add(72*time.Hour)); err != nil {
		t.Fatalf("Extend after the record was deleted: %v", err)
	}
	if got, err := k.Latest(ctx, "KNEW"); err != nil || !got.Equal(t0.Add(72*time.Hour)) {
		t.Fatalf("Latest = %v, %v; want %v", got, err, t0.Add(72*time.Hour))
	}

	// Latest of a key with no record cannot tell "none" from "not
	// allowed" without ListBucket, and must not say "never used".
	if got, err := k.Latest(ctx, "KNONE"); err == nil {
		t.Fatalf("Latest of a missing record under 403 = %v, nil; want an error", got)
	}

	t.Run("racing replicas", func(t *testing.T) {
		var wg sync.WaitGroup
		const writers = 16
		for i := range writers {
			k := &store.KeyExpiries{Client: forbidden, Bucket: "state", Prefix: "race/"}
			wg.Go(func() {
				if err := k.Extend(ctx, "KRACE", t0.Add(time.Duration((i*7)%writers)*time.Hour)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		k := &store.KeyExpiries{Client: forbidden, Bucket: "state", Prefix: "race/"}
		if got, err := k.Latest(ctx, "KRACE"); err != nil || !got.Equal(t0.Add((writers-1)*time.Hour)) {
			t.Fatalf("after racing writers: %v, %v", got, err)
		}
	})
}

// TestLedgerClaimAfterRelease: a claim that loses to a record which is
// released before it can be read finds the delivery free, and takes it.
func TestLedgerClaimAfterRelease(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		policy *iam.Document
	}{
		{"404 for the gone record", objectsAndList},
		{"403 for the gone record, without s3:ListBucket", objectsOnly},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain, proxied, proxy := newProxied(t, tt.policy)
			holder := &store.Ledger{Client: plain, Bucket: "state", Prefix: "ledger/"}
			l := &store.Ledger{Client: proxied, Bucket: "state", Prefix: "ledger/"}
			key := worker.DeliveryKey("evt-1", "ana@example.com")
			held, err := holder.Claim(ctx, claimReq(key))
			if err != nil || held.State != worker.Claimed {
				t.Fatalf("holder's claim = %+v, %v", held, err)
			}
			// The holder releases its claim just after ours was refused:
			// the first PutObject of the record through the proxy is our
			// losing create (the event's index entry goes beside it), and
			// an After rule's Match runs once gofakes3 has answered it.
			// It injects nothing.
			var once sync.Once
			proxy.Inject(awsproxy.Fault{Operation: "PutObject", After: true, Match: func(c awsproxy.Call) bool {
				if c.Key != "ledger/"+key {
					return false
				}
				once.Do(func() {
					if err := holder.Release(ctx, &held); err != nil {
						t.Error(err)
					}
				})
				return false
			}})
			c, err := l.Claim(ctx, claimReq(key))
			if err != nil || c.State != worker.Claimed {
				t.Fatalf("Claim after the holder released = %+v, %v; want it claimed", c, err)
			}
			if n := proxy.Counts("GetObject").Forwarded; n != 1 {
				t.Errorf("GetObject reached S3 %d times, want 1: the race did not happen as planned", n)
			}
		})
	}
}

func TestLedgerUnreadableRecord(t *testing.T) {
	ctx := context.Background()
	plain := newS3(t)
	l := &store.Ledger{Client: plain, Bucket: "state", Prefix: "ledger/"}
	if _, err := plain.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("state"), Key: aws.String("ledger/k"), Body: strings.NewReader("{")}); err != nil {
		t.Fatal(err)
	}
	_, err := l.Claim(ctx, claimReq("k"))
	if !worker.IsPermanent(err) || worker.CodeOf(err) != worker.CodeLedgerUnreadable || !strings.Contains(err.Error(), "ledger record ledger/k") {
		t.Fatalf("Claim over a corrupt record = %v (code %q)", err, worker.CodeOf(err))
	}
}

// TestKeyExpiriesReadDenied: when s3:GetObject on a record is really
// denied, Extend says so, with the record's key, after one more try of
// the create (a 403 after a 412 can also be a record deleted in
// between, without s3:ListBucket), rather than retrying as if it had
// lost races to other writers.
func TestKeyExpiriesReadDenied(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		policy *iam.Document
		// deleteAfter412 deletes the record once gofakes3 has answered
		// the first create with 412, before Extend reads it.
		deleteAfter412 bool
		err            string // "" for success
		reads          int    // GetObject requests at most
	}{
		{"s3:GetObject denied", writeOnly, false, "reading it is denied", 2},
		{"record deleted between the 412 and the read, without s3:ListBucket", objectsOnly, true, "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain, proxied, proxy := newProxied(t, tt.policy)
			if err := (&store.KeyExpiries{Client: plain, Bucket: "state", Prefix: "keys/"}).Extend(ctx, "KDENY", t0); err != nil {
				t.Fatal(err)
			}
			if tt.deleteAfter412 {
				var once sync.Once
				proxy.Inject(awsproxy.Fault{Operation: "PutObject", After: true, Match: func(awsproxy.Call) bool {
					once.Do(func() {
						if _, err := plain.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("state"), Key: aws.String("keys/KDENY.json")}); err != nil {
							t.Error(err)
						}
					})
					return false
				}})
			}
			k := &store.KeyExpiries{Client: proxied, Bucket: "state", Prefix: "keys/"}
			err := k.Extend(ctx, "KDENY", t0.Add(time.Hour))
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("Extend = %v, want nil", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "keys/KDENY.json") ||
				!strings.Contains(err.Error(), "StatusCode: 403")):
				t.Fatalf("Extend = %v; want the 403 of keys/KDENY.json, saying %q", err, tt.err)
			}
			if n := proxy.Counts("GetObject").Seen; n > tt.reads {
				t.Errorf("Extend read the record %d times, want at most %d", n, tt.reads)
			}
			if tt.err == "" {
				if got, err := (&store.KeyExpiries{Client: plain, Bucket: "state", Prefix: "keys/"}).Latest(ctx, "KDENY"); err != nil || !got.Equal(t0.Add(time.Hour)) {
					t.Errorf("Latest = %v, %v; want %v", got, err, t0.Add(time.Hour))
				}
			}
		})
	}
}
