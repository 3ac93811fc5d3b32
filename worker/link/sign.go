package link

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MaxExpires is the moment CloudFront's 32-bit epoch seconds run out,
// 2038-01-19T03:14:07Z. Every expiry must be before it; the latest a
// link can carry is one second earlier.
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

// Key is a CloudFront signing key.
type Key struct {
	// ID is the ID of the CloudFront public key (Key-Pair-Id) that
	// matches Signer, in a key group the distribution trusts.
	ID string
	// Signer is the private key: RSA-2048 or ECDSA P-256. It may be
	// any crypto.Signer with such a public key, such as a KMS-backed
	// one. RSA signs PKCS #1 v1.5; ECDSA signs ASN.1 DER.
	Signer crypto.Signer
}

// Policy is what a signed URL grants.
type Policy struct {
	// Custom selects a custom policy, carried in the URL as Policy=.
	// Otherwise the policy is canned: the URL carries Expires= and
	// CloudFront rebuilds the policy from the URL, which is shorter but
	// grants exactly that URL until Expires and nothing else. Resource,
	// NotBefore and SourceIP need Custom.
	Custom bool
	// Resource is the URL pattern a custom policy grants; "*" matches
	// any run of characters and "?" any one. Empty means the signed URL
	// itself. The URL being signed must match it.
	Resource string
	// Expires is when the URL stops working (DateLessThan), in whole
	// seconds: fractions are dropped. Required, and before MaxExpires.
	Expires time.Time
	// NotBefore, if set, is when a custom policy starts working
	// (DateGreaterThan): requests at or before it are refused.
	NotBefore time.Time
	// SourceIP, if valid, is the one IPv4 CIDR a custom policy admits
	// requests from (IpAddress). CloudFront supports no IPv6 here.
	SourceIP netip.Prefix
}

// Sign signs rawURL for key with policy p and the hash HashSHA1 (the
// default, also for "") or HashSHA256, and returns the signed URL:
// rawURL followed by "Expires=E" or "Policy=P", "&Signature=S",
// "&Key-Pair-Id=K" and, for SHA-256, "&Hash-Algorithm=SHA256", after a
// "?" or, if rawURL already has a query, a "&".
//
// rawURL is signed byte for byte, so it must already be safely encoded;
// see [CheckURL]. Sign does not check that the expiry is in the future.
func Sign(rawURL string, key Key, hash string, p Policy) (string, error) {
	s, err := signWith(rawURL, key, hash, p)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return s, nil
}

// SignURL signs rawURL with a canned policy and SHA-1, as
// aws-sdk-go-v2's feature/cloudfront/sign does, byte for byte. It is
// [Sign] with key ID keyID and Policy{Expires: expires}.
func SignURL(rawURL string, keyID string, key crypto.Signer, expires time.Time) (string, error) {
	s, err := signWith(rawURL, Key{ID: keyID, Signer: key}, HashSHA1, Policy{Expires: expires})
	if err != nil {
		return "", fmt.Errorf("sign url: %w", err)
	}
	return s, nil
}

// signWith is Sign without the context on errors.
func signWith(rawURL string, key Key, hash string, p Policy) (string, error) {
	h, err := parseHash(hash)
	if err != nil {
		return "", err
	}
	if err := CheckKeyID(key.ID); err != nil {
		return "", err
	}
	if err := checkSigner(key.Signer); err != nil {
		return "", err
	}
	if err := CheckURL(rawURL); err != nil {
		return "", err
	}
	return signChecked(context.Background(), rawURL, key, h, p)
}

type errURLTooLong int

func (n errURLTooLong) Error() string {
	return fmt.Sprintf("signed url is %d bytes, over the %d-byte limit", int(n), MaxURLLength)
}

// signChecked is Sign once the key, hash and URL have been checked.
func signChecked(ctx context.Context, rawURL string, key Key, hash crypto.Hash, p Policy) (string, error) {
	epoch, err := checkExpiry(p.Expires)
	if err != nil {
		return "", err
	}
	// The policy is built and hashed in one buffer: it is on the path of
	// every link, next to a signature that takes only tens of
	// microseconds with ECDSA.
	buf := make([]byte, 0, 128+len(rawURL)+len(p.Resource))
	var policy []byte
	if p.Custom {
		if policy, err = appendCustomPolicy(buf, rawURL, epoch, p); err != nil {
			return "", err
		}
	} else {
		if p.Resource != "" || !p.NotBefore.IsZero() || p.SourceIP.IsValid() {
			return "", errors.New("a resource, not-before time or source IP needs a custom policy")
		}
		policy = appendCannedPolicy(buf, rawURL, epoch)
	}
	sig, err := signPolicy(ctx, key.Signer, policy, hash)
	if err != nil {
		return "", err
	}
	if !p.Custom {
		policy = nil
	}
	return assemble(rawURL, epoch, policy, sig, key.ID, hash)
}

// assemble appends the signing parameters to rawURL: Expires, or for a
// custom policy (policy not nil) the policy in CloudFront's base64, then
// the signature in the same, the key id and, for SHA-256, the hash.
func assemble(rawURL string, epoch int64, policy, sig []byte, keyID string, hash crypto.Hash) (string, error) {
	n := len(rawURL) + len("?Expires=") + 20 + len("&Signature=") + cfEncoding.EncodedLen(len(sig)) +
		len("&Key-Pair-Id=") + len(keyID) + len("&Hash-Algorithm=SHA256")
	if policy != nil {
		n += cfEncoding.EncodedLen(len(policy))
	}
	b := make([]byte, 0, n)
	b = append(b, rawURL...)
	if strings.IndexByte(rawURL, '?') >= 0 {
		b = append(b, '&')
	} else {
		b = append(b, '?')
	}
	if policy == nil {
		b = append(b, paramExpires+"="...)
		b = strconv.AppendInt(b, epoch, 10)
	} else {
		b = append(b, paramPolicy+"="...)
		b = cfEncoding.AppendEncode(b, policy)
	}
	b = append(b, "&"+paramSignature+"="...)
	b = cfEncoding.AppendEncode(b, sig)
	b = append(b, "&"+paramKeyPairID+"="...)
	b = append(b, keyID...)
	if hash == crypto.SHA256 {
		b = append(b, "&"+paramHashAlgorithm+"=SHA256"...)
	}
	if len(b) > MaxURLLength {
		return "", errURLTooLong(len(b))
	}
	return string(b), nil
}

// checkExpiry returns expires as epoch seconds if CloudFront can read
// them.
func checkExpiry(expires time.Time) (int64, error) {
	epoch := expires.Unix()
	if expires.IsZero() || epoch <= 0 || epoch >= math.MaxInt32 {
		return 0, fmt.Errorf("expiry %s is out of range, want after 1970 and before %s",
			expires.UTC().Format(time.RFC3339), MaxExpires.Format(time.RFC3339))
	}
	return epoch, nil
}

// cannedPolicy returns the canned policy for resource and epoch: the
// JSON that CloudFront rebuilds from a signed URL, with no whitespace.
func cannedPolicy(resource string, epoch int64) string {
	return string(appendCannedPolicy(nil, resource, epoch))
}

func appendCannedPolicy(b []byte, resource string, epoch int64) []byte {
	b = append(b, `{"Statement":[{"Resource":`...)
	b = appendJSONString(b, resource)
	b = append(b, `,"Condition":{"DateLessThan":{"AWS:EpochTime":`...)
	b = strconv.AppendInt(b, epoch, 10)
	return append(b, `}}}]}`...)
}

// appendCustomPolicy appends p as a custom policy for rawURL, with no
// whitespace, in the key order of AWS's documentation.
func appendCustomPolicy(b []byte, rawURL string, epoch int64, p Policy) ([]byte, error) {
	resource := p.Resource
	if resource == "" {
		resource = rawURL
	} else if err := checkResourcePattern(resource); err != nil {
		return nil, err
	}
	if !wildcardMatch(resource, rawURL) {
		// The URL could never be used; better to say so now.
		return nil, fmt.Errorf("resource %q does not cover the url", resource)
	}
	b = append(b, `{"Statement":[{"Resource":`...)
	b = appendJSONString(b, resource)
	b = append(b, `,"Condition":{"DateLessThan":{"AWS:EpochTime":`...)
	b = strconv.AppendInt(b, epoch, 10)
	b = append(b, '}')
	if !p.NotBefore.IsZero() {
		nb := p.NotBefore.Unix()
		if nb < 0 || nb >= epoch {
			return nil, fmt.Errorf("not-before time %s is not before the expiry %s",
				p.NotBefore.UTC().Format(time.RFC3339), time.Unix(epoch, 0).UTC().Format(time.RFC3339))
		}
		b = append(b, `,"DateGreaterThan":{"AWS:EpochTime":`...)
		b = strconv.AppendInt(b, nb, 10)
		b = append(b, '}')
	}
	if p.SourceIP.IsValid() {
		if err := checkSourceIP(p.SourceIP); err != nil {
			return nil, err
		}
		b = append(b, `,"IpAddress":{"AWS:SourceIp":"`...)
		b = p.SourceIP.AppendTo(b)
		b = append(b, `"}`...)
	}
	return append(b, `}}]}`...), nil
}

// checkSourceIP accepts one IPv4 CIDR without host bits.
func checkSourceIP(p netip.Prefix) error {
	if !p.Addr().Is4() {
		return fmt.Errorf("source IP %s is not IPv4; CloudFront policies take IPv4 only", p)
	}
	if p.Masked() != p {
		return fmt.Errorf("source IP %s has host bits set; did you mean %s?", p, p.Masked())
	}
	return nil
}

// ParseSourceIP parses one IPv4 CIDR ("192.0.2.0/24") or a bare IPv4
// address, which means /32, for [Policy.SourceIP].
func ParseSourceIP(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("source IP %q is not a CIDR like 192.0.2.0/24", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("source IP %q is not an IPv4 address or CIDR", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if err := checkSourceIP(p); err != nil {
		return netip.Prefix{}, err
	}
	return p, nil
}

// appendJSONString appends s as a JSON string. URLs that passed
// CheckURL need no escaping and take the fast path.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return append(b, jsonString(s)...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// signPolicy signs policy over hash, RSA PKCS #1 v1.5 or ECDSA ASN.1
// DER as the key is, and returns the raw signature.
func signPolicy(ctx context.Context, key crypto.Signer, policy []byte, hash crypto.Hash) ([]byte, error) {
	digest, err := digestOf(policy, hash)
	if err != nil {
		return nil, err
	}
	var sig []byte
	if cs, ok := key.(ContextSigner); ok {
		sig, err = cs.SignContext(ctx, digest, hash)
	} else {
		sig, err = key.Sign(rand.Reader, digest, hash)
	}
	if err != nil {
		// Not wrapped in detail: a KMS error may quote the request.
		return nil, fmt.Errorf("sign policy: %w", err)
	}
	return sig, nil
}

func digestOf(policy []byte, hash crypto.Hash) ([]byte, error) {
	switch hash {
	case crypto.SHA1:
		d := sha1.Sum(policy)
		return d[:], nil
	case crypto.SHA256:
		d := sha256.Sum256(policy)
		return d[:], nil
	}
	return nil, fmt.Errorf("hash %v is not supported", hash)
}

// parseHash turns a hash name into a crypto.Hash; "" means SHA-1.
func parseHash(name string) (crypto.Hash, error) {
	switch name {
	case "", HashSHA1:
		return crypto.SHA1, nil
	case HashSHA256:
		return crypto.SHA256, nil
	}
	return 0, fmt.Errorf("hash %q is not %s or %s", name, HashSHA1, HashSHA256)
}

// CloudFront's URL-safe base64 is the standard alphabet with "+" → "-",
// "=" → "_" and "/" → "~". cfEncoding writes it in one pass; decoding
// maps it back and reads standard base64 strictly.
var (
	cfEncoding   = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-~").WithPadding('_')
	cfUnreplacer = strings.NewReplacer("-", "+", "_", "=", "~", "/")
)

func encodeBase64(b []byte) string {
	return cfEncoding.EncodeToString(b)
}

func decodeBase64(s string) ([]byte, error) {
	return base64.StdEncoding.Strict().DecodeString(cfUnreplacer.Replace(s))
}

// ObjectURL returns the URL of an S3 object key behind a CloudFront
// base URL: domain without a trailing "/", then "/", then
// [EscapeKey](key). domain is checked as [CloudFront.Domain] is, and
// key must have no "." or ".." segment.
func ObjectURL(domain, key string) (string, error) {
	base, err := checkDomain(domain)
	if err != nil {
		return "", err
	}
	if err := checkKey(key); err != nil {
		return "", err
	}
	return base + "/" + EscapeKey(key), nil
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

// CheckURL reports why rawURL cannot be signed byte for byte, or nil.
// It must be an http or https URL with a host, in ASCII, with every
// byte that needs it percent-encoded: no space, no raw "+" (S3 reads it
// as a space), a valid escape after each "%", and no fragment. Its
// query must not use the names of the signing parameters.
func CheckURL(rawURL string) error {
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

// checkResourcePattern checks a custom policy's Resource.
func checkResourcePattern(p string) error {
	if err := checkURLChars(p); err != nil {
		return fmt.Errorf("resource %q: %w", p, err)
	}
	return nil
}

// CheckKeyID reports why keyID cannot be a Key-Pair-Id, or nil: it must
// be letters, digits, "-" and "_", as CloudFront's public key IDs are.
// Such an ID is also safe as a file or object name.
func CheckKeyID(keyID string) error {
	if keyID == "" {
		return errors.New("key id is empty")
	}
	// Key IDs are upper-case alphanumerics (K2JCJMDEHXQW5F); anything
	// that would need escaping would corrupt the URL, or a file name.
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
	return checkPublicKey(key.Public())
}
