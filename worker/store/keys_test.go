package store_test

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/worker/store"
)

func TestKeyExpiries(t *testing.T) {
	ctx := context.Background()
	c := newS3(t)
	k := &store.KeyExpiries{Client: c, Bucket: "state", Prefix: "ledger/keys/"}
	t0 := time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)

	if got, err := k.Latest(ctx, "K1"); err != nil || !got.IsZero() {
		t.Fatalf("Latest of an unused key = %v, %v; want zero", got, err)
	}
	steps := []struct {
		name  string
		until time.Time
		want  time.Time
	}{
		{"first record", t0.Add(24 * time.Hour), t0.Add(24 * time.Hour)},
		{"later raises it", t0.Add(48 * time.Hour), t0.Add(48 * time.Hour)},
		{"earlier never lowers it", t0.Add(time.Hour), t0.Add(48 * time.Hour)},
		{"equal changes nothing", t0.Add(48 * time.Hour), t0.Add(48 * time.Hour)},
		{"non-UTC input is stored as the same instant", t0.Add(72 * time.Hour).In(time.FixedZone("X", 5*3600)), t0.Add(72 * time.Hour)},
	}
	for _, s := range steps {
		if err := k.Extend(ctx, "K1", s.until); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got, err := k.Latest(ctx, "K1")
		if err != nil || !got.Equal(s.want) {
			t.Fatalf("%s: Latest = %v, %v; want %v", s.name, got, err, s.want)
		}
	}

	// The record survives the process: a new KeyExpiries (another
	// replica, or after a restart) reads it from S3.
	other := &store.KeyExpiries{Client: c, Bucket: "state", Prefix: "ledger/keys/"}
	if got, _ := other.Latest(ctx, "K1"); !got.Equal(t0.Add(72 * time.Hour)) {
		t.Fatalf("a fresh reader sees %v", got)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("state"), Key: aws.String("ledger/keys/K1.json")})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !strings.Contains(string(b), `"key_id":"K1"`) || !strings.Contains(string(b), `"latest_expiry":"2026-11-29T07:00:00Z"`) {
		t.Errorf("stored record: %s", b)
	}

	if err := k.Extend(ctx, "K2", t0); err != nil {
		t.Fatal(err)
	}
	// Objects that are not records are skipped by List.
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("state"), Key: aws.String("ledger/keys/README.txt"), Body: strings.NewReader("x")}); err != nil {
		t.Fatal(err)
	}
	all, err := k.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || !all["K1"].Equal(t0.Add(72*time.Hour)) || !all["K2"].Equal(t0) {
		t.Fatalf("List = %v", all)
	}

	t.Run("bad key id", func(t *testing.T) {
		if err := k.Extend(ctx, "../x", t0); err == nil || !strings.Contains(err.Error(), "key id") {
			t.Fatalf("Extend(../x) = %v", err)
		}
	})
	t.Run("corrupt record is not overwritten", func(t *testing.T) {
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("state"), Key: aws.String("ledger/keys/KBAD.json"), Body: strings.NewReader("{")}); err != nil {
			t.Fatal(err)
		}
		if err := k.Extend(ctx, "KBAD", t0); err == nil || !strings.Contains(err.Error(), "fix or delete it") {
			t.Fatalf("Extend over a corrupt record = %v", err)
		}
	})
}

// TestKeyExpiriesConcurrent has replicas race to raise one record: the
// conditional writes must leave the latest expiry any of them wrote.
func TestKeyExpiriesConcurrent(t *testing.T) {
	ctx := context.Background()
	c := newS3(t)
	t0 := time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	const writers = 24
	for i := range writers {
		// Each writer is its own replica with its own KeyExpiries.
		k := &store.KeyExpiries{Client: c, Bucket: "state", Prefix: "keys/"}
		wg.Go(func() {
			// Interleave early and late expiries so that late ones are
			// often followed by early ones that must not win.
			until := t0.Add(time.Duration((i*7)%writers) * time.Hour)
			if err := k.Extend(ctx, "KRACE", until); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	k := &store.KeyExpiries{Client: c, Bucket: "state", Prefix: "keys/"}
	got, err := k.Latest(ctx, "KRACE")
	if want := t0.Add((writers - 1) * time.Hour); err != nil || !got.Equal(want) {
		t.Fatalf("after %d racing writers: %v, %v; want the latest, %v", writers, got, err, want)
	}
}
