package link

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/cloudfront/sign"
)

const testResource = "https://d111111abcdef8.cloudfront.net/reports/Q1%202026/a%2Bb.pdf"

func signedParam(t *testing.T, signed, name string) string {
	t.Helper()
	_, q, _ := strings.Cut(signed, "?")
	for p := range strings.SplitSeq(q, "&") {
		if n, v, _ := strings.Cut(p, "="); n == name {
			return v
		}
	}
	t.Fatalf("%s not in %s", name, signed)
	return ""
}

func replaceParam(t *testing.T, signed, name, value string) string {
	t.Helper()
	old := name + "=" + signedParam(t, signed, name)
	return strings.Replace(signed, old, name+"="+value, 1)
}

func checkVerifyError(t *testing.T, err error, wantReason string, secrets ...string) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("error = %v (%T), want a *VerifyError", err, err)
	}
	if ve.Reason != wantReason {
		t.Fatalf("Reason = %q (%v), want %q", ve.Reason, err, wantReason)
	}
	if !strings.HasPrefix(err.Error(), "verify: "+wantReason) {
		t.Errorf("error %q does not start with the reason", err)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error %q echoes a signed value", err)
		}
	}
}

func TestVerifyCanned(t *testing.T) {
	k, o := keys(t)
	expires := testNow.Add(time.Hour)
	signed, err := SignURL(testResource, testKeyID, k, expires)
	if err != nil {
		t.Fatal(err)
	}
	withQuery, err := SignURL(testResource+"?response-content-disposition=attachment", testKeyID, k, expires)
	if err != nil {
		t.Fatal(err)
	}
	sig := signedParam(t, signed, "Signature")
	epoch := signedParam(t, signed, "Expires")
	otherSigned, err := SignURL(testResource, otherKeyID, o, expires)
	if err != nil {
		t.Fatal(err)
	}
	sha256Signed, err := Sign(testResource, Key{ID: testKeyID, Signer: k}, HashSHA256, Policy{Expires: expires})
	if err != nil {
		t.Fatal(err)
	}
	laterEpoch := strconv.FormatInt(expires.Unix()+3600, 10)
	wantExpires := time.Unix(expires.Unix(), 0).UTC()

	tests := []struct {
		name       string
		url        string
		now        time.Time
		wantReason string // empty: valid
		wantHash   string
	}{
		{"valid", signed, testNow, "", HashSHA1},
		{"valid one second before", signed, wantExpires.Add(-time.Nanosecond), "", HashSHA1},
		{"valid with own query", withQuery, testNow, "", HashSHA1},
		{"valid with fragment", signed + "#page=2", testNow, "", HashSHA1},
		{"valid by other key", otherSigned, testNow, "", HashSHA1},
		{"valid SHA-256", sha256Signed, testNow, "", HashSHA256},
		{"valid explicit SHA1", signed + "&Hash-Algorithm=SHA1", testNow, "", HashSHA1},
		{"valid reordered params", testResource + "?Key-Pair-Id=" + testKeyID + "&Signature=" + sig + "&Expires=" + epoch, testNow, "", HashSHA1},

		{"expired at expiry", signed, wantExpires, ReasonExpired, ""},
		{"expired later", signed, testNow.Add(48 * time.Hour), ReasonExpired, ""},
		{"tampered path", strings.Replace(signed, "a%2Bb.pdf", "a%2Bc.pdf", 1), testNow, ReasonBadSignature, ""},
		{"tampered host", strings.Replace(signed, "d111111abcdef8", "d222222abcdef8", 1), testNow, ReasonBadSignature, ""},
		{"tampered expires", replaceParam(t, signed, "Expires", laterEpoch), testNow, ReasonBadSignature, ""},
		{"added query", strings.Replace(signed, "?", "?x=1&", 1), testNow, ReasonBadSignature, ""},
		{"tampered signature", replaceParam(t, signed, "Signature", "A"+sig[1:]), testNow, ReasonBadSignature, ""},
		{"swapped to other trusted key", replaceParam(t, signed, "Key-Pair-Id", otherKeyID), testNow, ReasonBadSignature, ""},
		{"unknown key", replaceParam(t, signed, "Key-Pair-Id", "KUNKNOWN"), testNow, ReasonUnknownKey, ""},
		{"SHA-256 claimed as SHA-1", strings.TrimSuffix(sha256Signed, "&Hash-Algorithm=SHA256"), testNow, ReasonHashMismatch, ""},
		{"SHA-1 claimed as SHA-256", signed + "&Hash-Algorithm=SHA256", testNow, ReasonHashMismatch, ""},

		{"no query", testResource, testNow, ReasonMalformed, ""},
		{"no signing params", testResource + "?a=1", testNow, ReasonMalformed, ""},
		{"no signature", strings.Replace(signed, "&Signature="+sig, "", 1), testNow, ReasonMalformed, ""},
		{"empty signature", replaceParam(t, signed, "Signature", ""), testNow, ReasonMalformed, ""},
		{"no key pair id", strings.TrimSuffix(signed, "&Key-Pair-Id="+testKeyID), testNow, ReasonMalformed, ""},
		{"no expires or policy", strings.Replace(signed, "Expires="+epoch+"&", "", 1), testNow, ReasonMalformed, ""},
		{"signature not base64", replaceParam(t, signed, "Signature", "!!"+sig[2:]), testNow, ReasonMalformed, ""},
		{"signature truncated", replaceParam(t, signed, "Signature", sig[:len(sig)-3]), testNow, ReasonMalformed, ""},
		{"expires not a number", replaceParam(t, signed, "Expires", "soon"), testNow, ReasonMalformed, ""},
		{"expires with plus", replaceParam(t, signed, "Expires", "%2B"+epoch), testNow, ReasonMalformed, ""},
		{"param after signing params", signed + "&x=1", testNow, ReasonMalformed, ""},
		{"duplicate expires", signed + "&Expires=" + epoch, testNow, ReasonMalformed, ""},
		{"both expires and policy", signed + "&Policy=e30_", testNow, ReasonMalformed, ""},
		{"unknown hash", signed + "&Hash-Algorithm=MD5", testNow, ReasonMalformed, ""},
		{"bad escape", signed + "&Hash-Algorithm=%zz", testNow, ReasonMalformed, ""},
		{"unparsable", "https://[::1/a?Expires=" + epoch + "&Signature=" + sig + "&Key-Pair-Id=" + testKeyID, testNow, ReasonMalformed, ""},
		{"control character", strings.Replace(signed, "?", "\x7f?", 1), testNow, ReasonMalformed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Verify(tt.url, lookup(t), tt.now)
			if tt.wantReason == "" {
				if err != nil {
					t.Fatal(err)
				}
				if v.Policy != PolicyCanned || v.Hash != tt.wantHash || !v.Expires.Equal(wantExpires) {
					t.Fatalf("Verify = %+v", v)
				}
				return
			}
			checkVerifyError(t, err, tt.wantReason, sig, signedParam(t, sha256Signed, "Signature"))
			if v != (Verified{}) {
				t.Fatalf("Verify returned %+v with an error", v)
			}
		})
	}

	t.Run("lookup returns a private key", func(t *testing.T) {
		v, err := Verify(signed, func(string) (crypto.PublicKey, bool) { return k, true }, testNow)
		if err != nil || v.KeyID != testKeyID {
			t.Fatalf("Verify = %+v, %v", v, err)
		}
	})
	t.Run("nil lookup", func(t *testing.T) {
		_, err := Verify(signed, nil, testNow)
		checkVerifyError(t, err, ReasonUnknownKey, sig)
	})
	t.Run("key id on error", func(t *testing.T) {
		_, err := Verify(signed, lookup(t), testNow.Add(48*time.Hour))
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.KeyID != testKeyID {
			t.Fatalf("error = %#v, want KeyID %s", err, testKeyID)
		}
	})
}

func TestVerifyCustomPolicy(t *testing.T) {
	k, _ := keys(t)
	start := testNow.Add(-time.Hour)
	end := testNow.Add(time.Hour)
	policy := &sign.Policy{Statements: []sign.Statement{{
		Resource: "https://d111111abcdef8.cloudfront.net/reports/2026/*",
		Condition: sign.Condition{
			DateLessThan:    sign.NewAWSEpochTime(end),
			DateGreaterThan: sign.NewAWSEpochTime(start),
			IPAddress:       &sign.IPAddress{SourceIP: "192.0.2.0/24"},
		},
	}}}
	signer := sign.NewURLSigner(testKeyID, k)
	signFor := func(u string) string {
		t.Helper()
		s, err := signer.SignWithPolicy(u, policy)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	inside := signFor("https://d111111abcdef8.cloudfront.net/reports/2026/q1/a%20b.pdf")
	outside := signFor("https://d111111abcdef8.cloudfront.net/reports/2025/a.pdf")
	wildcard := signedParam(t, inside, "Policy")
	// One signature covers every object under the prefix.
	sibling := strings.Replace(inside, "q1/a%20b.pdf?", "q2/c.csv?x=1&", 1)

	tests := []struct {
		name       string
		url        string
		now        time.Time
		ip         string
		wantReason string
	}{
		{"valid", inside, testNow, "", ""},
		{"valid sibling", sibling, testNow, "", ""},
		{"valid from allowed ip", inside, testNow, "192.0.2.77", ""},
		{"resource mismatch", outside, testNow, "", ReasonResourceMismatch},
		{"not yet valid at start", inside, time.Unix(start.Unix(), 0), "", ReasonNotYetValid},
		{"not yet valid before", inside, start.Add(-time.Minute), "", ReasonNotYetValid},
		{"expired", inside, end, "", ReasonExpired},
		{"ip denied", inside, testNow, "198.51.100.1", ReasonIPDenied},
		{"tampered policy", replaceParam(t, inside, "Policy", "A"+wildcard[1:]), testNow, "", ReasonBadSignature},
		{"policy not base64", replaceParam(t, inside, "Policy", "!"+wildcard[1:]), testNow, "", ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ip netip.Addr
			if tt.ip != "" {
				ip = netip.MustParseAddr(tt.ip)
			}
			v, err := VerifyFrom(tt.url, lookup(t), tt.now, ip)
			if tt.wantReason == "" {
				if err != nil {
					t.Fatal(err)
				}
				want := Verified{
					KeyID:     testKeyID,
					Expires:   time.Unix(end.Unix(), 0).UTC(),
					NotBefore: time.Unix(start.Unix(), 0).UTC(),
					Policy:    PolicyCustom,
					Hash:      HashSHA1,
					Resource:  "https://d111111abcdef8.cloudfront.net/reports/2026/*",
					SourceIP:  netip.MustParsePrefix("192.0.2.0/24"),
				}
				if v != want {
					t.Fatalf("Verify = %+v, want %+v", v, want)
				}
				return
			}
			checkVerifyError(t, err, tt.wantReason, signedParam(t, inside, "Signature"), wildcard)
		})
	}

	t.Run("ip ignored without client ip", func(t *testing.T) {
		if _, err := Verify(inside, lookup(t), testNow); err != nil {
			t.Fatal(err)
		}
	})
}

func TestParseCustomPolicy(t *testing.T) {
	tests := []struct {
		name    string
		policy  string
		wantErr string
	}{
		{"minimal", `{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":1}}}]}`, ""},
		{"bare ip", `{"Statement":[{"Resource":"*","Condition":{"DateLessThan":{"AWS:EpochTime":1},"IpAddress":{"AWS:SourceIp":"192.0.2.1"}}}]}`, ""},
		{"two statements", `{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":1}}},{"Condition":{"DateLessThan":{"AWS:EpochTime":1}}}]}`, "2 statements"},
		{"no statement", `{}`, "0 statements"},
		{"no DateLessThan", `{"Statement":[{"Resource":"*","Condition":{}}]}`, "no DateLessThan"},
		{"empty DateGreaterThan", `{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":1},"DateGreaterThan":{}}}]}`, "DateGreaterThan"},
		{"IPv6", `{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":1},"IpAddress":{"AWS:SourceIp":"2001:db8::/32"}}}]}`, "not IPv4"},
		{"bad CIDR", `{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":1},"IpAddress":{"AWS:SourceIp":"nope"}}}]}`, "IpAddress"},
		{"not JSON", `{`, "unexpected end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseCustomPolicy([]byte(tt.policy))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestWildcardMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "https://d.net/a?b=c", true},
		{"https://d.net/a", "https://d.net/a", true},
		{"https://d.net/a", "https://d.net/ab", false},
		{"https://d.net/*", "https://d.net/x/y/z.pdf", true},
		{"https://d.net/*.pdf", "https://d.net/x/y.pdf", true},
		{"https://d.net/*.pdf", "https://d.net/x/y.pdf.csv", false},
		{"https://d.net/?.pdf", "https://d.net/a.pdf", true},
		{"https://d.net/?.pdf", "https://d.net/ab.pdf", false},
		{"http*://d.net/*", "https://d.net/a", true},
		{"*a*b*c", "xxaxxbxxc", true},
		{"*a*b*c", "xxaxxcxxb", false},
		{"a**", "a", true},
		{"", "", true},
		{"", "a", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+"|"+tt.s, func(t *testing.T) {
			if got := wildcardMatch(tt.pattern, tt.s); got != tt.want {
				t.Fatalf("wildcardMatch(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
			}
		})
	}
}

func TestJSONString(t *testing.T) {
	for _, s := range []string{"https://d.net/a?b=c&d=<e>", `a"b\c`, "tab\t", "\u2028"} {
		if got, want := string(appendJSONString(nil, s)), jsonString(s); got != want {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	}
	if got := jsonString("a&<>"); got != `"a&<>"` {
		t.Errorf("jsonString escapes HTML: %s", got)
	}
}

func TestVerifyECDSA(t *testing.T) {
	e, _ := ecKeys(t)
	expires := testNow.Add(time.Hour)
	sign := func(hash string, p Policy) string {
		t.Helper()
		p.Expires = expires
		s, err := Sign(testResource, Key{ID: testECKeyID, Signer: e}, hash, p)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	sha1Canned := sign(HashSHA1, Policy{})
	sha256Canned := sign(HashSHA256, Policy{})
	sha256Custom := sign(HashSHA256, Policy{Custom: true})
	sig := signedParam(t, sha256Canned, "Signature")
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		url        string
		keys       KeyLookup
		wantReason string
	}{
		{"valid SHA-1", sha1Canned, lookup(t), ""},
		{"valid SHA-256", sha256Canned, lookup(t), ""},
		{"valid custom", sha256Custom, lookup(t), ""},
		{"lookup returns the private key", sha256Canned, func(string) (crypto.PublicKey, bool) { return e, true }, ""},
		{"tampered path", strings.Replace(sha256Canned, "a%2Bb.pdf", "a%2Bc.pdf", 1), lookup(t), ReasonBadSignature},
		{"tampered signature", replaceParam(t, sha256Canned, "Signature", sig[:10]+"AAAA"+sig[14:]), lookup(t), ReasonBadSignature},
		{"other ECDSA key", replaceParam(t, sha256Canned, "Key-Pair-Id", otherECKeyID), lookup(t), ReasonBadSignature},
		{"RSA key for an ECDSA signature", replaceParam(t, sha256Canned, "Key-Pair-Id", testKeyID), lookup(t), ReasonBadSignature},
		{"SHA-256 claimed as SHA-1", strings.TrimSuffix(sha256Canned, "&Hash-Algorithm=SHA256"), lookup(t), ReasonHashMismatch},
		{"SHA-1 claimed as SHA-256", sha1Canned + "&Hash-Algorithm=SHA256", lookup(t), ReasonHashMismatch},
		{"P-384 key trusted", sha256Canned, func(string) (crypto.PublicKey, bool) { return &p384.PublicKey, true }, ReasonUnknownKey},
		{"signature not DER", replaceParam(t, sha256Canned, "Signature", "AAAA"), lookup(t), ReasonBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Verify(tt.url, tt.keys, testNow)
			if tt.wantReason == "" {
				if err != nil {
					t.Fatal(err)
				}
				if v.KeyID != testECKeyID {
					t.Fatalf("Verify = %+v", v)
				}
				return
			}
			checkVerifyError(t, err, tt.wantReason, sig)
		})
	}
}
