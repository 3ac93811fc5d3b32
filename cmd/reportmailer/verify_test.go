package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// signWith runs the sign command and returns the URL it printed.
func signWith(t *testing.T, k cliKey, args ...string) string {
	t.Helper()
	code, out, errOut := run(t, append([]string{"sign", "-private-key", k.private, "-key-id", k.id}, args...)...)
	if code != ExitOK {
		t.Fatalf("sign: exit %d: %s", code, errOut)
	}
	return strings.TrimSpace(out)
}

func TestVerify(t *testing.T) {
	dir := t.TempDir()
	rk, ek := cliKeys(t, dir)
	pubDir := filepath.Join(dir, "public")
	const domain = "https://d111111abcdef8.cloudfront.net"
	const exp = "2030-01-02T03:04:05Z"
	const before = "2030-01-01T00:00:00Z"

	canned := signWith(t, rk, "-domain", domain, "-object", "reports/a b+c.pdf", "-expires", exp)
	sha256 := signWith(t, ek, "-domain", domain, "-object", "reports/a.pdf", "-expires", exp, "-hash", "sha256")
	custom := signWith(t, ek, "-domain", domain, "-object", "reports/2030/a.pdf", "-expires", exp, "-hash", "sha256",
		"-resource", domain+"/reports/2030/*", "-not-before", "2029-12-31T00:00:00Z", "-ip", "192.0.2.0/24")
	unknownKey := strings.Replace(canned, "Key-Pair-Id="+rk.id, "Key-Pair-Id=KNOTINTHEDIR", 1)
	// A custom policy's signature covers the policy, not the URL, so
	// moving the URL outside its Resource keeps the signature valid.
	outside := strings.Replace(custom, "/reports/2030/a.pdf?", "/private/a.pdf?", 1)
	tampered := strings.Replace(canned, "a%20b%2Bc.pdf", "a%20b%2Bd.pdf", 1)
	// A key file that exists for the id but is not a usable key.
	badDir := filepath.Join(dir, "bad")
	os.MkdirAll(badDir, 0o755)
	os.WriteFile(filepath.Join(badDir, rk.id+".pem"), []byte("not a key"), 0o644)

	tests := []struct {
		name string
		args []string
		code int
		want string // a prefix of stdout, or for usage errors a part of stderr
	}{
		{"valid canned, key file", []string{"-public-key", rk.public, "-now", before, canned}, ExitOK,
			"valid until 2030-01-02T03:04:05Z (key " + rk.id + ", canned policy, sha1)\n"},
		{"valid canned, key directory", []string{"-public-key", pubDir, "-now", before, canned}, ExitOK,
			"valid until 2030-01-02T03:04:05Z (key " + rk.id + ", canned policy, sha1)\n"},
		{"valid ECDSA SHA-256", []string{"-public-key", pubDir, "-now", before, sha256}, ExitOK,
			"valid until 2030-01-02T03:04:05Z (key " + ek.id + ", canned policy, sha256)\n"},
		{"valid custom from an allowed ip", []string{"-public-key", pubDir, "-now", before, "-ip", "192.0.2.9", custom}, ExitOK,
			"valid until 2030-01-02T03:04:05Z (key " + ek.id + ", custom policy, sha256, resource " + domain + "/reports/2030/*, not before 2029-12-31T00:00:00Z, ip 192.0.2.0/24)\n"},
		{"valid custom, ip not given", []string{"-public-key", pubDir, "-now", before, custom}, ExitOK,
			"valid until 2030-01-02T03:04:05Z (key " + ek.id + ", custom policy, sha256, resource " + domain + "/reports/2030/*, not before 2029-12-31T00:00:00Z, ip 192.0.2.0/24 not checked: give -ip)\n"},
		{"URL before the flags", []string{canned, "-public-key", pubDir, "-now", before}, ExitOK, "valid until 2030-01-02T03:04:05Z"},

		{"expired", []string{"-public-key", pubDir, "-now", "2030-01-02T03:04:05Z", canned}, ExitFailure, "invalid: expired: at 2030-01-02T03:04:05Z\n"},
		{"not yet valid", []string{"-public-key", pubDir, "-now", "2029-12-30T00:00:00Z", custom}, ExitFailure, "invalid: not yet valid: until 2029-12-31T00:00:00Z\n"},
		{"bad signature", []string{"-public-key", pubDir, "-now", before, tampered}, ExitFailure, "invalid: bad signature\n"},
		{"bad signature: wrong key file", []string{"-public-key", ek.public, "-now", before, canned}, ExitFailure, "invalid: bad signature\n"},
		{"unknown key", []string{"-public-key", pubDir, "-now", before, unknownKey}, ExitFailure, "invalid: unknown key: key id KNOTINTHEDIR is not trusted\n"},
		{"unknown key: unreadable key file", []string{"-public-key", badDir, "-now", before, canned}, ExitFailure, "invalid: unknown key: key id " + rk.id + " is not trusted: " + filepath.Join(badDir, rk.id+".pem") + ": public key: no PEM data found\n"},
		{"resource mismatch", []string{"-public-key", pubDir, "-now", before, outside}, ExitFailure, `invalid: resource mismatch: policy covers "` + domain + `/reports/2030/*", not "` + domain + `/private/a.pdf"`},
		{"ip denied", []string{"-public-key", pubDir, "-now", before, "-ip", "198.51.100.1", custom}, ExitFailure, "invalid: ip denied: 198.51.100.1 is not in 192.0.2.0/24\n"},
		{"malformed: no signature", []string{"-public-key", pubDir, "-now", before, domain + "/reports/a.pdf"}, ExitFailure, "invalid: malformed: no query, so no signature\n"},
		{"malformed: parameter after signing", []string{"-public-key", pubDir, "-now", before, canned + "&x=1"}, ExitFailure, "invalid: malformed: query parameter \"x\" follows the signing parameters"},
		{"hash mismatch", []string{"-public-key", pubDir, "-now", before, strings.TrimSuffix(sha256, "&Hash-Algorithm=SHA256")}, ExitFailure, "invalid: hash mismatch: signed with SHA-256, but the URL says SHA-1\n"},

		{"no public key", []string{"-now", before, canned}, ExitUsage, "-public-key is required"},
		{"no URL", []string{"-public-key", pubDir}, ExitUsage, "the URL to check is required"},
		{"two URLs", []string{"-public-key", pubDir, canned, canned}, ExitUsage, "give one URL, not 2"},
		{"bad -now", []string{"-public-key", pubDir, "-now", "yesterday", canned}, ExitUsage, `-now "yesterday" is not an RFC 3339 time`},
		{"bad -ip", []string{"-public-key", pubDir, "-ip", "nope", canned}, ExitUsage, `-ip "nope" is not an IP address`},
		{"missing key path", []string{"-public-key", filepath.Join(dir, "nope"), canned}, ExitUsage, "no such file or directory"},
		{"private key as public key", []string{"-public-key", rk.private, canned}, ExitUsage, "public key: found a private key instead: give its public half"},
	}
	sigRE := regexp.MustCompile(`Signature=([^&]+)`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, append([]string{"verify"}, tt.args...)...)
			got := out
			if tt.code == ExitUsage {
				got = errOut
			}
			match := strings.HasPrefix(got, tt.want)
			if tt.code == ExitUsage {
				match = strings.Contains(got, tt.want)
			}
			if code != tt.code || !match {
				t.Fatalf("exit %d, stdout %q, stderr %q\nwant exit %d and %q", code, out, errOut, tt.code, tt.want)
			}
			if tt.code == ExitFailure && errOut != "" {
				t.Errorf("a failed check should only print its verdict: stderr %q", errOut)
			}
			for _, u := range []string{canned, sha256, custom} {
				if sig := sigRE.FindStringSubmatch(u)[1]; strings.Contains(out+errOut, sig) {
					t.Errorf("output echoes a signature:\n%s%s", out, errOut)
				}
			}
		})
	}
}

// TestVerifyKeyDirTraversal makes sure a Key-Pair-Id cannot name a file
// outside the key directory.
func TestVerifyKeyDirTraversal(t *testing.T) {
	dir := t.TempDir()
	rk, _ := cliKeys(t, dir)
	canned := signWith(t, rk, "-domain", "https://d111111abcdef8.cloudfront.net", "-object", "a.pdf", "-expires", "2030-01-02T03:04:05Z")
	// dir/KRSA000000001.pem is outside dir/public/sub but reachable as "../KRSA000000001".
	os.MkdirAll(filepath.Join(dir, "public", "sub"), 0o755)
	evil := strings.Replace(canned, "Key-Pair-Id="+rk.id, "Key-Pair-Id=..%2F"+rk.id, 1)
	code, out, _ := run(t, "verify", "-public-key", filepath.Join(dir, "public", "sub"), "-now", "2030-01-01T00:00:00Z", evil)
	if code != ExitFailure || !strings.HasPrefix(out, "invalid: unknown key") {
		t.Fatalf("exit %d, %q; want unknown key", code, out)
	}
}
