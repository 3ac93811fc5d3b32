package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/reportmailer/reportmailer/worker/link"
	"github.com/reportmailer/reportmailer/worker/secret"
)

// Links defaults.
const (
	// LinkTTLDefault is the default links.ttl.
	LinkTTLDefault = 7 * 24 * time.Hour
	// LinkMaxTTLDefault is the default links.max_ttl.
	LinkMaxTTLDefault = 30 * 24 * time.Hour
	// CloudFrontHashDefault is the default links.cloudfront.hash.
	CloudFrontHashDefault = "sha1"
	// CloudFrontPolicyDefault is the default links.cloudfront.policy.
	CloudFrontPolicyDefault = "canned"
	// KeyRecordsPrefixDefault is the default
	// links.cloudfront.key_records_prefix.
	KeyRecordsPrefixDefault = "reportmailer/keys/"
)

// Links limits.
const (
	// LinkTTLMin is the shortest lifetime a link may be given.
	LinkTTLMin = time.Minute
	// PresignMax is the longest an S3 presigned URL can live.
	PresignMax = 7 * 24 * time.Hour
)

// Links configures signed links.
type Links struct {
	// TTL is how long a link lives when its report type has no entry
	// in TTLByType. Default 168h (7 days); at least 1m and at most
	// MaxTTL. S3 presigned links (without CloudFront) may not ask for
	// more than 168h, and are cut short further when the signing
	// credentials expire sooner; emails always show the true expiry.
	TTL time.Duration `yaml:"ttl"`
	// TTLByType sets the lifetime of links to reports of a type (a
	// report's "type" in the event), e.g. {invoice: 720h}. Each at
	// least 1m and at most MaxTTL, and at most 168h without CloudFront.
	// Default none. It cannot be set from the environment.
	TTLByType map[string]time.Duration `yaml:"ttl_by_type"`
	// MaxTTL is the hard maximum of TTL and of every TTLByType entry.
	// Default 720h (30 days). It also bounds key rotation: an old
	// CloudFront key can be removed only once the last link it signed
	// has expired.
	MaxTTL time.Duration `yaml:"max_ttl"`
	// CloudFront, when set, makes CloudFront signed URLs. When absent,
	// links are S3 presigned URLs.
	CloudFront *CloudFront `yaml:"cloudfront"`
	// Trace gives each recipient links of their own: every link carries
	// an opaque token, an HMAC of the event id and the recipient (never
	// the address), as the query parameter rmt, covered by the
	// signature, so CloudFront's access logs show whose link was opened
	// (reportmailer downloads) and one delivery's links can be revoked
	// (reportmailer revoke). The price: links are signed once per
	// recipient instead of once per event. Needs links.cloudfront, a
	// secret (TraceSecretFile or TraceSecretEnv), and
	// one_signature_per_email off. Default false.
	Trace bool `yaml:"trace"`
	// TraceSecretFile is a file holding the secret that keys the link
	// tokens: at least 32 bytes (e.g. `openssl rand -hex 32`); a
	// trailing newline is ignored. With Trace, exactly one of
	// TraceSecretFile and TraceSecretEnv. Changing the secret changes
	// every token: downloads and revoke then no longer recognise links
	// already sent.
	TraceSecretFile string `yaml:"trace_secret_file"`
	// TraceSecretEnv names an environment variable holding that secret.
	// Its name must not start with REPORTMAILER_.
	TraceSecretEnv string `yaml:"trace_secret_env"`
}

// CloudFront configures CloudFront signed URLs.
//
// The keys are given either as the one-key shorthand (KeyID with
// PrivateKeyFile or PrivateKeyEnv) or as Keys, not both.
type CloudFront struct {
	// Domain is the distribution's URL, e.g. "https://d111.cloudfront.net",
	// optionally with a path prefix. Required. It must be https, except
	// on 127.0.0.1 or localhost. Its origin must be reports.bucket. A
	// path here is passed on to the origin by CloudFront: with
	// "https://files.example.com/reports", only keys under "reports/"
	// (after origin_path) are served.
	Domain string `yaml:"domain"`
	// OriginPath is the distribution's origin path, e.g. "/exports": the
	// distribution serves the key "exports/2026/q3.pdf" at
	// Domain + "/2026/q3.pdf", and no key outside it, so a report outside
	// it is refused (bucket_not_served). It starts with "/" and does not
	// end with one, as in CloudFront. Default "": none.
	OriginPath string `yaml:"origin_path"`
	// DistributionID is the distribution's id, e.g. "E2QWRUHAPOMQZL".
	// Optional: only `reportmailer check -aws` uses it, to check that
	// the distribution serves reports.bucket at OriginPath.
	DistributionID string `yaml:"distribution_id"`
	// KeyID is the CloudFront public key id of the one key: the
	// shorthand for Keys with a single active key.
	KeyID string `yaml:"key_id"`
	// PrivateKeyFile is a PEM file holding the shorthand key's private
	// key. With KeyID, exactly one of PrivateKeyFile and PrivateKeyEnv.
	PrivateKeyFile string `yaml:"private_key_file"`
	// PrivateKeyEnv names an environment variable holding the
	// shorthand key's PEM text. Its name must not start with
	// REPORTMAILER_, which is reserved for config overrides.
	PrivateKeyEnv string `yaml:"private_key_env"`
	// Keys lists the keys, for rotation: exactly one is Active and signs
	// every link; the others are listed so that `reportmailer keys` can
	// say when each may be removed from CloudFront. Default none (use
	// the shorthand). From the environment, a key's fields are
	// REPORTMAILER_LINKS_CLOUDFRONT_KEYS_<ID>_<FIELD>, e.g.
	// REPORTMAILER_LINKS_CLOUDFRONT_KEYS_K2JCJMDEHXQW5F_ACTIVE=true.
	Keys []CloudFrontKey `yaml:"keys"`
	// Hash is the signature's hash: sha1 (CloudFront's classic) or
	// sha256 (the URL then carries Hash-Algorithm=SHA256). Default sha1.
	Hash string `yaml:"hash"`
	// Policy is canned (the shortest URL, for exactly one object) or
	// custom (the policy travels in the URL). Default canned.
	Policy string `yaml:"policy"`
	// OneSignaturePerEmail signs all the links of one email with a
	// single custom policy over the reports' common directory, when
	// there are two or more, they share a directory and expire
	// together; otherwise links are signed one by one. The trade-off:
	// each link then opens every object under that directory, not only
	// its own report. Default false.
	OneSignaturePerEmail bool `yaml:"one_signature_per_email"`
	// KeyRecordsPrefix is where, in ledger.bucket, the worker records
	// the latest expiry each key has signed (one small object per key),
	// which `reportmailer keys` reads. Default "reportmailer/keys/". It
	// must not be under ledger.prefix, and no S3 lifecycle rule may
	// expire it: a lost record would make `keys` say that a key whose
	// links still work was never used.
	KeyRecordsPrefix string `yaml:"key_records_prefix"`
	// AccessLogs is where the distribution's standard access logs
	// (legacy, gzipped W3C files) are delivered, for `reportmailer
	// downloads`. Default none.
	AccessLogs AccessLogs `yaml:"access_logs"`
	// KeyValueStoreARN is the ARN of the CloudFront KeyValueStore that
	// holds the deny list of revoked link tokens, which `reportmailer
	// revoke` writes and the viewer-request function in
	// deploy/cloudfront-function reads, e.g.
	// "arn:aws:cloudfront::123456789012:key-value-store/0a1b2c3d-...".
	// Default none.
	KeyValueStoreARN string `yaml:"key_value_store_arn"`
}

// AccessLogs names where CloudFront delivers a distribution's standard
// log files.
type AccessLogs struct {
	// Bucket is the log bucket's name (not its domain name). Default
	// none.
	Bucket string `yaml:"bucket"`
	// Prefix is the log prefix set on the distribution, e.g.
	// "cloudfront/". Default "": the bucket's root.
	Prefix string `yaml:"prefix"`
}

// CloudFrontKey is one CloudFront key pair.
type CloudFrontKey struct {
	// ID is the CloudFront public key id (Key-Pair-Id). Required;
	// letters, digits, '-' and '_'.
	ID string `yaml:"id"`
	// PrivateKeyFile is a PEM file holding the private key: RSA-2048
	// (PKCS#1 or PKCS#8) or ECDSA P-256 (SEC1 or PKCS#8). Exactly one
	// of PrivateKeyFile and PrivateKeyEnv.
	PrivateKeyFile string `yaml:"private_key_file"`
	// PrivateKeyEnv names an environment variable holding the PEM text.
	PrivateKeyEnv string `yaml:"private_key_env"`
	// Active marks the key that signs. Exactly one key is active.
	// Default false.
	Active bool `yaml:"active"`
}

// SigningKeys returns the configured keys: Keys, or the shorthand as
// one active key.
func (cf *CloudFront) SigningKeys() []CloudFrontKey {
	if len(cf.Keys) > 0 {
		return cf.Keys
	}
	return []CloudFrontKey{{ID: cf.KeyID, PrivateKeyFile: cf.PrivateKeyFile, PrivateKeyEnv: cf.PrivateKeyEnv, Active: true}}
}

// ActiveKey returns the key that signs, and false if the configuration
// does not name exactly one.
func (cf *CloudFront) ActiveKey() (CloudFrontKey, bool) {
	var active []CloudFrontKey
	for _, k := range cf.SigningKeys() {
		if k.Active {
			active = append(active, k)
		}
	}
	if len(active) != 1 {
		return CloudFrontKey{}, false
	}
	return active[0], true
}

func (c *Config) setLinksDefaults() {
	l := &c.Links
	if l.TTL == 0 {
		l.TTL = LinkTTLDefault
	}
	if l.MaxTTL == 0 {
		l.MaxTTL = LinkMaxTTLDefault
	}
	if cf := l.CloudFront; cf != nil {
		if cf.Hash == "" {
			cf.Hash = CloudFrontHashDefault
		}
		if cf.Policy == "" {
			cf.Policy = CloudFrontPolicyDefault
		}
		if cf.KeyRecordsPrefix == "" {
			cf.KeyRecordsPrefix = KeyRecordsPrefixDefault
		}
	}
}

var plainTypeRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// ttlByTypeField names the links.ttl_by_type entry for typ:
// links.ttl_by_type.invoice, or links.ttl_by_type["monthly report"]
// (quoted as values are) when the type is not a plain word.
func ttlByTypeField(typ string) string {
	if plainTypeRE.MatchString(typ) {
		return "links.ttl_by_type." + typ
	}
	return "links.ttl_by_type[" + quote(typ) + "]"
}

// distributionIDRE is what CloudFront distribution ids look like.
var distributionIDRE = regexp.MustCompile(`^[A-Za-z0-9]{1,64}$`)

// keyIDRE is what CloudFront key ids look like, and what is safe in a
// URL and an S3 key.
var keyIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// validateLinks checks the links section.
func (c *Config) validateLinks() []error {
	var errs []error
	bad := func(field string, value any, reason string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Value: value, Reason: fmt.Sprintf(reason, args...)})
	}
	l := c.Links
	presign := l.CloudFront == nil
	checkTTL := func(field string, d time.Duration) {
		switch {
		case d < LinkTTLMin:
			bad(field, d, "is shorter than 1m")
		case presign && d > PresignMax:
			bad(field, d, "is longer than the 7-day (168h) maximum of an S3 presigned URL")
		case l.MaxTTL >= LinkTTLMin && d > l.MaxTTL:
			bad(field, d, "is longer than links.max_ttl (%s); raise max_ttl or shorten it", l.MaxTTL)
		}
	}
	if l.MaxTTL < LinkTTLMin {
		bad("links.max_ttl", l.MaxTTL, "is shorter than 1m")
	}
	checkTTL("links.ttl", l.TTL)
	types := make([]string, 0, len(l.TTLByType))
	for typ := range l.TTLByType {
		types = append(types, typ)
	}
	slices.Sort(types)
	for _, typ := range types {
		if strings.TrimSpace(typ) == "" {
			bad("links.ttl_by_type", typ, "is not a report type")
			continue
		}
		checkTTL(ttlByTypeField(typ), l.TTLByType[typ])
	}

	errs = append(errs, c.validateTrace()...)
	cf := l.CloudFront
	if cf == nil {
		return errs
	}
	if err := checkDomain(cf.Domain); err != nil {
		bad("links.cloudfront.domain", cf.Domain, "%v", err)
	}
	if cf.DistributionID != "" && !distributionIDRE.MatchString(cf.DistributionID) {
		bad("links.cloudfront.distribution_id", cf.DistributionID, "is not a CloudFront distribution id (letters and digits, e.g. E2QWRUHAPOMQZL)")
	}
	if err := link.CheckOriginPath(cf.OriginPath); err != nil {
		bad("links.cloudfront.origin_path", cf.OriginPath, "is not an origin path: it must start with \"/\" and not end with one, like \"/exports\"")
	} else if sp, p := link.ServedPrefix(cf.Domain, cf.OriginPath), c.Reports.Prefix; sp != "" && p != "" &&
		!strings.HasPrefix(p, sp) && !strings.HasPrefix(sp, p) {
		bad("reports.prefix", p, "is outside what the distribution serves, keys under %s (links.cloudfront.origin_path, then the path of links.cloudfront.domain, which CloudFront passes on to the origin): it could link no report", quote(sp))
	}
	shorthand := cf.KeyID != "" || cf.PrivateKeyFile != "" || cf.PrivateKeyEnv != ""
	switch {
	case shorthand && len(cf.Keys) > 0:
		bad("links.cloudfront.key_id", cf.KeyID, "and links.cloudfront.keys: set one form, the key_id shorthand or the keys list, not both")
	case len(cf.Keys) == 0:
		if cf.KeyID == "" {
			bad("links.cloudfront.key_id", "", "is required (or list links.cloudfront.keys)")
		} else if !keyIDRE.MatchString(cf.KeyID) {
			bad("links.cloudfront.key_id", cf.KeyID, "may hold only letters, digits, '-' and '_'")
		}
		errs = append(errs, checkKeySource("links.cloudfront.", cf.PrivateKeyFile, cf.PrivateKeyEnv)...)
	default:
		seen := map[string]bool{}
		var active []string
		for i, k := range cf.Keys {
			f := func(name string) string { return fmt.Sprintf("links.cloudfront.keys[%d].%s", i, name) }
			switch {
			case k.ID == "":
				bad(f("id"), "", "is required")
			case !keyIDRE.MatchString(k.ID):
				bad(f("id"), k.ID, "may hold only letters, digits, '-' and '_'")
			case seen[k.ID]:
				bad(f("id"), k.ID, "is listed twice")
			}
			seen[k.ID] = true
			errs = append(errs, checkKeySource(f(""), k.PrivateKeyFile, k.PrivateKeyEnv)...)
			if k.Active {
				active = append(active, k.ID)
			}
		}
		switch len(active) {
		case 1:
		case 0:
			bad("links.cloudfront.keys", len(cf.Keys), "keys listed and none is active: mark exactly one with active: true")
		default:
			bad("links.cloudfront.keys", strings.Join(active, ", "), "are all active: mark exactly one with active: true")
		}
	}
	if cf.Hash != "sha1" && cf.Hash != "sha256" {
		bad("links.cloudfront.hash", cf.Hash, "is not sha1 or sha256")
	}
	if cf.Policy != "canned" && cf.Policy != "custom" {
		bad("links.cloudfront.policy", cf.Policy, "is not canned or custom")
	}
	errs = append(errs, c.validateTraceCloudFront()...)
	if lp := c.Ledger.Prefix; lp != "" && strings.HasPrefix(cf.KeyRecordsPrefix, lp) {
		bad("links.cloudfront.key_records_prefix", cf.KeyRecordsPrefix,
			"is under ledger.prefix (%s), whose S3 lifecycle rule would delete the key records; use a prefix of its own", quote(lp))
	}
	return errs
}

// varNameRE is what an environment variable name may be.
var varNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// checkKeySource checks a key's private_key_file and private_key_env,
// whose settings are prefix plus those names. A key pasted into either
// is reported without its value: the error names the setting only.
func checkKeySource(prefix, file, env string) []error {
	var errs []error
	bad := func(field string, value any, reason string, args ...any) {
		errs = append(errs, &FieldError{Field: prefix + field, Value: value, Reason: fmt.Sprintf(reason, args...)})
	}
	fileKey, envKey := secret.IsKeyMaterial(file), secret.IsKeyMaterial(env)
	if fileKey {
		bad("private_key_file", nil, "holds key material, not a file path: put the PEM in a file and give its path here, or put it in an environment variable and give that variable's name in private_key_env")
	}
	if envKey {
		bad("private_key_env", nil, "holds key material, not a variable name: put the PEM in an environment variable and give that variable's name here")
	}
	switch {
	case fileKey || envKey:
	case (file == "") == (env == ""):
		bad("private_key_file", file, "and private_key_env (%s): set exactly one", quote(env))
	case env != "" && !varNameRE.MatchString(env):
		bad("private_key_env", env, "is not an environment variable name (letters, digits and '_')")
	case env != "" && strings.HasPrefix(env, EnvPrefix):
		bad("private_key_env", env, "starts with %s, which is reserved for config overrides", EnvPrefix)
	}
	return errs
}

func checkDomain(s string) error {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return errors.New("is required")
	case err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "":
		return errors.New("is not a URL like https://d111111abcdef8.cloudfront.net")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && (u.Hostname() == "127.0.0.1" || u.Hostname() == "localhost"):
		return nil
	}
	return errors.New("must use https")
}
