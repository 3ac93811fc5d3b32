package link

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
)

// checkSafeURL fails if u has a byte that a mail client, browser or S3
// could read differently from how it was signed: a raw "+", "#", space,
// control byte or non-ASCII anywhere, or a "?" other than the one that
// starts the query.
func checkSafeURL(t *testing.T, u string) {
	t.Helper()
	for i := 0; i < len(u); i++ {
		if c := u[i]; c <= ' ' || c >= 0x7f || c == '+' || c == '#' {
			t.Fatalf("URL has raw %q at %d: %s", c, i, u)
		}
	}
	if n := strings.Count(u, "?"); n != 1 {
		t.Fatalf("URL has %d '?', want exactly the one before the query: %s", n, u)
	}
}

// FuzzSignedURL checks, for any S3 key, every kind of link: the signed
// URL is safe to put in an email as it is, its path decoded once is the
// key, and it verifies. Keys that cannot be linked (a "." or ".."
// segment, an empty key, a URL over 8 KiB) must fail permanently.
//
// The seeds run with every "go test"; "go test -fuzz FuzzSignedURL
// ./worker/link/" explores further.
func FuzzSignedURL(f *testing.F) {
	for _, k := range nastyKeys {
		f.Add(k)
	}
	for _, k := range []string{"", ".", "..", "a/./b", "a/../b", "%", "%zz", "+", " ", "?", "#", "*", "a/b/", "//", "\u2028", "\ufeffbom", strings.Repeat("x/", 3000)} {
		f.Add(k)
	}
	e, _ := ecKeys(f)
	k, _ := keys(f)
	const domain = "https://d111111abcdef8.cloudfront.net/base%20dir"
	signers := []*CloudFront{
		{Domain: domain, KeyID: testECKeyID, Key: e, TTL: time.Hour},
		{Domain: domain, KeyID: testECKeyID, Key: e, Hash: HashSHA256, CustomPolicy: true, TTL: time.Hour},
	}
	creds := credsFunc(time.Time{})
	presigner := &S3Presigner{Client: newPresignClient(creds), Credentials: creds, TTL: time.Hour}
	batch := &CloudFront{Domain: domain, KeyID: testKeyID, Key: k, TTL: time.Hour, OneSignaturePerEmail: true}
	ctx := context.Background()

	f.Fuzz(func(t *testing.T, key string) {
		// The domain's path is passed on to the origin: keys live under it.
		r := event.Report{Bucket: "b", Key: "base dir/" + key}
		unlinkable := checkKey(key) != nil
		for _, cf := range signers {
			l, err := cf.Sign(ctx, r, testNow)
			var tooLong errURLTooLong
			switch {
			case unlinkable || errors.As(err, &tooLong):
				if err == nil || !worker.IsPermanent(err) {
					t.Fatalf("Sign(%q) = %v, want a permanent error", key, err)
				}
				continue
			case err != nil:
				t.Fatalf("Sign(%q): %v", key, err)
			}
			checkSafeURL(t, l.URL)
			path, _, _ := strings.Cut(l.URL, "?")
			escaped, ok := strings.CutPrefix(path, domain+"/")
			if !ok {
				t.Fatalf("URL %s is not under %s", l.URL, domain)
			}
			if got, err := url.PathUnescape(escaped); err != nil || got != key {
				t.Fatalf("path %q decodes to %q (%v), want %q", escaped, got, err, key)
			}
			v, err := Verify(l.URL, lookup(t), testNow)
			if err != nil {
				t.Fatalf("Verify(Sign(%q)): %v", key, err)
			}
			if v.Resource != path {
				t.Fatalf("signed resource %q, want %q", v.Resource, path)
			}
		}

		l, err := presigner.Sign(ctx, event.Report{Bucket: "b", Key: key}, testNow)
		if unlinkable {
			if err == nil || !worker.IsPermanent(err) {
				t.Fatalf("presign %q = %v, want a permanent error", key, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("presign %q: %v", key, err)
		}
		checkSafeURL(t, l.URL)
		path, _, _ := strings.Cut(l.URL, "?")
		escaped, ok := strings.CutPrefix(path, "http://127.0.0.1:1/b/")
		if !ok {
			t.Fatalf("presigned URL %s is not in bucket b", l.URL)
		}
		if got, err := url.PathUnescape(escaped); err != nil || got != key {
			t.Fatalf("presigned path %q decodes to %q (%v), want %q", escaped, got, err, key)
		}

		// Two keys in one directory, signed with one shared policy.
		links, err := batch.SignAll(ctx, []event.Report{r, {Bucket: "b", Key: r.Key + "-2"}}, testNow)
		if err != nil {
			var tooLong errURLTooLong
			if !errors.As(err, &tooLong) || !worker.IsPermanent(err) {
				t.Fatalf("SignAll(%q): %v", key, err)
			}
			return
		}
		for i, l := range links {
			checkSafeURL(t, l.URL)
			if _, err := Verify(l.URL, lookup(t), testNow); err != nil {
				t.Fatalf("SignAll(%q) link %d: %v", key, i, err)
			}
		}
	})
}
