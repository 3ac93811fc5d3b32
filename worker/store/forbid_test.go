package store_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/internal/s3test"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/store"
)

// forbidMissing stands in front of gofakes3 and answers as S3 does a
// caller without s3:ListBucket on the bucket, as the worker is: a GET
// or HEAD of a key that does not exist gets 403 AccessDenied, not 404
// (S3 API reference, HeadObject and GetObject, "Permissions"). gofakes3
// still does the work; only the status of its 404s changes.
//
// It is a stop-gap until the shared permission layer (internal/awsproxy,
// being built on branch it7-proxy) lands; these tests should then run
// under that layer's least-privilege policy instead.
type forbidMissing struct {
	next http.RoundTripper
	// allowList, when set, passes 404s through, as for a caller with
	// s3:ListBucket.
	allowList bool
	// afterPut, if set, runs after each PUT has been answered, before
	// the caller sees the answer: a hook to interleave another writer.
	afterPut func(req *http.Request, status int)
}

const accessDenied = `<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>FORBIDMISSING</RequestId><HostId>test</HostId></Error>`

func (f *forbidMissing) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := f.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if req.Method == http.MethodPut && f.afterPut != nil {
		f.afterPut(req, resp.StatusCode)
	}
	if f.allowList || (req.Method != http.MethodGet && req.Method != http.MethodHead) || resp.StatusCode != http.StatusNotFound {
		return resp, nil
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	body := accessDenied
	if req.Method == http.MethodHead {
		body = "" // S3 sends no body with a HEAD
	}
	return &http.Response{
		Status: "403 Forbidden", StatusCode: http.StatusForbidden,
		Proto: resp.Proto, ProtoMajor: resp.ProtoMajor, ProtoMinor: resp.ProtoMinor,
		Header: http.Header{
			"Content-Type":     {"application/xml"},
			"Content-Length":   {strconv.Itoa(len(body))},
			"X-Amz-Request-Id": {"FORBIDMISSING"},
		},
		ContentLength: int64(len(body)),
		Body:          io.NopCloser(strings.NewReader(body)),
		Request:       req,
	}, nil
}

// newForbidding starts gofakes3 with bucket "state" and returns a
// client with full access and one behind forbidMissing.
func newForbidding(t *testing.T) (plain, forbidden *s3.Client, f *forbidMissing) {
	t.Helper()
	url, plain := s3test.Start(t, "state")
	f = &forbidMissing{next: http.DefaultTransport}
	forbidden = s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(url), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		HTTPClient:  &http.Client{Transport: f},
		DisableLogOutputChecksumValidationSkipped: true,
	})
	return plain, forbidden, f
}

func TestForbidMissingAnswers403(t *testing.T) {
	_, c, _ := newForbidding(t)
	_, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("state"), Key: aws.String("nope")})
	if err == nil || !strings.Contains(err.Error(), "StatusCode: 403") || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("GetObject of a missing key = %v, want 403 AccessDenied", err)
	}
}

func TestObjectsHeadMissing(t *testing.T) {
	ctx := context.Background()
	plain, forbidden, _ := newForbidding(t)
	tests := []struct {
		name   string
		client *s3.Client
		code   worker.Code
		reason string
	}{
		{"with s3:ListBucket, S3 says 404", plain, worker.CodeObjectMissing, "object does not exist"},
		{"without it, S3 says 403", forbidden, worker.CodeObjectAccessDenied,
			"object missing, or access denied (S3 answers 403 for a missing key without s3:ListBucket on the bucket)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := (&store.Objects{Client: tt.client}).Head(ctx, "state", "deleted.pdf")
			if !worker.IsPermanent(err) || worker.CodeOf(err) != tt.code || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("Head = %v (permanent %v, code %q); want permanent, %q, saying %q", err, worker.IsPermanent(err), worker.CodeOf(err), tt.code, tt.reason)
			}
		})
	}
}

// TestKeyExpiriesWithoutListBucket: the first record of a key must be
// written although reading it first would answer 403, or no link could
// ever be signed with a new key.
func TestKeyExpiriesWithoutListBucket(t *testing.T) {
	ctx := context.Background()
	plain, forbidden, _ := newForbidding(t)
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
	for _, forbid := range []bool{false, true} {
		name := "404 for the gone record"
		if forbid {
			name = "403 for the gone record, without s3:ListBucket"
		}
		t.Run(name, func(t *testing.T) {
			plain, forbidden, f := newForbidding(t)
			f.allowList = !forbid
			holder := &store.Ledger{Client: plain, Bucket: "state", Prefix: "ledger/"}
			l := &store.Ledger{Client: forbidden, Bucket: "state", Prefix: "ledger/"}
			key := worker.DeliveryKey("evt-1", "ana@example.com")
			held, err := holder.Claim(ctx, claimReq(key))
			if err != nil || held.State != worker.Claimed {
				t.Fatalf("holder's claim = %+v, %v", held, err)
			}
			// The holder releases its claim just after ours was refused.
			var once sync.Once
			f.afterPut = func(_ *http.Request, status int) {
				if status == http.StatusPreconditionFailed {
					once.Do(func() {
						if err := holder.Release(ctx, &held); err != nil {
							t.Error(err)
						}
					})
				}
			}
			c, err := l.Claim(ctx, claimReq(key))
			if err != nil || c.State != worker.Claimed {
				t.Fatalf("Claim after the holder released = %+v, %v; want it claimed", c, err)
			}
		})
	}
}

func TestLedgerUnreadableRecord(t *testing.T) {
	ctx := context.Background()
	plain, _, _ := newForbidding(t)
	l := &store.Ledger{Client: plain, Bucket: "state", Prefix: "ledger/"}
	if _, err := plain.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("state"), Key: aws.String("ledger/k"), Body: strings.NewReader("{")}); err != nil {
		t.Fatal(err)
	}
	_, err := l.Claim(ctx, claimReq("k"))
	if !worker.IsPermanent(err) || worker.CodeOf(err) != worker.CodeLedgerUnreadable || !strings.Contains(err.Error(), "ledger record ledger/k") {
		t.Fatalf("Claim over a corrupt record = %v (code %q)", err, worker.CodeOf(err))
	}
}
