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

const revokeSynopsis = `revoke -config FILE -event-id ID [-to ADDR] [-dry-run]

Makes the links of one delivery stop working before they expire. It
finds the event's deliveries in the ledger (every recipient, or only
-to), recomputes each one's link token (links.trace), and adds the
tokens to the deny list in the CloudFront KeyValueStore
links.cloudfront.key_value_store_arn. The viewer-request function in
deploy/cloudfront-function answers 403 to a link whose token is there.

It works only where that function is attached to the distribution's
cache behaviour (viewer request) and the KeyValueStore is associated
with the function; links sent without links.trace carry no token and
cannot be revoked this way (removing the key from the key group revokes
every link it signed). -dry-run prints the tokens it would add and
writes nothing. Exit codes: 0 done, 1 failure, 2 usage.`

// kvsBatch is how many keys one UpdateKeys call puts.
const kvsBatch = 50

// revocation is one delivery whose links revoke denies.
type revocation struct {
	EventID, Recipient, Token string
}

func (m *Main) revoke(ctx context.Context, args []string) error {
	fs := m.newFlagSet("revoke", revokeSynopsis)
	configPath := fs.String("config", "", "config file (default $REPORTMAILER_CONFIG)")
	eventID := fs.String("event-id", "", "the event whose links to revoke (required)")
	to := fs.String("to", "", "only the links sent to this address (default: every recipient's)")
	dry := fs.Bool("dry-run", false, "print the tokens that would be denied; write nothing")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *eventID == "" {
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
	if arn == "" && !*dry {
		return fmt.Errorf("revoke: links.cloudfront.key_value_store_arn is not set: name the KeyValueStore the deny-list function reads (deploy/cloudfront-function)")
	}
	tokens, err := loadTokens(c.Links)
	if err != nil {
		return err
	}
	cl, err := newOpsClients(ctx, c)
	if err != nil {
		return err
	}
	ledger := &store.Ledger{Client: cl.s3, Bucket: c.Ledger.Bucket, Prefix: c.Ledger.Prefix}
	var recs []store.Record
	if *to != "" {
		rec, ok, err := ledger.Lookup(ctx, worker.DeliveryKey(*eventID, *to))
		if err != nil {
			return fmt.Errorf("revoke: %w", err)
		}
		if ok {
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
		revs = append(revs, revocation{EventID: r.EventID, Recipient: r.Recipient, Token: tokens.Of(r.EventID, r.Recipient)})
	}
	if len(revs) == 0 {
		who := "any recipient"
		if *to != "" {
			who = *to
		}
		return fmt.Errorf("revoke: the ledger has no delivery of event %q to %s that was sent or maybe sent: nothing to revoke", *eventID, who)
	}
	slices.SortFunc(revs, func(a, b revocation) int { return strings.Compare(a.Recipient, b.Recipient) })
	if *dry {
		target := arn
		if target == "" {
			target = "(links.cloudfront.key_value_store_arn, not set)"
		}
		fmt.Fprintf(m.Stdout, "dry run: would add %d tokens to the deny list %s:\n", len(revs), target)
		for _, r := range revs {
			fmt.Fprintf(m.Stdout, "  %s  event %s  recipient %s\n", r.Token, r.EventID, r.Recipient)
		}
		return nil
	}
	kvs := cloudfrontkeyvaluestore.NewFromConfig(cl.aws)
	n, err := denyTokens(ctx, kvs, arn, revs, time.Now())
	if err != nil {
		return fmt.Errorf("revoke: %d of %d tokens added to %s: %w", n, len(revs), arn, err)
	}
	for _, r := range revs {
		fmt.Fprintf(m.Stdout, "revoked  event %s  recipient %s  token %s\n", r.EventID, r.Recipient, r.Token)
	}
	fmt.Fprintf(m.Stdout, "%d tokens on the deny list %s; CloudFront answers their links with 403 within seconds, where the function is attached\n", len(revs), arn)
	return nil
}

// denyTokens puts each token in the KeyValueStore arn, kvsBatch at a
// time, each UpdateKeys conditional on the store's ETag (read with
// DescribeKeyValueStore, then carried from each answer). A conflict
// (another writer changed the store) reads the ETag again and retries,
// up to three times; putting a key again is harmless. The value is the
// time of the revocation. It returns how many tokens were put.
func denyTokens(ctx context.Context, kvs *cloudfrontkeyvaluestore.Client, arn string, revs []revocation, now time.Time) (int, error) {
	d, err := kvs.DescribeKeyValueStore(ctx, &cloudfrontkeyvaluestore.DescribeKeyValueStoreInput{KvsARN: aws.String(arn)})
	if err != nil {
		return 0, fmt.Errorf("describe key value store: %w", err)
	}
	etag := d.ETag
	value := aws.String(now.UTC().Format(time.RFC3339))
	done := 0
	for batch := range slices.Chunk(revs, kvsBatch) {
		puts := make([]kvstypes.PutKeyRequestListItem, len(batch))
		for i, r := range batch {
			puts[i] = kvstypes.PutKeyRequestListItem{Key: aws.String(r.Token), Value: value}
		}
		for attempt := 1; ; attempt++ {
			out, err := kvs.UpdateKeys(ctx, &cloudfrontkeyvaluestore.UpdateKeysInput{KvsARN: aws.String(arn), IfMatch: etag, Puts: puts})
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
		done += len(batch)
	}
	return done, nil
}
