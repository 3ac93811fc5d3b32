package link

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/linktoken"
)

// CloudFront signs CloudFront URLs to report files.
//
// The link is Domain + "/" + [EscapeKey](the report's key less
// OriginPath and less Domain's path, which CloudFront passes on to the
// origin). The bucket is not part of the URL: the distribution has
// one origin, so a report in another bucket must be refused, not
// linked, or its link would open the object with the same key in the
// origin; set Bucket for that. Fields are read on every call to Sign;
// set them before use and do not change them while Sign may run. A
// CloudFront must not be copied after first use.
type CloudFront struct {
	// Domain is the distribution's base URL: "https://" and a host, and
	// optionally a path prefix, such as
	// "https://d111111abcdef8.cloudfront.net" or
	// "https://files.example.com/reports". A trailing "/" is ignored.
	// CloudFront passes a path to the origin as it is, so only keys under
	// that path (after OriginPath) are served: "reports/2026/q3.pdf" is
	// linked as "https://files.example.com/reports/2026/q3.pdf".
	// Plain "http" is accepted only for localhost, 127.0.0.1 and [::1],
	// so that a local edge can be used in development.
	Domain string
	// Bucket is the distribution's origin bucket. A report in any other
	// bucket is refused with [worker.CodeBucketNotServed]. Default "":
	// reports are not checked here (the worker checks them).
	Bucket string
	// OriginPath is the origin path the distribution puts in front of
	// every request to its origin, such as "/reports": it serves the
	// object with key "reports/2026/q3.pdf" at Domain + "/2026/q3.pdf".
	// A report whose key is not under it cannot be reached, and is
	// refused with [worker.CodeBucketNotServed]. It starts with "/" and
	// does not end with one. Default "": URL paths are keys as they are.
	OriginPath string
	// KeyID is the ID of the CloudFront public key (Key-Pair-Id) that
	// matches Key, in a key group the distribution trusts: the active
	// key, which signs every link.
	KeyID string
	// Key is the private key: RSA-2048 or ECDSA P-256. It may be any
	// crypto.Signer with such a public key, such as a KMS-backed one.
	Key crypto.Signer
	// Hash is HashSHA1 (the default, also for "") or HashSHA256; with
	// SHA-256 the URL carries Hash-Algorithm=SHA256.
	Hash string
	// CustomPolicy signs each link with a custom policy whose Resource is
	// the link itself, rather than a canned policy. The URL is longer and
	// grants nothing more. Default false.
	CustomPolicy bool
	// OneSignaturePerEmail makes SignAll sign the links of one email
	// with a single custom policy whose Resource is Domain + "/" + the
	// reports' common directory + "*", when there are two or more
	// links, they share a directory and they expire together; otherwise
	// each link is signed on its own. It trades signing work for scope:
	// each link then grants every object under that directory, not just
	// its own report. Default false.
	OneSignaturePerEmail bool
	// TTL is how long a link stays valid, at least one second, for
	// reports whose type has no entry in TTLByType.
	TTL time.Duration
	// TTLByType overrides TTL per report type (event.Report.Type).
	TTLByType map[string]time.Duration
	// MaxTTL, when positive, caps every lifetime. A capped link is
	// logged once per report type, and Link.Expires is the true expiry.
	MaxTTL time.Duration
	// Expiries, if set, records the latest expiry each key signs,
	// before a link is returned; see [ExpiryLog] and [RecordAhead]. A
	// failure to record fails the signature, so that no link can be
	// sent that the record does not cover.
	Expiries ExpiryLog
	// Logger receives the warnings about capped expiries. If nil,
	// slog.Default() is used.
	Logger *slog.Logger

	warned   warner
	recorder recorder
	base     atomic.Pointer[checkedDomain] // the last Domain that passed checkDomain
}

// checkedDomain is a Domain and its base URL, once checked.
type checkedDomain struct{ domain, base string }

var (
	_ worker.Signer      = (*CloudFront)(nil)
	_ worker.BatchSigner = (*CloudFront)(nil)
)

// Validate checks the configuration, so that a bad one can be reported
// at start-up rather than on the first message. Sign checks the same,
// but a TTLByType entry only when a report of that type uses it.
func (c *CloudFront) Validate() error {
	if _, _, err := c.check(); err != nil {
		return err
	}
	if err := checkTTLs(c.TTL, c.TTLByType, c.MaxTTL); err != nil {
		return fmt.Errorf("cloudfront: %w", err)
	}
	return nil
}

// check validates what every link needs, and returns Domain without a
// trailing "/" and the hash. TTLByType is checked entry by entry as
// links use it (expiry), and as a whole by Validate.
func (c *CloudFront) check() (string, crypto.Hash, error) {
	var base string
	if d := c.base.Load(); d != nil && d.domain == c.Domain {
		base = d.base
	} else {
		// Parsed once, not for every link.
		b, err := checkDomain(c.Domain)
		if err != nil {
			return "", 0, fmt.Errorf("cloudfront: %w", err)
		}
		c.base.Store(&checkedDomain{domain: c.Domain, base: b})
		base = b
	}
	if err := CheckKeyID(c.KeyID); err != nil {
		return "", 0, fmt.Errorf("cloudfront: %w", err)
	}
	if err := checkSigner(c.Key); err != nil {
		return "", 0, fmt.Errorf("cloudfront: %w", err)
	}
	hash, err := parseHash(c.Hash)
	if err != nil {
		return "", 0, fmt.Errorf("cloudfront: %w", err)
	}
	if err := checkTTLs(c.TTL, nil, c.MaxTTL); err != nil {
		return "", 0, fmt.Errorf("cloudfront: %w", err)
	}
	if err := CheckOriginPath(c.OriginPath); err != nil {
		return "", 0, fmt.Errorf("cloudfront: %w", err)
	}
	return base, hash, nil
}

// CheckOriginPath checks a CloudFront origin path: empty, or "/"
// followed by segments that are neither empty, "." nor "..", with no
// "/" at the end, as CloudFront requires.
func CheckOriginPath(p string) error {
	if p == "" {
		return nil
	}
	rest, ok := strings.CutPrefix(p, "/")
	if !ok || strings.HasSuffix(p, "/") {
		return fmt.Errorf("origin path %q must start with \"/\" and not end with one, like \"/reports\"", p)
	}
	for seg := range strings.SplitSeq(rest, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("origin path %q has an empty, \".\" or \"..\" segment", p)
		}
	}
	return nil
}

// path returns the part of r's URL after Domain + "/", unescaped: its
// key less OriginPath. It refuses, as permanent, a report the
// distribution does not serve or whose key cannot be linked.
func (c *CloudFront) path(r event.Report) (string, error) {
	if c.Bucket != "" && r.Bucket != c.Bucket {
		return "", worker.PermanentCode(worker.CodeBucketNotServed, fmt.Errorf("cloudfront: bucket %q is not the distribution's origin, %q: its link would open another object", r.Bucket, c.Bucket))
	}
	if err := checkKey(r.Key); err != nil {
		return "", worker.Permanent(fmt.Errorf("cloudfront: %w", err))
	}
	p := r.Key
	if op := strings.TrimPrefix(c.OriginPath, "/"); op != "" {
		rest, ok := strings.CutPrefix(p, op+"/")
		if !ok {
			return "", worker.PermanentCode(worker.CodeBucketNotServed, fmt.Errorf("cloudfront: key %q is outside the origin path %q, so the distribution does not serve it", r.Key, c.OriginPath))
		}
		if err := checkKey(rest); err != nil {
			return "", worker.Permanent(fmt.Errorf("cloudfront: below the origin path: %w", err))
		}
		p = rest
	}
	// CloudFront sends the origin the whole viewer path, Domain's path
	// included, after the origin path: with Domain
	// "https://files.example.com/reports" a link to key "2026/q3.pdf"
	// would fetch "reports/2026/q3.pdf". So a key is served only under
	// Domain's path, and that part is not repeated in the link.
	if dp := domainPath(c.Domain); dp != "" {
		rest, ok := strings.CutPrefix(p, dp+"/")
		if !ok {
			return "", worker.PermanentCode(worker.CodeBucketNotServed, fmt.Errorf("cloudfront: key %q is outside the path %q of the distribution's domain, which CloudFront would pass on to the origin, so its link would open another object", r.Key, "/"+dp))
		}
		if err := checkKey(rest); err != nil {
			return "", worker.Permanent(fmt.Errorf("cloudfront: below the domain's path: %w", err))
		}
		p = rest
	}
	return p, nil
}

// ServedPrefix is the key prefix a distribution with this domain and
// origin path can serve: the origin path, then the domain's path, each
// followed by "/" ("" when there is neither). CloudFront puts the origin
// path in front of the viewer's path, which begins with the domain's.
func ServedPrefix(domain, originPath string) string {
	var p string
	if op := strings.Trim(originPath, "/"); op != "" {
		p = op + "/"
	}
	if dp := domainPath(domain); dp != "" {
		p += dp + "/"
	}
	return p
}

// domainPath is the path of a Domain such as
// "https://files.example.com/reports", without its slashes: "reports".
func domainPath(domain string) string {
	u, err := url.Parse(domain)
	if err != nil {
		return ""
	}
	return strings.Trim(u.Path, "/")
}

// Sign returns a link to r.Key that expires after the TTL for r.Type,
// truncated to whole seconds, or sooner if MaxTTL or the end of 32-bit
// epoch seconds (MaxExpires) caps it; Link.Expires is the true expiry.
// With Expiries set, the expiry is recorded before Sign returns.
//
// Errors caused by the report itself (a bucket or key the distribution
// does not serve, an empty key, a key with "." or ".." segments, a URL
// over MaxURLLength) are marked [worker.Permanent].
func (c *CloudFront) Sign(ctx context.Context, r event.Report, now time.Time) (worker.Link, error) {
	if err := ctx.Err(); err != nil {
		return worker.Link{}, err
	}
	base, hash, err := c.check()
	if err != nil {
		return worker.Link{}, err
	}
	p, err := c.path(r)
	if err != nil {
		return worker.Link{}, err
	}
	expires, err := c.expiry(r.Type, now)
	if err != nil {
		return worker.Link{}, err
	}
	resource, err := withToken(base+"/"+EscapeKey(p), r.Token)
	if err != nil {
		return worker.Link{}, err
	}
	signed, err := signChecked(resource, Key{ID: c.KeyID, Signer: c.Key}, hash, Policy{Custom: c.CustomPolicy, Expires: expires})
	if err != nil {
		return worker.Link{}, signError(err)
	}
	if err := c.recorder.ensure(ctx, c.Expiries, c.KeyID, expires); err != nil {
		return worker.Link{}, fmt.Errorf("cloudfront: %w", err)
	}
	return worker.Link{URL: signed, Expires: expires}, nil
}

// SignAll returns one link per report, in order. With
// OneSignaturePerEmail, links that can share a signature do; see the
// field. Otherwise it is Sign for each report.
func (c *CloudFront) SignAll(ctx context.Context, rs []event.Report, now time.Time) ([]worker.Link, error) {
	if c.OneSignaturePerEmail && len(rs) > 1 {
		links, err := c.signShared(ctx, rs, now)
		if !errors.Is(err, errNoShare) {
			return links, err
		}
	}
	links := make([]worker.Link, len(rs))
	for i, r := range rs {
		l, err := c.Sign(ctx, r, now)
		if err != nil {
			return nil, fmt.Errorf("s3://%s/%s: %w", r.Bucket, r.Key, err)
		}
		links[i] = l
	}
	return links, nil
}

// withToken returns rawURL with a traced link's token as its query
// parameter linktoken.Param, or rawURL when token is "". The token is
// added before signing: a canned policy, and a custom one whose
// Resource is the link, cover the whole URL, query included.
func withToken(rawURL, token string) (string, error) {
	if token == "" {
		return rawURL, nil
	}
	if err := linktoken.Check(token); err != nil {
		return "", fmt.Errorf("cloudfront: %w", err)
	}
	return rawURL + "?" + linktoken.Param + "=" + token, nil
}

// errNoShare means the reports cannot share one signature.
var errNoShare = errors.New("links cannot share a signature")

// signShared signs rs with one custom policy over their common
// directory, or returns errNoShare.
func (c *CloudFront) signShared(ctx context.Context, rs []event.Report, now time.Time) ([]worker.Link, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	base, hash, err := c.check()
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(rs)) // URL paths, unescaped
	for i, r := range rs {
		p, err := c.path(r)
		if err != nil {
			return nil, fmt.Errorf("s3://%s/%s: %w", r.Bucket, r.Key, err)
		}
		keys[i] = p
	}
	prefix, why := sharedPrefix(keys)
	if why == "" && slices.ContainsFunc(rs, func(r event.Report) bool { return r.Token != "" }) {
		// A wildcard Resource matches any query, so it would leave the
		// token out of what the signature covers: anyone could change it.
		why = "traced links carry a token that a shared signature would not cover"
	}
	if why == "" && strings.ContainsAny(base, "*?") {
		why = "the domain has a wildcard character"
	}
	var expires time.Time
	for i, r := range rs {
		e, err := c.expiry(r.Type, now)
		if err != nil {
			return nil, err
		}
		if i > 0 && !e.Equal(expires) {
			why = "the links expire at different times"
		}
		expires = e
	}
	if why != "" {
		c.logger().Debug("signing links one by one", "reason", why, "links", len(rs))
		return nil, errNoShare
	}

	urls := make([]string, len(rs))
	for i, k := range keys {
		urls[i] = base + "/" + EscapeKey(k)
	}
	p := Policy{Custom: true, Resource: base + "/" + EscapeKey(prefix) + "*", Expires: expires}
	epoch, err := checkExpiry(expires)
	if err != nil {
		return nil, fmt.Errorf("cloudfront: %w", err)
	}
	policy, err := appendCustomPolicy(nil, urls[0], epoch, p)
	if err != nil {
		return nil, fmt.Errorf("cloudfront: %w", err)
	}
	sig, err := signPolicy(c.Key, policy, hash)
	if err != nil {
		return nil, fmt.Errorf("cloudfront: %w", err)
	}
	links := make([]worker.Link, len(rs))
	for i, u := range urls {
		if !wildcardMatch(p.Resource, u) {
			// Cannot happen: each URL starts with the escaped prefix,
			// as escaping works segment by segment.
			return nil, fmt.Errorf("cloudfront: shared resource %q does not cover %q", p.Resource, u)
		}
		signed, err := assemble(u, epoch, policy, sig, c.KeyID, hash)
		if err != nil {
			return nil, fmt.Errorf("s3://%s/%s: %w", rs[i].Bucket, rs[i].Key, signError(err))
		}
		links[i] = worker.Link{URL: signed, Expires: expires}
	}
	if err := c.recorder.ensure(ctx, c.Expiries, c.KeyID, expires); err != nil {
		return nil, fmt.Errorf("cloudfront: %w", err)
	}
	return links, nil
}

// sharedPrefix returns the directory that every key is under, ending in
// "/", or why the keys cannot share a signature.
//
// A raw "*" or "?" in the directory is refused: EscapeKey encodes them,
// but whether CloudFront compares the policy's Resource with the URL
// before or after decoding is not something to bet the scope of a link
// on, and decoded they would be wildcards that widen it.
func sharedPrefix(keys []string) (string, string) {
	p := keys[0]
	for _, k := range keys[1:] {
		n := 0
		for n < len(p) && n < len(k) && p[n] == k[n] {
			n++
		}
		p = p[:n]
	}
	p = p[:strings.LastIndexByte(p, '/')+1]
	switch {
	case strings.Trim(p, "/") == "":
		return "", "the reports share no directory"
	case strings.ContainsAny(p, "*?"):
		return "", "their directory has a wildcard character"
	}
	return p, ""
}

// expiry returns when a link to a report of type typ made at now
// expires, logging why once if that is sooner than asked for.
func (c *CloudFront) expiry(typ string, now time.Time) (time.Time, error) {
	want, ttl := ttlFor(c.TTL, c.TTLByType, c.MaxTTL, typ)
	if want < time.Second {
		return time.Time{}, fmt.Errorf("cloudfront: ttl %v for report type %q is too short, want at least 1s", want, typ)
	}
	if ttl < want {
		c.warned.warn(c.Logger, capReasonMaxTTL+"\x00"+typ, capReasonMaxTTL, typ, want, ttl)
	}
	expires := time.Unix(now.Add(ttl).Unix(), 0).UTC()
	if !expires.Before(MaxExpires) {
		expires = MaxExpires.Add(-time.Second)
		if !expires.After(now) {
			return time.Time{}, fmt.Errorf("cloudfront: it is too late to sign: CloudFront expiries end at %s", MaxExpires.Format(time.RFC3339))
		}
		c.warned.warn(c.Logger, capReason2038, capReason2038, typ, want, expires.Sub(now))
	}
	return expires, nil
}

func (c *CloudFront) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.Default()
	}
	return c.Logger
}

// signError adds context to a signing error, marking a URL that is too
// long as permanent: it is the report's key that makes it so.
func signError(err error) error {
	var tooLong errURLTooLong
	if errors.As(err, &tooLong) {
		return worker.Permanent(fmt.Errorf("cloudfront: %w", err))
	}
	return fmt.Errorf("cloudfront: %w", err)
}
