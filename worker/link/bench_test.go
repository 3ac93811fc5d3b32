package link

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/worker/event"
)

// The benchmarks put the cost of making one link (TTL, escape, policy,
// hash, sign, encode, assemble) next to the bare signature it is built
// on, in the same run: docs/benchmarks.md takes the overhead from them.
//
//	go test -run '^$' -bench . -benchmem ./worker/link/

var benchReport = event.Report{Bucket: "private-reports", Key: "reports/acme/2026/Q1 results+notes.pdf", Type: "invoice"}

type benchCase struct {
	name   string
	id     string
	key    crypto.Signer
	hash   string
	custom bool
}

func benchCases(b *testing.B) []benchCase {
	k, _ := keys(b)
	e, _ := ecKeys(b)
	return []benchCase{
		{"RSA-SHA1", testKeyID, k, HashSHA1, false},
		{"RSA-SHA256", testKeyID, k, HashSHA256, false},
		{"ECDSA-SHA256", testECKeyID, e, HashSHA256, false},
		{"ECDSA-SHA256-custom", testECKeyID, e, HashSHA256, true},
	}
}

// BenchmarkLink makes one link with CloudFront.Sign.
func BenchmarkLink(b *testing.B) {
	ctx := context.Background()
	for _, c := range benchCases(b) {
		b.Run(c.name, func(b *testing.B) {
			cf := &CloudFront{Domain: "https://d111111abcdef8.cloudfront.net", KeyID: c.id, Key: c.key, Hash: c.hash,
				CustomPolicy: c.custom, TTL: 72 * time.Hour, TTLByType: map[string]time.Duration{"invoice": 720 * time.Hour}}
			for b.Loop() {
				if _, err := cf.Sign(ctx, benchReport, testNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// stubSigner returns a fixed signature of a real one's length, so that
// BenchmarkLinkAssembly measures everything but the signature.
type stubSigner struct {
	crypto.Signer
	sig []byte
}

func (s stubSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return s.sig, nil
}

// BenchmarkLinkAssembly is BenchmarkLink without the signature: TTL,
// escaping, policy, hash, base64 and assembly. It is the overhead that
// BenchmarkLink adds to BenchmarkRawSignature, measured directly rather
// than as the difference of two noisy figures.
func BenchmarkLinkAssembly(b *testing.B) {
	ctx := context.Background()
	for _, c := range benchCases(b) {
		sig, err := c.key.Sign(rand.Reader, make([]byte, 32), crypto.SHA256)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			cf := &CloudFront{Domain: "https://d111111abcdef8.cloudfront.net", KeyID: c.id, Key: stubSigner{c.key, sig}, Hash: c.hash,
				CustomPolicy: c.custom, TTL: 72 * time.Hour, TTLByType: map[string]time.Duration{"invoice": 720 * time.Hour}}
			for b.Loop() {
				if _, err := cf.Sign(ctx, benchReport, testNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRawSignature is the bare signature of a digest computed
// beforehand: rsa.SignPKCS1v15 and ecdsa.SignASN1.
func BenchmarkRawSignature(b *testing.B) {
	k, _ := keys(b)
	e, _ := ecKeys(b)
	policy := []byte(cannedPolicy("https://d111111abcdef8.cloudfront.net/"+EscapeKey(benchReport.Key), testNow.Unix()))
	d1 := sha1.Sum(policy)
	d256 := sha256.Sum256(policy)
	b.Run("RSA-SHA1", func(b *testing.B) {
		for b.Loop() {
			if _, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA1, d1[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("RSA-SHA256", func(b *testing.B) {
		for b.Loop() {
			if _, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d256[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ECDSA-SHA256", func(b *testing.B) {
		for b.Loop() {
			if _, err := ecdsa.SignASN1(rand.Reader, e, d256[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSignAll signs the links of one email with ten reports in one
// directory, one signature per link or one for the email.
func BenchmarkSignAll(b *testing.B) {
	k, _ := keys(b)
	rs := make([]event.Report, 10)
	for i := range rs {
		rs[i] = event.Report{Bucket: "private-reports", Key: fmt.Sprintf("reports/acme/2026/report %d.pdf", i)}
	}
	ctx := context.Background()
	for _, shared := range []bool{false, true} {
		name := "RSA-SHA1-10-links-separate"
		if shared {
			name = "RSA-SHA1-10-links-shared"
		}
		b.Run(name, func(b *testing.B) {
			cf := &CloudFront{Domain: "https://d111111abcdef8.cloudfront.net", KeyID: testKeyID, Key: k,
				TTL: 72 * time.Hour, OneSignaturePerEmail: shared}
			for b.Loop() {
				if _, err := cf.SignAll(ctx, rs, testNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
