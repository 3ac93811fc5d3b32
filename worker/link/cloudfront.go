package link

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
)

// MaxExpires is the latest expiry a CloudFront URL can carry: CloudFront
// reads the expiry as 32-bit epoch seconds, so it must be before
// 2038-01-19T03:14:07Z.
var MaxExpires = time.Unix(math.MaxInt32, 0).UTC()

// MaxURLLength is the longest URL CloudFront accepts, in bytes.
const MaxURLLength = 8192

// The query parameters CloudFront reads from a signed URL. A URL's own
// parameters must come before them and must not reuse their names.
const (
	paramExpires       = "Expires"
	paramPolicy        = "Policy"
	paramSignature     = "Signature"
	paramKeyPairID     = "Key-Pair-Id"
	paramHashAlgorithm = "Hash-Algorithm"
)

func isSigningParam(name string) bool {
	switch name {
	case paramExpires, paramPolicy, paramSignature, paramKeyPairID, paramHashAlgorithm:
		return true
	}
	return false
}

// CloudFront signs CloudFront URLs with a canned policy.
//
// The link is Domain + "/" + [EscapeKey](report key). The report's bucket
// is not used: it is the distribution's origin, so it is not part of the
// path. Fields are read on every call to Sign; set them before use and
// do not change them while Sign may run.
type CloudFront struct {
	// Domain is the distribution's base URL: "https://" and a host, and
	// optionally a path prefix, such as
	// "https://d111111abcdef8.cloudfront.net" or
	// "https://files.example.com/reports". A trailing "/" is ignored.
	// Plain "http" is accepted only for localhost, 127.0.0.1 and [::1],
	// so that a local edge can be used in development.
	Domain string
	// KeyID is the ID of the CloudFront public key (Key-Pair-Id) that
	// matches Key, in a key group the distribution trusts.
	KeyID string
	// Key is the RSA private key, at least MinRSABits bits. It may be
	// any crypto.Signer with an *rsa.PublicKey, such as a KMS-backed one.
	Key crypto.Signer
	// TTL is how long a link stays valid, at least one second. The
	// expiry, now+TTL truncated to whole seconds, must be before
	// MaxExpires.
	TTL time.Duration
}

var _ worker.Signer = (*CloudFront)(nil)

// Validate checks the configuration, so that a bad one can be reported
// at start-up rather than on the first message. Sign calls it too.
func (c *CloudFront) Validate() error {
	_, err := c.base()
	return err
}

// base validates the configuration and returns Domain without a
// trailing "/".
func (c *CloudFront) base() (string, error) {
	base, err := checkDomain(c.Domain)
	if err != nil {
		return "", fmt.Errorf("cloudfront: %w", err)
	}
	if err := checkKeyID(c.KeyID); err != nil {
		return "", fmt.Errorf("cloudfront: %w", err)
	}
	if err := checkSigner(c.Key); err != nil {
		return "", fmt.Errorf("cloudfront: %w", err)
	}
	if c.TTL < time.Second {
		return "", fmt.Errorf("cloudfront: ttl %v is too short, want at least 1s", c.TTL)
	}
	return base, nil
}

// Sign returns a link to r.Key that expires at now+TTL, truncated to
// whole seconds. Errors caused by the report itself (an empty key, a
// key with "." or ".." segments, a URL over MaxURLLength) are marked
// [worker.Permanent].
func (c *CloudFront) Sign(ctx context.Context, r event.Report, now time.Time) (worker.Link, error) {
	if err := ctx.Err(); err != nil {
		return worker.Link{}, err
	}
	base, err := c.base()
	if err != nil {
		return worker.Link{}, err
	}
	if err := checkKey(r.Key); err != nil {
		return worker.Link{}, worker.Permanent(fmt.Errorf("cloudfront: %w", err))
	}
	expires := time.Unix(now.Add(c.TTL).Unix(), 0).UTC()
	if !expires.Before(MaxExpires) {
		return worker.Link{}, fmt.Errorf("cloudfront: expiry %s is not before %s; shorten the ttl",
			expires.Format(time.RFC3339), MaxExpires.Format(time.RFC3339))
	}
	resource := base + "/" + EscapeKey(r.Key)
	signed, err := signURL(resource, c.KeyID, c.Key, expires, crypto.SHA1)
	if err != nil {
		var tooLong errURLTooLong
		if errors.As(err, &tooLong) {
			err = worker.Permanent(err)
		}
		return worker.Link{}, fmt.Errorf("cloudfront: %w", err)
	}
	return worker.Link{URL: signed, Expires: expires}, nil
}

// SignURL signs rawURL with a canned policy that expires at expires,
// truncated to whole seconds, and returns the signed URL: rawURL
// followed by "Expires=E&Signature=S&Key-Pair-Id=K", after a "?" or, if
// rawURL already has a query, a "&".
//
// rawURL is signed byte for byte, so it must already be safely encoded:
// ASCII only, no spaces, a valid percent-escape after each "%", and no
// fragment. Its query must not use the signing parameters' names.
// SignURL does not check that expires is in the future.
func SignURL(rawURL string, keyID string, key crypto.Signer, expires time.Time) (string, error) {
	if err := checkKeyID(keyID); err != nil {
		return "", fmt.Errorf("sign url: %w", err)
	}
	if err := checkSigner(key); err != nil {
		return "", fmt.Errorf("sign url: %w", err)
	}
	s, err := signURL(rawURL, keyID, key, expires, crypto.SHA1)
	if err != nil {
		return "", fmt.Errorf("sign url: %w", err)
	}
	return s, nil
}

type errURLTooLong int

func (n errURLTooLong) Error() string {
	return fmt.Sprintf("signed url is %d bytes, over the %d-byte limit", int(n), MaxURLLength)
}

// signURL signs rawURL with a canned policy using hash, which is SHA-1
// unless a test asks for SHA-256. keyID and key must have been checked.
func signURL(rawURL, keyID string, key crypto.Signer, expires time.Time, hash crypto.Hash) (string, error) {
	if err := checkResourceURL(rawURL); err != nil {
		return "", err
	}
	epoch := expires.Unix()
	if epoch <= 0 || epoch >= math.MaxInt32 {
		return "", fmt.Errorf("expiry %s is out of range, want after 1970 and before %s",
			expires.UTC().Format(time.RFC3339), MaxExpires.Format(time.RFC3339))
	}
	sig, err := signPolicy(key, cannedPolicy(rawURL, epoch), hash)
	if err != nil {
		return "", err
	}

	var b strings.Builder
	b.Grow(len(rawURL) + len(sig) + len(keyID) + 64)
	b.WriteString(rawURL)
	if strings.Contains(rawURL, "?") {
		b.WriteByte('&')
	} else {
		b.WriteByte('?')
	}
	b.WriteString(paramExpires + "=")
	b.WriteString(strconv.FormatInt(epoch, 10))
	b.WriteString("&" + paramSignature + "=")
	b.WriteString(sig)
	b.WriteString("&" + paramKeyPairID + "=")
	b.WriteString(keyID)
	if hash == crypto.SHA256 {
		b.WriteString("&" + paramHashAlgorithm + "=SHA256")
	}
	if b.Len() > MaxURLLength {
		return "", errURLTooLong(b.Len())
	}
	return b.String(), nil
}

// cannedPolicy returns the canned policy for resource and epoch: the
// JSON that CloudFront rebuilds from a signed URL, with no whitespace.
func cannedPolicy(resource string, epoch int64) string {
	return `{"Statement":[{"Resource":` + quoteJSON(resource) +
		`,"Condition":{"DateLessThan":{"AWS:EpochTime":` + strconv.FormatInt(epoch, 10) + `}}}]}`
}

// quoteJSON returns s as a JSON string. URLs that passed
// checkResourceURL need no escaping and take the fast path.
func quoteJSON(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return jsonString(s)
		}
	}
	return `"` + s + `"`
}

// signPolicy signs policy with RSA PKCS #1 v1.5 over hash and returns
// the signature in CloudFront's base64.
func signPolicy(key crypto.Signer, policy string, hash crypto.Hash) (string, error) {
	digest, err := digestOf(policy, hash)
	if err != nil {
		return "", err
	}
	sig, err := key.Sign(rand.Reader, digest, hash)
	if err != nil {
		return "", fmt.Errorf("sign policy: %w", err)
	}
	return encodeBase64(sig), nil
}

func digestOf(policy string, hash crypto.Hash) ([]byte, error) {
	switch hash {
	case crypto.SHA1:
		d := sha1.Sum([]byte(policy))
		return d[:], nil
	case crypto.SHA256:
		d := sha256.Sum256([]byte(policy))
		return d[:], nil
	}
	return nil, fmt.Errorf("hash %v is not supported", hash)
}

// CloudFront's URL-safe base64 is the standard alphabet with "+" → "-",
// "=" → "_" and "/" → "~".
var (
	cfReplacer   = strings.NewReplacer("+", "-", "=", "_", "/", "~")
	cfUnreplacer = strings.NewReplacer("-", "+", "_", "=", "~", "/")
)

func encodeBase64(b []byte) string {
	return cfReplacer.Replace(base64.StdEncoding.EncodeToString(b))
}

func decodeBase64(s string) ([]byte, error) {
	return base64.StdEncoding.Strict().DecodeString(cfUnreplacer.Replace(s))
}

// checkDomain validates a CloudFront base URL and returns it without a
// trailing "/".
func checkDomain(domain string) (string, error) {
	if domain == "" {
		return "", errors.New("domain is empty")
	}
	if strings.Contains(domain, "@") {
		// Checked first, and not echoed, as it may hold a password.
		return "", errors.New("domain must not have user info")
	}
	if err := checkURLChars(domain); err != nil {
		return "", fmt.Errorf("domain %q: %w", domain, err)
	}
	u, err := url.Parse(domain)
	if err != nil {
		return "", fmt.Errorf("domain: %w", err)
	}
	switch {
	case u.Host == "" || u.Hostname() == "":
		return "", fmt.Errorf("domain %q has no host; want e.g. https://d111111abcdef8.cloudfront.net", domain)
	case u.RawQuery != "" || u.ForceQuery:
		return "", fmt.Errorf("domain %q must not have a query", domain)
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
	case u.Scheme == "http":
		return "", fmt.Errorf("domain %q: http is allowed only for localhost, 127.0.0.1 and [::1]; use https", domain)
	default:
		return "", fmt.Errorf("domain %q: scheme must be https", domain)
	}
	return strings.TrimSuffix(domain, "/"), nil
}

func isLoopbackHost(h string) bool {
	return h == "localhost" || h == "127.0.0.1" || h == "::1"
}

// checkResourceURL checks that rawURL can be signed byte for byte.
func checkResourceURL(rawURL string) error {
	if err := checkURLChars(rawURL); err != nil {
		return fmt.Errorf("url: %w", err)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("url: scheme %q is not http or https", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("url: no host")
	}
	for part := range strings.SplitSeq(u.RawQuery, "&") {
		name, _, _ := strings.Cut(part, "=")
		if n, err := url.QueryUnescape(name); err == nil && isSigningParam(n) {
			return fmt.Errorf("url: query parameter %s is reserved for the signature", n)
		}
	}
	return nil
}

func checkKeyID(keyID string) error {
	if keyID == "" {
		return errors.New("key id is empty")
	}
	// Key IDs are upper-case alphanumerics (K2JCJMDEHXQW5F); anything
	// that would need escaping would corrupt the URL.
	for i := 0; i < len(keyID); i++ {
		c := keyID[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("key id %q has a character other than letters, digits, - and _", keyID)
		}
	}
	return nil
}

func checkSigner(key crypto.Signer) error {
	if key == nil {
		return errors.New("no private key")
	}
	pub, ok := key.Public().(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("%s keys are not supported yet", keyTypeName(key.Public()))
	}
	return checkRSASize(pub)
}
