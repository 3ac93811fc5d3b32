package link

import (
	"context"
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
		name string
		cf   *CloudFront
	}{
		{"canned rsa sha1", &CloudFront{Domain: "https://d111.cloudfront.net", KeyID: testKeyID, Key: k, TTL: time.Hour}},
		{"custom rsa sha256", &CloudFront{Domain: "https://d111.cloudfront.net", KeyID: testKeyID, Key: k, TTL: time.Hour, CustomPolicy: true, Hash: HashSHA256}},
		{"canned ecdsa", &CloudFront{Domain: "https://d111.cloudfront.net", KeyID: testECKeyID, Key: e, TTL: time.Hour}},
		// One signature per email falls back to a signature per link.
		{"one signature per email", &CloudFront{Domain: "https://d111.cloudfront.net", KeyID: testKeyID, Key: k, TTL: time.Hour, OneSignaturePerEmail: true}},
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
				if strings.Contains(l.URL, "Policy=") && strings.Contains(l.URL, "*") {
					t.Errorf("a wildcard policy signed a traced link: %s", l.URL)
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
