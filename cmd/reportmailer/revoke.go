package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudfrontkeyvaluestore"
	kvstypes "github.com/aws/aws-sdk-go-v2/service/cloudfrontkeyvaluestore/types"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/store"
)

const revokeSynopsis = `revoke -config FILE -event-id ID [-to ADDR] [-undo] [-dry-run]
revoke -config FILE -prune [-dry-run]

Makes the links of one delivery stop working before they expire. It
finds the event's deliveries in the ledger (every recipient, or only
-to), recomputes each one's link token (links.trace), and adds the
tokens to the deny list in the CloudFront KeyValueStore
links.cloudfront.key_value_store_arn. The viewer-request function in
deploy/cloudfront-function answers 403 to a link whose token is there.

The token is a fixed function of the event id and the recipient, so a
revoked delivery's links stay denied after a resend: the resent links
carry the same token until revoke -undo takes it off the deny list.
With -to, a delivery whose ledger record is gone (ledger retention
shorter than links.max_ttl) is revoked all the same, with a warning:
the token needs only the event id and the address.

Each entry's value is when the delivery's links expire at the latest
(the ledger record's last send plus links.max_ttl, or now plus
links.max_ttl without a record). -prune deletes the entries whose links
have all expired, so the store stays under its size quota; after a
resend of a revoked delivery, run revoke again to extend its entry.

It works only where that function is attached to the distribution's
cache behaviour (viewer request) and the KeyValueStore is associated
with the function; links sent without links.trace carry no token and
cannot be revoked this way (removing the key from the key group revokes
every link it signed). -dry-run prints the keys it would add or delete
and writes nothing. Exit codes: 0 done, 1 failure (nothing written),
2 usage, 3 partial (some keys written, a later batch failed).`

// kvsBatch is how many keys one UpdateKeys call puts or deletes.
const kvsBatch = 50

// expiresPrefix starts the value revoke stores for a token: the time
// its links expire at the latest. -prune deletes only values of this
// form, so an entry written another way is never pruned.
const expiresPrefix = "expires "

// revocation is one delivery whose links revoke denies.
type revocation struct {
	EventID, Recipient, Token string
	// Expires is when the delivery's links expire at the latest.
	Expires time.Time
}

func (m *Main) revoke(ctx context.Context, args []string) error {
	fs := m.newFlagSet("revoke", revokeSynopsis)
	configPath := fs.String("config", "", "config file (default $REPORTMAILER_CONFIG)")
	eventID := fs.String("event-id", "", "the event whose links to revoke (required unless -prune)")
	to := fs.String("to", "", "only the links sent to this address (default: every recipient's); works without the ledger record")
	undo := fs.Bool("undo", false, "take the tokens off the deny list again: the links work again until they expire")
	prune := fs.Bool("prune", false, "delete the deny list's entries whose links have all expired")
	dry := fs.Bool("dry-run", false, "print the keys that would be added or deleted; write nothing")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *prune && (*eventID != "" || *to != "" || *undo):
		return usageError("revoke: -prune takes no -event-id, -to or -undo")
	case !*prune && *eventID == "":
		return usageError("revoke: -event-id is required")
	}
	c, err := m.loadConfig(*configPath)
	if err != nil {
		return err
	}
	if !c.Links.Trace {
		return fmt.Errorf("revoke: links.trace is off, so links carry no token to deny; only removing the signing key from the key group revokes them, and all of its links with them")
	}
	arn := c.Links.CloudFront.KeyValueStoreARN
	if arn == "" && (!*dry || *prune) {
		return fmt.Errorf("revoke: links.cloudfront.key_value_store_arn is not set: name the KeyValueStore the deny-list function reads (deploy/cloudfront-function)")
	}
	cl, err := newOpsClients(ctx, c)
	if err != nil {
		return err
	}
	if *prune {
		return m.revokePrune(ctx, cloudfrontkeyvaluestore.NewFromConfig(cl.aws), arn, *dry)
	}
	tokens, err := loadTokens(c.Links)
	if err != nil {
		return err
	}
	now := time.Now()
	maxTTL := c.Links.MaxTTL
	ledger := &store.Ledger{Client: cl.s3, Bucket: c.Ledger.Bucket, Prefix: c.Ledger.Prefix}
	var recs []store.Record
	if *to != "" {
		rec, ok, err := ledger.Lookup(ctx, worker.DeliveryKey(*eventID, *to))
		if err != nil {
			return fmt.Errorf("revoke: %w", err)
		}
		if !ok {
			// Its links may still be live: the ledger's retention can be
			// shorter than links.max_ttl, and the token needs no record.
			fmt.Fprintf(m.Stderr, "warning: the ledger has no record of event %q to %s (expired, or never sent): its token is computed from the event id and the address all the same\n", *eventID, *to)
			recs = append(recs, store.Record{State: "sent", Delivery: worker.Delivery{EventID: *eventID, Recipient: strings.ToLower(*to)}})
		} else {
			recs = append(recs, rec)
		}
	} else if recs, err = ledger.EventDeliveries(ctx, *eventID); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	var revs []revocation
	for _, r := range recs {
		if r.State != "sent" && r.State != "sending" {
			continue // no email, so no link, went out under it
		}
		revs = append(revs, revocation{EventID: r.EventID, Recipient: r.Recipient, Token: tokens.Of(r.EventID, r.Recipient), Expires: linksExpire(r, maxTTL, now)})
	}
	if len(revs) == 0 {
		if *to != "" {
			return fmt.Errorf("revoke: the ledger has no delivery of event %q to %s that was sent or maybe sent: nothing to revoke", *eventID, *to)
		}
		return fmt.Errorf("revoke: the ledger has no delivery of event %q to any recipient that was sent or maybe sent (its records may have expired): -to ADDR revokes one address's links without the record", *eventID)
	}
	slices.SortFunc(revs, func(a, b revocation) int { return strings.Compare(a.Recipient, b.Recipient) })
	verb, prep, done := "add", "to", "revoked"
	if *undo {
		verb, prep, done = "delete", "from", "unrevoked"
	}
	if *dry {
		target := arn
		if target == "" {
			target = "(links.cloudfront.key_value_store_arn, not set)"
		}
		fmt.Fprintf(m.Stdout, "dry run: would %s %d tokens %s the deny list %s:\n", verb, len(revs), prep, target)
		for _, r := range revs {
			fmt.Fprintf(m.Stdout, "  %s  event %s  recipient %s  links expire by %s\n", r.Token, r.EventID, r.Recipient, r.Expires.UTC().Format(time.RFC3339))
		}
		return nil
	}
	var puts []kvstypes.PutKeyRequestListItem
	var dels []kvstypes.DeleteKeyRequestListItem
	for _, r := range revs {
		if *undo {
			dels = append(dels, kvstypes.DeleteKeyRequestListItem{Key: aws.String(r.Token)})
		} else {
			puts = append(puts, kvstypes.PutKeyRequestListItem{Key: aws.String(r.Token), Value: aws.String(expiresValue(r.Expires))})
		}
	}
	kvs := cloudfrontkeyvaluestore.NewFromConfig(cl.aws)
	n, err := updateKeys(ctx, kvs, arn, puts, dels)
	if err != nil {
		return writeError(fmt.Sprintf("revoke: %d of %d tokens %sed %s %s", n, len(revs), strings.TrimSuffix(verb, "e"), prep, arn), n, err)
	}
	for _, r := range revs {
		fmt.Fprintf(m.Stdout, "%s  event %s  recipient %s  token %s\n", done, r.EventID, r.Recipient, r.Token)
	}
	if *undo {
		fmt.Fprintf(m.Stdout, "%d tokens off the deny list %s; their links work again (until they expire) within seconds\n", len(revs), arn)
		return nil
	}
	fmt.Fprintf(m.Stdout, "%d tokens on the deny list %s; CloudFront answers their links with 403 within seconds, where the function is attached\n", len(revs), arn)
	return nil
}

// writeError is the error of a write that stopped after n keys: a
// failure when nothing was written, partial (exit 3) otherwise.
func writeError(what string, n int, err error) error {
	err = fmt.Errorf("%s: %w", what, err)
	if n > 0 {
		return exitError{code: ExitPartial, err: err}
	}
	return err
}

// linksExpire is when the links emailed for r expire at the latest:
// each email's links were signed before it was sent, for at most
// maxTTL. Without a time on the record (it is gone) it is now+maxTTL.
func linksExpire(r store.Record, maxTTL time.Duration, now time.Time) time.Time {
	last := r.SentAt
	for _, t := range []time.Time{r.SendingAt, r.Modified} {
		if t.After(last) {
			last = t
		}
	}
	for _, rs := range r.Resends {
		if rs.At.After(last) {
			last = rs.At
		}
	}
	if last.IsZero() {
		last = now
	}
	return last.Add(maxTTL).UTC().Truncate(time.Second).Add(time.Second)
}

// expiresValue is the KeyValueStore value for links that expire at t.
func expiresValue(t time.Time) string {
	return expiresPrefix + t.UTC().Format(time.RFC3339)
}

// expired reports whether value (expiresValue's) names a time before
// now; a value of another form is never expired.
func expired(value string, now time.Time) bool {
	s, ok := strings.CutPrefix(value, expiresPrefix)
	if !ok {
		return false
	}
	t, err := time.Parse(time.RFC3339, s)
	return err == nil && t.Before(now)
}

// revokePrune deletes the deny list's entries whose links have all
// expired: a denied token whose links CloudFront refuses anyway.
func (m *Main) revokePrune(ctx context.Context, kvs *cloudfrontkeyvaluestore.Client, arn string, dry bool) error {
	now := time.Now()
	var dels []kvstypes.DeleteKeyRequestListItem
	total, kept := 0, 0
	p := cloudfrontkeyvaluestore.NewListKeysPaginator(kvs, &cloudfrontkeyvaluestore.ListKeysInput{KvsARN: aws.String(arn)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("revoke: list keys of %s: %w", arn, err)
		}
		for _, it := range out.Items {
			total++
			switch v := aws.ToString(it.Value); {
			case expired(v, now):
				dels = append(dels, kvstypes.DeleteKeyRequestListItem{Key: it.Key})
			case !strings.HasPrefix(v, expiresPrefix):
				kept++
			}
		}
	}
	if kept > 0 {
		fmt.Fprintf(m.Stderr, "warning: %d entries of %s have no %q value (not written by this revoke); they are kept\n", kept, arn, strings.TrimSpace(expiresPrefix))
	}
	if dry {
		fmt.Fprintf(m.Stdout, "dry run: would delete %d of %d entries of the deny list %s (links expired)\n", len(dels), total, arn)
		return nil
	}
	n, err := updateKeys(ctx, kvs, arn, nil, dels)
	if err != nil {
		return writeError(fmt.Sprintf("revoke -prune: %d of %d expired entries deleted from %s", n, len(dels), arn), n, err)
	}
	fmt.Fprintf(m.Stdout, "pruned %d of %d entries of the deny list %s (links expired)\n", n, total, arn)
	return nil
}

// updateKeys puts puts and deletes dels in the KeyValueStore arn,
// kvsBatch keys at a time, each UpdateKeys conditional on the store's
// ETag (read with DescribeKeyValueStore, then carried from each
// answer). A conflict (another writer changed the store) reads the ETag
// again and retries, up to three times; putting or deleting a key again
// is harmless. It returns how many keys were written.
func updateKeys(ctx context.Context, kvs *cloudfrontkeyvaluestore.Client, arn string, puts []kvstypes.PutKeyRequestListItem, dels []kvstypes.DeleteKeyRequestListItem) (int, error) {
	if len(puts)+len(dels) == 0 {
		return 0, nil
	}
	d, err := kvs.DescribeKeyValueStore(ctx, &cloudfrontkeyvaluestore.DescribeKeyValueStoreInput{KvsARN: aws.String(arn)})
	if err != nil {
		return 0, fmt.Errorf("describe key value store: %w", err)
	}
	etag := d.ETag
	done := 0
	for len(puts)+len(dels) > 0 {
		in := &cloudfrontkeyvaluestore.UpdateKeysInput{KvsARN: aws.String(arn)}
		k := min(len(puts), kvsBatch)
		in.Puts, puts = puts[:k], puts[k:]
		k = min(len(dels), kvsBatch-len(in.Puts))
		in.Deletes, dels = dels[:k], dels[k:]
		for attempt := 1; ; attempt++ {
			in.IfMatch = etag
			out, err := kvs.UpdateKeys(ctx, in)
			var conflict *kvstypes.ConflictException
			if errors.As(err, &conflict) && attempt < 3 {
				if d, err = kvs.DescribeKeyValueStore(ctx, &cloudfrontkeyvaluestore.DescribeKeyValueStoreInput{KvsARN: aws.String(arn)}); err != nil {
					return done, fmt.Errorf("describe key value store: %w", err)
				}
				etag = d.ETag
				continue
			}
			if err != nil {
				return done, fmt.Errorf("update keys: %w", err)
			}
			etag = out.ETag
			break
		}
		done += len(in.Puts) + len(in.Deletes)
	}
	return done, nil
}
