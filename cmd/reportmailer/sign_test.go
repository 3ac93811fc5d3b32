package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/worker/link"
)

// cliKey is a key pair written to PEM files for the commands.
type cliKey struct {
	id      string
	signer  crypto.Signer
	private string // path of the private key PEM
	public  string // path of the public key PEM
	pemText string // the private key PEM, to check it never leaks
}

var (
	cliKeysOnce sync.Once
	cliRSA      *rsa.PrivateKey
	cliEC       *ecdsa.PrivateKey
)

// cliKeys writes an RSA-2048 key (PKCS#1) and an ECDSA P-256 key (SEC1)
// in dir, the public halves as <ID>.pem in dir/public.
func cliKeys(t *testing.T, dir string) (rsaKey, ecKey cliKey) {
	t.Helper()
	cliKeysOnce.Do(func() {
		var err error
		if cliRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if cliEC, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
	if err := os.MkdirAll(filepath.Join(dir, "public"), 0o755); err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(cliEC)
	if err != nil {
		t.Fatal(err)
	}
	write := func(id string, s crypto.Signer, block *pem.Block) cliKey {
		k := cliKey{id: id, signer: s, private: filepath.Join(dir, id+"-private.pem"), public: filepath.Join(dir, "public", id+".pem")}
		k.pemText = string(pem.EncodeToMemory(block))
		if err := os.WriteFile(k.private, []byte(k.pemText), 0o600); err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKIXPublicKey(s.Public())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(k.public, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		return k
	}
	rsaKey = write("KRSA000000001", cliRSA, &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(cliRSA)})
	ecKey = write("KECDSA0000001", cliEC, &pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})
	return rsaKey, ecKey
}

// run runs the command in-process and returns its exit code, stdout
// and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: os.Getenv, Environ: os.Environ}
	code := m.Run(context.Background(), args)
	return code, stdout.String(), stderr.String()
}

// trusting looks up k's public key by its id only.
func trusting(keys ...cliKey) link.KeyLookup {
	return func(id string) (crypto.PublicKey, bool) {
		for _, k := range keys {
			if k.id == id {
				return k.signer.Public(), true
			}
		}
		return nil, false
	}
}

func TestSign(t *testing.T) {
	rk, ek := cliKeys(t, t.TempDir())
	const domain = "https://d111111abcdef8.cloudfront.net"
	const object = "reports/Q1 2026/a+b #1?.pdf"
	expires := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	at := expires.Add(-time.Hour)
	exp := expires.Format(time.RFC3339)
	tests := []struct {
		name string
		key  cliKey
		args []string
		ip   string // client address for VerifyFrom
		want link.Verified
	}{
		{"RSA canned SHA-1 from domain and object", rk,
			[]string{"-domain", domain, "-object", object, "-expires", exp},
			"", link.Verified{Expires: expires, Policy: link.PolicyCanned, Hash: link.HashSHA1, Resource: domain + "/" + link.EscapeKey(object)}},
		{"RSA canned SHA-256 from an encoded url", rk,
			[]string{"-url", domain + "/reports/a%20b.pdf?response-content-disposition=attachment", "-expires", exp, "-hash", "sha256"},
			"", link.Verified{Expires: expires, Policy: link.PolicyCanned, Hash: link.HashSHA256, Resource: domain + "/reports/a%20b.pdf?response-content-disposition=attachment"}},
		{"RSA custom exact", rk,
			[]string{"-domain", domain, "-object", object, "-expires", exp, "-policy", "custom"},
			"", link.Verified{Expires: expires, Policy: link.PolicyCustom, Hash: link.HashSHA1, Resource: domain + "/" + link.EscapeKey(object)}},
		{"ECDSA canned SHA-1", ek,
			[]string{"-domain", domain, "-object", object, "-expires", exp},
			"", link.Verified{Expires: expires, Policy: link.PolicyCanned, Hash: link.HashSHA1, Resource: domain + "/" + link.EscapeKey(object)}},
		{"ECDSA custom SHA-256 with every condition", ek,
			[]string{"-domain", domain, "-object", object, "-expires", exp, "-hash", "sha256",
				"-resource", domain + "/reports/*", "-not-before", "2029-12-31T00:00:00Z", "-ip", "192.0.2.0/24"},
			"192.0.2.200", link.Verified{Expires: expires, NotBefore: time.Date(2029, 12, 31, 0, 0, 0, 0, time.UTC), Policy: link.PolicyCustom,
				Hash: link.HashSHA256, Resource: domain + "/reports/*", SourceIP: netip.MustParsePrefix("192.0.2.0/24")}},
		{"custom implied by -ip, bare address", ek,
			[]string{"-domain", domain, "-object", "a.pdf", "-expires", exp, "-ip", "198.51.100.7"},
			"198.51.100.7", link.Verified{Expires: expires, Policy: link.PolicyCustom, Hash: link.HashSHA1, Resource: domain + "/a.pdf", SourceIP: netip.MustParsePrefix("198.51.100.7/32")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"sign", "-private-key", tt.key.private, "-key-id", tt.key.id}, tt.args...)
			code, out, errOut := run(t, args...)
			if code != ExitOK {
				t.Fatalf("exit %d: %s%s", code, out, errOut)
			}
			if errOut != "" {
				t.Errorf("stderr: %q", errOut)
			}
			signed, ok := strings.CutSuffix(out, "\n")
			if !ok || strings.ContainsAny(signed, "\n\r ") {
				t.Fatalf("stdout is not exactly one URL line: %q", out)
			}
			var ip netip.Addr
			if tt.ip != "" {
				ip = netip.MustParseAddr(tt.ip)
			}
			// Only this key's public half is trusted, under its id.
			v, err := link.VerifyFrom(signed, trusting(tt.key), at, ip)
			if err != nil {
				t.Fatalf("the signed URL does not verify with the public key: %v\n%s", err, signed)
			}
			want := tt.want
			want.KeyID = tt.key.id
			if v != want {
				t.Fatalf("Verify = %+v\nwant %+v", v, want)
			}
			if i := slicesIndex(tt.args, "-object"); i >= 0 {
				u, err := url.Parse(signed)
				if err != nil || strings.TrimPrefix(u.Path, "/") != tt.args[i+1] {
					t.Fatalf("path %q (%v) does not decode to the object key %q", u.Path, err, tt.args[i+1])
				}
			}
		})
	}

	t.Run("duration expiry", func(t *testing.T) {
		before := time.Now()
		code, out, errOut := run(t, "sign", "-private-key", rk.private, "-key-id", rk.id, "-domain", domain, "-object", "a.pdf", "-expires", "72h")
		after := time.Now()
		if code != ExitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		v, err := link.Verify(strings.TrimSpace(out), trusting(rk), before)
		if err != nil {
			t.Fatal(err)
		}
		if lo, hi := before.Add(72*time.Hour).Truncate(time.Second), after.Add(72*time.Hour); v.Expires.Before(lo) || v.Expires.After(hi) {
			t.Fatalf("expires %v, want between %v and %v", v.Expires, lo, hi)
		}
	})
}

func slicesIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestSignRefuses(t *testing.T) {
	dir := t.TempDir()
	rk, _ := cliKeys(t, dir)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
	p384File := filepath.Join(dir, "p384.pem")
	os.WriteFile(p384File, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p384DER}), 0o600)

	const domain = "https://d111111abcdef8.cloudfront.net"
	base := []string{"sign", "-private-key", rk.private, "-key-id", rk.id}
	with := func(args ...string) []string { return append(append([]string{}, base...), args...) }
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"raw space in -url", with("-url", "https://d/a b.pdf"), ExitUsage, "-url: character ' ' at offset 11 must be percent-encoded"},
		{"raw plus in -url", with("-url", "https://d/a+b.pdf"), ExitUsage, "-url: raw '+' at offset 11: S3 reads it as a space; write %2B for a plus, %20 for a space"},
		{"fragment in -url", with("-url", "https://d/a#b.pdf"), ExitUsage, "-url: fragment (#)"},
		{"non-ASCII in -url", with("-url", "https://d/é.pdf"), ExitUsage, "-url: byte 0xC3"},
		{"bad escape in -url", with("-url", "https://d/a%zz.pdf"), ExitUsage, "-url: malformed percent-escape"},
		{"reserved param in -url", with("-url", "https://d/a.pdf?Expires=1"), ExitUsage, "query parameter Expires is reserved"},
		{"-url and -object", with("-url", domain+"/a", "-domain", domain, "-object", "a"), ExitUsage, "not both"},
		{"no target", with(), ExitUsage, "give -url, or both -domain and -object"},
		{"-object without -domain", with("-object", "a.pdf"), ExitUsage, "give -url, or both -domain and -object"},
		{"dot-dot object", with("-domain", domain, "-object", "a/../b"), ExitUsage, `".." segment`},
		{"http domain", with("-domain", "http://d111111abcdef8.cloudfront.net", "-object", "a"), ExitUsage, "use https"},
		{"no private key", []string{"sign", "-key-id", "K1", "-domain", domain, "-object", "a"}, ExitUsage, "-private-key is required"},
		{"no key id", []string{"sign", "-private-key", rk.private, "-domain", domain, "-object", "a"}, ExitUsage, "-key-id is required"},
		{"bad key id", with("-key-id", "K&x=1", "-domain", domain, "-object", "a"), ExitUsage, "-key-id: key id"},
		{"bad hash", with("-domain", domain, "-object", "a", "-hash", "md5"), ExitUsage, `-hash "md5" is not sha1 or sha256`},
		{"bad policy", with("-domain", domain, "-object", "a", "-policy", "signed"), ExitUsage, `-policy "signed" is not canned or custom`},
		{"canned with resource", with("-domain", domain, "-object", "a", "-policy", "canned", "-resource", domain+"/*"), ExitUsage, "need -policy custom"},
		{"resource not covering", with("-domain", domain, "-object", "a", "-resource", domain+"/b/*"), ExitUsage, "does not cover the url"},
		{"bad expires", with("-domain", domain, "-object", "a", "-expires", "soon"), ExitUsage, "neither a duration"},
		{"negative expires", with("-domain", domain, "-object", "a", "-expires", "-1h"), ExitUsage, "not in the future"},
		{"past expires", with("-domain", domain, "-object", "a", "-expires", "2020-01-01T00:00:00Z"), ExitUsage, "is in the past"},
		{"2038", with("-domain", domain, "-object", "a", "-expires", "2038-01-19T03:14:07Z"), ExitUsage, "is not before 2038-01-19T03:14:07Z"},
		{"bad not-before", with("-domain", domain, "-object", "a", "-not-before", "tomorrow"), ExitUsage, "-not-before"},
		{"not-before after expiry", with("-domain", domain, "-object", "a", "-expires", "2030-01-01T00:00:00Z", "-not-before", "2031-01-01T00:00:00Z"), ExitUsage, "is not before the expiry"},
		{"IPv6", with("-domain", domain, "-object", "a", "-ip", "2001:db8::1"), ExitUsage, "not IPv4"},
		{"host bits", with("-domain", domain, "-object", "a", "-ip", "192.0.2.1/24"), ExitUsage, "did you mean 192.0.2.0/24?"},
		{"missing key file", []string{"sign", "-private-key", filepath.Join(dir, "nope.pem"), "-key-id", "K1", "-domain", domain, "-object", "a"}, ExitFailure, "no such file"},
		{"P-384 key", []string{"sign", "-private-key", p384File, "-key-id", "K1", "-domain", domain, "-object", "a"}, ExitFailure, "ECDSA P-384 keys are not supported; CloudFront accepts RSA-2048 and ECDSA P-256"},
		{"public key instead", []string{"sign", "-private-key", rk.public, "-key-id", "K1", "-domain", domain, "-object", "a"}, ExitFailure, "no private key in PEM data (found public key)"},
		{"stray argument", with("-domain", domain, "-object", "a", "extra"), ExitUsage, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d and %q", code, errOut, tt.code, tt.want)
			}
			if out != "" {
				t.Errorf("stdout should be empty on failure: %q", out)
			}
			body := strings.Join(strings.Split(rk.pemText, "\n")[1:3], "")
			if strings.Contains(errOut, "PRIVATE KEY") || strings.Contains(errOut, body[:32]) {
				t.Errorf("stderr leaks the private key:\n%s", errOut)
			}
		})
	}
}
