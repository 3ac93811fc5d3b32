package link

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// signingKey is one of the test keys with its algorithm's name.
type signingKey struct {
	name string
	key  Key
}

func signingKeys(t testing.TB) []signingKey {
	k, _ := keys(t)
	e, _ := ecKeys(t)
	return []signingKey{
		{"RSA", Key{ID: testKeyID, Signer: k}},
		{"ECDSA", Key{ID: testECKeyID, Signer: e}},
	}
}

// checkWithPublicKey verifies a signed URL's signature directly with the
// public key, without Verify: it rebuilds or decodes the policy, hashes
// it as Hash-Algorithm says, and checks the RSA PKCS #1 v1.5 or ECDSA
// ASN.1 signature. It returns the policy.
func checkWithPublicKey(t *testing.T, signed string, pub crypto.PublicKey) []byte {
	t.Helper()
	base, query, ok := strings.Cut(signed, "?")
	if !ok {
		t.Fatalf("no query in %s", signed)
	}
	params := map[string]string{}
	var own []string
	for p := range strings.SplitSeq(query, "&") {
		n, v, _ := strings.Cut(p, "=")
		if isSigningParam(n) {
			params[n] = v
		} else {
			own = append(own, p)
		}
	}
	resource := base
	if len(own) > 0 {
		resource += "?" + strings.Join(own, "&")
	}
	var policy []byte
	if e, ok := params["Expires"]; ok {
		policy = []byte(`{"Statement":[{"Resource":"` + resource + `","Condition":{"DateLessThan":{"AWS:EpochTime":` + e + `}}}]}`)
	} else {
		var err error
		if policy, err = decodeBase64(params["Policy"]); err != nil {
			t.Fatalf("Policy: %v", err)
		}
	}
	sig, err := decodeBase64(params["Signature"])
	if err != nil {
		t.Fatalf("Signature: %v", err)
	}
	var digest []byte
	hash := crypto.SHA1
	switch params["Hash-Algorithm"] {
	case "":
		d := sha1.Sum(policy)
		digest = d[:]
	case "SHA256":
		d := sha256.Sum256(policy)
		digest, hash = d[:], crypto.SHA256
	default:
		t.Fatalf("Hash-Algorithm %q", params["Hash-Algorithm"])
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(k, hash, digest, sig); err != nil {
			t.Fatalf("RSA signature does not verify with the public key: %v", err)
		}
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, sig) {
			t.Fatal("ECDSA ASN.1 signature does not verify with the public key")
		}
	default:
		t.Fatalf("key %T", pub)
	}
	return policy
}

// checkCompactJSON fails unless policy is valid JSON with no whitespace
// outside strings.
func checkCompactJSON(t *testing.T, policy []byte) {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, policy); err != nil {
		t.Fatalf("policy is not JSON: %v: %s", err, policy)
	}
	if !bytes.Equal(b.Bytes(), policy) {
		t.Fatalf("policy has whitespace: %s", policy)
	}
}

// TestSignModes signs with every key type, hash and policy kind, and
// checks each URL with the public key directly and with Verify.
func TestSignModes(t *testing.T) {
	const u = "https://d111111abcdef8.cloudfront.net/reports/Q1%202026/a%2Bb.pdf"
	expires := time.Unix(testNow.Add(24*time.Hour).Unix(), 0).UTC()
	notBefore := time.Unix(testNow.Add(-time.Hour).Unix(), 0).UTC()
	cidr := netip.MustParsePrefix("192.0.2.0/24")
	e := strconv.FormatInt(expires.Unix(), 10)
	nb := strconv.FormatInt(notBefore.Unix(), 10)
	policies := []struct {
		name       string
		p          Policy
		wantJSON   string // empty for canned
		wantPolicy string
		resource   string
	}{
		{"canned", Policy{Expires: expires}, "", PolicyCanned, u},
		{"custom exact", Policy{Custom: true, Expires: expires},
			`{"Statement":[{"Resource":"` + u + `","Condition":{"DateLessThan":{"AWS:EpochTime":` + e + `}}}]}`, PolicyCustom, u},
		{"custom wildcard", Policy{Custom: true, Resource: "https://d111111abcdef8.cloudfront.net/reports/*", Expires: expires},
			`{"Statement":[{"Resource":"https://d111111abcdef8.cloudfront.net/reports/*","Condition":{"DateLessThan":{"AWS:EpochTime":` + e + `}}}]}`,
			PolicyCustom, "https://d111111abcdef8.cloudfront.net/reports/*"},
		{"custom not before", Policy{Custom: true, Expires: expires, NotBefore: notBefore},
			`{"Statement":[{"Resource":"` + u + `","Condition":{"DateLessThan":{"AWS:EpochTime":` + e + `},"DateGreaterThan":{"AWS:EpochTime":` + nb + `}}}]}`, PolicyCustom, u},
		{"custom ip", Policy{Custom: true, Expires: expires, SourceIP: cidr},
			`{"Statement":[{"Resource":"` + u + `","Condition":{"DateLessThan":{"AWS:EpochTime":` + e + `},"IpAddress":{"AWS:SourceIp":"192.0.2.0/24"}}}]}`, PolicyCustom, u},
		{"custom everything", Policy{Custom: true, Resource: "https://d111111abcdef8.cloudfront.net/*/Q?%202026/*", Expires: expires, NotBefore: notBefore, SourceIP: cidr},
			`{"Statement":[{"Resource":"https://d111111abcdef8.cloudfront.net/*/Q?%202026/*","Condition":{"DateLessThan":{"AWS:EpochTime":` + e + `},"DateGreaterThan":{"AWS:EpochTime":` + nb + `},"IpAddress":{"AWS:SourceIp":"192.0.2.0/24"}}}]}`,
			PolicyCustom, "https://d111111abcdef8.cloudfront.net/*/Q?%202026/*"},
	}
	for _, sk := range signingKeys(t) {
		for _, hash := range []string{HashSHA1, HashSHA256} {
			for _, pc := range policies {
				t.Run(sk.name+"/"+hash+"/"+pc.name, func(t *testing.T) {
					signed, err := Sign(u, sk.key, hash, pc.p)
					if err != nil {
						t.Fatal(err)
					}
					if got := strings.HasSuffix(signed, "&Hash-Algorithm=SHA256"); got != (hash == HashSHA256) {
						t.Errorf("Hash-Algorithm=SHA256 present = %v for %s: %s", got, hash, signed)
					}
					if !strings.HasPrefix(signed, u+"?") {
						t.Errorf("URL does not start with the resource: %s", signed)
					}
					policy := checkWithPublicKey(t, signed, sk.key.Signer.Public())
					checkCompactJSON(t, policy)
					if pc.wantJSON != "" && string(policy) != pc.wantJSON {
						t.Errorf("policy\n got %s\nwant %s", policy, pc.wantJSON)
					}
					if (pc.wantJSON == "") != strings.Contains(signed, "?Expires=") {
						t.Errorf("canned/custom form wrong: %s", signed)
					}

					v, err := VerifyFrom(signed, lookup(t), testNow, netip.MustParseAddr("192.0.2.9"))
					if err != nil {
						t.Fatal(err)
					}
					want := Verified{KeyID: sk.key.ID, Expires: expires, NotBefore: pc.p.NotBefore, Policy: pc.wantPolicy,
						Hash: hash, Resource: pc.resource, SourceIP: pc.p.SourceIP}
					if v != want {
						t.Errorf("Verify = %+v\nwant %+v", v, want)
					}
				})
			}
		}
	}
}

func TestSignPolicyErrors(t *testing.T) {
	k, _ := keys(t)
	const u = "https://d111111abcdef8.cloudfront.net/reports/a.pdf"
	expires := testNow.Add(time.Hour)
	tests := []struct {
		name    string
		hash    string
		p       Policy
		wantErr string
	}{
		{"resource on canned", HashSHA1, Policy{Resource: "https://d111111abcdef8.cloudfront.net/*", Expires: expires}, "needs a custom policy"},
		{"not before on canned", HashSHA1, Policy{NotBefore: testNow, Expires: expires}, "needs a custom policy"},
		{"ip on canned", HashSHA1, Policy{SourceIP: netip.MustParsePrefix("192.0.2.0/24"), Expires: expires}, "needs a custom policy"},
		{"resource elsewhere", HashSHA1, Policy{Custom: true, Resource: "https://d111111abcdef8.cloudfront.net/other/*", Expires: expires}, "does not cover the url"},
		{"resource with space", HashSHA1, Policy{Custom: true, Resource: "https://d111111abcdef8.cloudfront.net/a b/*", Expires: expires}, "must be percent-encoded"},
		{"not before after expiry", HashSHA1, Policy{Custom: true, NotBefore: expires, Expires: expires}, "is not before the expiry"},
		{"IPv6", HashSHA1, Policy{Custom: true, SourceIP: netip.MustParsePrefix("2001:db8::/32"), Expires: expires}, "not IPv4"},
		{"host bits", HashSHA1, Policy{Custom: true, SourceIP: netip.MustParsePrefix("192.0.2.7/24"), Expires: expires}, "did you mean 192.0.2.0/24?"},
		{"no expiry", HashSHA1, Policy{}, "out of range"},
		{"2038", HashSHA1, Policy{Expires: MaxExpires}, "out of range"},
		{"unknown hash", "sha512", Policy{Expires: expires}, `hash "sha512" is not sha1 or sha256`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Sign(u, Key{ID: testKeyID, Signer: k}, tt.hash, tt.p)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "sign: ") {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseSourceIP(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{"192.0.2.0/24", "192.0.2.0/24", ""},
		{"192.0.2.7", "192.0.2.7/32", ""},
		{"0.0.0.0/0", "0.0.0.0/0", ""},
		{"192.0.2.7/24", "", "host bits"},
		{"2001:db8::1", "", "not IPv4"},
		{"2001:db8::/32", "", "not IPv4"},
		{"nope", "", "not an IPv4 address"},
		{"192.0.2.0/33", "", "not a CIDR"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParseSourceIP(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || p.String() != tt.want {
				t.Fatalf("ParseSourceIP = %v, %v; want %s", p, err, tt.want)
			}
		})
	}
}
