package store_test

import (
	"context"
	"encoding/json"
	"fmt"
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

// claimReq asks for key, taking over claims older than a minute.
func claimReq(key string) worker.ClaimRequest {
	return worker.ClaimRequest{Key: key, RunID: "run-1", Timeout: time.Minute,
		Delivery: worker.Delivery{EventID: "evt-1", Recipient: "ana@example.com", Schedule: "daily"}}
}

// readRecord returns the stored JSON of a ledger object.
func readRecord(t *testing.T, c *s3.Client, key string) map[string]any {
	t.Helper()
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("state"), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	defer out.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(out.Body).Decode(&m); err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return m
}

func TestLedgerLifecycle(t *testing.T) {
	ctx := context.Background()
	c := newS3(t)
	l := &store.Ledger{Client: c, Bucket: "state", Prefix: "ledger/"}
	key := worker.DeliveryKey("evt-1", "Ana@Example.com")
	name := "ledger/" + key

	first, err := l.Claim(ctx, claimReq(key))
	if err != nil || first.State != worker.Claimed || first.Record != "s3://state/"+name {
		t.Fatalf("first claim = %+v, %v; want it claimed, record s3://state/%s", first, err, name)
	}
	if got := readRecord(t, c, name); got["state"] != "claimed" || got["event_id"] != "evt-1" || got["recipient"] != "ana@example.com" {
		t.Fatalf("record after the claim = %v", got)
	}
	second, err := l.Claim(ctx, claimReq(key))
	if err != nil || second.State != worker.InProgress {
		t.Fatalf("second claim = %+v, %v; want in progress", second, err)
	}
	if err := l.Release(ctx, &first); err != nil {
		t.Fatal(err)
	}
	again, err := l.Claim(ctx, claimReq(key))
	if err != nil || again.State != worker.Claimed {
		t.Fatalf("claim after release = %+v, %v; want claimed", again, err)
	}
	if err := l.Sending(ctx, "email-1", []*worker.Claim{&again}); err != nil {
		t.Fatal(err)
	}
	if got := readRecord(t, c, name); got["state"] != "sending" || got["email_id"] != "email-1" || got["attempts"] != 1.0 {
		t.Fatalf("record after Sending = %v", got)
	}
	if got := readRecord(t, c, "ledger/emails/email-1.json"); fmt.Sprint(got["keys"]) != "["+key+"]" {
		t.Fatalf("email index = %v; want it to list %s", got, key)
	}
	unsettled, err := l.Claim(ctx, claimReq(key))
	if err != nil || unsettled.State != worker.Unsettled || unsettled.EmailID != "email-1" {
		t.Fatalf("claim while sending = %+v, %v; want unsettled, email-1", unsettled, err)
	}
	if err := l.Complete(ctx, &again, "ses-1"); err != nil {
		t.Fatal(err)
	}
	if got := readRecord(t, c, name); got["state"] != "sent" || got["message_id"] != "ses-1" {
		t.Fatalf("record after Complete = %v", got)
	}
	sent, err := l.Claim(ctx, claimReq(key))
	if err != nil || sent.State != worker.AlreadySent {
		t.Fatalf("claim after complete = %+v, %v; want already sent", sent, err)
	}
	if worker.DeliveryKey("evt-1", "ana@example.com") != key {
		t.Error("delivery keys should not depend on the address's case")
	}
}

// TestLedgerCover: a claimed delivery covered by other emails is
// recorded sent, naming them and no email of its own, so that the next
// claim finds it sent; Lookup shows it covered.
func TestLedgerCover(t *testing.T) {
	for _, tc := range []struct {
		name   string
		emails []string
	}{
		{name: "by two emails", emails: []string{"email-1", "email-2"}},
		{name: "by emails not known"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := newS3(t)
			l := &store.Ledger{Client: c, Bucket: "state", Prefix: "ledger/"}
			key := worker.DeliveryKey("evt-1", "ana@example.com")
			cl, err := l.Claim(ctx, claimReq(key))
			if err != nil || cl.State != worker.Claimed {
				t.Fatalf("claim = %+v, %v; want claimed", cl, err)
			}
			if err := l.Cover(ctx, &cl, tc.emails); err != nil {
				t.Fatal(err)
			}
			got := readRecord(t, c, "ledger/"+key)
			if got["state"] != "sent" || got["covered"] != true || fmt.Sprint(got["covered_by"]) != fmt.Sprint(anys(tc.emails)) || got["email_id"] != nil || got["message_id"] != nil {
				t.Errorf("record after Cover = %v; want sent, covered by %v, with no email of its own", got, tc.emails)
			}
			if again, err := l.Claim(ctx, claimReq(key)); err != nil || again.State != worker.AlreadySent {
				t.Errorf("claim after Cover = %+v, %v; want already sent", again, err)
			}
			rec, ok, err := l.Lookup(ctx, key)
			if err != nil || !ok || rec.State != "sent" || !rec.Covered || fmt.Sprint(rec.CoveredBy) != fmt.Sprint(tc.emails) {
				t.Errorf("Lookup = %+v, %v, %v; want sent, covered by %v", rec, ok, err, tc.emails)
			}
		})
	}
}

// anys is ss as JSON decodes it into an any, nil when empty.
func anys(ss []string) any {
	if len(ss) == 0 {
		return nil
	}
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// TestLedgerOlderRecords: a record written before claims had two
// phases said "sending" from the claim on, so it may hide an accepted
// email: it is unsettled, never taken over as a claim that sent nothing.
func TestLedgerOlderRecords(t *testing.T) {
	ctx := context.Background()
	c := newS3(t)
	l := &store.Ledger{Client: c, Bucket: "state", Prefix: "ledger/"}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("state"), Key: aws.String("ledger/old"),
		Body: strings.NewReader(`{"state":"sending","claimed_at":"2026-11-01T07:00:00Z"}`)}); err != nil {
		t.Fatal(err)
	}
	req := claimReq("old")
	req.Timeout = time.Nanosecond
	got, err := l.Claim(ctx, req)
	if err != nil || got.State != worker.Unsettled {
		t.Fatalf("claim over an older record = %+v, %v; want unsettled", got, err)
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
			c, err := l.Claim(ctx, claimReq("contended"))
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
