package link

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// MinRSABits is the smallest RSA key, in bits, that the package signs
// or verifies with. CloudFront itself only accepts 2048-bit RSA keys.
const MinRSABits = 2048

// ParsePrivateKey parses a PEM-encoded RSA private key in PKCS#1
// ("BEGIN RSA PRIVATE KEY") or PKCS#8 ("BEGIN PRIVATE KEY", the OpenSSL 3
// default) form. Blocks before the key, such as EC parameters or a
// certificate, are skipped.
//
// Only RSA keys of at least [MinRSABits] bits are accepted for now;
// other key types and sizes give an error that names what was found.
// Errors never contain key material.
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
// Errors name the file or the variable, never its contents.
func LoadPrivateKey(file, envVar string) (crypto.Signer, error) {
	switch {
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
			return nil, fmt.Errorf("private key from environment variable %s: %w", envVar, err)
		}
		return k, nil
	default:
		return nil, errors.New("private key: no file or environment variable given")
	}
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
			}
		}
	case "EC PRIVATE KEY":
		return nil, errors.New("ECDSA keys are not supported yet")
	case "DSA PRIVATE KEY":
		return nil, errors.New("DSA keys are not supported")
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
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if err := checkRSASize(&k.PublicKey); err != nil {
			return nil, err
		}
		return k, nil
	default:
		return nil, fmt.Errorf("%s keys are not supported yet", keyTypeName(key))
	}
}

// ParsePublicKey parses a PEM-encoded RSA public key, either PKIX
// ("BEGIN PUBLIC KEY", what openssl and CloudFront use) or PKCS#1
// ("BEGIN RSA PUBLIC KEY"). Like [ParsePrivateKey], it accepts only RSA
// keys of at least [MinRSABits] bits for now.
func ParsePublicKey(pemBytes []byte) (crypto.PublicKey, error) {
	block, err := findPEM(pemBytes, "PUBLIC KEY")
	if err != nil {
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
	k, ok := key.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key: %s keys are not supported yet", keyTypeName(key))
	}
	if err := checkRSASize(k); err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return k, nil
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

func checkRSASize(k *rsa.PublicKey) error {
	if n := k.N.BitLen(); n < MinRSABits {
		return fmt.Errorf("RSA-%d is too small, want at least %d bits", n, MinRSABits)
	}
	return nil
}

// pemForm names the encoding a PEM block type stands for.
func pemForm(blockType string) string {
	switch blockType {
	case "RSA PRIVATE KEY", "RSA PUBLIC KEY":
		return "PKCS#1"
	case "PRIVATE KEY":
		return "PKCS#8"
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
