package rotate

import (
	"context"
	"crypto"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/link"
	"github.com/reportmailer/reportmailer/worker/store"
)

// ConfiguredKey is a key from the config: a loaded private key, or a
// KMS key.
type ConfiguredKey struct {
	ID string
	// Signer is the private key of a file key; nil for a KMS key.
	Signer crypto.Signer
	// KMSKeyID names a KMS key.
	KMSKeyID string
	// Active marks the configured active key, which signs from the
	// start unless the ring's state retires it.
	Active bool
}

// Source gives a worker's key ring its keys ([link.LoadedRing.Load]):
// the configured active key from the start, then every key the ring's
// state schedules, each from its activation time, less the retired.
// A scheduled key whose private key cannot be had is left out and
// logged, so the key before it keeps signing (its public key is still
// trusted). When no key is left to sign now (the key before it is
// retired), Load fails with [link.ErrNoActiveKey] as a halt of sending,
// with the class of the key's error (a KMS throttle halts for
// link.KMSThrottleBackoff, a refusal for link.KMSRefusedHalt), so messages are handed back, never failed
// towards the dead-letter queue. A state that cannot be read is an
// error, a halt of sending ([worker.HaltUntil]) for a ring that has
// loaded no keys yet: the configured key may be retired, so it never
// signs in its place.
type Source struct {
	Keys []ConfiguredKey
	// KMS signs with KMS keys; nil refuses them.
	KMS link.KMSAPI
	// State is the ring's state; nil means the configured key alone.
	State *store.RingStore
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock at which Load checks that a key can sign; it
	// should be the signer's. Default time.Now.
	Now func() time.Time

	mu      sync.Mutex
	signers map[string]crypto.Signer // KMS keys and key files, by KMS key id or path
}

func (s *Source) log() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

// Load returns the ring's keys.
func (s *Source) Load(ctx context.Context) ([]link.RingKey, error) {
	var st store.RingState
	if s.State != nil {
		var err error
		if st, _, err = s.State.Load(ctx); err != nil {
			// Never fall back to the configured key: the state may have
			// retired it, and CloudFront would refuse its links. A ring
			// that loaded before keeps its keys (LoadedRing); one that
			// never did halts sending until the state can be read.
			return nil, worker.HaltUntil(fmt.Errorf("its state cannot be read, so no key signs: %w", err), time.Now().Add(link.RingRefresh))
		}
	}
	var out []link.RingKey
	for _, k := range s.Keys {
		if !k.Active || st.IsRetired(k.ID) {
			continue
		}
		signer, err := s.Signer(ctx, k.ID, k.KMSKeyID, "")
		if err != nil {
			return nil, err
		}
		out = append(out, link.RingKey{Key: link.Key{ID: k.ID, Signer: signer}})
	}
	var dropped error
	for _, k := range st.Keys {
		if st.IsRetired(k.ID) {
			continue
		}
		signer, err := s.Signer(ctx, k.ID, k.KMSKeyID, k.PrivateKeyFile)
		if err != nil {
			s.log().Error("key ring: a scheduled key cannot sign; the key before it keeps signing", "key", k.ID, "activates_at", k.ActivatesAt, "err", err)
			if dropped == nil {
				dropped = err
			}
			continue
		}
		out = append(out, link.RingKey{Key: link.Key{ID: k.ID, Signer: signer}, ActiveFrom: k.ActivatesAt})
	}
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	if _, err := link.Ring(out).Active(ctx, now); err != nil {
		// Every signature would fail until the state or the key is
		// mended, which is no message's fault: halt sending, keeping the
		// class of a dropped key's error (a KMS throttle or refusal),
		// else until the ring's next reload.
		err = fmt.Errorf("%w: %w", link.ErrNoActiveKey, err)
		if dropped != nil {
			err = fmt.Errorf("%w, since a scheduled key cannot sign and no key before it is left: %w", err, dropped)
		}
		if !worker.IsHalt(err) {
			err = worker.HaltUntil(err, time.Now().Add(link.RingRefresh))
		}
		return nil, err
	}
	return out, nil
}

// Signer returns the private key of key id: configured, in KMS (kmsKey),
// or in a key file `keys rotate -generate` wrote (file).
func (s *Source) Signer(ctx context.Context, id, kmsKey, file string) (crypto.Signer, error) {
	for _, k := range s.Keys {
		if k.ID != id {
			continue
		}
		if k.Signer != nil {
			return k.Signer, nil
		}
		if kmsKey == "" && file == "" {
			kmsKey = k.KMSKeyID
		}
	}
	name := kmsKey
	if name == "" {
		name = file
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.signers[name]; ok {
		return k, nil
	}
	var k crypto.Signer
	var err error
	switch {
	case kmsKey != "" && s.KMS == nil:
		return nil, fmt.Errorf("key %s is a KMS key, and this command calls no AWS API, so it cannot sign with it", id)
	case kmsKey != "":
		k, err = link.NewKMSSigner(ctx, s.KMS, kmsKey)
	case file != "":
		k, err = link.LoadPrivateKey(file, "")
	default:
		return nil, fmt.Errorf("key %s has no private key here: list it in links.cloudfront.keys, or rotate to a KMS key", id)
	}
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", id, err)
	}
	if s.signers == nil {
		s.signers = map[string]crypto.Signer{}
	}
	s.signers[name] = k
	return k, nil
}
