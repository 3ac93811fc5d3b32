package main

import (
	"context"
	"crypto"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/reportmailer/reportmailer/worker/link"
	"github.com/reportmailer/reportmailer/worker/secret"
)

const verifySynopsis = "verify -public-key FILE_OR_DIR [-now RFC3339] [-ip ADDR] URL\n\n" +
	"Checks a signed CloudFront URL offline, as the demo's edge does. Prints \"valid until <time>\"\n" +
	"and exits 0, or prints \"invalid: <reason>: <detail>\" and exits 1. The reasons: expired,\n" +
	"not yet valid, bad signature, unknown key, resource mismatch, ip denied, malformed, hash mismatch.\n" +
	"Quote the URL: it has '&' in it."

func (m *Main) verify(_ context.Context, args []string) error {
	fset := m.newFlagSet("verify", verifySynopsis)
	pubPath := fset.String("public-key", "", "a PEM public key (trusted for any Key-Pair-Id), or a directory of <KEY-ID>.pem files (required)")
	nowFlag := fset.String("now", "", "check as of this RFC 3339 time (default now)")
	ipFlag := fset.String("ip", "", "the client's IP address, checked against a custom policy's IpAddress (default: not checked)")
	// The URL may come before or after the flags.
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exitError{code: ExitUsage}
	}
	var rawURL string
	if fset.NArg() > 0 {
		rawURL = fset.Arg(0)
		if err := fset.Parse(fset.Args()[1:]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return exitError{code: ExitUsage}
		}
		if n := fset.NArg(); n > 0 {
			// Not echoed: the arguments may be signed URLs.
			return usageError("verify: give one URL, not %d", n+1)
		}
	}
	if rawURL == "" {
		return usageError("verify: the URL to check is required")
	}
	switch {
	case *pubPath == "":
		return usageError("verify: -public-key is required")
	case secret.IsKeyMaterial(*pubPath):
		// os.Stat would quote it, and it may be the private key.
		return usageError("verify: -public-key holds key material, not a file or directory path: save the public key PEM in a file and give its path")
	}
	now := time.Now()
	if *nowFlag != "" {
		t, err := time.Parse(time.RFC3339, *nowFlag)
		if err != nil {
			return usageError("verify: -now %q is not an RFC 3339 time like 2026-03-01T12:00:00Z", *nowFlag)
		}
		now = t
	}
	var ip netip.Addr
	if *ipFlag != "" {
		a, err := netip.ParseAddr(*ipFlag)
		if err != nil {
			return usageError("verify: -ip %q is not an IP address", *ipFlag)
		}
		ip = a
	}
	keys, keyErr, err := publicKeys(*pubPath)
	if err != nil {
		// The key store is unusable: not a verdict on the link.
		return usageError("verify: -public-key: %v", err)
	}

	v, err := link.VerifyFrom(rawURL, keys, now, ip)
	if err != nil {
		var ve *link.VerifyError
		if !errors.As(err, &ve) {
			ve = &link.VerifyError{Reason: link.ReasonMalformed, Err: err}
		}
		msg := "invalid: " + ve.Reason
		if ve.Detail != "" {
			msg += ": " + ve.Detail
		}
		if ve.Err != nil {
			msg += ": " + ve.Err.Error()
		}
		if ve.Reason == link.ReasonUnknownKey && *keyErr != nil {
			msg += ": " + (*keyErr).Error()
		}
		fmt.Fprintln(m.Stdout, msg)
		return exitError{code: ExitFailure}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "valid until %s (key %s, %s policy, %s", v.Expires.Format(time.RFC3339), v.KeyID, v.Policy, v.Hash)
	if v.Policy == link.PolicyCustom {
		fmt.Fprintf(&b, ", resource %s", v.Resource)
		if !v.NotBefore.IsZero() {
			fmt.Fprintf(&b, ", not before %s", v.NotBefore.Format(time.RFC3339))
		}
		if v.SourceIP.IsValid() {
			fmt.Fprintf(&b, ", ip %s", v.SourceIP)
			if !ip.IsValid() {
				b.WriteString(" not checked: give -ip")
			}
		}
	}
	b.WriteString(")")
	fmt.Fprintln(m.Stdout, b.String())
	return nil
}

// publicKeys returns a KeyLookup over path: one public key file, trusted
// for any key id, or a directory in which the key for id K is K.pem,
// read when a URL names it. keyErr then holds why the last key named
// could not be read, if it exists but is bad.
func publicKeys(path string) (link.KeyLookup, *error, error) {
	keyErr := new(error)
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if !st.IsDir() {
		k, err := readPublicKey(path)
		if err != nil {
			return nil, nil, err
		}
		return func(string) (crypto.PublicKey, bool) { return k, true }, keyErr, nil
	}
	return func(id string) (crypto.PublicKey, bool) {
		// The id comes from the URL: only a plain key id may name a file.
		if link.CheckKeyID(id) != nil {
			return nil, false
		}
		k, err := readPublicKey(filepath.Join(path, id+".pem"))
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				*keyErr = err
			}
			return nil, false
		}
		return k, true
	}, keyErr, nil
}

func readPublicKey(path string) (crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := link.ParsePublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}
