package store_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/internal/s3test"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/store"
)

// newS3 is a real S3 client on gofakes3, which honours If-None-Match.
func newS3(t *testing.T) *s3.Client {
	_, c := s3test.Start(t, "state")
	return c
}

func TestLedgerLifecycle(t *testing.T) {
	ctx := context.Background()
	l := &store.Ledger{Client: newS3(t), Bucket: "state", Prefix: "ledger/"}
	key := worker.DeliveryKey("evt-1", "Ana@Example.com")
	t0 := time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)

	steps := []struct {
		name string
		do   func() (worker.Claim, error)
		want worker.ClaimState
		at   time.Time
	}{
		{"first claim wins", func() (worker.Claim, error) { return l.Claim(ctx, key, t0) }, worker.Claimed, time.Time{}},
		{"second claim sees it in progress", func() (worker.Claim, error) { return l.Claim(ctx, key, t0.Add(time.Minute)) }, worker.InProgress, t0},
		{"after release it can be claimed again", func() (worker.Claim, error) {
			if err := l.Release(ctx, key); err != nil {
				return worker.Claim{}, err
			}
			return l.Claim(ctx, key, t0.Add(2*time.Minute))
		}, worker.Claimed, time.Time{}},
		{"after complete it is already sent", func() (worker.Claim, error) {
			if err := l.Complete(ctx, key, "ses-1", t0.Add(3*time.Minute)); err != nil {
				return worker.Claim{}, err
			}
			return l.Claim(ctx, key, t0.Add(time.Hour))
		}, worker.AlreadySent, t0.Add(3 * time.Minute)},
	}
	for _, s := range steps {
		c, err := s.do()
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if c.State != s.want || !c.Since.Equal(s.at) {
			t.Fatalf("%s: got %+v, want state %v since %v", s.name, c, s.want, s.at)
		}
	}
	if worker.DeliveryKey("evt-1", "ana@example.com") != key {
		t.Error("delivery keys should not depend on the address's case")
	}
}

func TestLedgerClaimIsAtomic(t *testing.T) {
	ctx := context.Background()
	l := &store.Ledger{Client: newS3(t), Bucket: "state", Prefix: "ledger/"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := l.Claim(ctx, "contended", time.Now())
			if err != nil {
				t.Error(err)
				return
			}
			if c.State == worker.Claimed {
				mu.Lock()
				won++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if won != 1 {
		t.Errorf("%d of 16 concurrent claims won, want exactly 1", won)
	}
}

func TestObjectsHead(t *testing.T) {
	ctx := context.Background()
	c := newS3(t)
	_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("state"), Key: aws.String("a b+c.pdf"),
		Body: strings.NewReader("12345"), ContentType: aws.String("application/pdf"),
		Metadata: map[string]string{"User-Email": "ana@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	o := &store.Objects{Client: c}
	info, err := o.Head(ctx, "state", "a b+c.pdf")
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != 5 || info.ContentType != "application/pdf" || info.Metadata["user-email"] != "ana@example.com" {
		t.Errorf("Head = %+v", info)
	}
	_, err = o.Head(ctx, "state", "missing.pdf")
	if !worker.IsPermanent(err) {
		t.Errorf("a missing object should be a permanent error, got %v", err)
	}
}

func TestLeaseGoesToOneReplica(t *testing.T) {
	ctx := context.Background()
	l := &store.Leases{Client: newS3(t), Bucket: "state", Prefix: "slots/"}
	slot := time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC)
	first, err := l.Acquire(ctx, "daily", slot)
	if err != nil || !first {
		t.Fatalf("first Acquire = %v, %v; want true", first, err)
	}
	second, err := l.Acquire(ctx, "daily", slot)
	if err != nil || second {
		t.Errorf("second Acquire of the same slot = %v, %v; want false", second, err)
	}
	next, err := l.Acquire(ctx, "daily", slot.Add(24*time.Hour))
	if err != nil || !next {
		t.Errorf("next day's slot = %v, %v; want true", next, err)
	}
}
