package link

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func pemEncode(t *testing.T, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkcs8(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemEncode(t, "PRIVATE KEY", der)
}

func pkix(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemEncode(t, "PUBLIC KEY", der)
}

// checkNoKeyMaterial fails if err's text holds PEM armour or a piece of
// the encoded key.
func checkNoKeyMaterial(t *testing.T, err error, pemText []byte) {
	t.Helper()
	msg := err.Error()
	if strings.Contains(msg, "PRIVATE KEY") || strings.Contains(msg, "-----") {
		t.Errorf("error %q contains PEM armour", msg)
	}
	body := strings.Join(strings.Split(string(pemText), "\n")[1:], "")
	for i := 0; i+16 <= len(body) && i < 200; i += 16 {
		if strings.Contains(msg, body[i:i+16]) {
			t.Errorf("error %q contains key material", msg)
			return
		}
	}
}

func TestParsePrivateKey(t *testing.T) {
	k, _ := keys(t)
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa4096, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384DER, err := x509.MarshalECPrivateKey(p384)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := pemEncode(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k))
	encrypted := pem.EncodeToMemory(&pem.Block{
		Type:    "RSA PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00000000000000000000000000000000"},
		Bytes:   x509.MarshalPKCS1PrivateKey(k),
	})
	truncated := pkcs8(t, k)
	truncated = pemEncode(t, "PRIVATE KEY", func() []byte {
		b, _ := pem.Decode(truncated)
		return b.Bytes[:len(b.Bytes)/2]
	}())

	tests := []struct {
		name    string
		pem     []byte
		want    crypto.Signer // the key a success gives
		wantErr string        // empty: success
	}{
		{"RSA PKCS#1", pkcs1, k, ""},
		{"RSA PKCS#8", pkcs8(t, k), k, ""},
		{"RSA PKCS#1 labelled PKCS#8", pemEncode(t, "PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k)), k, ""},
		{"RSA after EC parameters", append(pemEncode(t, "EC PARAMETERS", []byte{6, 8, 42}), pkcs1...), k, ""},
		{"EC SEC1", pemEncode(t, "EC PRIVATE KEY", ecDER), ec, ""},
		{"EC SEC1 after EC parameters (openssl ecparam -genkey)", append(pemEncode(t, "EC PARAMETERS", []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}), pemEncode(t, "EC PRIVATE KEY", ecDER)...), ec, ""},
		{"EC PKCS#8", pkcs8(t, ec), ec, ""},
		{"EC SEC1 labelled PKCS#8", pemEncode(t, "PRIVATE KEY", ecDER), ec, ""},
		{"RSA-1024 PKCS#1", pemEncode(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa1024)), nil, "private key: RSA-1024 keys are not supported; CloudFront accepts RSA-2048 and ECDSA P-256"},
		{"RSA-1024 PKCS#8", pkcs8(t, rsa1024), nil, "private key: RSA-1024 keys are not supported; CloudFront accepts RSA-2048 and ECDSA P-256"},
		{"RSA-4096", pkcs8(t, rsa4096), nil, "private key: RSA-4096 keys are not supported; CloudFront accepts RSA-2048 and ECDSA P-256"},
		{"EC P-384 SEC1", pemEncode(t, "EC PRIVATE KEY", p384DER), nil, "private key: ECDSA P-384 keys are not supported; CloudFront accepts RSA-2048 and ECDSA P-256"},
		{"EC P-384 PKCS#8", pkcs8(t, p384), nil, "private key: ECDSA P-384 keys are not supported"},
		{"Ed25519 PKCS#8", pkcs8(t, ed), nil, "private key: Ed25519 keys are not supported; CloudFront accepts RSA-2048 and ECDSA P-256"},
		{"DSA", pemEncode(t, "DSA PRIVATE KEY", []byte{1, 2, 3}), nil, "private key: DSA keys are not supported"},
		{"legacy encrypted", encrypted, nil, "private key: encrypted PEM is not supported"},
		{"OpenSSH", pemEncode(t, "OPENSSH PRIVATE KEY", []byte("openssh-key-v1")), nil, "private key: OpenSSH-format keys are not supported"},
		{"public key instead", pkix(t, &k.PublicKey), nil, "private key: no private key in PEM data (found public key)"},
		{"certificate", pemEncode(t, "CERTIFICATE", []byte{1, 2, 3}), nil, "private key: no private key in PEM data (found certificate)"},
		{"not PEM", []byte("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"), nil, "private key: no PEM data found"},
		{"empty", nil, nil, "private key: no PEM data found"},
		{"truncated DER", truncated, nil, "private key: parse PKCS#8: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePrivateKey(tt.pem)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !got.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(tt.want.Public()) {
					t.Fatal("parsed key differs from the original")
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want %q", tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("error = %q, want prefix %q", err, tt.wantErr)
			}
			checkNoKeyMaterial(t, err, tt.pem)
		})
	}
}

func TestLoadPrivateKey(t *testing.T) {
	k, _ := keys(t)
	good := pkcs8(t, k)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	bad := pkcs8(t, ed)

	dir := t.TempDir()
	goodFile := filepath.Join(dir, "cf.pem")
	badFile := filepath.Join(dir, "ec.pem")
	for name, b := range map[string][]byte{goodFile: good, badFile: bad} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("LINK_TEST_KEY", string(good))
	t.Setenv("LINK_TEST_KEY_FLAT", strings.ReplaceAll(string(good), "\n", `\n`))
	t.Setenv("LINK_TEST_KEY_EC", string(bad))
	t.Setenv("LINK_TEST_KEY_EMPTY", " \n")
	t.Setenv("LINK_TEST_KEY_PATH", goodFile)
	// Key material that does not parse: a PEM whose body was cut short.
	broken := string(good[:len(good)/2]) + "\n-----END PRIVATE KEY-----\n"
	t.Setenv("LINK_TEST_KEY_BROKEN", broken)

	tests := []struct {
		name, file, env string
		wantErr         []string // substrings; none: success
	}{
		{"file", goodFile, "", nil},
		{"env", "", "LINK_TEST_KEY", nil},
		{"env with literal \\n", "", "LINK_TEST_KEY_FLAT", nil},
		{"both", goodFile, "LINK_TEST_KEY", []string{"both", goodFile, "LINK_TEST_KEY"}},
		{"neither", "", "", []string{"no file or environment variable"}},
		{"missing file", filepath.Join(dir, "nope.pem"), "", []string{"nope.pem", "no such file"}},
		{"bad file", badFile, "", []string{"from file", badFile, "Ed25519 keys are not supported"}},
		{"unset env", "", "LINK_TEST_KEY_UNSET", []string{"environment variable LINK_TEST_KEY_UNSET", "not set"}},
		{"empty env", "", "LINK_TEST_KEY_EMPTY", []string{"environment variable LINK_TEST_KEY_EMPTY", "empty"}},
		{"bad env", "", "LINK_TEST_KEY_EC", []string{"environment variable LINK_TEST_KEY_EC", "Ed25519 keys are not supported"}},
		{"env holds a path", "", "LINK_TEST_KEY_PATH", []string{"environment variable LINK_TEST_KEY_PATH", "no PEM data", "looks like a file path"}},
		{"env holds a broken pem", "", "LINK_TEST_KEY_BROKEN", []string{"environment variable LINK_TEST_KEY_BROKEN"}},
		// A PEM pasted where the name belongs is refused unquoted, before
		// the file system or the environment can echo it.
		{"pem as file", string(good), "", []string{"file name holds key material, not a path"}},
		{"pem flattened as file", strings.ReplaceAll(string(good), "\n", `\n`), "", []string{"file name holds key material"}},
		{"broken pem as file", broken, "", []string{"file name holds key material"}},
		{"pem as env", "", string(good), []string{"variable name holds key material"}},
		{"pem as both", string(good), string(good), []string{"holds key material"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadPrivateKey(tt.file, tt.env)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !k.Equal(got) {
					t.Fatal("loaded key differs from the original")
				}
				return
			}
			if err == nil {
				t.Fatal("got no error")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			checkNoKeyMaterial(t, err, good)
			checkNoKeyMaterial(t, err, bad)
			if strings.Contains(err.Error(), goodFile) && tt.file != goodFile {
				t.Errorf("error %q names the file a variable held: that value is not shown", err)
			}
		})
	}
}

func TestParsePublicKey(t *testing.T) {
	k, _ := keys(t)
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		pem     []byte
		want    crypto.PublicKey
		wantErr string
	}{
		{"RSA PKIX", pkix(t, &k.PublicKey), &k.PublicKey, ""},
		{"RSA PKCS#1", pemEncode(t, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&k.PublicKey)), &k.PublicKey, ""},
		{"ECDSA PKIX", pkix(t, &ec.PublicKey), &ec.PublicKey, ""},
		{"RSA-1024", pkix(t, &rsa1024.PublicKey), nil, "public key: RSA-1024 keys are not supported; CloudFront accepts RSA-2048 and ECDSA P-256"},
		{"ECDSA P-384", pkix(t, &p384.PublicKey), nil, "public key: ECDSA P-384 keys are not supported"},
		{"Ed25519", pkix(t, ed), nil, "public key: Ed25519 keys are not supported"},
		{"private key instead", pkcs8(t, k), nil, "public key: found a private key instead: give its public half"},
		{"garbage", pemEncode(t, "PUBLIC KEY", []byte{1, 2, 3}), nil, "public key: parse PKIX: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePublicKey(tt.pem)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !tt.want.(interface{ Equal(crypto.PublicKey) bool }).Equal(got) {
					t.Fatal("parsed key differs from the original")
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want prefix %q", err, tt.wantErr)
			}
			checkNoKeyMaterial(t, err, tt.pem)
		})
	}
}

func TestKeyAlgorithmAndFingerprint(t *testing.T) {
	k, o := keys(t)
	e, _ := ecKeys(t)
	tests := []struct {
		name    string
		key     any
		wantAlg string
	}{
		{"RSA private", k, AlgRSA2048},
		{"RSA public", &k.PublicKey, AlgRSA2048},
		{"ECDSA private", e, AlgECDSAP256},
		{"ECDSA public", &e.PublicKey, AlgECDSAP256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alg, err := KeyAlgorithm(tt.key)
			if err != nil || alg != tt.wantAlg {
				t.Fatalf("KeyAlgorithm = %q, %v; want %q", alg, err, tt.wantAlg)
			}
		})
	}
	// The fingerprint is the unpadded base64 SHA-256 of the PKIX DER,
	// the same for a key's private and public halves, and differs
	// between keys.
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	want := "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
	for _, key := range []any{k, &k.PublicKey} {
		if got, err := Fingerprint(key); err != nil || got != want {
			t.Errorf("Fingerprint(%T) = %q, %v; want %q", key, got, err, want)
		}
	}
	if a, _ := Fingerprint(k); a == mustFingerprint(t, o) || a == mustFingerprint(t, e) {
		t.Error("different keys have the same fingerprint")
	}
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := KeyAlgorithm(ed); err == nil || !strings.Contains(err.Error(), "Ed25519 keys are not supported") {
		t.Errorf("KeyAlgorithm(Ed25519) error = %v", err)
	}
}

func mustFingerprint(t *testing.T, key any) string {
	t.Helper()
	f, err := Fingerprint(key)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
