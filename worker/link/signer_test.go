package link

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
)

const testDomain = "https://d111111abcdef8.cloudfront.net"

// countingSigner counts signatures.
type countingSigner struct {
	crypto.Signer
	n atomic.Int32
}

func (c *countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	c.n.Add(1)
	return c.Signer.Sign(r, digest, opts)
}

// memLog is an ExpiryLog in memory that counts writes and can fail.
type memLog struct {
	mu     sync.Mutex
	m      map[string]time.Time
	writes int
	err    error
}

func (l *memLog) Extend(_ context.Context, keyID string, until time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	l.writes++
	if l.m == nil {
		l.m = map[string]time.Time{}
	}
	if until.After(l.m[keyID]) {
		l.m[keyID] = until
	}
	return nil
}

func (l *memLog) Latest(_ context.Context, keyID string) (time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[keyID], nil
}

// TestCloudFrontModes signs through the worker's signer with every key
// type, hash and policy kind, and checks each link with the public key.
func TestCloudFrontModes(t *testing.T) {
	for _, sk := range signingKeys(t) {
		for _, hash := range []string{"", HashSHA1, HashSHA256} {
			for _, custom := range []bool{false, true} {
				name := sk.name + "/" + hash + "/canned"
				if custom {
					name = sk.name + "/" + hash + "/custom"
				}
				t.Run(name, func(t *testing.T) {
					cf := &CloudFront{Domain: testDomain, KeyID: sk.key.ID, Key: sk.key.Signer, Hash: hash, CustomPolicy: custom, TTL: 48 * time.Hour}
					key := "reports/Q1 2026/a+b.pdf"
					l, err := cf.Sign(context.Background(), event.Report{Key: key}, testNow)
					if err != nil {
						t.Fatal(err)
					}
					checkWithPublicKey(t, l.URL, sk.key.Signer.Public())
					v, err := Verify(l.URL, lookup(t), testNow)
					if err != nil {
						t.Fatal(err)
					}
					wantHash, wantPolicy := HashSHA1, PolicyCanned
					if hash == HashSHA256 {
						wantHash = HashSHA256
					}
					if custom {
						wantPolicy = PolicyCustom
					}
					resource := testDomain + "/" + EscapeKey(key)
					want := Verified{KeyID: sk.key.ID, Expires: time.Unix(testNow.Add(48*time.Hour).Unix(), 0).UTC(), Policy: wantPolicy, Hash: wantHash, Resource: resource}
					if v != want || !l.Expires.Equal(v.Expires) {
						t.Fatalf("Verify = %+v, Link.Expires %v\nwant %+v", v, l.Expires, want)
					}
				})
			}
		}
	}
}

func TestCloudFrontTTL(t *testing.T) {
	k, _ := keys(t)
	var logs bytes.Buffer
	cf := &CloudFront{
		Domain: testDomain, KeyID: testKeyID, Key: k,
		TTL:       24 * time.Hour,
		TTLByType: map[string]time.Duration{"invoice": 720 * time.Hour, "archive": 2000 * time.Hour, "": time.Minute},
		MaxTTL:    1000 * time.Hour,
		Logger:    slog.New(slog.NewTextHandler(&logs, nil)),
	}
	signedAt := time.Unix(testNow.Unix(), 0).UTC()
	tests := []struct {
		typ  string
		want time.Duration
	}{
		{"", 24 * time.Hour}, // an empty type never takes a TTLByType entry
		{"statement", 24 * time.Hour},
		{"invoice", 720 * time.Hour},
		{"archive", 1000 * time.Hour}, // capped at MaxTTL
	}
	for _, tt := range tests {
		t.Run("type "+tt.typ, func(t *testing.T) {
			for range 3 { // the warning is logged once
				l, err := cf.Sign(context.Background(), event.Report{Key: "a.pdf", Type: tt.typ}, testNow)
				if err != nil {
					t.Fatal(err)
				}
				if want := signedAt.Add(tt.want); !l.Expires.Equal(want) {
					t.Fatalf("Expires = %v, want %v", l.Expires, want)
				}
				v, err := Verify(l.URL, lookup(t), testNow)
				if err != nil || !v.Expires.Equal(l.Expires) {
					t.Fatalf("Verify = %+v, %v; the URL must carry Link.Expires", v, err)
				}
			}
		})
	}
	out := logs.String()
	if n := strings.Count(out, "level=WARN"); n != 1 {
		t.Fatalf("%d warnings, want 1 (archive capped):\n%s", n, out)
	}
	for _, want := range []string{capReasonMaxTTL, "report_type=archive", "ttl=2000h0m0s", "capped_to=1000h0m0s"} {
		if !strings.Contains(out, want) {
			t.Errorf("warning lacks %q:\n%s", want, out)
		}
	}

	t.Run("2038", func(t *testing.T) {
		var logs bytes.Buffer
		cf := &CloudFront{Domain: testDomain, KeyID: testKeyID, Key: k, TTL: 30 * 24 * time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
		now := MaxExpires.Add(-10 * 24 * time.Hour)
		for range 2 {
			l, err := cf.Sign(context.Background(), event.Report{Key: "a.pdf"}, now)
			if err != nil {
				t.Fatal(err)
			}
			if want := MaxExpires.Add(-time.Second); !l.Expires.Equal(want) {
				t.Fatalf("Expires = %v, want %v", l.Expires, want)
			}
			if !strings.Contains(l.URL, "Expires=2147483646&") {
				t.Fatalf("URL does not carry the capped expiry: %s", l.URL)
			}
			if _, err := Verify(l.URL, lookup(t), now); err != nil {
				t.Fatal(err)
			}
		}
		if out := logs.String(); strings.Count(out, "level=WARN") != 1 || !strings.Contains(out, "2038-01-19") {
			t.Fatalf("want one warning naming 2038:\n%s", out)
		}
	})
}

func TestCloudFrontRecordsExpiry(t *testing.T) {
	k, _ := keys(t)
	log := &memLog{}
	cf := &CloudFront{Domain: testDomain, KeyID: testKeyID, Key: k, TTL: 24 * time.Hour,
		TTLByType: map[string]time.Duration{"invoice": 720 * time.Hour}, Expiries: log}
	ctx := context.Background()
	t0 := time.Unix(testNow.Unix(), 0).UTC()
	steps := []struct {
		name       string
		at         time.Time
		typ        string
		wantWrites int
		wantMark   time.Time
	}{
		{"first link writes expiry+RecordAhead", t0, "", 1, t0.Add(24*time.Hour + RecordAhead)},
		{"covered by the mark: no write", t0.Add(30 * time.Minute), "", 1, t0.Add(24*time.Hour + RecordAhead)},
		{"exactly at the mark: no write", t0.Add(RecordAhead), "", 1, t0.Add(24*time.Hour + RecordAhead)},
		{"past the mark: write", t0.Add(RecordAhead + time.Second), "", 2, t0.Add(25*time.Hour + time.Second + RecordAhead)},
		{"longer ttl: write", t0.Add(2 * time.Hour), "invoice", 3, t0.Add(722*time.Hour + RecordAhead)},
		{"shorter ttl later: no write", t0.Add(3 * time.Hour), "", 3, t0.Add(722*time.Hour + RecordAhead)},
	}
	for _, s := range steps {
		l, err := cf.Sign(ctx, event.Report{Key: "a.pdf", Type: s.typ}, s.at)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got, _ := log.Latest(ctx, testKeyID)
		if log.writes != s.wantWrites || !got.Equal(s.wantMark) {
			t.Fatalf("%s: %d writes, mark %v; want %d, %v", s.name, log.writes, got, s.wantWrites, s.wantMark)
		}
		if got.Before(l.Expires) {
			t.Fatalf("%s: the record %v does not cover the link's expiry %v", s.name, got, l.Expires)
		}
	}

	t.Run("no link when the record cannot be written", func(t *testing.T) {
		log := &memLog{err: errors.New("s3 unavailable")}
		cf := &CloudFront{Domain: testDomain, KeyID: testKeyID, Key: k, TTL: time.Hour, Expiries: log}
		l, err := cf.Sign(ctx, event.Report{Key: "a.pdf"}, testNow)
		if err == nil || !strings.Contains(err.Error(), "record expiry of key "+testKeyID+": s3 unavailable") || l.URL != "" {
			t.Fatalf("Sign = %+v, %v; want no link and the record error", l, err)
		}
		if worker.IsPermanent(err) {
			t.Fatal("a record failure must be transient")
		}
		log.err = nil
		if _, err := cf.Sign(ctx, event.Report{Key: "a.pdf"}, testNow); err != nil || log.writes != 1 {
			t.Fatalf("after recovery: %v, %d writes", err, log.writes)
		}
	})

	t.Run("concurrent signers", func(t *testing.T) {
		log := &memLog{}
		cf := &CloudFront{Domain: testDomain, KeyID: testKeyID, Key: k, TTL: time.Hour, Expiries: log}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var latest time.Time
		for i := range 16 {
			wg.Go(func() {
				l, err := cf.Sign(ctx, event.Report{Key: "a.pdf"}, testNow.Add(time.Duration(i)*10*time.Minute))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if l.Expires.After(latest) {
					latest = l.Expires
				}
				mu.Unlock()
			})
		}
		wg.Wait()
		if got, _ := log.Latest(ctx, testKeyID); got.Before(latest) {
			t.Fatalf("record %v is before the latest link's expiry %v", got, latest)
		}
	})
}

func TestSignAll(t *testing.T) {
	k, _ := keys(t)
	e, _ := ecKeys(t)
	ctx := context.Background()
	shared := []event.Report{
		{Bucket: "b", Key: "acme/2026/Q1 report.pdf"},
		{Bucket: "b", Key: "acme/2026/sub/b+c.pdf"},
		{Bucket: "b", Key: "acme/2026/日本.csv"},
	}

	t.Run("off: one signature per link", func(t *testing.T) {
		cs := &countingSigner{Signer: k}
		cf := &CloudFront{Domain: testDomain, KeyID: testKeyID, Key: cs, TTL: time.Hour}
		links, err := cf.SignAll(ctx, shared, testNow)
		if err != nil {
			t.Fatal(err)
		}
		if n := cs.n.Load(); n != 3 {
			t.Fatalf("%d signatures, want 3", n)
		}
		for i, l := range links {
			v, err := Verify(l.URL, lookup(t), testNow)
			if err != nil || v.Policy != PolicyCanned || v.Resource != testDomain+"/"+EscapeKey(shared[i].Key) {
				t.Fatalf("link %d: %+v, %v", i, v, err)
			}
		}
	})

	for _, sk := range []struct {
		name, id string
		key      crypto.Signer
		hash     string
	}{{"RSA-SHA1", testKeyID, k, HashSHA1}, {"ECDSA-SHA256", testECKeyID, e, HashSHA256}} {
		t.Run("on: one signature for the email/"+sk.name, func(t *testing.T) {
			cs := &countingSigner{Signer: sk.key}
			log := &memLog{}
			cf := &CloudFront{Domain: testDomain + "/", KeyID: sk.id, Key: cs, Hash: sk.hash, TTL: time.Hour,
				OneSignaturePerEmail: true, Expiries: log}
			links, err := cf.SignAll(ctx, shared, testNow)
			if err != nil {
				t.Fatal(err)
			}
			if n := cs.n.Load(); n != 1 {
				t.Fatalf("%d signatures, want 1", n)
			}
			if log.writes != 1 {
				t.Fatalf("%d expiry records, want 1", log.writes)
			}
			wantResource := testDomain + "/acme/2026/*"
			var sig string
			for i, l := range links {
				_, q, _ := strings.Cut(l.URL, "?")
				s := signedParam(t, l.URL, "Signature")
				if i > 0 && s != sig {
					t.Fatalf("link %d has another signature", i)
				}
				sig = s
				if !strings.HasPrefix(q, "Policy=") {
					t.Fatalf("link %d is not a custom-policy URL: %s", i, l.URL)
				}
				policy := checkWithPublicKey(t, l.URL, sk.key.Public())
				checkCompactJSON(t, policy)
				v, err := Verify(l.URL, lookup(t), testNow)
				if err != nil {
					t.Fatalf("link %d: %v", i, err)
				}
				if v.Resource != wantResource || v.Policy != PolicyCustom || v.Hash != sk.hash || !v.Expires.Equal(l.Expires) {
					t.Fatalf("link %d: %+v", i, v)
				}
				u, err := url.Parse(l.URL)
				if err != nil || u.Path != "/"+shared[i].Key {
					t.Fatalf("link %d path %q (%v), want %q", i, u.Path, err, "/"+shared[i].Key)
				}
			}
			// The trade-off: the link grants the whole directory.
			sibling := strings.Replace(links[0].URL, EscapeKey("Q1 report.pdf"), "someone-elses.pdf", 1)
			if _, err := Verify(sibling, lookup(t), testNow); err != nil {
				t.Fatalf("a sibling under the prefix should verify: %v", err)
			}
			outside := strings.Replace(links[0].URL, "/acme/2026/", "/acme/2027/", 1)
			_, err = Verify(outside, lookup(t), testNow)
			checkVerifyError(t, err, ReasonResourceMismatch)
		})
	}

	fallbacks := []struct {
		name    string
		domain  string
		reports []event.Report
	}{
		{"one report", testDomain, shared[:1]},
		{"no shared directory", testDomain, []event.Report{{Key: "a.pdf"}, {Key: "b.pdf"}}},
		{"different top directories", testDomain, []event.Report{{Key: "x/a.pdf"}, {Key: "y/a.pdf"}}},
		{"only a leading slash shared", testDomain, []event.Report{{Key: "/x/a.pdf"}, {Key: "/y/a.pdf"}}},
		{"star in the directory", testDomain, []event.Report{{Key: "re*ports/a.pdf"}, {Key: "re*ports/b.pdf"}}},
		{"question mark in the directory", testDomain, []event.Report{{Key: "q?/a.pdf"}, {Key: "q?/b.pdf"}}},
		{"star in the domain", testDomain + "/a*b", []event.Report{{Key: "a*b/r/a.pdf"}, {Key: "a*b/r/b.pdf"}}},
		{"different expiries", testDomain, []event.Report{{Key: "r/a.pdf", Type: "invoice"}, {Key: "r/b.pdf"}}},
	}
	for _, tt := range fallbacks {
		t.Run("falls back: "+tt.name, func(t *testing.T) {
			cs := &countingSigner{Signer: k}
			cf := &CloudFront{Domain: tt.domain, KeyID: testKeyID, Key: cs, TTL: time.Hour, OneSignaturePerEmail: true,
				TTLByType: map[string]time.Duration{"invoice": 2 * time.Hour}, Logger: slog.New(slog.DiscardHandler)}
			links, err := cf.SignAll(ctx, tt.reports, testNow)
			if err != nil {
				t.Fatal(err)
			}
			if n := int(cs.n.Load()); n != len(tt.reports) || len(links) != len(tt.reports) {
				t.Fatalf("%d signatures and %d links for %d reports", n, len(links), len(tt.reports))
			}
			for i, l := range links {
				v, err := Verify(l.URL, lookup(t), testNow)
				key := tt.reports[i].Key
				if dp := domainPath(tt.domain); dp != "" {
					key = strings.TrimPrefix(key, dp+"/") // passed on by CloudFront, not repeated
				}
				if err != nil || v.Policy != PolicyCanned || v.Resource != strings.TrimSuffix(tt.domain, "/")+"/"+EscapeKey(key) {
					t.Fatalf("link %d: %+v, %v", i, v, err)
				}
			}
		})
	}

	t.Run("a bad key fails the email permanently", func(t *testing.T) {
		for _, on := range []bool{false, true} {
			cf := &CloudFront{Domain: testDomain, KeyID: testKeyID, Key: k, TTL: time.Hour, OneSignaturePerEmail: on}
			_, err := cf.SignAll(ctx, []event.Report{{Bucket: "b", Key: "r/a.pdf"}, {Bucket: "b", Key: "r/../x.pdf"}}, testNow)
			if err == nil || !worker.IsPermanent(err) || !strings.Contains(err.Error(), "s3://b/r/../x.pdf") {
				t.Fatalf("on=%v: error = %v, want a permanent one naming the report", on, err)
			}
		}
	})
}
