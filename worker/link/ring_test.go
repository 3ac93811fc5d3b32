package link

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
)

func TestRingActive(t *testing.T) {
	generateKeys(t)
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	a := RingKey{Key: Key{ID: "KA", Signer: testEC}}
	b := RingKey{Key: Key{ID: "KB", Signer: otherEC}, ActiveFrom: t0}
	tests := []struct {
		name string
		ring Ring
		now  time.Time
		want string
		err  string
	}{
		{"a single key is a ring of one", Ring{a}, t0, "KA", ""},
		{"before the new key's activation", Ring{a, b}, t0.Add(-time.Second), "KA", ""},
		{"at the new key's activation", Ring{a, b}, t0, "KB", ""},
		{"after it, whatever the order", Ring{b, a}, t0.Add(time.Hour), "KB", ""},
		{"no key active yet", Ring{b}, t0.Add(-time.Second), "", "no key is active yet"},
		{"empty", Ring{}, t0, "", "no keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := tt.ring.Active(context.Background(), tt.now)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || k.ID != tt.want {
				t.Fatalf("Active = %q, %v; want %q", k.ID, err, tt.want)
			}
		})
	}
}

// TestCloudFrontRingSwitch: a signer with a ring signs with the key
// active at the link's making, and records the expiry under that key.
func TestCloudFrontRingSwitch(t *testing.T) {
	generateKeys(t)
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	loads := 0
	ring := &LoadedRing{Load: func(context.Context) ([]RingKey, error) {
		loads++
		if loads > 1 {
			return nil, errors.New("state bucket unreachable")
		}
		return []RingKey{{Key: Key{ID: "KA", Signer: testKey}}, {Key: Key{ID: "KB", Signer: otherKey}, ActiveFrom: t0}}, nil
	}, Refresh: time.Nanosecond}
	log := &memLog{}
	c := &CloudFront{Domain: "https://d111.cloudfront.net", Ring: ring, TTL: time.Hour, Expiries: log}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	r := event.Report{Bucket: "b", Key: "r/q3.pdf"}
	for _, tt := range []struct {
		now  time.Time
		want string
	}{{t0.Add(-time.Minute), "KA"}, {t0, "KB"}, {t0.Add(time.Minute), "KB"}} {
		l, err := c.Sign(context.Background(), r, tt.now)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(l.URL, "Key-Pair-Id="+tt.want) {
			t.Errorf("at %s: %s, want key %s", tt.now, l.URL, tt.want)
		}
		pub := testKey.Public()
		if tt.want == "KB" {
			pub = otherKey.Public()
		}
		if _, err := Verify(l.URL, func(string) (crypto.PublicKey, bool) { return pub, true }, tt.now); err != nil {
			t.Errorf("at %s: link does not verify with %s's public key: %v", tt.now, tt.want, err)
		}
	}
	if log.m["KA"].IsZero() || log.m["KB"].IsZero() {
		t.Errorf("expiries recorded = %v, want both keys", log.m)
	}
}

// TestLoadedRingSignsDuringAReload: while one caller reloads the ring
// (S3 and KMS calls that may be slow), the others sign with the keys
// loaded before instead of queueing behind it.
func TestLoadedRingSignsDuringAReload(t *testing.T) {
	generateKeys(t)
	entered, release := make(chan struct{}), make(chan struct{})
	loads := 0
	ring := &LoadedRing{Refresh: time.Nanosecond, Load: func(context.Context) ([]RingKey, error) {
		loads++ // only one Load runs at a time
		if loads == 2 {
			close(entered)
			<-release
		}
		return []RingKey{{Key: Key{ID: "KA", Signer: testKey}}}, nil
	}}
	ctx := context.Background()
	if k, err := ring.Active(ctx, time.Now()); err != nil || k.ID != "KA" {
		t.Fatalf("first load: %q, %v", k.ID, err)
	}
	reloaded := make(chan error)
	go func() {
		_, err := ring.Active(ctx, time.Now()) // reloads, and waits in Load
		reloaded <- err
	}()
	<-entered
	k, err := ring.Active(ctx, time.Now()) // would wait for the reload if it held the lock
	if err != nil || k.ID != "KA" {
		t.Errorf("during a reload: %q, %v; want KA, loaded before", k.ID, err)
	}
	close(release)
	if err := <-reloaded; err != nil {
		t.Errorf("the reload: %v", err)
	}
	if loads != 2 {
		t.Errorf("%d loads, want 2: the call during the reload uses the keys loaded before", loads)
	}
}

// heldSigner is a private key whose every signature waits for hold, as
// a KMS key's network call does.
type heldSigner struct {
	crypto.Signer
	hold func() error
}

func (s heldSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if err := s.hold(); err != nil {
		return nil, err
	}
	return s.Signer.Sign(r, digest, opts)
}

// TestSignAllConcurrent: an email's links are signed concurrently
// through the ring, up to maxParallelSigns at once and never more,
// proven by signatures that wait until that many are in flight.
func TestSignAllConcurrent(t *testing.T) {
	generateKeys(t)
	var mu sync.Mutex
	inFlight, most := 0, 0
	full := make(chan struct{})
	var fill sync.Once
	k := heldSigner{Signer: testKey, hold: func() error {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		if inFlight == maxParallelSigns {
			fill.Do(func() { close(full) })
		}
		mu.Unlock()
		defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		select {
		case <-full:
			return nil
		case <-time.After(10 * time.Second):
			return fmt.Errorf("never %d signatures in flight at once", maxParallelSigns)
		}
	}}
	ring := &LoadedRing{Load: func(context.Context) ([]RingKey, error) {
		return []RingKey{{Key: Key{ID: "KA", Signer: k}}}, nil
	}}
	c := &CloudFront{Domain: "https://d111.cloudfront.net", Ring: ring, TTL: time.Hour, Expiries: &memLog{}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	var rs []event.Report
	for i := range 2*maxParallelSigns + 3 {
		rs = append(rs, event.Report{Bucket: "b", Key: fmt.Sprintf("r/part-%02d.pdf", i)})
	}
	now := time.Now()
	links, err := c.SignAll(context.Background(), rs, now)
	if err != nil {
		t.Fatal(err)
	}
	if most != maxParallelSigns {
		t.Errorf("at most %d signatures in flight, want %d", most, maxParallelSigns)
	}
	for i, l := range links {
		v, err := Verify(l.URL, func(string) (crypto.PublicKey, bool) { return testKey.Public(), true }, now)
		if err != nil || v.KeyID != "KA" || !strings.Contains(l.URL, rs[i].Key) {
			t.Errorf("link %d, %s: %+v, %v; want report %s signed by KA, in order", i, l.URL, v, err, rs[i].Key)
		}
	}
}

// TestLoadedRingNoKeyHaltEnds: a ring left with no key that can sign
// answers with its halt without reloading while the halt holds, and
// reloads once it would have passed, even before Refresh: a cached halt
// whose time had passed would hand messages back visible at once.
func TestLoadedRingNoKeyHaltEnds(t *testing.T) {
	const backoff = 1500 * time.Millisecond // a short KMS throttle
	var loads atomic.Int32
	ring := &LoadedRing{Refresh: time.Hour, Logger: slog.New(slog.DiscardHandler), Load: func(context.Context) ([]RingKey, error) {
		loads.Add(1)
		return nil, worker.HaltUntil(fmt.Errorf("%w: key B throttled", ErrNoActiveKey), time.Now().Add(backoff))
	}}
	for range 3 {
		_, err := ring.Active(t.Context(), time.Now())
		until, ok := worker.RetryAfter(err)
		if !errors.Is(err, ErrNoActiveKey) || !ok || !until.After(time.Now()) {
			t.Fatalf("Active = %v (retry at %v); want ErrNoActiveKey with a halt still ahead", err, until)
		}
	}
	if n := loads.Load(); n != 1 {
		t.Errorf("%d loads for three signatures within the halt; want 1", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for loads.Load() < 2 && time.Now().Before(deadline) {
		_, err := ring.Active(t.Context(), time.Now())
		if until, ok := worker.RetryAfter(err); !ok || !until.After(time.Now()) {
			t.Fatalf("Active answered a halt whose time has passed: %v (until %v)", err, until)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if loads.Load() < 2 {
		t.Error("the ring never reloaded after its halt ended, within an hour's Refresh")
	}
}
