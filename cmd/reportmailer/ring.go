package main

import (
	"context"
	"crypto"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker/link"
	"github.com/reportmailer/reportmailer/worker/store"
)

// kmsOptions gives kms:Sign a few more attempts than the SDK's three:
// KMS throttles by request rate, and a throttle that outlasts them
// halts sending for a while (link.KMSThrottleBackoff).
func kmsOptions(o *kms.Options) {
	o.Retryer = retry.AddWithMaxAttempts(o.Retryer, 6)
}

// ringStore is the key ring's state: next to the key-expiry records,
// whose permissions it shares.
func ringStore(c *config.Config, client store.KeysAPI) *store.RingStore {
	k := keyExpiries(c, client)
	return &store.RingStore{Client: k.Client, Bucket: k.Bucket, Prefix: k.Prefix}
}

// keySource resolves the keys of the ring: configured file keys, and
// KMS keys and generated key files named in the ring's state.
type keySource struct {
	cf     *config.CloudFront
	files  map[string]crypto.Signer // configured file keys, by key id
	kms    link.KMSAPI              // nil: offline, no KMS key and no state
	state  *store.RingStore
	logger *slog.Logger

	mu      sync.Mutex
	signers map[string]crypto.Signer // KMS keys and state key files, by KMS key id or path
}

// newKeyRing builds the signer's key ring. The configured active key
// signs from the start; each key scheduled in the ring's state (by
// `reportmailer keys rotate`) signs from its activation time, and a
// retired one never. Offline (kmsc nil) the ring is the configured
// active key alone, and a KMS key cannot sign.
func newKeyRing(c *config.Config, s3c *s3.Client, kmsc link.KMSAPI, logger *slog.Logger) (link.KeyRing, error) {
	cf := c.Links.CloudFront
	keys, err := loadKeys(cf)
	if err != nil {
		return nil, err
	}
	active, ok := cf.ActiveKey()
	if !ok {
		return nil, fmt.Errorf("links.cloudfront: no single active key") // config validation prevents this
	}
	src := &keySource{cf: cf, files: map[string]crypto.Signer{}, kms: kmsc, logger: logger, signers: map[string]crypto.Signer{}}
	for _, k := range keys {
		if k.Signer != nil {
			src.files[k.ID] = k.Signer
		}
	}
	if kmsc == nil {
		if active.KMSKeyID != "" {
			return offlineRing{id: active.ID}, nil
		}
		return link.Ring{{Key: link.Key{ID: active.ID, Signer: src.files[active.ID]}}}, nil
	}
	src.state = ringStore(c, s3c)
	return &link.LoadedRing{Load: src.load, Logger: logger}, nil
}

// offlineRing stands for a KMS key in a command that calls no AWS API.
type offlineRing struct{ id string }

func (r offlineRing) Active(context.Context, time.Time) (link.Key, error) {
	return link.Key{}, fmt.Errorf("key %s is a KMS key, and this command calls no AWS API, so it cannot sign with it", r.id)
}

// load returns the ring's keys: the configured active key from the
// start, then the state's scheduled keys. A scheduled key whose private
// key cannot be had is left out and logged, so the key before it keeps
// signing: its public key is still trusted. So does the configured key
// when the state cannot be read.
func (s *keySource) load(ctx context.Context) ([]link.RingKey, error) {
	st, _, err := s.state.Load(ctx)
	if err != nil {
		s.logger.Error("key ring: its state cannot be read; the configured active key signs until it can", "err", err)
		st = store.RingState{}
	}
	var out []link.RingKey
	if a, _ := s.cf.ActiveKey(); !st.IsRetired(a.ID) {
		signer, err := s.signer(ctx, a.ID, a.KMSKeyID, "")
		if err != nil {
			return nil, err
		}
		out = append(out, link.RingKey{Key: link.Key{ID: a.ID, Signer: signer}})
	}
	for _, k := range st.Keys {
		if st.IsRetired(k.ID) {
			continue
		}
		signer, err := s.signer(ctx, k.ID, k.KMSKeyID, k.PrivateKeyFile)
		if err != nil {
			s.logger.Error("key ring: a scheduled key cannot sign; the key before it keeps signing", "key", k.ID, "activates_at", k.ActivatesAt, "err", err)
			continue
		}
		out = append(out, link.RingKey{Key: link.Key{ID: k.ID, Signer: signer}, ActiveFrom: k.ActivatesAt})
	}
	return out, nil
}

// signer returns the private key of key id: configured, in KMS, or in
// the key file `keys rotate -generate` wrote.
func (s *keySource) signer(ctx context.Context, id, kmsKey, file string) (crypto.Signer, error) {
	if k, ok := s.files[id]; ok {
		return k, nil
	}
	if kmsKey == "" && file == "" {
		for _, k := range s.cf.SigningKeys() {
			if k.ID == id {
				kmsKey = k.KMSKeyID
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	name := kmsKey
	if name == "" {
		name = file
	}
	if k, ok := s.signers[name]; ok {
		return k, nil
	}
	var k crypto.Signer
	var err error
	switch {
	case kmsKey != "":
		k, err = link.NewKMSSigner(ctx, s.kms, kmsKey)
	case file != "":
		k, err = link.LoadPrivateKey(file, "")
	default:
		return nil, fmt.Errorf("key %s has no private key here: list it in links.cloudfront.keys, or rotate to a KMS key", id)
	}
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", id, err)
	}
	s.signers[name] = k
	return k, nil
}
