package link

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
)

// maxParallelSigns bounds the signatures one SignAll makes at once. A
// KMS key makes each signature a network call, so an email's links are
// signed concurrently; the bound keeps one large email from spending
// the account's KMS request quota alone.
const maxParallelSigns = 8

// activeKey returns the key that signs at now: the Ring's, or KeyID and
// Key.
func (c *CloudFront) activeKey(ctx context.Context, now time.Time) (Key, error) {
	if c.Ring == nil {
		return Key{ID: c.KeyID, Signer: c.Key}, nil
	}
	k, err := c.Ring.Active(ctx, now)
	if err != nil {
		return Key{}, fmt.Errorf("cloudfront: %w", err)
	}
	if err := CheckKeyID(k.ID); err != nil {
		return Key{}, fmt.Errorf("cloudfront: key ring: %w", err)
	}
	if err := checkSigner(k.Signer); err != nil {
		return Key{}, fmt.Errorf("cloudfront: key ring: key %s: %w", k.ID, err)
	}
	return k, nil
}

// signEach signs each report on its own, concurrently when there are
// several, and returns the links in order or the first error in order.
func (c *CloudFront) signEach(ctx context.Context, rs []event.Report, now time.Time) ([]worker.Link, error) {
	links := make([]worker.Link, len(rs))
	errs := make([]error, len(rs))
	if len(rs) == 1 {
		links[0], errs[0] = c.Sign(ctx, rs[0], now)
	} else {
		sem := make(chan struct{}, maxParallelSigns)
		var wg sync.WaitGroup
		for i, r := range rs {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				links[i], errs[i] = c.Sign(ctx, r, now)
			}()
		}
		wg.Wait()
	}
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("s3://%s/%s: %w", rs[i].Bucket, rs[i].Key, err)
		}
	}
	return links, nil
}
