package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/cloudfront"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker/iam"
	"github.com/reportmailer/reportmailer/worker/rotate"
)

// rotator builds the Rotator for a config.
func (m *Main) rotator(ctx context.Context, c *config.Config, poll, timeout time.Duration) (*rotate.Rotator, *config.CloudFront, error) {
	cf := c.Links.CloudFront
	if cf == nil {
		return nil, nil, usageError("keys: the config has no links.cloudfront section; S3 presigned links use no CloudFront keys")
	}
	if cf.DistributionID == "" {
		return nil, nil, usageError("keys: links.cloudfront.distribution_id is not set: rotation changes that distribution's trusted key groups")
	}
	a, err := m.newApp(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	active, _ := cf.ActiveKey()
	return &rotate.Rotator{
		CloudFront:     cloudfront.NewFromConfig(a.aws),
		KMS:            kms.NewFromConfig(a.aws, kmsOptions),
		Ring:           ringStore(c, a.s3),
		Expiries:       keyExpiries(c, a.s3),
		Deliveries:     &rotate.DeliveryIndex{Client: a.s3, Bucket: c.Ledger.Bucket, Prefix: c.Ledger.Prefix},
		DistributionID: cf.DistributionID,
		ActiveKeyID:    active.ID,
		MaxTTL:         c.Links.MaxTTL,
		Poll:           poll,
		DeployTimeout:  timeout,
		Logger:         a.logger,
	}, cf, nil
}

func (m *Main) keysRotate(ctx context.Context, args []string) error {
	fs := m.newFlagSet("keys rotate", "keys rotate -config FILE (-kms [-kms-spec ECC_NIST_P256|RSA_2048] | -generate ecdsa|rsa [-key-dir DIR]) [-activate-after 10m] [-dry-run]")
	configPath := fs.String("config", "", "config file (default $REPORTMAILER_CONFIG)")
	useKMS := fs.Bool("kms", false, "make the new key in AWS KMS (tagged reportmailer=cloudfront-signing); needs links.cloudfront.hash sha256")
	kmsSpec := fs.String("kms-spec", "ECC_NIST_P256", "the KMS key spec with -kms: ECC_NIST_P256 or RSA_2048")
	generate := fs.String("generate", "", "make the new key as a private key file: ecdsa (P-256) or rsa (2048)")
	keyDir := fs.String("key-dir", "", "where -generate writes the key file, 0600 (default: the directory of the active key's file)")
	after := fs.Duration("activate-after", rotate.ActivateAfterDefault, "how long after the rotation the new key starts signing, in every replica (at least 2m)")
	dryRun := fs.Bool("dry-run", false, "say which steps remain, and change nothing")
	poll := fs.Duration("poll", rotate.PollDefault, "how often to ask whether the distribution is Deployed")
	timeout := fs.Duration("timeout", rotate.DeployTimeoutDefault, "how long to wait for it; run again to resume")
	if err := parse(fs, args); err != nil {
		return err
	}
	var kind string
	switch {
	case *useKMS && *generate != "":
		return usageError("keys rotate: give -kms or -generate, not both")
	case *useKMS && *kmsSpec == "ECC_NIST_P256":
		kind = rotate.KindKMSECDSA
	case *useKMS && *kmsSpec == "RSA_2048":
		kind = rotate.KindKMSRSA
	case *useKMS:
		return usageError("keys rotate: -kms-spec %q is not ECC_NIST_P256 or RSA_2048", *kmsSpec)
	case *generate == "ecdsa":
		kind = rotate.KindECDSA
	case *generate == "rsa":
		kind = rotate.KindRSA
	case *generate != "":
		return usageError("keys rotate: -generate %q is not ecdsa or rsa", *generate)
	default:
		return usageError("keys rotate: give -kms (a key in AWS KMS) or -generate ecdsa|rsa (a key file)")
	}
	if *after < rotate.ActivateAfterMin {
		return usageError("keys rotate: -activate-after %s is under %s: every replica must read the new key before it signs", *after, rotate.ActivateAfterMin)
	}
	c, err := m.loadConfig(*configPath)
	if err != nil {
		return err
	}
	if *useKMS && c.Links.CloudFront != nil && c.Links.CloudFront.Hash != "sha256" {
		return usageError("keys rotate: -kms needs links.cloudfront.hash: sha256 (KMS signs SHA-256 digests only); set it and deploy first")
	}
	if *useKMS {
		// The workers sign with the new key from its activation: their
		// role must allow it by then, or every link fails.
		if cf := c.Links.CloudFront; cf != nil && !kmsDeclared(cf) {
			return usageError("keys rotate: -kms: the worker's declared policy has no KMS statement (SigningKeys: kms:Sign and kms:GetPublicKey on keys tagged %s=%s), "+
				"so the workers could not sign with the new key; set links.cloudfront.kms_signing: true, update the worker's role from `reportmailer iam` and deploy first",
				iam.KMSTagKey, iam.KMSTagValue)
		}
	}
	r, cf, err := m.rotator(ctx, c, *poll, *timeout)
	if err != nil {
		return err
	}
	if *generate != "" && *keyDir == "" {
		*keyDir = "."
		if a, _ := cf.ActiveKey(); a.PrivateKeyFile != "" {
			*keyDir = filepath.Dir(a.PrivateKeyFile)
		}
	}
	k, err := r.Rotate(ctx, rotate.RotateOptions{Kind: kind, KeyDir: *keyDir, ActivateAfter: *after, DryRun: *dryRun})
	if err != nil || *dryRun {
		return err
	}
	fmt.Fprintf(m.Stdout, "key %s is trusted by distribution %s and signs from %s in every replica.\n", k.ID, cf.DistributionID, k.ActivatesAt.Format(time.RFC3339))
	if k.PrivateKeyFile != "" {
		fmt.Fprintf(m.Stdout, "Its private key is %s: the workers read it from that path, so put it where they can (or list it in links.cloudfront.keys) before then.\n", k.PrivateKeyFile)
	}
	fmt.Fprintf(m.Stdout, "Then \"reportmailer keys\" shows when the old key may be retired (reportmailer keys retire -key-id ID).\n")
	return nil
}

func (m *Main) keysRetire(ctx context.Context, args []string) error {
	fs := m.newFlagSet("keys retire", "keys retire -config FILE -key-id ID [-force] [-dry-run]")
	configPath := fs.String("config", "", "config file (default $REPORTMAILER_CONFIG)")
	keyID := fs.String("key-id", "", "the CloudFront public key id to retire (required)")
	force := fs.Bool("force", false, "retire it before its safe-removal date, breaking the links it signed that are still alive")
	dryRun := fs.Bool("dry-run", false, "say what would happen, and change nothing")
	poll := fs.Duration("poll", rotate.PollDefault, "how often to ask whether the distribution is Deployed")
	timeout := fs.Duration("timeout", rotate.DeployTimeoutDefault, "how long to wait for it; run again to resume")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *keyID == "" {
		return usageError("keys retire: -key-id is required")
	}
	c, err := m.loadConfig(*configPath)
	if err != nil {
		return err
	}
	r, _, err := m.rotator(ctx, c, *poll, *timeout)
	if err != nil {
		return err
	}
	res, err := r.Retire(ctx, rotate.RetireOptions{KeyID: *keyID, Force: *force, DryRun: *dryRun})
	if err != nil {
		if errors.Is(err, rotate.ErrTooEarly) {
			return exitError{code: ExitFailure, err: err}
		}
		return err
	}
	switch {
	case res.Retired && res.PublicKeyDeleted:
		fmt.Fprintf(m.Stdout, "key %s is retired: the distribution no longer trusts it and its public key is deleted.\n", *keyID)
	case res.Retired:
		fmt.Fprintf(m.Stdout, "key %s is retired: the distribution no longer trusts it. Its public key is left: key groups reportmailer did not make hold it (%s); remove it from them (with Terraform, in its configuration), then delete it.\n",
			*keyID, strings.Join(res.ForeignGroups, ", "))
	}
	return nil
}
