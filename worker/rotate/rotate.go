// Package rotate rotates the CloudFront signing keys: it creates a key
// (in AWS KMS or as a key file), uploads its public key to CloudFront,
// makes the distribution trust it alongside the old ones, schedules its
// activation in the key ring's state, and later retires the old key.
//
// Each step is idempotent and saved in the ring's state
// ([store.Rotation]) before the next begins, so a rotation that stopped
// (a crash, a timeout waiting for the distribution) resumes where it
// was when run again.
//
// The distribution is made to trust a new key through a new key group
// holding the old keys and the new one, set on its cache behaviours
// with UpdateDistribution (If-Match its ETag), rather than by
// UpdateKeyGroup on the group it trusts: the same two calls serve
// rotation and retirement, a group that Terraform or a person made is
// never changed under them, and the CloudFront emulator the tests run
// against (kumo) has no UpdateKeyGroup.
package rotate

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudfront/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/reportmailer/reportmailer/worker/iam"
	"github.com/reportmailer/reportmailer/worker/link"
	"github.com/reportmailer/reportmailer/worker/store"
)

// CloudFrontAPI is the part of *cloudfront.Client a Rotator uses.
type CloudFrontAPI interface {
	CreatePublicKey(context.Context, *cloudfront.CreatePublicKeyInput, ...func(*cloudfront.Options)) (*cloudfront.CreatePublicKeyOutput, error)
	ListPublicKeys(context.Context, *cloudfront.ListPublicKeysInput, ...func(*cloudfront.Options)) (*cloudfront.ListPublicKeysOutput, error)
	GetPublicKey(context.Context, *cloudfront.GetPublicKeyInput, ...func(*cloudfront.Options)) (*cloudfront.GetPublicKeyOutput, error)
	DeletePublicKey(context.Context, *cloudfront.DeletePublicKeyInput, ...func(*cloudfront.Options)) (*cloudfront.DeletePublicKeyOutput, error)
	CreateKeyGroup(context.Context, *cloudfront.CreateKeyGroupInput, ...func(*cloudfront.Options)) (*cloudfront.CreateKeyGroupOutput, error)
	GetKeyGroup(context.Context, *cloudfront.GetKeyGroupInput, ...func(*cloudfront.Options)) (*cloudfront.GetKeyGroupOutput, error)
	ListKeyGroups(context.Context, *cloudfront.ListKeyGroupsInput, ...func(*cloudfront.Options)) (*cloudfront.ListKeyGroupsOutput, error)
	DeleteKeyGroup(context.Context, *cloudfront.DeleteKeyGroupInput, ...func(*cloudfront.Options)) (*cloudfront.DeleteKeyGroupOutput, error)
	GetDistribution(context.Context, *cloudfront.GetDistributionInput, ...func(*cloudfront.Options)) (*cloudfront.GetDistributionOutput, error)
	GetDistributionConfig(context.Context, *cloudfront.GetDistributionConfigInput, ...func(*cloudfront.Options)) (*cloudfront.GetDistributionConfigOutput, error)
	UpdateDistribution(context.Context, *cloudfront.UpdateDistributionInput, ...func(*cloudfront.Options)) (*cloudfront.UpdateDistributionOutput, error)
}

// KMSAPI is the part of *kms.Client a Rotator uses.
type KMSAPI interface {
	link.KMSAPI
	CreateKey(context.Context, *kms.CreateKeyInput, ...func(*kms.Options)) (*kms.CreateKeyOutput, error)
}

// Defaults.
const (
	// ActivateAfterDefault is how long after a rotation its key starts
	// signing, by default.
	ActivateAfterDefault = 10 * time.Minute
	// ActivateAfterMin is the least: twice the ring's refresh, so every
	// replica has read the new key before it signs.
	ActivateAfterMin = 2 * link.RingRefresh
	// PollDefault is how often a Rotator asks whether the distribution
	// is Deployed.
	PollDefault = 10 * time.Second
	// DeployTimeoutDefault is how long it waits for that.
	DeployTimeoutDefault = 30 * time.Minute
	// KMSTagDelay is how long AWS may take to authorize requests by a
	// tag just set on a KMS key (KMS's ABAC documentation: up to five
	// minutes). The operator's kms:GetPublicKey and the workers'
	// kms:Sign are granted by the tag, so a rotation retries the one
	// for this long and activates a KMS key no sooner than this plus
	// twice the ring's refresh after the tag was set.
	KMSTagDelay = 5 * time.Minute
	// maxKeysPerGroup is CloudFront's limit.
	maxKeysPerGroup = 5
)

// Kinds of key a rotation makes.
const (
	KindKMSECDSA = "kms:ECC_NIST_P256"
	KindKMSRSA   = "kms:RSA_2048"
	KindECDSA    = "ecdsa"
	KindRSA      = "rsa"
)

// Rotator rotates and retires the keys of one distribution.
type Rotator struct {
	CloudFront CloudFrontAPI
	// KMS is needed for KMS kinds only.
	KMS KMSAPI
	// Ring is the key ring's state.
	Ring *store.RingStore
	// Expiries are the key-expiry records: the safe-removal dates.
	Expiries *store.KeyExpiries
	// Deliveries lists the deliveries made, to count those a forced
	// retirement breaks; optional.
	Deliveries *DeliveryIndex
	// DistributionID is the distribution whose cache behaviours trust
	// the keys. Required.
	DistributionID string
	// ActiveKeyID is the configured active key: it signs from the start
	// unless the ring's state says otherwise.
	ActiveKeyID string
	// MaxTTL is the longest a link lives (links.max_ttl), to count the
	// deliveries whose links are still alive.
	MaxTTL time.Duration
	// Poll and DeployTimeout: see PollDefault and DeployTimeoutDefault.
	// Poll is also how often a denied kms:GetPublicKey of a new KMS key
	// is tried again.
	Poll, DeployTimeout time.Duration
	// TagWait is how long a new KMS key's kms:GetPublicKey is tried
	// again while it is denied. Default KMSTagDelay.
	TagWait time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the progress. Default slog.Default().
	Logger *slog.Logger
}

// RotateOptions are what a rotation makes.
type RotateOptions struct {
	// Kind is one of KindKMSECDSA, KindKMSRSA, KindECDSA, KindRSA.
	Kind string
	// KeyDir is where a generated key file is written (0600).
	KeyDir string
	// ActivateAfter is how long after the rotation the key starts
	// signing; default ActivateAfterDefault, at least ActivateAfterMin.
	ActivateAfter time.Duration
	// DryRun logs the steps that remain and changes nothing.
	DryRun bool
}

func (r *Rotator) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Rotator) log() *slog.Logger {
	if r.Logger == nil {
		return slog.Default()
	}
	return r.Logger
}

// Rotate does a whole rotation, or resumes one: see the package doc.
// It returns the key scheduled.
func (r *Rotator) Rotate(ctx context.Context, o RotateOptions) (store.RingStateKey, error) {
	switch o.Kind {
	case KindKMSECDSA, KindKMSRSA, KindECDSA, KindRSA:
	default:
		return store.RingStateKey{}, fmt.Errorf("rotate: kind %q is not %s, %s, %s or %s", o.Kind, KindKMSECDSA, KindKMSRSA, KindECDSA, KindRSA)
	}
	after := cmp.Or(o.ActivateAfter, ActivateAfterDefault)
	if after < ActivateAfterMin {
		return store.RingStateKey{}, fmt.Errorf("rotate: activation %s after is too soon: every replica reads the ring every %s, so at least %s", after, link.RingRefresh, ActivateAfterMin)
	}
	if r.DistributionID == "" {
		return store.RingStateKey{}, errors.New("rotate: no distribution id: set links.cloudfront.distribution_id")
	}
	st, etag, err := r.Ring.Load(ctx)
	if err != nil {
		return store.RingStateKey{}, err
	}
	rot := st.Rotation
	if rot == nil {
		rot = &store.Rotation{StartedAt: r.now().UTC(), Kind: o.Kind}
	} else if rot.Kind != o.Kind {
		return store.RingStateKey{}, fmt.Errorf("rotate: a rotation to a %s key, started %s, is not finished: run it again with that kind to finish it", rot.Kind, rot.StartedAt.Format(time.RFC3339))
	} else {
		r.log().Info("rotate: resuming the rotation started earlier", "started_at", rot.StartedAt, "kind", rot.Kind)
	}
	if o.DryRun {
		r.plan(rot, after)
		return store.RingStateKey{}, nil
	}
	save := func(what string) error {
		st.Rotation = rot
		var err error
		if etag, err = r.Ring.Save(ctx, st, etag); err != nil {
			return fmt.Errorf("rotate: %s: %w", what, err)
		}
		return nil
	}

	// 1. The key. A KMS key is saved as soon as it exists, before its
	// public key is read, so a run that stops there (or is denied while
	// the tag's authorization spreads) resumes with it, not a new one.
	var pub crypto.PublicKey
	if rot.KMSKeyID == "" && rot.PrivateKeyFile == "" {
		if strings.HasPrefix(o.Kind, "kms:") {
			err = r.createKMSKey(ctx, rot)
		} else {
			pub, err = createKeyFile(rot, o.KeyDir)
		}
		if err != nil {
			return store.RingStateKey{}, fmt.Errorf("rotate: step 1, create the key: %w", err)
		}
		if err := save("step 1"); err != nil {
			return store.RingStateKey{}, err
		}
		r.log().Info("rotate: step 1 done: key created", "kms_key_id", rot.KMSKeyID, "private_key_file", rot.PrivateKeyFile)
	}
	switch {
	case pub != nil:
	case rot.KMSKeyID != "":
		if pub, err = r.kmsPublicKey(ctx, rot.KMSKeyID); err != nil {
			return store.RingStateKey{}, fmt.Errorf("rotate: step 1: %w; run the command again to resume", err)
		}
	default:
		k, err := link.LoadPrivateKey(rot.PrivateKeyFile, "")
		if err != nil {
			return store.RingStateKey{}, fmt.Errorf("rotate: %w", err)
		}
		pub = k.Public()
	}

	// 2. CloudFront: the public key, a key group with it, trusted.
	if rot.PublicKeyID == "" {
		if rot.PublicKeyID, err = r.uploadPublicKey(ctx, pub); err != nil {
			return store.RingStateKey{}, fmt.Errorf("rotate: step 2, upload the public key: %w", err)
		}
		if err := save("step 2"); err != nil {
			return store.RingStateKey{}, err
		}
		r.log().Info("rotate: step 2: public key in CloudFront", "public_key_id", rot.PublicKeyID)
	}
	if !rot.Trusted {
		active, _ := r.activeAt(st, r.now())
		if err := r.trust(ctx, rot, active); err != nil {
			return store.RingStateKey{}, fmt.Errorf("rotate: step 2, trust the key: %w", err)
		}
		rot.Trusted = true
		if err := save("step 2"); err != nil {
			return store.RingStateKey{}, err
		}
		r.log().Info("rotate: step 2: the distribution trusts the new key alongside the old", "key_group_id", rot.KeyGroupID)
	}
	if !rot.Deployed {
		if err := r.waitDeployed(ctx); err != nil {
			return store.RingStateKey{}, fmt.Errorf("rotate: step 2: %w; run the command again to resume", err)
		}
		rot.Deployed = true
		if err := save("step 2"); err != nil {
			return store.RingStateKey{}, err
		}
	}

	// 3. Schedule its activation.
	k := store.RingStateKey{ID: rot.PublicKeyID, ActivatesAt: activation(rot, r.now(), after),
		KMSKeyID: rot.KMSKeyID, PrivateKeyFile: rot.PrivateKeyFile, AddedAt: r.now().UTC()}
	st.Keys = append(slices.DeleteFunc(st.Keys, func(x store.RingStateKey) bool { return x.ID == k.ID }), k)
	rot = nil
	if err := save("step 3"); err != nil {
		return store.RingStateKey{}, err
	}
	r.log().Info("rotate: step 3 done: the new key is scheduled; every replica signs with it from its activation", "key", k.ID, "activates_at", k.ActivatesAt)
	return k, nil
}

// plan logs the steps a rotation in state rot has left.
func (r *Rotator) plan(rot *store.Rotation, after time.Duration) {
	l := r.log()
	if rot.KMSKeyID == "" && rot.PrivateKeyFile == "" {
		l.Info("rotate -dry-run: would create the key", "kind", rot.Kind)
	}
	if rot.PublicKeyID == "" {
		l.Info("rotate -dry-run: would upload its public key to CloudFront (CreatePublicKey)")
	}
	if !rot.Trusted {
		l.Info("rotate -dry-run: would create a key group with the trusted keys and the new one, and set it on the distribution's cache behaviours (UpdateDistribution)", "distribution", r.DistributionID)
	}
	if !rot.Deployed {
		l.Info("rotate -dry-run: would wait for the distribution to be Deployed")
	}
	l.Info("rotate -dry-run: would schedule the key's activation", "activates_at", activation(rot, r.now(), after))
}

// activation is when the key of rot starts signing, scheduled at now:
// after from now, and for a KMS key no sooner than KMSTagDelay plus
// twice the ring's refresh after its tag was set, so that every
// replica's kms:Sign, granted by the tag, is allowed by then.
func activation(rot *store.Rotation, now time.Time, after time.Duration) time.Time {
	at := now.Add(after)
	if strings.HasPrefix(rot.Kind, "kms:") {
		tagged := rot.KMSTaggedAt
		if tagged.IsZero() {
			tagged = cmp.Or(rot.StartedAt, now)
		}
		if earliest := tagged.Add(KMSTagDelay + 2*link.RingRefresh); at.Before(earliest) {
			at = earliest
		}
	}
	// Up to the second, so that it is never before the earliest.
	return at.UTC().Add(time.Second - 1).Truncate(time.Second)
}

func (r *Rotator) createKMSKey(ctx context.Context, rot *store.Rotation) error {
	if r.KMS == nil {
		return errors.New("no KMS client")
	}
	spec := kmstypes.KeySpecEccNistP256
	if rot.Kind == KindKMSRSA {
		spec = kmstypes.KeySpecRsa2048
	}
	out, err := r.KMS.CreateKey(ctx, &kms.CreateKeyInput{
		KeySpec:     spec,
		KeyUsage:    kmstypes.KeyUsageTypeSignVerify,
		Description: aws.String("reportmailer CloudFront signing key for distribution " + r.DistributionID),
		Tags:        []kmstypes.Tag{{TagKey: aws.String(iam.KMSTagKey), TagValue: aws.String(iam.KMSTagValue)}},
	})
	if err != nil {
		return fmt.Errorf("kms create key: %w", err)
	}
	rot.KMSKeyID = aws.ToString(out.KeyMetadata.Arn)
	rot.KMSTaggedAt = r.now().UTC()
	return nil
}

// kmsPublicKey reads the public key of KMS key id, trying again every
// Poll for TagWait while KMS denies it: the operator's kms:GetPublicKey
// is granted by the key's tag, which AWS may take minutes to honour.
func (r *Rotator) kmsPublicKey(ctx context.Context, id string) (crypto.PublicKey, error) {
	if r.KMS == nil {
		return nil, errors.New("no KMS client")
	}
	deadline := time.Now().Add(cmp.Or(r.TagWait, KMSTagDelay))
	for {
		s, err := link.NewKMSSigner(ctx, r.KMS, id)
		if err == nil {
			return s.Public(), nil
		}
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDeniedException" || !time.Now().Before(deadline) {
			return nil, err
		}
		r.log().Info("rotate: KMS denies reading the new key's public key; the tag that grants it may not be in effect yet, trying again", "kms_key_id", id, "err", err)
		t := time.NewTimer(cmp.Or(r.Poll, PollDefault))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// createKeyFile writes a new private key to dir, 0600, PKCS #8.
func createKeyFile(rot *store.Rotation, dir string) (crypto.PublicKey, error) {
	if dir == "" {
		return nil, errors.New("no directory for the key file")
	}
	var key crypto.Signer
	var err error
	if rot.Kind == KindRSA {
		key, err = rsa.GenerateKey(rand.Reader, link.RSABits)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(filepath.Join(dir, "cloudfront-"+rot.StartedAt.Format("20060102T150405Z")+".pem"))
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(abs, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, fmt.Errorf("key file %s: %w", abs, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("key file %s: %w", abs, err)
	}
	rot.PrivateKeyFile = abs
	return key.Public(), nil
}

// publicPEM is the PEM CloudFront wants: a PKIX public key.
func publicPEM(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// uploadPublicKey creates the CloudFront public key, or finds the one
// an interrupted run created.
func (r *Rotator) uploadPublicKey(ctx context.Context, pub crypto.PublicKey) (string, error) {
	encoded, err := publicPEM(pub)
	if err != nil {
		return "", err
	}
	if id, err := r.findPublicKey(ctx, encoded); err != nil || id != "" {
		return id, err
	}
	sum := sha256.Sum256([]byte(encoded))
	ref := "reportmailer-" + hex.EncodeToString(sum[:8])
	out, err := r.CloudFront.CreatePublicKey(ctx, &cloudfront.CreatePublicKeyInput{PublicKeyConfig: &cftypes.PublicKeyConfig{
		CallerReference: aws.String(ref), Name: aws.String(ref), EncodedKey: aws.String(encoded),
		Comment: aws.String("reportmailer signing key"),
	}})
	if err != nil {
		return "", fmt.Errorf("cloudfront create public key: %w", err)
	}
	return aws.ToString(out.PublicKey.Id), nil
}

func (r *Rotator) findPublicKey(ctx context.Context, encoded string) (string, error) {
	var marker *string
	for {
		out, err := r.CloudFront.ListPublicKeys(ctx, &cloudfront.ListPublicKeysInput{Marker: marker})
		if err != nil {
			return "", fmt.Errorf("cloudfront list public keys: %w", err)
		}
		if out.PublicKeyList == nil {
			return "", nil
		}
		for _, k := range out.PublicKeyList.Items {
			if strings.TrimSpace(aws.ToString(k.EncodedKey)) == strings.TrimSpace(encoded) {
				return aws.ToString(k.Id), nil
			}
		}
		if marker = out.PublicKeyList.NextMarker; aws.ToString(marker) == "" {
			return "", nil
		}
	}
}
