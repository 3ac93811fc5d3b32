package rotate

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudfront/types"

	"github.com/reportmailer/reportmailer/worker/store"
)

// behaviours returns the cache behaviours of cfg that trust key groups.
func behaviours(cfg *cftypes.DistributionConfig) []*cftypes.TrustedKeyGroups {
	var out []*cftypes.TrustedKeyGroups
	if b := cfg.DefaultCacheBehavior; b != nil && b.TrustedKeyGroups != nil && aws.ToBool(b.TrustedKeyGroups.Enabled) {
		out = append(out, b.TrustedKeyGroups)
	}
	if cfg.CacheBehaviors != nil {
		for i := range cfg.CacheBehaviors.Items {
			if t := cfg.CacheBehaviors.Items[i].TrustedKeyGroups; t != nil && aws.ToBool(t.Enabled) {
				out = append(out, t)
			}
		}
	}
	return out
}

// trustedKeys returns the distribution's config, its ETag, and the
// public key ids of every key group its behaviours trust.
func (r *Rotator) trustedKeys(ctx context.Context) (*cftypes.DistributionConfig, string, map[string][]string, error) {
	out, err := r.CloudFront.GetDistributionConfig(ctx, &cloudfront.GetDistributionConfigInput{Id: aws.String(r.DistributionID)})
	if err != nil {
		return nil, "", nil, fmt.Errorf("cloudfront distribution %s: %w", r.DistributionID, err)
	}
	groups := map[string][]string{}
	for _, t := range behaviours(out.DistributionConfig) {
		for _, g := range t.Items {
			if _, ok := groups[g]; ok {
				continue
			}
			kg, err := r.CloudFront.GetKeyGroup(ctx, &cloudfront.GetKeyGroupInput{Id: aws.String(g)})
			if err != nil {
				return nil, "", nil, fmt.Errorf("cloudfront key group %s: %w", g, err)
			}
			groups[g] = kg.KeyGroup.KeyGroupConfig.Items
		}
	}
	if len(groups) == 0 {
		return nil, "", nil, fmt.Errorf("cloudfront distribution %s: no cache behaviour trusts a key group, so it checks no signed URL", r.DistributionID)
	}
	return out.DistributionConfig, aws.ToString(out.ETag), groups, nil
}

// keyGroup creates the key group holding ids, named after them, or
// finds the one an interrupted run created.
func (r *Rotator) keyGroup(ctx context.Context, ids []string) (string, error) {
	ids = slices.Sorted(slices.Values(ids))
	ids = slices.Compact(ids)
	if len(ids) > maxKeysPerGroup {
		return "", fmt.Errorf("the distribution would trust %d keys (%s), over CloudFront's %d per key group: retire one first (reportmailer keys retire)", len(ids), strings.Join(ids, ", "), maxKeysPerGroup)
	}
	sum := sha256.Sum256([]byte(strings.Join(ids, ",")))
	name := "reportmailer-" + hex.EncodeToString(sum[:8])
	var marker *string
	for {
		out, err := r.CloudFront.ListKeyGroups(ctx, &cloudfront.ListKeyGroupsInput{Marker: marker})
		if err != nil {
			return "", fmt.Errorf("cloudfront list key groups: %w", err)
		}
		if out.KeyGroupList == nil {
			break
		}
		for _, s := range out.KeyGroupList.Items {
			if kg := s.KeyGroup; kg != nil && kg.KeyGroupConfig != nil && aws.ToString(kg.KeyGroupConfig.Name) == name {
				return aws.ToString(kg.Id), nil
			}
		}
		if marker = out.KeyGroupList.NextMarker; aws.ToString(marker) == "" {
			break
		}
	}
	out, err := r.CloudFront.CreateKeyGroup(ctx, &cloudfront.CreateKeyGroupInput{KeyGroupConfig: &cftypes.KeyGroupConfig{
		Name: aws.String(name), Items: ids, Comment: aws.String("reportmailer: " + strings.Join(ids, ", ")),
	}})
	if err != nil {
		return "", fmt.Errorf("cloudfront create key group: %w", err)
	}
	return aws.ToString(out.KeyGroup.Id), nil
}

// ownGroup matches the names keyGroup gives the key groups it creates:
// only those are reportmailer's to delete.
var ownGroup = regexp.MustCompile(`^reportmailer-[0-9a-f]{16}$`)

// replaceGroups makes every behaviour that trusts one of the key groups
// old trust group in their place, keeping its other groups, If-Match
// etag. Behaviours that trust none of old (another application's, say)
// are left as they are.
func (r *Rotator) replaceGroups(ctx context.Context, cfg *cftypes.DistributionConfig, etag string, old []string, group string) error {
	changed := false
	for _, t := range behaviours(cfg) {
		if !slices.ContainsFunc(t.Items, func(g string) bool { return slices.Contains(old, g) }) {
			continue
		}
		items := slices.DeleteFunc(slices.Clone(t.Items), func(g string) bool { return slices.Contains(old, g) || g == group })
		t.Items = append(items, group)
		t.Quantity = aws.Int32(int32(len(t.Items)))
		changed = true
	}
	if !changed {
		return nil
	}
	_, err := r.CloudFront.UpdateDistribution(ctx, &cloudfront.UpdateDistributionInput{
		Id: aws.String(r.DistributionID), IfMatch: aws.String(etag), DistributionConfig: cfg,
	})
	if err != nil {
		return fmt.Errorf("cloudfront update distribution %s: %w", r.DistributionID, err)
	}
	return nil
}

// trust makes the distribution trust rot's key alongside active (the
// key that signs now), through one new key group holding the keys of
// the groups that hold active, set in their place on the behaviours
// that trust them. Behaviours and groups without active are not
// reportmailer's and are left alone.
func (r *Rotator) trust(ctx context.Context, rot *store.Rotation, active string) error {
	cfg, etag, groups, err := r.trustedKeys(ctx)
	if err != nil {
		return err
	}
	var ours []string
	for _, g := range slices.Sorted(maps.Keys(groups)) {
		if slices.Contains(groups[g], active) {
			ours = append(ours, g)
		}
	}
	if len(ours) == 0 {
		return fmt.Errorf("no cache behaviour of distribution %s trusts key %s, the key that signs now: rotation changes only the behaviours that trust it", r.DistributionID, active)
	}
	if !slices.ContainsFunc(ours, func(g string) bool { return !slices.Contains(groups[g], rot.PublicKeyID) }) {
		rot.KeyGroupID = ours[0] // an interrupted run got this far
		return nil
	}
	ids := []string{rot.PublicKeyID}
	for _, g := range ours {
		ids = append(ids, groups[g]...)
	}
	if rot.KeyGroupID, err = r.keyGroup(ctx, ids); err != nil {
		return err
	}
	return r.replaceGroups(ctx, cfg, etag, ours, rot.KeyGroupID)
}

// waitDeployed polls the distribution until it reports Deployed.
func (r *Rotator) waitDeployed(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(r.DeployTimeout, DeployTimeoutDefault))
	defer cancel()
	poll := cmp.Or(r.Poll, PollDefault)
	for {
		out, err := r.CloudFront.GetDistribution(ctx, &cloudfront.GetDistributionInput{Id: aws.String(r.DistributionID)})
		if err != nil {
			return fmt.Errorf("cloudfront distribution %s: %w", r.DistributionID, err)
		}
		status := aws.ToString(out.Distribution.Status)
		if status == "Deployed" {
			r.log().Info("rotate: the distribution is Deployed", "distribution", r.DistributionID)
			return nil
		}
		r.log().Info("rotate: waiting for the distribution to be Deployed", "distribution", r.DistributionID, "status", status)
		select {
		case <-ctx.Done():
			return fmt.Errorf("distribution %s not Deployed yet (%s): %w", r.DistributionID, status, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// ErrTooEarly is returned, wrapped, when a key is retired before its
// safe-removal date without force.
var ErrTooEarly = errors.New("the key's links are still alive")
