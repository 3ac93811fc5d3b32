package link

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/reportmailer/reportmailer/worker"
)

// KMSAPI is the part of *kms.Client that a KMSSigner uses.
type KMSAPI interface {
	Sign(context.Context, *kms.SignInput, ...func(*kms.Options)) (*kms.SignOutput, error)
	GetPublicKey(context.Context, *kms.GetPublicKeyInput, ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error)
}

// KMSSignAttempts is how many attempts the workers' KMS client makes
// at kms:Sign (the SDK's standard retryer makes 3): KMS throttles by
// request rate, and a throttle that outlasts them halts sending for
// KMSThrottleBackoff.
const KMSSignAttempts = 6

// KMSSignTimeout bounds one signature, the SDK's retries included. It
// is sized to let them finish, so that their last error (a throttle,
// which halts) is what comes back, not a deadline: KMSSignAttempts
// attempts of well under a second each, and the standard retryer's
// backoff between them, jittered, at most 1+2+4+8+16 s. A caller's
// context that ends sooner (SignContext) ends the call sooner.
const KMSSignTimeout = time.Minute

// ContextSigner is a signer that can be given the caller's context,
// such as a [KMSSigner]: the CloudFront signer uses SignContext with
// the run's context when the key has it, so a shutdown or a deadline
// ends a signature that waits on the network.
type ContextSigner interface {
	SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error)
}

// KMSThrottleBackoff is how long sending halts when KMS still throttles
// after the SDK's retries: the request quota is the account's, shared
// by every replica, so the run hands its messages back for about this
// long rather than burning their receive counts.
const KMSThrottleBackoff = 30 * time.Second

// KMSRefusedHalt is how long sending halts when KMS refuses the key
// itself (see isKeyRefused): every message would fail alike, so they
// are hidden until someone can have mended the key or the role, as for
// a report S3 refuses, instead of dead-lettered one by one.
const KMSRefusedHalt = 5 * time.Minute

// KMSSigner is a crypto.Signer whose private key never leaves AWS KMS:
// an asymmetric key of spec RSA_2048 (signing RSASSA_PKCS1_V1_5_SHA_256)
// or ECC_NIST_P256 (ECDSA_SHA_256, DER), used through kms:Sign with
// MessageType DIGEST. It signs SHA-256 digests only, so CloudFront URLs
// signed with it carry Hash-Algorithm=SHA256. It is safe for concurrent
// use. Make one with [NewKMSSigner].
type KMSSigner struct {
	client KMSAPI
	keyID  string
	alg    kmstypes.SigningAlgorithmSpec
	pub    crypto.PublicKey
}

var (
	_ crypto.Signer = (*KMSSigner)(nil)
	_ ContextSigner = (*KMSSigner)(nil)
)

// NewKMSSigner reads the public key of the KMS key keyID (an id, ARN or
// alias) with kms:GetPublicKey and checks that CloudFront can use it.
func NewKMSSigner(ctx context.Context, client KMSAPI, keyID string) (*KMSSigner, error) {
	out, err := client.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(keyID)})
	if err != nil {
		// A worker that cannot read its key's public key cannot sign
		// with it either: the same halts as Sign's.
		return nil, kmsHalt(fmt.Errorf("kms key %s: %w", keyID, err))
	}
	if out.KeyUsage != kmstypes.KeyUsageTypeSignVerify {
		return nil, fmt.Errorf("kms key %s: usage is %s, want SIGN_VERIFY", keyID, out.KeyUsage)
	}
	pub, err := x509.ParsePKIXPublicKey(out.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("kms key %s: public key: %w", keyID, err)
	}
	if err := checkPublicKey(pub); err != nil {
		return nil, fmt.Errorf("kms key %s (%s): %w", keyID, out.KeySpec, err)
	}
	alg := kmstypes.SigningAlgorithmSpecRsassaPkcs1V15Sha256
	if _, ok := pub.(*ecdsa.PublicKey); ok {
		alg = kmstypes.SigningAlgorithmSpecEcdsaSha256
	}
	if len(out.SigningAlgorithms) > 0 && !contains(out.SigningAlgorithms, alg) {
		return nil, fmt.Errorf("kms key %s: it does not sign with %s", keyID, alg)
	}
	id := keyID
	if out.KeyId != nil {
		id = *out.KeyId // the ARN, so that an alias moved later changes nothing
	}
	return &KMSSigner{client: client, keyID: id, alg: alg, pub: pub}, nil
}

func contains(s []kmstypes.SigningAlgorithmSpec, a kmstypes.SigningAlgorithmSpec) bool {
	for _, x := range s {
		if x == a {
			return true
		}
	}
	return false
}

// KeyID is the KMS key's ARN.
func (k *KMSSigner) KeyID() string { return k.keyID }

// Public returns the KMS key's public key.
func (k *KMSSigner) Public() crypto.PublicKey { return k.pub }

// Sign signs a SHA-256 digest with kms:Sign. Throttling that outlasts
// the SDK's retries is returned as a halt of sending for
// KMSThrottleBackoff ([worker.HaltUntil]), never as a permanent error;
// a refused key (denied, disabled, pending deletion, not found,
// unavailable) as a halt for KMSRefusedHalt.
func (k *KMSSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.SignContext(context.Background(), digest, opts)
}

// SignContext is Sign within ctx, and at most KMSSignTimeout.
func (k *KMSSigner) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil || opts.HashFunc() != crypto.SHA256 {
		return nil, errors.New("kms keys sign SHA-256 digests only: set links.cloudfront.hash to sha256")
	}
	if len(digest) != crypto.SHA256.Size() {
		return nil, fmt.Errorf("digest is %d bytes, want %d", len(digest), crypto.SHA256.Size())
	}
	if _, ok := opts.(*rsa.PSSOptions); ok {
		return nil, errors.New("kms signer: PSS is not what CloudFront verifies")
	}
	ctx, cancel := context.WithTimeout(ctx, KMSSignTimeout)
	defer cancel()
	out, err := k.client.Sign(ctx, &kms.SignInput{
		KeyId:            aws.String(k.keyID),
		Message:          digest,
		MessageType:      kmstypes.MessageTypeDigest,
		SigningAlgorithm: k.alg,
	})
	if err != nil {
		return nil, kmsHalt(fmt.Errorf("kms sign with %s: %w", k.keyID, err))
	}
	return out.Signature, nil
}

// kmsHalt marks a KMS error that every signature would meet for a while
// as a halt of sending: throttling for KMSThrottleBackoff, a refused key
// for KMSRefusedHalt. Other errors are returned as they are.
func kmsHalt(err error) error {
	switch {
	case isThrottle(err):
		return worker.HaltUntil(worker.Fail(worker.CodeThrottled, worker.ClassHalt, err), time.Now().Add(KMSThrottleBackoff))
	case isKeyRefused(err):
		return worker.HaltUntil(fmt.Errorf("every link would fail: the worker's role may not use the key, or the key is disabled, pending deletion or unavailable; run `reportmailer check -aws`: %w", err),
			time.Now().Add(KMSRefusedHalt))
	}
	return err
}

// isKeyRefused reports KMS's answers that every signature with the key
// would get until someone mends the key or the role: denied, disabled,
// in a state that cannot sign (pending deletion or import), not found,
// or its custom key store unavailable.
func isKeyRefused(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "AccessDeniedException", "DisabledException", "KMSInvalidStateException", "NotFoundException", "KeyUnavailableException":
			return true
		}
	}
	return false
}

// isThrottle reports KMS's throttling errors: ThrottlingException, what
// KMS answers over a request quota. LimitExceededException is a
// resource quota (keys, aliases, grants), not a rate, and Sign should
// never meet it; it is here so that, if it did, sending halts rather
// than every message failing into the DLQ. The other two are the
// SDK's generic throttle codes.
func isThrottle(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "ThrottlingException", "LimitExceededException", "TooManyRequestsException", "RequestLimitExceeded":
			return true
		}
	}
	return false
}
