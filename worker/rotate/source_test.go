package rotate_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/internal/s3test"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/link"
	"github.com/reportmailer/reportmailer/worker/rotate"
	"github.com/reportmailer/reportmailer/worker/store"
)

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writeKey(t *testing.T, k *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSourceUnreadableState: when the ring's state cannot be read, a
// replica never goes back to signing with the configured key, which the
// state may have retired: a ring that loaded keys keeps them, and one
// that has none halts sending (a transient condition) instead.
func TestSourceUnreadableState(t *testing.T) {
	ctx := context.Background()
	_, c := s3test.Start(t, "state")
	ring := &store.RingStore{Client: c, Bucket: "state", Prefix: "keys/"}
	corrupt := func() {
		t.Helper()
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("state"), Key: aws.String("keys/" + store.RingStateName),
			Body: strings.NewReader("{not json")}); err != nil {
			t.Fatal(err)
		}
	}
	src := func() *rotate.Source {
		return &rotate.Source{Keys: []rotate.ConfiguredKey{{ID: "KOLD", Signer: newKey(t), Active: true}}, State: ring}
	}
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	newFile := writeKey(t, newKey(t))

	t.Run("a ring that loaded keeps them", func(t *testing.T) {
		if _, err := ring.Save(ctx, store.RingState{
			Keys:    []store.RingStateKey{{ID: "KNEW", ActivatesAt: t0, PrivateKeyFile: newFile, AddedAt: t0}},
			Retired: []store.RetiredKey{{ID: "KOLD", RetiredAt: t0}},
		}, ""); err != nil {
			t.Fatal(err)
		}
		r := &link.LoadedRing{Load: src().Load, Refresh: time.Nanosecond}
		k, err := r.Active(ctx, t0.Add(time.Hour))
		if err != nil || k.ID != "KNEW" {
			t.Fatalf("before: %s, %v; want KNEW", k.ID, err)
		}
		corrupt()
		k, err = r.Active(ctx, t0.Add(time.Hour))
		if err != nil || k.ID != "KNEW" {
			t.Errorf("state unreadable: %s, %v; want KNEW still (KOLD is retired)", k.ID, err)
		}
	})
	t.Run("a cold start halts", func(t *testing.T) {
		corrupt()
		if keys, err := src().Load(ctx); err == nil {
			t.Fatalf("Load: %d keys, no error; want an error", len(keys))
		}
		r := &link.LoadedRing{Load: src().Load}
		k, err := r.Active(ctx, t0.Add(time.Hour))
		if err == nil {
			t.Fatalf("Active: %s; want no key while the state cannot be read", k.ID)
		}
		if !worker.IsHalt(err) {
			t.Errorf("Active: %v; want a halt of sending, not a message's failure", err)
		}
		if until, ok := worker.RetryAfter(err); !ok || until.IsZero() {
			t.Errorf("Active: %v; want a time to try again", err)
		}
	})
}
