package store_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/store"
)

func TestHaltsRoundTrip(t *testing.T) {
	ctx := context.Background()
	c := newS3(t)
	h := &store.Halts{Client: c, Bucket: "state", Key: "ledger/halt.json"}
	if n, ok, err := h.Get(ctx); err != nil || ok {
		t.Fatalf("Get with no record = %+v, %v, %v; want none", n, ok, err)
	}
	t0 := time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)
	put := worker.HaltNote{Code: worker.CodeHalted, Reason: "ses sender identity not verified: reports@acme.example",
		Until: t0.Add(5 * time.Minute), Schedule: "daily", At: t0}
	if err := h.Put(ctx, put); err != nil {
		t.Fatal(err)
	}
	// Another replica reads it.
	got, ok, err := (&store.Halts{Client: c, Bucket: "state", Key: "ledger/halt.json"}).Get(ctx)
	if err != nil || !ok {
		t.Fatalf("Get = %+v, %v, %v", got, ok, err)
	}
	host, _ := os.Hostname()
	want := put
	want.Host, want.Where = host, "s3://state/ledger/halt.json"
	if !got.Until.Equal(want.Until) || !got.At.Equal(want.At) {
		t.Fatalf("Get = %+v; want %+v", got, want)
	}
	got.Until, got.At = want.Until, want.At
	if got != want {
		t.Fatalf("Get = %+v; want %+v", got, want)
	}

	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("state"), Key: aws.String("ledger/halt.json"), Body: strings.NewReader("{")}); err != nil {
		t.Fatal(err)
	}
	if n, ok, err := h.Get(ctx); ok || err == nil || !strings.Contains(err.Error(), "s3://state/ledger/halt.json is not a record") {
		t.Fatalf("Get of a corrupt record = %+v, %v, %v; want an error naming it, and no halt", n, ok, err)
	}
}

// TestHaltsForbiddenIsNotAHalt: a 403 on the record, whether S3 sends
// it for a record that does not exist (no s3:ListBucket) or for one the
// role may not read, is an error, never "halted".
func TestHaltsForbiddenIsNotAHalt(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		exists bool
	}{{"no record, without s3:ListBucket", false}, {"a record, without s3:GetObject", true}} {
		t.Run(tt.name, func(t *testing.T) {
			p := objectsOnly
			if tt.exists {
				p = writeOnly
			}
			plain, proxied, _ := newProxied(t, p)
			if tt.exists {
				n := worker.HaltNote{Code: worker.CodeHalted, Reason: "x", Until: time.Now().Add(time.Hour)}
				if err := (&store.Halts{Client: plain, Bucket: "state", Key: "ledger/halt.json"}).Put(ctx, n); err != nil {
					t.Fatal(err)
				}
			}
			n, ok, err := (&store.Halts{Client: proxied, Bucket: "state", Key: "ledger/halt.json"}).Get(ctx)
			if ok || err == nil || !strings.Contains(err.Error(), "halt record s3://state/ledger/halt.json") || !strings.Contains(err.Error(), "StatusCode: 403") {
				t.Fatalf("Get = %+v, %v, %v; want the 403 as an error, and no halt", n, ok, err)
			}
		})
	}
}
