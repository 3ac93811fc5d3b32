package main

import (
	"context"
	"fmt"
	"time"

	"github.com/reportmailer/reportmailer/worker/link"
	"github.com/reportmailer/reportmailer/worker/secret"
)

const signSynopsis = "sign -private-key FILE -key-id ID (-url URL | -domain URL -object KEY) [-expires DURATION|RFC3339]\n" +
	"         [-policy canned|custom] [-resource PATTERN] [-not-before RFC3339] [-ip CIDR] [-hash sha1|sha256]\n\n" +
	"Prints one signed CloudFront URL on stdout. Links made this way are not recorded for \"reportmailer keys\"."

func (m *Main) sign(_ context.Context, args []string) error {
	fs := m.newFlagSet("sign", signSynopsis)
	keyFile := fs.String("private-key", "", "PEM file holding the private key: RSA-2048 (PKCS#1 or PKCS#8) or ECDSA P-256 (SEC1 or PKCS#8) (required)")
	keyID := fs.String("key-id", "", "the CloudFront public key id, which the URL carries as Key-Pair-Id (required)")
	rawURL := fs.String("url", "", "the URL to sign, already percent-encoded; one that is not safely encoded is refused")
	domain := fs.String("domain", "", "the distribution's URL, e.g. https://d111111abcdef8.cloudfront.net; with -object")
	object := fs.String("object", "", "a raw S3 object key, which is percent-encoded for you; with -domain")
	expiresFlag := fs.String("expires", "24h", "when the URL stops working: a duration from now, or an RFC 3339 time")
	policyFlag := fs.String("policy", "", "canned or custom (default canned, or custom when -resource, -not-before or -ip is given)")
	resource := fs.String("resource", "", "custom policy: the URL pattern granted, with * and ? wildcards (default the URL itself)")
	notBeforeFlag := fs.String("not-before", "", "custom policy: the RFC 3339 time until which the URL does not work yet")
	ipFlag := fs.String("ip", "", "custom policy: the one IPv4 address or CIDR that may use the URL")
	hash := fs.String("hash", link.HashSHA1, "the signature's hash: sha1 or sha256")
	if err := parse(fs, args); err != nil {
		return err
	}
	now := time.Now()

	switch {
	case *keyFile == "":
		return usageError("sign: -private-key is required")
	case secret.IsKeyMaterial(*keyFile):
		return usageError("sign: -private-key holds key material, not a file path: save the PEM in a file and give its path")
	case *keyID == "":
		return usageError("sign: -key-id is required")
	case secret.IsKeyMaterial(*keyID):
		return usageError("sign: -key-id holds key material, not a key id: give the CloudFront public key id, like K2JCJMDEHXQW5F")
	}
	if err := link.CheckKeyID(*keyID); err != nil {
		return usageError("sign: -key-id: %v", err)
	}
	if *hash != link.HashSHA1 && *hash != link.HashSHA256 {
		return usageError("sign: -hash %q is not sha1 or sha256", *hash)
	}

	target, err := signTarget(*rawURL, *domain, *object)
	if err != nil {
		return err
	}
	p, err := signPolicy(*policyFlag, *resource, *notBeforeFlag, *ipFlag)
	if err != nil {
		return err
	}
	if p.Expires, err = parseExpires(*expiresFlag, now); err != nil {
		return err
	}

	key, err := link.LoadPrivateKey(*keyFile, "")
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	signed, err := link.Sign(target, link.Key{ID: *keyID, Signer: key}, *hash, p)
	if err != nil {
		return usageError("%v", err)
	}
	fmt.Fprintln(m.Stdout, signed)
	return nil
}

// signTarget returns the URL to sign from -url, or -domain and -object.
func signTarget(rawURL, domain, object string) (string, error) {
	switch {
	case rawURL != "" && (domain != "" || object != ""):
		return "", usageError("sign: give -url, or -domain and -object, not both")
	case rawURL != "":
		if err := link.CheckURL(rawURL); err != nil {
			return "", usageError("sign: -url: %v\n(to sign a raw S3 key, give -domain and -object and it is encoded for you)", trimURLPrefix(err))
		}
		return rawURL, nil
	case domain == "" || object == "":
		return "", usageError("sign: give -url, or both -domain and -object")
	}
	u, err := link.ObjectURL(domain, object)
	if err != nil {
		return "", usageError("sign: -domain/-object: %v", err)
	}
	return u, nil
}

func trimURLPrefix(err error) string {
	s := err.Error()
	if len(s) > 5 && s[:5] == "url: " {
		return s[5:]
	}
	return s
}

// signPolicy builds the policy from the flags, all but its expiry.
func signPolicy(kind, resource, notBefore, ip string) (link.Policy, error) {
	var p link.Policy
	customOnly := resource != "" || notBefore != "" || ip != ""
	switch kind {
	case "":
		p.Custom = customOnly
	case "custom":
		p.Custom = true
	case "canned":
		if customOnly {
			return p, usageError("sign: -resource, -not-before and -ip need -policy custom")
		}
	default:
		return p, usageError("sign: -policy %q is not canned or custom", kind)
	}
	p.Resource = resource
	if notBefore != "" {
		t, err := time.Parse(time.RFC3339, notBefore)
		if err != nil {
			return p, usageError("sign: -not-before %q is not an RFC 3339 time like 2026-03-01T12:00:00Z", notBefore)
		}
		p.NotBefore = t
	}
	if ip != "" {
		cidr, err := link.ParseSourceIP(ip)
		if err != nil {
			return p, usageError("sign: -ip: %v", err)
		}
		p.SourceIP = cidr
	}
	return p, nil
}

// parseExpires reads -expires: a positive duration from now, or an RFC
// 3339 time after now and before CloudFront's limit.
func parseExpires(s string, now time.Time) (time.Time, error) {
	var t time.Time
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return t, usageError("sign: -expires %s is not in the future", s)
		}
		t = now.Add(d)
	} else if t, err = time.Parse(time.RFC3339, s); err != nil {
		return t, usageError("sign: -expires %q is neither a duration like 72h nor an RFC 3339 time like 2026-03-01T12:00:00Z", s)
	}
	if !t.After(now) {
		return t, usageError("sign: -expires %s is in the past", t.UTC().Format(time.RFC3339))
	}
	if !t.Before(link.MaxExpires) {
		return t, usageError("sign: -expires %s is not before %s, where CloudFront's epoch seconds end", t.UTC().Format(time.RFC3339), link.MaxExpires.Format(time.RFC3339))
	}
	return t, nil
}
