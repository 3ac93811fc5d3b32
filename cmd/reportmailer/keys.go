package main

import (
	"context"
	"crypto"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

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
	fs := m.newFlagSet("keys", "keys -config FILE")
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

	tw := tabwriter.NewWriter(m.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY ID\tALGORITHM\tFINGERPRINT\tACTIVE\tSAFE TO REMOVE FROM CLOUDFRONT AFTER")
	configured := map[string]bool{}
	for _, k := range keys {
		configured[k.ID] = true
		alg, err := link.KeyAlgorithm(k.Signer)
		if err != nil {
			return fmt.Errorf("key %s: %w", k.ID, err)
		}
		fp, err := link.Fingerprint(k.Signer)
		if err != nil {
			return fmt.Errorf("key %s: %w", k.ID, err)
		}
		latest, err := log.Latest(ctx, k.ID)
		if err != nil {
			return fmt.Errorf("keys: %w", err)
		}
		active := "no"
		if k.Active {
			active = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, alg, fp, active, removalDate(latest, k.Active, now))
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
		fmt.Fprintf(tw, "%s\t-\t-\tnot in config\t%s\n", id, removalDate(recorded[id], false, now))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(m.Stderr, "Each date is the latest expiry of any link the worker signed with that key (recorded in s3://%s/%s, at most %s late).\n"+
		"After it, removing the key's public key from CloudFront breaks no link. The active key's date moves on while it signs.\n"+
		"Links made with \"reportmailer sign\" are not recorded.\n",
		log.Bucket, log.Prefix, shortDuration(link.RecordAhead))
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
