package main

import (
	"context"
	"crypto"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker/link"
	"github.com/reportmailer/reportmailer/worker/store"
)

// loadedKey is a configured CloudFront key with its private key.
type loadedKey struct {
	config.CloudFrontKey
	Signer crypto.Signer
}

// loadKeys reads every configured CloudFront key, so that a key that
// cannot be read stops start-up (and config check) rather than a
// rotation. A KMS key has no private key to read: its Signer is nil
// here, and the key ring (ring.go) asks KMS for it.
func loadKeys(cf *config.CloudFront) ([]loadedKey, error) {
	var keys []loadedKey
	for i, k := range cf.SigningKeys() {
		if k.KMSKeyID != "" {
			keys = append(keys, loadedKey{CloudFrontKey: k})
			continue
		}
		s, err := link.LoadPrivateKey(k.PrivateKeyFile, k.PrivateKeyEnv)
		if err != nil {
			// Name the setting to fix; LoadPrivateKey never quotes the key.
			setting := "links.cloudfront"
			if len(cf.Keys) > 0 {
				setting = fmt.Sprintf("links.cloudfront.keys[%d]", i)
			}
			if k.PrivateKeyFile != "" {
				setting += ".private_key_file"
			} else {
				setting += ".private_key_env"
			}
			return nil, fmt.Errorf("%s (key %s): %w", setting, k.ID, err)
		}
		keys = append(keys, loadedKey{CloudFrontKey: k, Signer: s})
	}
	return keys, nil
}

// keyExpiries is where the worker records, per CloudFront key, the
// latest expiry it signed: links.cloudfront.key_records_prefix in the
// ledger's bucket, whose permissions it shares, but outside the ledger
// prefix and its lifecycle rule.
func keyExpiries(c *config.Config, client store.KeysAPI) *store.KeyExpiries {
	prefix := config.KeyRecordsPrefixDefault
	if cf := c.Links.CloudFront; cf != nil && cf.KeyRecordsPrefix != "" {
		prefix = cf.KeyRecordsPrefix
	}
	return &store.KeyExpiries{Client: client, Bucket: c.Ledger.Bucket, Prefix: prefix}
}

func (m *Main) keys(ctx context.Context, args []string) error {
	fs := m.newFlagSet("keys", "keys -config FILE   (and: keys rotate, keys retire)")
	configPath := fs.String("config", "", "config file (default $REPORTMAILER_CONFIG)")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := m.loadConfig(*configPath)
	if err != nil {
		return err
	}
	cf := c.Links.CloudFront
	if cf == nil {
		return fmt.Errorf("keys: the config has no links.cloudfront section; S3 presigned links use no CloudFront keys")
	}
	keys, err := loadKeys(cf)
	if err != nil {
		return err
	}
	a, err := m.newApp(ctx, c)
	if err != nil {
		return err
	}
	log := keyExpiries(c, a.s3)
	now := time.Now()
	// The ring's state: keys scheduled by "keys rotate", and retired ones.
	ring, _, ringErr := ringStore(c, a.s3).Load(ctx)
	src, err := keySource(cf, c, nil, kms.NewFromConfig(a.aws, kmsOptions), a.logger)
	if err != nil {
		return err
	}
	activeNow := ringActive(cf, ring, now)

	tw := tabwriter.NewWriter(m.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY ID\tALGORITHM\tFINGERPRINT\tACTIVE\tSAFE TO REMOVE FROM CLOUDFRONT AFTER")
	configured := map[string]bool{}
	row := func(id string, signer crypto.Signer, scheduled time.Time) error {
		if signer == nil {
			return fmt.Errorf("key %s: no private key", id)
		}
		alg, err := link.KeyAlgorithm(signer)
		if err != nil {
			return fmt.Errorf("key %s: %w", id, err)
		}
		fp, err := link.Fingerprint(signer)
		if err != nil {
			return fmt.Errorf("key %s: %w", id, err)
		}
		if _, ok := signer.(*link.KMSSigner); ok {
			alg += " (KMS)"
		}
		latest, err := log.Latest(ctx, id)
		if err != nil {
			return fmt.Errorf("keys: %w", err)
		}
		active := "no"
		switch {
		case id == activeNow:
			active = "yes"
		case ring.IsRetired(id):
			active = "retired"
		case scheduled.After(now):
			active = "from " + scheduled.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", id, alg, fp, active, removalDate(latest, id == activeNow || scheduled.After(now), now))
		return nil
	}
	for _, k := range keys {
		configured[k.ID] = true
		signer := k.Signer
		if signer == nil {
			if signer, err = src.Signer(ctx, k.ID, k.KMSKeyID, ""); err != nil {
				return err
			}
		}
		var scheduled time.Time
		if sk, ok := ring.Key(k.ID); ok {
			scheduled = sk.ActivatesAt
		}
		if err := row(k.ID, signer, scheduled); err != nil {
			return err
		}
	}
	for _, k := range ring.Keys {
		if configured[k.ID] {
			continue
		}
		configured[k.ID] = true
		signer, err := src.Signer(ctx, k.ID, k.KMSKeyID, k.PrivateKeyFile)
		if err != nil {
			// A key file on the workers' disks, not this one: still list it.
			fmt.Fprintf(m.Stderr, "warning: %v\n", err)
			active := "no"
			switch {
			case k.ID == activeNow:
				active = "yes"
			case k.ActivatesAt.After(now):
				active = "from " + k.ActivatesAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t-\t-\t%s\t-\n", k.ID, active)
			continue
		}
		if err := row(k.ID, signer, k.ActivatesAt); err != nil {
			return err
		}
	}
	// Keys that signed links but have left the config still matter:
	// their public keys must stay in CloudFront until these dates.
	recorded, listErr := log.List(ctx)
	var gone []string
	for id := range recorded {
		if !configured[id] {
			gone = append(gone, id)
		}
	}
	slices.Sort(gone)
	for _, id := range gone {
		state := "not in config"
		if ring.IsRetired(id) {
			state = "retired"
		}
		fmt.Fprintf(tw, "%s\t-\t-\t%s\t%s\n", id, state, removalDate(recorded[id], false, now))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(m.Stderr, "Each date is the latest expiry of any link the worker signed with that key (recorded in s3://%s/%s, at most %s late).\n"+
		"After it, removing the key's public key from CloudFront breaks no link. The active key's date moves on while it signs.\n"+
		"Links made with \"reportmailer sign\" are not recorded.\n",
		log.Bucket, log.Prefix, shortDuration(link.RecordAhead))
	if ringErr != nil {
		fmt.Fprintf(m.Stderr, "warning: the key ring's state could not be read, so keys scheduled by \"keys rotate\" are not shown: %v\n", ringErr)
	}
	if listErr != nil {
		fmt.Fprintf(m.Stderr, "warning: keys no longer in the config could not be listed (needs s3:ListBucket): %v\n", listErr)
	}
	return nil
}

// shortDuration writes 1h rather than 1h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// removalDate says when a key's public key may be removed.
func removalDate(latest time.Time, active bool, now time.Time) string {
	switch {
	case latest.IsZero() && active:
		return "never used (yet)"
	case latest.IsZero():
		return "never used"
	case active:
		return latest.UTC().Format(time.RFC3339) + " (still signing)"
	case !latest.After(now):
		return latest.UTC().Format(time.RFC3339) + " (passed: safe now)"
	}
	return latest.UTC().Format(time.RFC3339)
}

// ringActive is the id of the key that signs at now: the configured
// active key, or the latest-activated key scheduled in the ring's state.
func ringActive(cf *config.CloudFront, st store.RingState, now time.Time) string {
	a, _ := cf.ActiveKey()
	id, from := a.ID, time.Time{}
	if st.IsRetired(id) {
		id = ""
	}
	for _, k := range st.Keys {
		if !st.IsRetired(k.ID) && !k.ActivatesAt.After(now) && (id == "" || k.ActivatesAt.After(from)) {
			id, from = k.ID, k.ActivatesAt
		}
	}
	return id
}
