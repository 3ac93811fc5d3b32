package link

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Reasons a signed URL fails [Verify], in [VerifyError.Reason].
const (
	ReasonExpired          = "expired"           // now is at or after the expiry
	ReasonNotYetValid      = "not yet valid"     // now is at or before a custom policy's DateGreaterThan
	ReasonBadSignature     = "bad signature"     // the signature does not match the URL or policy
	ReasonUnknownKey       = "unknown key"       // Key-Pair-Id is not a key the caller trusts
	ReasonResourceMismatch = "resource mismatch" // a custom policy's Resource does not match the URL
	ReasonMalformed        = "malformed"         // the URL or its signing parameters cannot be read
	ReasonHashMismatch     = "hash mismatch"     // signed with another hash than Hash-Algorithm says
	ReasonIPDenied         = "ip denied"         // the client is outside a custom policy's IpAddress
)

// Policy kinds and hash names, as [Verified] reports them and as [Sign]
// and [CloudFront.Hash] take the hash.
const (
	PolicyCanned = "canned"
	PolicyCustom = "custom"
	HashSHA1     = "sha1"
	HashSHA256   = "sha256"
)

// KeyLookup returns the public key that a CloudFront public key ID
// (Key-Pair-Id) names, and whether the caller trusts it. The key may
// also be a private key or another crypto.Signer; its public half is
// used.
type KeyLookup func(keyID string) (crypto.PublicKey, bool)

// Verified describes a signed URL that passed [Verify].
type Verified struct {
	KeyID     string       // Key-Pair-Id
	Expires   time.Time    // the policy's DateLessThan, in UTC
	NotBefore time.Time    // a custom policy's DateGreaterThan; zero if none
	Policy    string       // PolicyCanned or PolicyCustom
	Hash      string       // HashSHA1 or HashSHA256
	Resource  string       // the policy's resource: the URL without signing parameters, or a custom pattern
	SourceIP  netip.Prefix // a custom policy's IpAddress; invalid if none
}

// VerifyError is the error [Verify] returns. Its message never contains
// the signature or policy values.
type VerifyError struct {
	Reason string // one of the Reason constants
	KeyID  string // the Key-Pair-Id, if the URL had one
	Detail string // more about the failure, for people; may be empty
	Err    error  // the underlying error, if any
}

// Error returns "verify: " followed by the reason and any detail.
func (e *VerifyError) Error() string {
	msg := "verify: " + e.Reason
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying error.
func (e *VerifyError) Unwrap() error { return e.Err }

// Verify checks a signed CloudFront URL offline.
//
// It reads the signing parameters (Expires or Policy, Signature,
// Key-Pair-Id and the optional Hash-Algorithm), which must follow all of
// the URL's other query parameters, and takes the rest of the URL as
// the resource that was signed. A canned policy is rebuilt from the
// resource and Expires; a custom policy's Resource may use the
// wildcards "*" and "?". The signature must be over SHA-1, or SHA-256
// when Hash-Algorithm=SHA256, by a key that keys returns: RSA-2048
// (PKCS #1 v1.5) or ECDSA P-256 (ASN.1 DER). A fragment ("#...") is ignored, as browsers do not send it.
// A custom policy's IpAddress condition is not checked; see [VerifyFrom].
//
// Failures are returned as a *[VerifyError].
func Verify(rawURL string, keys KeyLookup, now time.Time) (Verified, error) {
	return VerifyFrom(rawURL, keys, now, netip.Addr{})
}

// VerifyFrom is [Verify] for a request from clientIP. A custom policy's
// IpAddress condition is checked only when clientIP is valid.
func VerifyFrom(rawURL string, keys KeyLookup, now time.Time, clientIP netip.Addr) (Verified, error) {
	sp, err := splitSigned(rawURL)
	if err != nil {
		return Verified{}, err
	}
	fail := func(reason, detail string, err error) (Verified, error) {
		return Verified{}, &VerifyError{Reason: reason, KeyID: sp.keyID, Detail: detail, Err: err}
	}
	v := Verified{KeyID: sp.keyID, Hash: HashSHA1}
	hash := crypto.SHA1
	if sp.hashAlg == "SHA256" {
		v.Hash, hash = HashSHA256, crypto.SHA256
	}

	sig, err := decodeBase64(sp.signature)
	if err != nil {
		return fail(ReasonMalformed, "signature is not CloudFront base64", nil)
	}
	var policy []byte
	var epoch int64
	if sp.hasExpires {
		v.Policy = PolicyCanned
		epoch, err = parseEpoch(sp.expires)
		if err != nil {
			return fail(ReasonMalformed, "expires", err)
		}
		policy = []byte(cannedPolicy(sp.resource, epoch))
	} else {
		v.Policy = PolicyCustom
		policy, err = decodeBase64(sp.policy)
		if err != nil {
			return fail(ReasonMalformed, "policy is not CloudFront base64", nil)
		}
	}

	if keys == nil {
		return fail(ReasonUnknownKey, fmt.Sprintf("no keys to check key id %s against", sp.keyID), nil)
	}
	pk, ok := keys(sp.keyID)
	if !ok || pk == nil {
		return fail(ReasonUnknownKey, fmt.Sprintf("key id %s is not trusted", sp.keyID), nil)
	}
	pk = publicOf(pk)
	if err := checkPublicKey(pk); err != nil {
		return fail(ReasonUnknownKey, fmt.Sprintf("key id %s", sp.keyID), err)
	}
	if err := checkSignature(pk, policy, sig, hash); err != nil {
		var ve *VerifyError
		if errors.As(err, &ve) {
			ve.KeyID = sp.keyID
		}
		return Verified{}, err
	}

	if v.Policy == PolicyCanned {
		v.Resource = sp.resource
		v.Expires = time.Unix(epoch, 0).UTC()
		if !now.Before(v.Expires) {
			return fail(ReasonExpired, "at "+v.Expires.Format(time.RFC3339), nil)
		}
		return v, nil
	}

	// The signature holds, so the policy is what the key owner wrote.
	cp, err := parseCustomPolicy(policy)
	if err != nil {
		return fail(ReasonMalformed, "policy", err)
	}
	v.Resource = cp.resource
	v.Expires = cp.expires
	v.NotBefore = cp.notBefore
	v.SourceIP = cp.sourceIP
	if cp.hasResource && !wildcardMatch(cp.resource, sp.resource) {
		return fail(ReasonResourceMismatch, fmt.Sprintf("policy covers %q, not %q", cp.resource, sp.resource), nil)
	}
	if !cp.notBefore.IsZero() && !now.After(cp.notBefore) {
		return fail(ReasonNotYetValid, "until "+cp.notBefore.Format(time.RFC3339), nil)
	}
	if !now.Before(cp.expires) {
		return fail(ReasonExpired, "at "+cp.expires.Format(time.RFC3339), nil)
	}
	if clientIP.IsValid() && cp.sourceIP.IsValid() && !cp.sourceIP.Contains(clientIP.Unmap()) {
		return fail(ReasonIPDenied, fmt.Sprintf("%s is not in %s", clientIP, cp.sourceIP), nil)
	}
	return v, nil
}

// checkSignature verifies sig over policy with hash. If that fails but
// the other hash verifies, the URL declares the wrong hash.
func checkSignature(pub crypto.PublicKey, policy, sig []byte, hash crypto.Hash) error {
	if verifySig(pub, policy, sig, hash) {
		return nil
	}
	other := crypto.SHA256
	if hash == crypto.SHA256 {
		other = crypto.SHA1
	}
	if verifySig(pub, policy, sig, other) {
		return &VerifyError{Reason: ReasonHashMismatch, Detail: fmt.Sprintf("signed with %v, but the URL says %v", other, hash)}
	}
	return &VerifyError{Reason: ReasonBadSignature}
}

func verifySig(pub crypto.PublicKey, policy, sig []byte, hash crypto.Hash) bool {
	digest, err := digestOf(policy, hash)
	if err != nil {
		return false
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, hash, digest, sig) == nil
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, digest, sig)
	}
	return false
}

// signedParts is a signed URL taken apart. Values are query-unescaped.
type signedParts struct {
	resource   string // the URL without the signing parameters or fragment
	hasExpires bool
	expires    string
	policy     string
	signature  string
	keyID      string
	hashAlg    string
}

func splitSigned(rawURL string) (signedParts, error) {
	var sp signedParts
	malformed := func(format string, args ...any) (signedParts, error) {
		return signedParts{}, &VerifyError{Reason: ReasonMalformed, KeyID: sp.keyID, Detail: fmt.Sprintf(format, args...)}
	}
	s, _, _ := strings.Cut(rawURL, "#")
	if _, err := url.Parse(s); err != nil {
		// Not wrapped: url.Error quotes the whole URL, signature and all.
		return malformed("not a URL")
	}
	base, query, ok := strings.Cut(s, "?")
	if !ok {
		return malformed("no query, so no signature")
	}
	parts := strings.Split(query, "&")
	first := -1
	seen := map[string]bool{}
	for i, part := range parts {
		rawName, rawValue, _ := strings.Cut(part, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			return malformed("query parameter %d has a bad escape", i+1)
		}
		if !isSigningParam(name) {
			if first >= 0 {
				return malformed("query parameter %q follows the signing parameters; it must come before them", name)
			}
			continue
		}
		if first < 0 {
			first = i
		}
		if seen[name] {
			return malformed("%s appears more than once", name)
		}
		seen[name] = true
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return malformed("%s has a bad escape", name)
		}
		switch name {
		case paramExpires:
			sp.hasExpires, sp.expires = true, value
		case paramPolicy:
			sp.policy = value
		case paramSignature:
			sp.signature = value
		case paramKeyPairID:
			sp.keyID = value
		case paramHashAlgorithm:
			sp.hashAlg = value
		}
	}
	switch {
	case first < 0:
		return malformed("no signing parameters")
	case sp.keyID == "":
		return malformed("no %s", paramKeyPairID)
	case sp.signature == "":
		return malformed("no %s", paramSignature)
	case sp.hasExpires && seen[paramPolicy]:
		return malformed("both %s and %s", paramExpires, paramPolicy)
	case !sp.hasExpires && sp.policy == "":
		return malformed("neither %s nor %s", paramExpires, paramPolicy)
	}
	switch sp.hashAlg {
	case "", "SHA1", "SHA256":
	default:
		return malformed("%s %q is not SHA1 or SHA256", paramHashAlgorithm, sp.hashAlg)
	}
	sp.resource = base
	if first > 0 {
		sp.resource += "?" + strings.Join(parts[:first], "&")
	}
	return sp, nil
}

// parseEpoch parses epoch seconds written the way signers write them.
func parseEpoch(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != s {
		return 0, fmt.Errorf("%q is not epoch seconds", s)
	}
	return n, nil
}

type customPolicy struct {
	hasResource bool
	resource    string
	expires     time.Time
	notBefore   time.Time
	sourceIP    netip.Prefix
}

// parseCustomPolicy reads a custom policy with exactly one statement,
// which is all CloudFront allows in a signed URL.
func parseCustomPolicy(b []byte) (customPolicy, error) {
	type epoch struct {
		Seconds *int64 `json:"AWS:EpochTime"`
	}
	var doc struct {
		Statement []struct {
			Resource  *string
			Condition struct {
				DateLessThan    *epoch
				DateGreaterThan *epoch
				IpAddress       *struct {
					SourceIP string `json:"AWS:SourceIp"`
				}
			}
		}
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return customPolicy{}, err
	}
	if n := len(doc.Statement); n != 1 {
		return customPolicy{}, fmt.Errorf("%d statements, want 1", n)
	}
	st := doc.Statement[0]
	var cp customPolicy
	if st.Resource != nil {
		cp.hasResource, cp.resource = true, *st.Resource
	}
	c := st.Condition
	if c.DateLessThan == nil || c.DateLessThan.Seconds == nil {
		return customPolicy{}, errors.New("no DateLessThan")
	}
	cp.expires = time.Unix(*c.DateLessThan.Seconds, 0).UTC()
	if c.DateGreaterThan != nil {
		if c.DateGreaterThan.Seconds == nil {
			return customPolicy{}, errors.New("DateGreaterThan without AWS:EpochTime")
		}
		cp.notBefore = time.Unix(*c.DateGreaterThan.Seconds, 0).UTC()
	}
	if c.IpAddress != nil {
		p, err := parseSourceIP(c.IpAddress.SourceIP)
		if err != nil {
			return customPolicy{}, err
		}
		cp.sourceIP = p
	}
	return cp, nil
}

// parseSourceIP parses an IpAddress condition: one IPv4 CIDR, or a bare
// address meaning /32.
func parseSourceIP(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		s += "/32"
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("IpAddress: %w", err)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("IpAddress %s is not IPv4", s)
	}
	return p.Masked(), nil
}

// wildcardMatch reports whether s matches pattern, in which "*" stands
// for any run of bytes (including none, and including "/") and "?" for
// exactly one byte.
func wildcardMatch(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// jsonString returns s as a JSON string literal the way
// encoding/json.Encoder writes it with HTML escaping off, which is how
// signers write the policy.
func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return string(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}
