package rotate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudfront/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/worker/store"
)

// DeliveryIndex is the ledger's index of deliveries (Prefix + "events/",
// an empty object per delivery of an event to one recipient, written as
// it is claimed), listed to count the deliveries whose links a key
// signed.
type DeliveryIndex struct {
	Client s3.ListObjectsV2APIClient
	Bucket string
	// Prefix is the ledger prefix.
	Prefix string
}

// count returns how many deliveries were indexed in [from, to].
func (e *DeliveryIndex) count(ctx context.Context, from, to time.Time) (int, error) {
	n := 0
	p := s3.NewListObjectsV2Paginator(e.Client, &s3.ListObjectsV2Input{Bucket: &e.Bucket, Prefix: aws.String(e.Prefix + "events/")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return 0, fmt.Errorf("ledger event index s3://%s/%sevents/: %w", e.Bucket, e.Prefix, err)
		}
		for _, o := range page.Contents {
			if t := aws.ToTime(o.LastModified); !t.Before(from) && !t.After(to) {
				n++
			}
		}
	}
	return n, nil
}

// RetireOptions say which key to retire.
type RetireOptions struct {
	// KeyID is the CloudFront public key id.
	KeyID string
	// Force retires it before its safe-removal date, breaking its live
	// links.
	Force bool
	// DryRun says what would happen and changes nothing.
	DryRun bool
}

// RetireResult is what Retire found and did.
type RetireResult struct {
	// SafeAfter is the key's safe-removal date: the latest expiry it
	// signed (zero: it never signed).
	SafeAfter time.Time
	// LiveDeliveries is how many deliveries (an event to one recipient)
	// made while the key signed may still have live links (-1 when not
	// counted).
	LiveDeliveries int
	// Retired is set when the key was retired: the distribution no
	// longer trusts it.
	Retired bool
	// PublicKeyDeleted is set when its CloudFront public key was
	// deleted too.
	PublicKeyDeleted bool
	// ForeignGroups are the key groups reportmailer did not make that
	// still hold the key ("name (id)"): left, with the public key.
	ForeignGroups []string
}

// activeAt returns the key of the ring (the configured key from the
// start, then the state's) that signs at t, and whether id is
// scheduled to sign after t.
func (r *Rotator) activeAt(st store.RingState, t time.Time) (active string, activeFrom time.Time) {
	active = r.ActiveKeyID
	if st.IsRetired(active) {
		active = ""
	}
	for _, k := range st.Keys {
		if st.IsRetired(k.ID) || k.ActivatesAt.After(t) {
			continue
		}
		if active == "" || k.ActivatesAt.After(activeFrom) {
			active, activeFrom = k.ID, k.ActivatesAt
		}
	}
	return active, activeFrom
}

// Retire stops the distribution trusting a key and deletes its public
// key from CloudFront, once no link it signed is alive: before its
// safe-removal date it refuses (an error wrapping ErrTooEarly) unless
// Force. It never retires the key that signs now or one scheduled to.
func (r *Rotator) Retire(ctx context.Context, o RetireOptions) (RetireResult, error) {
	res := RetireResult{LiveDeliveries: -1}
	if r.DistributionID == "" {
		return res, errors.New("retire: no distribution id: set links.cloudfront.distribution_id")
	}
	now := r.now()
	st, etag, err := r.Ring.Load(ctx)
	if err != nil {
		return res, err
	}
	if active, _ := r.activeAt(st, now); active == o.KeyID {
		return res, fmt.Errorf("retire: key %s signs the links being made now: rotate to another key first (reportmailer keys rotate)", o.KeyID)
	}
	for _, k := range st.Keys {
		if k.ID == o.KeyID && k.ActivatesAt.After(now) && !st.IsRetired(k.ID) {
			return res, fmt.Errorf("retire: key %s is scheduled to sign from %s", o.KeyID, k.ActivatesAt.Format(time.RFC3339))
		}
	}
	if res.SafeAfter, err = r.Expiries.Latest(ctx, o.KeyID); err != nil {
		return res, fmt.Errorf("retire: %w", err)
	}
	if now.Before(res.SafeAfter) {
		live := "an unknown number of deliveries"
		if r.Deliveries != nil {
			first, err := r.Expiries.FirstUsed(ctx, o.KeyID)
			if err != nil {
				return res, fmt.Errorf("retire: %w", err)
			}
			// Deliveries made while it signed whose links can still be alive.
			from := first
			if r.MaxTTL > 0 && now.Add(-r.MaxTTL).After(from) {
				from = now.Add(-r.MaxTTL)
			}
			// Until the next key took over.
			to, own := now, time.Time{}
			if k, ok := st.Key(o.KeyID); ok {
				own = k.ActivatesAt
			}
			for _, k := range st.Keys {
				if k.ID != o.KeyID && k.ActivatesAt.After(own) && k.ActivatesAt.Before(to) {
					to = k.ActivatesAt
				}
			}
			if res.LiveDeliveries, err = r.Deliveries.count(ctx, from, to); err != nil {
				return res, fmt.Errorf("retire: %w", err)
			}
			live = fmt.Sprintf("up to %d deliveries (an event to one recipient, claimed from %s to %s while it signed; some may never have been sent)", res.LiveDeliveries, from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
		}
		if !o.Force {
			return res, fmt.Errorf("retire: key %s: %w until %s; retiring it now would break the links of %s. Wait until then, or give -force",
				o.KeyID, ErrTooEarly, res.SafeAfter.UTC().Format(time.RFC3339), live)
		}
		r.log().Warn("retire -force: retiring before the safe-removal date breaks live links", "key", o.KeyID, "safe_after", res.SafeAfter.UTC(), "deliveries", res.LiveDeliveries)
	}
	if o.DryRun {
		r.log().Info("retire -dry-run: would stop the distribution trusting the key and delete its public key", "key", o.KeyID, "distribution", r.DistributionID)
		return res, nil
	}

	// Stop trusting it.
	cfg, cfgETag, groups, err := r.trustedKeys(ctx)
	if err != nil {
		return res, fmt.Errorf("retire: %w", err)
	}
	var keep, old []string
	for _, g := range slices.Sorted(maps.Keys(groups)) {
		ids := groups[g]
		if !slices.Contains(ids, o.KeyID) {
			continue
		}
		old = append(old, g)
		for _, id := range ids {
			if id != o.KeyID {
				keep = append(keep, id)
			}
		}
	}
	if len(old) > 0 {
		if len(keep) == 0 {
			return res, fmt.Errorf("retire: key %s is the only key distribution %s trusts", o.KeyID, r.DistributionID)
		}
		group, err := r.keyGroup(ctx, keep)
		if err != nil {
			return res, fmt.Errorf("retire: %w", err)
		}
		if err := r.replaceGroups(ctx, cfg, cfgETag, old, group); err != nil {
			return res, fmt.Errorf("retire: %w", err)
		}
		r.log().Info("retire: the distribution no longer trusts the key", "key", o.KeyID, "key_group_id", group)
	}
	// Always, also when an earlier run changed the distribution and
	// stopped: until it is Deployed, edges may still use the old groups,
	// and CloudFront refuses to delete what a distribution uses.
	if err := r.waitDeployed(ctx); err != nil {
		return res, fmt.Errorf("retire: %w; run the command again to finish", err)
	}
	// The key groups rotate made that hold the key, trusted before or
	// left over from a rotation: CloudFront deletes no public key a group
	// holds. Groups reportmailer did not make (Terraform's, another
	// application's) are never deleted; while one holds the key, its
	// public key stays too.
	holding, err := r.groupsHolding(ctx, o.KeyID)
	if err != nil {
		return res, fmt.Errorf("retire: %w", err)
	}
	for _, g := range holding {
		if !ownGroup.MatchString(g.name) {
			res.ForeignGroups = append(res.ForeignGroups, g.name+" ("+g.id+")")
			continue
		}
		r.deleteKeyGroup(ctx, g.id)
	}
	if len(res.ForeignGroups) > 0 {
		r.log().Warn("retire: key groups reportmailer did not make hold the key, so they and its public key are left; remove the key from them (with Terraform, in its configuration), then delete the public key",
			"key", o.KeyID, "key_groups", res.ForeignGroups)
	} else if err := r.deletePublicKey(ctx, o.KeyID); err != nil {
		return res, fmt.Errorf("retire: %w", err)
	} else {
		res.PublicKeyDeleted = true
	}
	st.Keys = slices.DeleteFunc(st.Keys, func(k store.RingStateKey) bool { return k.ID == o.KeyID })
	if !st.IsRetired(o.KeyID) {
		st.Retired = append(st.Retired, store.RetiredKey{ID: o.KeyID, RetiredAt: now.UTC(), Forced: now.Before(res.SafeAfter)})
	}
	if _, err := r.Ring.Save(ctx, st, etag); err != nil {
		return res, fmt.Errorf("retire: %w", err)
	}
	res.Retired = true
	r.log().Info("retire: done: the distribution no longer trusts the key", "key", o.KeyID, "public_key_deleted", res.PublicKeyDeleted)
	return res, nil
}

// namedGroup is a key group's id and name.
type namedGroup struct{ id, name string }

// groupsHolding lists the key groups that hold key id.
func (r *Rotator) groupsHolding(ctx context.Context, id string) ([]namedGroup, error) {
	var out []namedGroup
	var marker *string
	for {
		page, err := r.CloudFront.ListKeyGroups(ctx, &cloudfront.ListKeyGroupsInput{Marker: marker})
		if err != nil {
			return nil, fmt.Errorf("cloudfront list key groups: %w", err)
		}
		if page.KeyGroupList == nil {
			return out, nil
		}
		for _, s := range page.KeyGroupList.Items {
			if kg := s.KeyGroup; kg != nil && kg.KeyGroupConfig != nil && slices.Contains(kg.KeyGroupConfig.Items, id) {
				out = append(out, namedGroup{aws.ToString(kg.Id), aws.ToString(kg.KeyGroupConfig.Name)})
			}
		}
		if marker = page.KeyGroupList.NextMarker; aws.ToString(marker) == "" {
			return out, nil
		}
	}
}

// deleteKeyGroup deletes a key group no behaviour trusts any more; a
// group still used elsewhere (another distribution) is left, and
// logged.
func (r *Rotator) deleteKeyGroup(ctx context.Context, id string) {
	kg, err := r.CloudFront.GetKeyGroup(ctx, &cloudfront.GetKeyGroupInput{Id: aws.String(id)})
	if err == nil {
		_, err = r.CloudFront.DeleteKeyGroup(ctx, &cloudfront.DeleteKeyGroupInput{Id: aws.String(id), IfMatch: kg.ETag})
	}
	if err != nil {
		r.log().Warn("retire: the old key group was left in place; delete it by hand once nothing uses it", "key_group_id", id, "err", err)
	}
}

// deletePublicKey deletes the CloudFront public key; one already gone
// is fine.
func (r *Rotator) deletePublicKey(ctx context.Context, id string) error {
	pk, err := r.CloudFront.GetPublicKey(ctx, &cloudfront.GetPublicKeyInput{Id: aws.String(id)})
	if err != nil {
		var nf *cftypes.NoSuchPublicKey
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("cloudfront public key %s: %w", id, err)
	}
	if _, err := r.CloudFront.DeletePublicKey(ctx, &cloudfront.DeletePublicKeyInput{Id: aws.String(id), IfMatch: pk.ETag}); err != nil {
		return fmt.Errorf("cloudfront delete public key %s: %w", id, err)
	}
	return nil
}
