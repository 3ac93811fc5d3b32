package secret_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/reportmailer/reportmailer/worker/secret"
)

// pems returns the same kinds of key a user may paste: RSA in PKCS#1
// and PKCS#8, and ECDSA in SEC1 and PKCS#8.
func pems(t *testing.T) map[string]string {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa8, _ := x509.MarshalPKCS8PrivateKey(rk)
	ec1, _ := x509.MarshalECPrivateKey(ek)
	ec8, _ := x509.MarshalPKCS8PrivateKey(ek)
	enc := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	return map[string]string{
		"rsa pkcs1": enc("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)),
		"rsa pkcs8": enc("PRIVATE KEY", rsa8),
		"ec sec1":   enc("EC PRIVATE KEY", ec1),
		"ec pkcs8":  enc("PRIVATE KEY", ec8),
	}
}

// body returns the base64 lines of a PEM, without its armour.
func body(p string) string {
	lines := strings.Split(strings.TrimSpace(p), "\n")
	return strings.Join(lines[1:len(lines)-1], "\n")
}

// leaks returns the first 16-character run of the PEM body found in s.
func leaks(s, pemText string) string {
	b := strings.ReplaceAll(body(pemText), "\n", "")
	for i := 0; i+16 <= len(b); i++ {
		if strings.Contains(s, b[i:i+16]) {
			return b[i : i+16]
		}
	}
	return ""
}

func TestIsKeyMaterial(t *testing.T) {
	for name, p := range pems(t) {
		for form, v := range map[string]string{
			"pem":                          p,
			"pem on one line with \\n":     strings.ReplaceAll(p, "\n", `\n`),
			"body alone":                   body(p),
			"body alone on one line":       strings.ReplaceAll(body(p), "\n", ""),
			"truncated":                    p[:len(p)/2],
			"armour only":                  strings.SplitN(p, "\n", 2)[0],
			"body with a corrupted middle": strings.ReplaceAll(body(p)[:40], "A", "!") + body(p)[40:],
		} {
			if !secret.IsKeyMaterial(v) {
				t.Errorf("%s, %s: not taken for key material", name, form)
			}
		}
	}
	for _, name := range []string{
		"/etc/reportmailer/cloudfront.pem",
		"keys/cf-2026.pem",
		"/home/someuser/Projects/reportmailer2/deploy/keys/CloudFront/Production",
		`C:\keys\new\cf.pem`,
		"/var/run/secrets/cf/..2026_01_01_07_00_00.123456789/private-key.pem",
		"/keys/3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a.pem",
		"/keys/01ARZ3NDEKTSV4RRFFQ69G5FAV.pem",
		"/tmp/TestLoadPrivateKey2729980501/001/cf.pem",
		"/tmp/TestLoadNamesTheFile1234567890/001/rm.yaml",
		"/tmp/TestAVeryLongCamelCaseNameOfATest4242/001/rm.yaml",
		"/tmp/TestLoadNeverQuotesAKeyGivenAsTheFileName2839635230/001/missing.yaml",
		"/reports/Report2024Q3SummaryForTheBoard2025.pdf",
		"/srv/MyCompanyProductionSigningKeys2026/cf.pem",
		"CF_PRIVATE_KEY",
		"REPORTMAILER_CF_KEY_PEM",
		"K2JCJMDEHXQW5F",
		"",
	} {
		if secret.IsKeyMaterial(name) {
			t.Errorf("%q is taken for key material", name)
		}
	}
}

func TestRedact(t *testing.T) {
	for name, p := range pems(t) {
		for form, text := range map[string]string{
			"pem in an error":           "private key: open " + p + ": file name too long",
			"two pems":                  p + "\n" + p,
			"truncated pem":             "open " + p[:len(p)*2/3] + ": no such file",
			"body alone":                "open " + body(p) + ": no such file",
			"body alone on one line":    "open " + strings.ReplaceAll(body(p), "\n", "") + ": no such file",
			"quoted with \\n":           `value "` + strings.ReplaceAll(p, "\n", `\n`) + `" is not true or false`,
			"body in a flag error line": "bad flag syntax: " + strings.ReplaceAll(body(p), "\n", " "),
			"body quoted with \\n":      `unexpected argument "` + strings.ReplaceAll(body(p), "\n", `\n`) + `"`,
		} {
			got := secret.Redact(text)
			if run := leaks(got, p); run != "" {
				t.Errorf("%s, %s: %q survives in:\n%s", name, form, run, got)
			}
			if strings.Contains(got, "PRIVATE KEY") {
				t.Errorf("%s, %s: PEM armour survives in:\n%s", name, form, got)
			}
			if !strings.Contains(got, secret.Redacted) {
				t.Errorf("%s, %s: no %q in:\n%s", name, form, secret.Redacted, got)
			}
		}
	}
	for _, s := range []string{
		"config /etc/reportmailer.yaml: links.cloudfront.key_id: is required",
		`schedule "daily": queue https://sqs.eu-west-2.amazonaws.com/123456789012/reports-daily: does not exist`,
		"operation error SQS: ReceiveMessage, https response error StatusCode: 400, RequestID: 6fd3a4b2-9c1e-4f5a-8d7b-2e6c0a9f1b3d, QueueDoesNotExist",
		"open /home/someuser/Projects/reportmailer2/deploy/keys/CloudFront/Production: no such file or directory",
	} {
		if got := secret.Redact(s); got != s {
			t.Errorf("Redact changed text with no key in it:\n%s\nto\n%s", s, got)
		}
	}
}
