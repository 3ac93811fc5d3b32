package link

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/reportmailer/reportmailer/worker"
)

// KeyRing gives the key that signs at a moment. A CloudFront signer
// with a Ring asks it for every signature, so a rotation scheduled in
// the ring takes effect at the same moment in every replica, with no
// restart.
type KeyRing interface {
	// Active returns the key that signs links made at now.
	Active(ctx context.Context, now time.Time) (Key, error)
}

// RingKey is a key of a ring and the moment it starts signing.
type RingKey struct {
	Key
	// ActiveFrom is when the key starts signing; the zero time means
	// from the start. Of the keys whose ActiveFrom has passed, the one
	// with the latest signs.
	ActiveFrom time.Time
}

// Ring is a fixed key ring. A single key is a ring of one.
type Ring []RingKey

// Active returns the key with the latest ActiveFrom at or before now.
func (r Ring) Active(_ context.Context, now time.Time) (Key, error) {
	return activeOf(r, now)
}

// activeOf returns the key of keys that signs at now; among keys with
// the same activation time, the first listed.
func activeOf(keys []RingKey, now time.Time) (Key, error) {
	best := -1
	for i, k := range keys {
		if k.ActiveFrom.After(now) {
			continue
		}
		if best < 0 || k.ActiveFrom.After(keys[best].ActiveFrom) {
			best = i
		}
	}
	if best < 0 {
		if len(keys) == 0 {
			return Key{}, errors.New("key ring: no keys")
		}
		return Key{}, fmt.Errorf("key ring: no key is active yet at %s", now.UTC().Format(time.RFC3339))
	}
	return keys[best].Key, nil
}

// ErrNoActiveKey marks a [LoadedRing.Load] error saying that the ring,
// as now scheduled, has no key that can sign now, for example when the
// key scheduled after a retired one cannot be loaded. The ring then
// drops the keys it loaded before, which may be retired, rather than
// keep signing with them.
var ErrNoActiveKey = errors.New("no key can sign now")

// RingRefresh is how often a [LoadedRing] reloads its keys. A rotation
// must schedule an activation at least twice this far ahead, so that
// every replica has read it before it takes effect.
const RingRefresh = time.Minute

// LoadedRing is a key ring read by Load, for example from the key
// ring's state in the state bucket, and read again every Refresh
// (default [RingRefresh]). When a reload fails, the keys last loaded
// keep signing and the failure is logged; without any, or when the
// failure is [ErrNoActiveKey], Active fails with Load's error (its
// class, such as a halt, intact) until the next reload, after Refresh.
// Because every replica computes the active key from the same
// activation times, they switch together, clocks permitting.
type LoadedRing struct {
	// Load returns the ring's keys.
	Load func(ctx context.Context) ([]RingKey, error)
	// Refresh is how long loaded keys are used before Load is called
	// again. Default RingRefresh.
	Refresh time.Duration
	// Logger receives reload failures. Default slog.Default().
	Logger *slog.Logger

	mu      sync.Mutex
	keys    []RingKey
	loaded  time.Time     // when keys were loaded, or the last reload failed
	err     error         // the last reload's error when it left no keys
	errEnd  time.Time     // until when err is answered without a reload
	loading chan struct{} // closed when the reload in flight ends; nil when none is
	active  string        // the id of the last key returned, to log a switch
}

// Active returns the key that signs at now, from keys at most Refresh
// old.
func (r *LoadedRing) Active(ctx context.Context, now time.Time) (Key, error) {
	keys, err := r.current(ctx)
	if err != nil {
		return Key{}, err
	}
	k, err := activeOf(keys, now)
	if err != nil {
		return Key{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if k.ID != r.active {
		if r.active != "" {
			r.logger().Info("key ring: the active key changed", "from", r.active, "to", k.ID)
		}
		r.active = k.ID
	}
	return k, nil
}

// current returns the ring's keys, reloading them when they are older
// than Refresh. The lock is not held across Load, which may call S3 and
// KMS: while one caller reloads, the others sign with the keys loaded
// before, and wait only when there are none yet.
func (r *LoadedRing) current(ctx context.Context) ([]RingKey, error) {
	refresh := r.Refresh
	if refresh <= 0 {
		refresh = RingRefresh
	}
	r.mu.Lock()
	for {
		if r.keys != nil && (time.Since(r.loaded) < refresh || r.loading != nil) {
			keys := r.keys
			r.mu.Unlock()
			return keys, nil
		}
		if r.err != nil && time.Now().Before(r.errEnd) {
			// Every caller would meet the same error: do not reload
			// (S3, KMS) for each of the links in flight.
			err := r.err
			r.mu.Unlock()
			return nil, err
		}
		if r.loading == nil {
			break
		}
		wait := r.loading
		r.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		r.mu.Lock()
	}
	done := make(chan struct{})
	r.loading = done
	r.mu.Unlock()

	keys, err := r.Load(ctx)

	r.mu.Lock()
	defer r.mu.Unlock()
	r.loading = nil
	close(done)
	switch {
	case err == nil:
		r.keys, r.loaded, r.err = slices.Clone(keys), time.Now(), nil
		if r.keys == nil {
			r.keys = []RingKey{}
		}
	case errors.Is(err, ErrNoActiveKey):
		r.logger().Error("key ring: no key can sign; sending halts until one can", "err", err)
		r.keys, r.loaded, r.err = nil, time.Now(), fmt.Errorf("key ring: %w", err)
		// Answer it until its halt ends (a KMS throttle's is shorter
		// than Refresh), less a second, so that no caller gets a halt
		// whose time has passed, which would hand its messages back
		// visible at once.
		r.errEnd = r.loaded.Add(refresh)
		if t, ok := worker.RetryAfter(err); ok && t.Add(-time.Second).Before(r.errEnd) {
			r.errEnd = t.Add(-time.Second)
		}
		return nil, r.err
	case r.keys == nil:
		return nil, fmt.Errorf("key ring: %w", err)
	default:
		r.logger().Error("key ring: reload failed; the keys loaded before keep signing", "loaded_at", r.loaded.UTC().Format(time.RFC3339), "err", err)
		r.loaded = time.Now() // try again after Refresh, not on every link
	}
	return r.keys, nil
}

func (r *LoadedRing) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.Default()
	}
	return r.Logger
}
