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
	loaded := map[string]crypto.Signer{}
	for _, k := range keys {
		loaded[k.ID] = k.Signer
	}

	tw := tabwriter.NewWriter(m.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY ID\tALGORITHM\tFINGERPRINT\tACTIVE\tSAFE TO REMOVE FROM CLOUDFRONT AFTER")
	listed := map[string]bool{}
	for _, k := range ringKeys(cf, ring, now) {
		listed[k.ID] = true
		active := map[string]string{keyActive: "yes", keyScheduled: "from " + k.ActivatesAt.UTC().Format(time.RFC3339), keyRetiring: "no", keyRetired: "retired"}[k.State]
		if k.State == keyRetired {
			// By its public key id only: its private key (a KMS key
			// pending deletion, a file removed) need not exist any more.
			fmt.Fprintf(tw, "%s\t-\t-\t%s\t%s\n", k.ID, active, k.retiredSays())
			continue
		}
		signer := loaded[k.ID]
		if signer == nil {
			sk, _ := ring.Key(k.ID)
			if signer, err = src.Signer(ctx, k.ID, sk.KMSKeyID, sk.PrivateKeyFile); err != nil {
				if k.Configured {
					return err
				}
				// A key file on the workers' disks, not this one: still list it.
				fmt.Fprintf(m.Stderr, "warning: %v\n", err)
				fmt.Fprintf(tw, "%s\t-\t-\t%s\t-\n", k.ID, active)
				continue
			}
		}
		alg, err := link.KeyAlgorithm(signer)
		if err != nil {
			return fmt.Errorf("key %s: %w", k.ID, err)
		}
		fp, err := link.Fingerprint(signer)
		if err != nil {
			return fmt.Errorf("key %s: %w", k.ID, err)
		}
		if _, ok := signer.(*link.KMSSigner); ok {
			alg += " (KMS)"
		}
		latest, err := log.Latest(ctx, k.ID)
		if err != nil {
			return fmt.Errorf("keys: %w", err)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, alg, fp, active, removalDate(latest, k.State == keyActive || k.State == keyScheduled, now))
	}
	// Keys that signed links but have left the config and the ring still
	// matter: their public keys must stay in CloudFront until these dates.
	recorded, listErr := log.List(ctx)
	var gone []string
	for id := range recorded {
		if !listed[id] {
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

// The states of a key of the ring, as keys, status and the metrics
// tell them.
const (
	keyActive    = "active"    // signs the links made now
	keyScheduled = "scheduled" // signs from its activation time
	keyRetiring  = "retiring"  // trusted, but signs no more (or not yet): retire it after its safe-removal date
	keyRetired   = "retired"   // no longer trusted by the distribution
)

// ringKey is a key the key ring knows, by its CloudFront public key id
// alone: nothing here is private.
type ringKey struct {
	ID    string
	State string
	// Configured is set for a key of links.cloudfront.
	Configured bool
	// ActivatesAt is when a key the ring's state schedules signs from.
	ActivatesAt time.Time
	// RetiredAt and Forced are a retired key's (store.RetiredKey).
	RetiredAt time.Time
	Forced    bool
}

// ringKeys lists every key the ring knows at now: the configured keys
// in their order, then the keys the ring's state schedules (rotated in
// by `keys rotate`), then the retired ones, each once.
func ringKeys(cf *config.CloudFront, st store.RingState, now time.Time) []ringKey {
	active := ringActive(cf, st, now)
	var out []ringKey
	seen := map[string]bool{}
	add := func(id string, configured bool) {
		if seen[id] {
			return
		}
		seen[id] = true
		k := ringKey{ID: id, Configured: configured}
		if sk, ok := st.Key(id); ok {
			k.ActivatesAt = sk.ActivatesAt
		}
		switch {
		case st.IsRetired(id):
			k.State = keyRetired
			i := slices.IndexFunc(st.Retired, func(r store.RetiredKey) bool { return r.ID == id })
			k.RetiredAt, k.Forced = st.Retired[i].RetiredAt, st.Retired[i].Forced
		case id == active:
			k.State = keyActive
		case k.ActivatesAt.After(now):
			k.State = keyScheduled
		default:
			k.State = keyRetiring
		}
		out = append(out, k)
	}
	for _, k := range cf.SigningKeys() {
		add(k.ID, true)
	}
	for _, k := range st.Keys {
		add(k.ID, false)
	}
	for _, k := range st.Retired {
		add(k.ID, false)
	}
	return out
}

// retiredSays is what keys and status say of a retired key.
func (k ringKey) retiredSays() string {
	s := "retired " + k.RetiredAt.UTC().Format(time.RFC3339)
	if k.Forced {
		s += " (forced, before its safe-removal date)"
	}
	return s
}
