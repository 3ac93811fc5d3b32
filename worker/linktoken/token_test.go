package linktoken

import (
	"strings"
	"testing"
)

const testSecret = "0123456789abcdef0123456789abcdef"

func TestOf(t *testing.T) {
	tk, err := New([]byte(testSecret + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := tk.Of("e1", "Ann@Example.com")
	if err := Check(a); err != nil {
		t.Fatalf("token %q: %v", a, err)
	}
	if b := tk.Of("e1", "ann@example.com"); b != a {
		t.Errorf("case of the address changes the token: %q vs %q", a, b)
	}
	for _, other := range []struct{ ev, to string }{{"e2", "ann@example.com"}, {"e1", "bob@example.com"}, {"e1a", "nn@example.com"}} {
		if tk.Of(other.ev, other.to) == a {
			t.Errorf("(%s, %s) has the same token as (e1, ann@example.com)", other.ev, other.to)
		}
	}
	if strings.Contains(strings.ToLower(a), "ann") {
		t.Errorf("token %q shows the address", a)
	}
	tk2, _ := New([]byte(strings.Repeat("z", 40)))
	if tk2.Of("e1", "ann@example.com") == a {
		t.Error("another secret gives the same token")
	}
	// Computed with openssl: printf 'e1\0ann@example.com' | openssl dgst
	// -sha256 -hmac SECRET -binary, first 16 bytes, URL-safe base64.
	// Fixed: downloads and revoke recompute tokens of old deliveries, so
	// the derivation must never change.
	if want := "PDFpUcE6Z3s3oEQtnvEvLQ"; a != want {
		t.Errorf("token = %q, want %q: changing the derivation breaks every traced link already sent", a, want)
	}
}

func TestNewRefusesShortSecrets(t *testing.T) {
	for _, s := range []string{"", "short", strings.Repeat("x", MinSecret-1) + "\n"} {
		_, err := New([]byte(s))
		if err == nil {
			t.Errorf("New(%q) accepted", s)
			continue
		}
		if s != "" && strings.Contains(err.Error(), strings.TrimSpace(s)) {
			t.Errorf("error quotes the secret: %v", err)
		}
	}
	tk, _ := New([]byte(testSecret))
	if strings.Contains(tk.String(), testSecret) {
		t.Error("String shows the secret")
	}
}

func TestFromQuery(t *testing.T) {
	tok := "PDFpUcE6Z3s3oEQtnvEvLQ"
	for _, tt := range []struct {
		q    string
		want []string
	}{
		{"", nil},
		{"-", nil},
		{"rmt=" + tok + "&Expires=1&Signature=x&Key-Pair-Id=K", []string{tok}},
		{"a=1&rmt=" + tok, []string{tok}},
		{"rmt=short", nil},
		{"rmt=" + tok + "&rmt=" + tok, []string{tok, tok}},
		{"xrmt=" + tok, nil},
		{"rmt=" + tok[:21] + "%", nil},
		{"rmt%3D" + tok + "%26Expires%3D1", []string{tok}},
	} {
		got := FromQuery(tt.q)
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("FromQuery(%q) = %q, want %q", tt.q, got, tt.want)
		}
	}
}
