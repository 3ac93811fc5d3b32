package link

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/cloudfront/sign"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
)

// testNow has a fraction of a second, which expiries must drop.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 750_000_000, time.UTC)

func TestCloudFrontSign(t *testing.T) {
	k, _ := keys(t)
	domains := []string{
		"https://d111111abcdef8.cloudfront.net",
		"https://files.example.com/reports/",
		"http://127.0.0.1:8080",
	}
	for _, domain := range domains {
		for _, key := range nastyKeys {
			t.Run(domain+"|"+key, func(t *testing.T) {
				cf := &CloudFront{Domain: domain, KeyID: testKeyID, Key: k, TTL: 72 * time.Hour}
				// CloudFront passes the domain's path on to the origin, so
				// the object's key starts with it.
				full := key
				if dp := domainPath(domain); dp != "" {
					full = dp + "/" + key
				}
				link, err := cf.Sign(context.Background(), event.Report{Bucket: "private-reports", Key: full}, testNow)
				if err != nil {
					t.Fatal(err)
				}
				wantExpires := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
				if !link.Expires.Equal(wantExpires) {
					t.Errorf("Expires = %v, want %v", link.Expires, wantExpires)
				}

				// Only ASCII that needs no further escaping, one "?".
				for i, r := range link.URL {
					if r > 0x7e || r <= ' ' || r == '+' || r == '#' {
						t.Fatalf("URL has %q at %d: %s", r, i, link.URL)
					}
				}
				if n := strings.Count(link.URL, "?"); n != 1 {
					t.Fatalf("URL has %d '?', want 1: %s", n, link.URL)
				}

				base := strings.TrimSuffix(domain, "/")
				resource := base + "/" + EscapeKey(key)
				rawPath, query, _ := strings.Cut(link.URL, "?")
				if rawPath != resource {
					t.Fatalf("URL before query = %q, want %q", rawPath, resource)
				}
				wantQuery := "Expires=" + strconv.FormatInt(wantExpires.Unix(), 10) + "&Signature="
				if !strings.HasPrefix(query, wantQuery) || !strings.HasSuffix(query, "&Key-Pair-Id="+testKeyID) {
					t.Fatalf("query = %q", query)
				}

				// The path decodes once to the key.
				u, err := url.Parse(link.URL)
				if err != nil {
					t.Fatal(err)
				}
				prefix := strings.TrimSuffix(mustParse(t, base).Path, "/")
				escaped := strings.TrimPrefix(u.EscapedPath(), prefix)
				if got, err := url.PathUnescape(escaped); err != nil || got != "/"+key {
					t.Fatalf("path %q decodes to %q (%v), want %q", escaped, got, err, "/"+key)
				}
				if u.Path != prefix+"/"+key {
					t.Fatalf("Path = %q, want %q", u.Path, prefix+"/"+key)
				}
				if u.Fragment != "" {
					t.Fatalf("URL has fragment %q", u.Fragment)
				}

				// The same bytes as the AWS SDK signs.
				sdk, err := sign.NewURLSigner(testKeyID, k).Sign(resource, link.Expires)
				if err != nil {
					t.Fatal(err)
				}
				if link.URL != sdk {
					t.Fatalf("signed URL differs from the SDK's\n got %s\nwant %s", link.URL, sdk)
				}

				// And it verifies.
				v, err := Verify(link.URL, lookup(t), testNow)
				if err != nil {
					t.Fatal(err)
				}
				want := Verified{KeyID: testKeyID, Expires: wantExpires, Policy: PolicyCanned, Hash: HashSHA1, Resource: resource}
				if v != want {
					t.Fatalf("Verify = %+v, want %+v", v, want)
				}
			})
		}
	}
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestSignURLMatchesSDK proves the signature is byte-identical to
// aws-sdk-go-v2's feature/cloudfront/sign for the same inputs.
func TestSignURLMatchesSDK(t *testing.T) {
	k, _ := keys(t)
	tests := []struct {
		name    string
		url     string
		expires time.Time
	}{
		{"plain", "https://d111111abcdef8.cloudfront.net/reports/2026/q1.pdf", testNow.Add(time.Hour)},
		{"escaped", "https://d111111abcdef8.cloudfront.net/reports/Q1%202026/a%2Bb.pdf", testNow.Add(24 * time.Hour)},
		{"own query", "https://d111111abcdef8.cloudfront.net/a.pdf?response-content-disposition=attachment&x=1", testNow},
		{"empty query", "https://d111111abcdef8.cloudfront.net/a.pdf?", testNow},
		{"local http with port", "http://127.0.0.1:8080/a//b", testNow.Add(time.Minute)},
		{"last second", "https://d111111abcdef8.cloudfront.net/a", MaxExpires.Add(-time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SignURL(tt.url, testKeyID, k, tt.expires)
			if err != nil {
				t.Fatal(err)
			}
			want, err := sign.NewURLSigner(testKeyID, k).Sign(tt.url, tt.expires)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("SignURL differs from the SDK\n got %s\nwant %s", got, want)
			}
			if _, err := Verify(got, lookup(t), tt.expires.Add(-time.Minute)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSignURLRejects(t *testing.T) {
	k, _ := keys(t)
	ec, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const u = "https://d111111abcdef8.cloudfront.net/a.pdf"
	tests := []struct {
		name    string
		url     string
		keyID   string
		key     crypto.Signer
		expires time.Time
		wantErr string
	}{
		{"raw space", "https://d.net/a b.pdf", testKeyID, k, testNow, `character ' ' at offset 15 must be percent-encoded`},
		{"raw plus", "https://d.net/a+b.pdf", testKeyID, k, testNow, `raw '+' at offset 15: S3 reads it as a space`},
		{"raw plus in query", "https://d.net/a.pdf?x=a+b", testKeyID, k, testNow, `raw '+' at offset 23`},
		{"fragment", "https://d.net/a#b", testKeyID, k, testNow, "fragment"},
		{"non-ASCII", "https://d.net/日本", testKeyID, k, testNow, "byte 0xE6 at offset 14"},
		{"bad escape", "https://d.net/a%2", testKeyID, k, testNow, "malformed percent-escape"},
		{"quote", `https://d.net/a"b`, testKeyID, k, testNow, "must be percent-encoded"},
		{"reserved param", u + "?Expires=1", testKeyID, k, testNow, "Expires is reserved"},
		{"reserved escaped param", u + "?x=1&Key%2DPair-Id=1", testKeyID, k, testNow, "Key-Pair-Id is reserved"},
		{"ftp", "ftp://d.net/a", testKeyID, k, testNow, `scheme "ftp"`},
		{"no host", "https:///a", testKeyID, k, testNow, "no host"},
		{"2038", u, testKeyID, k, MaxExpires, "out of range"},
		{"1970", u, testKeyID, k, time.Unix(0, 0), "out of range"},
		{"empty key id", u, "", k, testNow, "key id is empty"},
		{"odd key id", u, "K1&x=y", k, testNow, "key id"},
		{"no key", u, testKeyID, nil, testNow, "no private key"},
		{"EC P-384 key", u, testKeyID, ec, testNow, "ECDSA P-384 keys are not supported; CloudFront accepts RSA-2048 and ECDSA P-256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := SignURL(tt.url, tt.keyID, tt.key, tt.expires)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "sign url: ") {
				t.Errorf("error %q lacks context", err)
			}
		})
	}
}

func TestCloudFrontConfig(t *testing.T) {
	k, _ := keys(t)
	ec, _ := ecKeys(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		edit    func(*CloudFront)
		wantErr string // empty: valid
	}{
		{"valid", func(*CloudFront) {}, ""},
		{"ECDSA key", func(c *CloudFront) { c.Key = ec }, ""},
		{"SHA-256", func(c *CloudFront) { c.Hash = HashSHA256 }, ""},
		{"custom policy", func(c *CloudFront) { c.CustomPolicy = true }, ""},
		{"ttl by type and max", func(c *CloudFront) {
			c.TTLByType = map[string]time.Duration{"invoice": 720 * time.Hour}
			c.MaxTTL = 24 * time.Hour
		}, ""},
		{"path prefix", func(c *CloudFront) { c.Domain = "https://cdn.example.com/r/" }, ""},
		{"http localhost", func(c *CloudFront) { c.Domain = "http://localhost:9000" }, ""},
		{"http 127.0.0.1", func(c *CloudFront) { c.Domain = "http://127.0.0.1" }, ""},
		{"http ::1", func(c *CloudFront) { c.Domain = "http://[::1]:8443/edge" }, ""},
		{"empty domain", func(c *CloudFront) { c.Domain = "" }, "cloudfront: domain is empty"},
		{"bare host", func(c *CloudFront) { c.Domain = "d111111abcdef8.cloudfront.net" }, "has no host"},
		{"http elsewhere", func(c *CloudFront) { c.Domain = "http://d111111abcdef8.cloudfront.net" }, "http is allowed only for localhost"},
		{"http lookalike", func(c *CloudFront) { c.Domain = "http://localhost.example.com" }, "http is allowed only for localhost"},
		{"ftp", func(c *CloudFront) { c.Domain = "ftp://d.net" }, "scheme must be https"},
		{"query", func(c *CloudFront) { c.Domain = "https://d.net/?a=1" }, "must not have a query"},
		{"user info", func(c *CloudFront) { c.Domain = "https://u:secret@d.net/a b" }, "domain must not have user info"},
		{"raw space", func(c *CloudFront) { c.Domain = "https://d.net/my reports" }, "must be percent-encoded"},
		{"raw plus", func(c *CloudFront) { c.Domain = "https://d.net/a+b" }, "raw '+'"},
		{"no key id", func(c *CloudFront) { c.KeyID = "" }, "cloudfront: key id is empty"},
		{"no key", func(c *CloudFront) { c.Key = nil }, "cloudfront: no private key"},
		{"small key", func(c *CloudFront) { c.Key = small }, "cloudfront: RSA-1024 keys are not supported"},
		{"P-384 key", func(c *CloudFront) { c.Key = p384 }, "cloudfront: ECDSA P-384 keys are not supported"},
		{"bad hash", func(c *CloudFront) { c.Hash = "md5" }, `cloudfront: hash "md5" is not sha1 or sha256`},
		{"no ttl", func(c *CloudFront) { c.TTL = 0 }, "cloudfront: ttl 0s is too short"},
		{"no ttl for a type", func(c *CloudFront) { c.TTLByType = map[string]time.Duration{"invoice": 0} }, `cloudfront: ttl 0s for report type "invoice" is too short`},
		{"negative max ttl", func(c *CloudFront) { c.MaxTTL = -time.Hour }, "cloudfront: max ttl -1h0m0s is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cf := &CloudFront{Domain: "https://d111111abcdef8.cloudfront.net", KeyID: testKeyID, Key: k, TTL: time.Hour}
			tt.edit(cf)
			err := cf.Validate()
			key := "a.pdf"
			if dp := domainPath(cf.Domain); dp != "" {
				key = dp + "/a.pdf" // the domain's path is part of the key
			}
			_, signErr := cf.Sign(context.Background(), event.Report{Key: key, Type: "invoice"}, testNow)
			if tt.wantErr == "" {
				if err != nil || signErr != nil {
					t.Fatalf("Validate = %v, Sign = %v", err, signErr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want it to contain %q", err, tt.wantErr)
			}
			if signErr == nil || signErr.Error() != err.Error() {
				t.Fatalf("Sign = %v, want %v", signErr, err)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("error %q leaks the password", err)
			}
			if worker.IsPermanent(signErr) {
				t.Fatalf("config error %v is marked permanent", signErr)
			}
		})
	}
}

func TestCloudFrontSignErrors(t *testing.T) {
	k, _ := keys(t)
	newCF := func() *CloudFront {
		return &CloudFront{Domain: "https://d111111abcdef8.cloudfront.net", KeyID: testKeyID, Key: k, TTL: time.Hour}
	}
	tests := []struct {
		name          string
		key           string
		wantErr       string
		wantPermanent bool
	}{
		{"empty key", "", "object key is empty", true},
		{"dot-dot segment", "reports/../secret.pdf", `".." segment`, true},
		{"dot segment", "./a.pdf", `"." segment`, true},
		{"too long", strings.Repeat("€", 900), "over the 8192-byte limit", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newCF().Sign(context.Background(), event.Report{Key: tt.key}, testNow)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
			if got := worker.IsPermanent(err); got != tt.wantPermanent {
				t.Fatalf("IsPermanent = %v, want %v", got, tt.wantPermanent)
			}
		})
	}

	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := newCF().Sign(ctx, event.Report{Key: "a.pdf"}, testNow); !errors.Is(err, context.Canceled) {
			t.Fatalf("error = %v, want context.Canceled", err)
		}
	})
	t.Run("too late to sign", func(t *testing.T) {
		_, err := newCF().Sign(context.Background(), event.Report{Key: "a.pdf"}, MaxExpires.Add(-time.Second))
		if err == nil || !strings.Contains(err.Error(), "too late to sign") {
			t.Fatalf("error = %v", err)
		}
	})
}
