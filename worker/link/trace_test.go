package link

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/linktoken"
)

// TestTracedLinkSignatureCoversToken signs traced links with each
// policy the signer uses and checks, with the offline verifier, that
// the link opens as sent and that changing, dropping or adding a token
// breaks it: the token is part of what was signed.
func TestTracedLinkSignatureCoversToken(t *testing.T) {
	k, _ := keys(t)
	e, _ := ecKeys(t)
	const tok = "PDFpUcE6Z3s3oEQtnvEvLQ"
	const other = "AAAAAAAAAAAAAAAAAAAAAA"
	for _, tt := range []struct {
		name   string
		cf     *CloudFront
		custom bool // the link carries its policy (Policy=)
	}{
		{"canned rsa sha1", &CloudFront{Domain: "https://d111.cloudfront.net", KeyID: testKeyID, Key: k, TTL: time.Hour}, false},
		{"custom rsa sha256", &CloudFront{Domain: "https://d111.cloudfront.net", KeyID: testKeyID, Key: k, TTL: time.Hour, CustomPolicy: true, Hash: HashSHA256}, true},
		{"canned ecdsa", &CloudFront{Domain: "https://d111.cloudfront.net", KeyID: testECKeyID, Key: e, TTL: time.Hour}, false},
		// One signature per email falls back to a signature per link.
		{"one signature per email", &CloudFront{Domain: "https://d111.cloudfront.net", KeyID: testKeyID, Key: k, TTL: time.Hour, OneSignaturePerEmail: true}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rs := []event.Report{{Bucket: "b", Key: "u1/a.pdf", Token: tok}, {Bucket: "b", Key: "u1/b.pdf", Token: tok}}
			links, err := tt.cf.SignAll(context.Background(), rs, testNow)
			if err != nil {
				t.Fatal(err)
			}
			for i, l := range links {
				want := "https://d111.cloudfront.net/" + rs[i].Key + "?" + linktoken.Param + "=" + tok + "&"
				if !strings.HasPrefix(l.URL, want) {
					t.Fatalf("link %s does not start with %s", l.URL, want)
				}
				if _, err := Verify(l.URL, lookup(t), testNow); err != nil {
					t.Fatalf("traced link does not verify: %v\n%s", err, l.URL)
				}
				// A policy in the link is base64: read its Resource, which
				// must be this link, token included, with no wildcard.
				u, err := url.Parse(l.URL)
				if err != nil {
					t.Fatal(err)
				}
				if enc := u.Query().Get("Policy"); (enc != "") != tt.custom {
					t.Fatalf("link has Policy %q, want one: %v", enc, tt.custom)
				} else if enc != "" {
					b, err := decodeBase64(enc)
					if err != nil {
						t.Fatalf("Policy: %v", err)
					}
					p, err := parseCustomPolicy(b)
					if err != nil {
						t.Fatalf("Policy %s: %v", b, err)
					}
					if want := strings.TrimSuffix(want, "&"); p.resource != want {
						t.Errorf("policy Resource %q, want the link itself %q", p.resource, want)
					}
				}
				for name, bad := range map[string]string{
					"changed": strings.Replace(l.URL, tok, other, 1),
					"dropped": strings.Replace(l.URL, "?"+linktoken.Param+"="+tok+"&", "?", 1),
					"added":   strings.Replace(l.URL, "?", "?"+linktoken.Param+"="+other+"&", 1),
				} {
					if _, err := Verify(bad, lookup(t), testNow); err == nil {
						t.Errorf("token %s: link still verifies: %s", name, bad)
					}
				}
			}
		})
	}
}

func TestTracedLinkRefusesBadToken(t *testing.T) {
	k, _ := keys(t)
	cf := &CloudFront{Domain: "https://d111.cloudfront.net", KeyID: testKeyID, Key: k, TTL: time.Hour}
	_, err := cf.Sign(context.Background(), event.Report{Bucket: "b", Key: "a.pdf", Token: "a&Expires=1"}, testNow)
	if err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("err = %v, want a token error", err)
	}
	p := &S3Presigner{TTL: time.Hour}
	if _, err := p.Sign(context.Background(), event.Report{Bucket: "b", Key: "a.pdf", Token: "PDFpUcE6Z3s3oEQtnvEvLQ"}, testNow); err == nil || !strings.Contains(err.Error(), "need CloudFront") {
		t.Errorf("S3 presigner: err = %v, want traced links refused", err)
	}
}
