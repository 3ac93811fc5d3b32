package rotate_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
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

// TestSourceNoKeyLeft: a scheduled key that cannot be loaded is left
// out while the key before it signs, but when that key is retired no
// key is left, and Load fails with a halt of sending (never an empty
// ring that fails every signature towards the dead-letter queue). A
// ring that had loaded keys drops them, since they may be retired.
func TestSourceNoKeyLeft(t *testing.T) {
	ctx := context.Background()
	_, c := s3test.Start(t, "state")
	ring := &store.RingStore{Client: c, Bucket: "state", Prefix: "keys/"}
	src := &rotate.Source{Keys: []rotate.ConfiguredKey{{ID: "KOLD", Signer: newKey(t), Active: true}}, State: ring}
	t0 := time.Now().Add(-time.Hour)
	missing := filepath.Join(t.TempDir(), "gone.pem")

	tests := []struct {
		name    string
		state   store.RingState
		want    string // the key that signs; "" for a halt
		wantErr string
	}{
		{"the key before it signs", store.RingState{
			Keys: []store.RingStateKey{{ID: "KNEW", ActivatesAt: t0, PrivateKeyFile: missing, AddedAt: t0}},
		}, "KOLD", ""},
		{"the key before it is retired", store.RingState{
			Keys:    []store.RingStateKey{{ID: "KNEW", ActivatesAt: t0, PrivateKeyFile: missing, AddedAt: t0}},
			Retired: []store.RetiredKey{{ID: "KOLD", RetiredAt: t0}},
		}, "", "gone.pem"},
		{"every key is retired", store.RingState{
			Retired: []store.RetiredKey{{ID: "KOLD", RetiredAt: t0}},
		}, "", "no key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A ring that loaded KOLD before the state changed.
			saveState(t, ring, store.RingState{})
			r := &link.LoadedRing{Load: src.Load, Refresh: time.Nanosecond}
			if k, err := r.Active(ctx, time.Now()); err != nil || k.ID != "KOLD" {
				t.Fatalf("before: %s, %v; want KOLD", k.ID, err)
			}
			saveState(t, ring, tt.state)
			k, err := r.Active(ctx, time.Now())
			if tt.want != "" {
				if err != nil || k.ID != tt.want {
					t.Fatalf("Active: %s, %v; want %s", k.ID, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Active: %s; want no key", k.ID)
			}
			if !errors.Is(err, link.ErrNoActiveKey) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Active: %v; want link.ErrNoActiveKey naming %q", err, tt.wantErr)
			}
			if !worker.IsHalt(err) {
				t.Errorf("Active: %v; want a halt of sending, not a message's failure", err)
			}
			if until, ok := worker.RetryAfter(err); !ok || !until.After(time.Now()) {
				t.Errorf("Active: %v; want a time to try again", err)
			}
		})
	}
}

// saveState replaces the ring's state with st.
func saveState(t *testing.T, ring *store.RingStore, st store.RingState) {
	t.Helper()
	_, etag, err := ring.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ring.Save(context.Background(), st, etag); err != nil {
		t.Fatal(err)
	}
}
