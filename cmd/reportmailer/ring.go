package main

import (
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker/link"
	"github.com/reportmailer/reportmailer/worker/rotate"
	"github.com/reportmailer/reportmailer/worker/store"
)

// kmsOptions gives kms:Sign a few more attempts than the SDK's three:
// KMS throttles by request rate, and a throttle that outlasts them
// halts sending for a while (link.KMSThrottleBackoff).
func kmsOptions(o *kms.Options) {
	o.Retryer = retry.AddWithMaxAttempts(o.Retryer, link.KMSSignAttempts)
}

// ringStore is the key ring's state: next to the key-expiry records,
// whose permissions it shares.
func ringStore(c *config.Config, client store.KeysAPI) *store.RingStore {
	k := keyExpiries(c, client)
	return &store.RingStore{Client: k.Client, Bucket: k.Bucket, Prefix: k.Prefix}
}

// keySource is the source of the key ring's keys for a config: its
// keys, with file keys read now (loadKeys), KMS keys through kmsc, and
// the ring's state when s3c is set.
func keySource(cf *config.CloudFront, c *config.Config, s3c *s3.Client, kmsc link.KMSAPI, logger *slog.Logger) (*rotate.Source, error) {
	keys, err := loadKeys(cf)
	if err != nil {
		return nil, err
	}
	src := &rotate.Source{KMS: kmsc, Logger: logger}
	for _, k := range keys {
		src.Keys = append(src.Keys, rotate.ConfiguredKey{ID: k.ID, Signer: k.Signer, KMSKeyID: k.KMSKeyID, Active: k.Active})
	}
	if s3c != nil {
		src.State = ringStore(c, s3c)
	}
	return src, nil
}

// newKeyRing builds the signer's key ring. The configured active key
// signs from the start; each key scheduled in the ring's state (by
// `reportmailer keys rotate`) signs from its activation time, and a
// retired one never. Offline (kmsc nil) the ring is the configured
// active key alone, and a KMS key cannot sign.
func newKeyRing(c *config.Config, s3c *s3.Client, kmsc link.KMSAPI, logger *slog.Logger) (link.KeyRing, error) {
	cf := c.Links.CloudFront
	if _, ok := cf.ActiveKey(); !ok {
		return nil, fmt.Errorf("links.cloudfront: no single active key") // config validation prevents this
	}
	if kmsc == nil {
		s3c = nil // offline: the configured key only
	}
	src, err := keySource(cf, c, s3c, kmsc, logger)
	if err != nil {
		return nil, err
	}
	return &link.LoadedRing{Load: src.Load, Logger: logger}, nil
}
