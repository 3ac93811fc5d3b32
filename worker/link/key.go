package link

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/reportmailer/reportmailer/worker/secret"
)

// RSABits is the only RSA key size CloudFront accepts, and so the only
// one the package signs or verifies with.
const RSABits = 2048

// Key algorithms, as [KeyAlgorithm] names them.
const (
	AlgRSA2048   = "RSA-2048"
	AlgECDSAP256 = "ECDSA-P256"
)

// supported is appended to every error about an unsupported key.
const supported = "CloudFront accepts RSA-2048 and ECDSA P-256"

// ParsePrivateKey parses a PEM-encoded private key: RSA in PKCS#1
// ("BEGIN RSA PRIVATE KEY") or PKCS#8 ("BEGIN PRIVATE KEY", the OpenSSL
// 3 default), or ECDSA in SEC1 ("BEGIN EC PRIVATE KEY") or PKCS#8.
// Blocks before the key, such as EC parameters or a certificate, are
// skipped.
//
// Only the keys CloudFront accepts are returned: RSA of exactly
// [RSABits] bits and ECDSA on P-256. Any other type or size gives an
// error that names what was found. Errors never contain key material.
func ParsePrivateKey(pemBytes []byte) (crypto.Signer, error) {
	k, err := parsePrivateKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	return k, nil
}

// LoadPrivateKey reads a private key from file or from the environment
// variable named envVar, which holds the PEM text; exactly one of the
// two must be non-empty. It parses the key with [ParsePrivateKey].
//
// Because some deployment tools flatten multi-line variables, a
// variable whose PEM lines are joined by a literal `\n` is accepted too.
// Errors name the file or the variable, never its contents; and a file
// or variable name that is itself key material (a PEM pasted where its
// path belongs) is refused without being quoted.
func LoadPrivateKey(file, envVar string) (crypto.Signer, error) {
	switch {
	case secret.IsKeyMaterial(file):
		return nil, errors.New("private key: the file name holds key material, not a path: put the PEM in a file and give its path")
	case secret.IsKeyMaterial(envVar):
		return nil, errors.New("private key: the environment variable name holds key material, not a name: put the PEM in a variable and give its name")
	case file != "" && envVar != "":
		return nil, fmt.Errorf("private key: both file %q and environment variable %s given, want one", file, envVar)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			// The *PathError already names the file.
			return nil, fmt.Errorf("private key: %w", err)
		}
		k, err := parsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("private key from file %q: %w", file, err)
		}
		return k, nil
	case envVar != "":
		v, ok := os.LookupEnv(envVar)
		if !ok {
			return nil, fmt.Errorf("private key from environment variable %s: not set", envVar)
		}
		if strings.TrimSpace(v) == "" {
			return nil, fmt.Errorf("private key from environment variable %s: empty", envVar)
		}
		b := []byte(v)
		if !bytes.Contains(b, []byte("\n")) && bytes.Contains(b, []byte(`\n`)) {
			b = bytes.ReplaceAll(b, []byte(`\n`), []byte("\n"))
		}
		k, err := parsePrivateKey(b)
		if err != nil {
			if !secret.IsKeyMaterial(v) && looksLikePath(v) {
				err = fmt.Errorf("%w; it looks like a file path, but the variable must hold the PEM text itself", err)
			}
			return nil, fmt.Errorf("private key from environment variable %s: %w", envVar, err)
		}
		return k, nil
	default:
		return nil, errors.New("private key: no file or environment variable given")
	}
}

// looksLikePath reports whether v, which holds no PEM, is a file path
// given where the PEM text belongs.
func looksLikePath(v string) bool {
	v = strings.TrimSpace(v)
	return !strings.ContainsAny(v, " \t") && (strings.ContainsRune(v, '/') || strings.HasSuffix(v, ".pem") || strings.HasSuffix(v, ".key"))
}

// parsePrivateKey is ParsePrivateKey without the "private key" context,
// so that callers can add where the key came from.
func parsePrivateKey(pemBytes []byte) (crypto.Signer, error) {
	block, err := findPEM(pemBytes, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	if _, ok := block.Headers["Proc-Type"]; ok {
		return nil, errors.New("encrypted PEM is not supported; decrypt the key first")
	}
	var key any
	switch block.Type {
	case "RSA PRIVATE KEY":
		// Mislabelled blocks exist in the wild; try the other form
		// before giving up.
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			if k, err8 := x509.ParsePKCS8PrivateKey(block.Bytes); err8 == nil {
				key, err = k, nil
			}
		}
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			if k, err1 := x509.ParsePKCS1PrivateKey(block.Bytes); err1 == nil {
				key, err = k, nil
			} else if k, errEC := x509.ParseECPrivateKey(block.Bytes); errEC == nil {
				key, err = k, nil
			}
		}
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			if k, err8 := x509.ParsePKCS8PrivateKey(block.Bytes); err8 == nil {
				key, err = k, nil
			}
		}
	case "DSA PRIVATE KEY":
		return nil, errors.New("DSA keys are not supported; " + supported)
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("encrypted PKCS#8 keys are not supported; decrypt the key first")
	case "OPENSSH PRIVATE KEY":
		return nil, errors.New("OpenSSH-format keys are not supported; convert to PEM (ssh-keygen -p -m PEM, or openssl pkey)")
	default:
		return nil, fmt.Errorf("unknown PEM block type %q", strings.ToLower(block.Type))
	}
	if err != nil {
		// x509 errors describe the structure, not the key material.
		return nil, fmt.Errorf("parse %s: %w", pemForm(block.Type), err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s keys are not supported; %s", keyTypeName(key), supported)
	}
	if err := checkPublicKey(signer.Public()); err != nil {
		return nil, err
	}
	return signer, nil
}

// ParsePublicKey parses a PEM-encoded public key, either PKIX ("BEGIN
// PUBLIC KEY", what openssl writes and CloudFront stores) or, for RSA,
// PKCS#1 ("BEGIN RSA PUBLIC KEY"). Like [ParsePrivateKey], it accepts
// only RSA-2048 and ECDSA P-256 keys.
func ParsePublicKey(pemBytes []byte) (crypto.PublicKey, error) {
	block, err := findPEM(pemBytes, "PUBLIC KEY")
	if err != nil {
		if _, perr := findPEM(pemBytes, "PRIVATE KEY"); perr == nil {
			return nil, errors.New("public key: found a private key instead: give its public half (openssl pkey -in KEY.pem -pubout)")
		}
		return nil, fmt.Errorf("public key: %w", err)
	}
	var key any
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		return nil, fmt.Errorf("public key: unknown PEM block type %q", strings.ToLower(block.Type))
	}
	if err != nil {
		return nil, fmt.Errorf("public key: parse %s: %w", pemForm(block.Type), err)
	}
	if err := checkPublicKey(key); err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return key, nil
}

// KeyAlgorithm names a key's algorithm, [AlgRSA2048] or [AlgECDSAP256],
// or returns an error for a key CloudFront does not accept. key may be
// a public key or a crypto.Signer.
func KeyAlgorithm(key any) (string, error) {
	pub := publicOf(key)
	if err := checkPublicKey(pub); err != nil {
		return "", err
	}
	if _, ok := pub.(*rsa.PublicKey); ok {
		return AlgRSA2048, nil
	}
	return AlgECDSAP256, nil
}

// Fingerprint identifies a public key: "SHA256:" and the unpadded
// base64 SHA-256 of its PKIX (DER) encoding, as ssh-keygen -l writes
// fingerprints. The same value comes from
//
//	openssl pkey -in KEY.pem -pubout -outform DER | openssl dgst -sha256 -binary | base64
//
// (with the trailing "=" removed). key may be a public key or a
// crypto.Signer.
func Fingerprint(key any) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(publicOf(key))
	if err != nil {
		return "", fmt.Errorf("fingerprint: %w", err)
	}
	sum := sha256.Sum256(der)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:]), nil
}

// publicOf returns the public half of key if it is a private key or a
// crypto.Signer, and key otherwise.
func publicOf(key any) crypto.PublicKey {
	if s, ok := key.(crypto.Signer); ok {
		return s.Public()
	}
	return key
}

// checkPublicKey reports whether pub is a key CloudFront accepts.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n != RSABits {
			return fmt.Errorf("RSA-%d keys are not supported; %s", n, supported)
		}
		return nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("ECDSA %s keys are not supported; %s", k.Curve.Params().Name, supported)
		}
		return nil
	case nil:
		return errors.New("no key")
	}
	return fmt.Errorf("%s keys are not supported; %s", keyTypeName(pub), supported)
}

// findPEM returns the first PEM block whose type ends in suffix, and
// otherwise an error that lists the block types it saw.
func findPEM(b []byte, suffix string) (*pem.Block, error) {
	var seen []string
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if strings.HasSuffix(block.Type, suffix) {
			return block, nil
		}
		seen = append(seen, strings.ToLower(block.Type))
	}
	if len(seen) == 0 {
		return nil, errors.New("no PEM data found")
	}
	return nil, fmt.Errorf("no %s in PEM data (found %s)", strings.ToLower(suffix), strings.Join(seen, ", "))
}

// pemForm names the encoding a PEM block type stands for.
func pemForm(blockType string) string {
	switch blockType {
	case "RSA PRIVATE KEY", "RSA PUBLIC KEY":
		return "PKCS#1"
	case "PRIVATE KEY":
		return "PKCS#8"
	case "EC PRIVATE KEY":
		return "SEC1"
	case "PUBLIC KEY":
		return "PKIX"
	}
	return strings.ToLower(blockType)
}

// keyTypeName names a parsed key's algorithm for error messages.
func keyTypeName(key any) string {
	switch key.(type) {
	case *rsa.PrivateKey, *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PrivateKey, *ecdsa.PublicKey:
		return "ECDSA"
	case ed25519.PrivateKey, ed25519.PublicKey:
		return "Ed25519"
	}
	// Covers *ecdh keys (X25519) and anything newer.
	return strings.TrimPrefix(fmt.Sprintf("%T", key), "*")
}
