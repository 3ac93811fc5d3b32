package link

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aws/smithy-go/encoding/httpbinding"
)

func TestEscapeKey(t *testing.T) {
	tests := []struct {
		name, key, want string
	}{
		{"space and plus", "reports/Q1 2026/a+b.pdf", "reports/Q1%202026/a%2Bb.pdf"},
		{"query fragment percent", "x?y#z%41.csv", "x%3Fy%23z%2541.csv"},
		{"non-ASCII", "日本語/報告.pdf", "%E6%97%A5%E6%9C%AC%E8%AA%9E/%E5%A0%B1%E5%91%8A.pdf"},
		{"empty segment", "a//b", "a//b"},
		{"leading slash", "/a", "/a"},
		{"emoji", "emoji 📈.pdf", "emoji%20%F0%9F%93%88.pdf"},
		{"unreserved kept", "AZaz09-_.~", "AZaz09-_.~"},
		{"sub-delims escaped", "a&b=c;d,e!f$g'h(i)j*k", "a%26b%3Dc%3Bd%2Ce%21f%24g%27h%28i%29j%2Ak"},
		{"colon and at", "a:b@c", "a%3Ab%40c"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EscapeKey(tt.key); got != tt.want {
				t.Errorf("EscapeKey(%q) = %q, want %q", tt.key, got, tt.want)
			}
			checkEscapeRoundTrip(t, tt.key)
		})
	}
}

// checkEscapeRoundTrip checks that EscapeKey(key) is a safe URL path
// that decodes once to key.
func checkEscapeRoundTrip(t *testing.T, key string) {
	t.Helper()
	esc := EscapeKey(key)
	if want := httpbinding.EscapePath(key, false); esc != want {
		t.Fatalf("EscapeKey(%q) = %q, smithy-go's EscapePath gives %q", key, esc, want)
	}
	for i := 0; i < len(esc); i++ {
		c := esc[i]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-_.~/%", c) >= 0
		if !ok {
			t.Fatalf("EscapeKey(%q) = %q: byte %q at %d left raw", key, esc, c, i)
		}
	}
	got, err := url.PathUnescape(esc)
	if err != nil {
		t.Fatalf("PathUnescape(%q): %v", esc, err)
	}
	if got != key {
		t.Fatalf("PathUnescape(EscapeKey(%q)) = %q", key, got)
	}
	if strings.Count(esc, "/") != strings.Count(key, "/") {
		t.Fatalf("EscapeKey(%q) = %q: segments changed", key, esc)
	}
	u, err := url.Parse("https://d111111abcdef8.cloudfront.net/" + esc)
	if err != nil {
		t.Fatalf("parse URL with %q: %v", esc, err)
	}
	if u.Path != "/"+key || u.RawQuery != "" || u.Fragment != "" {
		t.Fatalf("URL with key %q parses to path %q, query %q, fragment %q", key, u.Path, u.RawQuery, u.Fragment)
	}
}

func FuzzEscapeKey(f *testing.F) {
	for _, k := range nastyKeys {
		f.Add(k)
	}
	f.Add("")
	f.Add("%")
	f.Add("%zz")
	f.Add("\xff\xfe")
	f.Fuzz(func(t *testing.T, key string) {
		checkEscapeRoundTrip(t, key)
		if !utf8.ValidString(EscapeKey(key)) {
			t.Fatalf("EscapeKey(%q) is not valid UTF-8", key)
		}
	})
}

func TestCheckKey(t *testing.T) {
	tests := []struct {
		key     string
		wantErr bool
	}{
		{"", true},
		{".", true},
		{"..", true},
		{"a/../b.pdf", true},
		{"a/./b.pdf", true},
		{"a/..", true},
		{"../a", true},
		{"...", false},
		{"a..b/.hidden", false},
		{"a//b", false},
		{"/a", false},
		{"reports/Q1 2026/a+b.pdf", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			err := checkKey(tt.key)
			if (err != nil) != tt.wantErr {
				t.Fatalf("checkKey(%q) = %v, want error %v", tt.key, err, tt.wantErr)
			}
		})
	}
}

func TestEncodeBase64(t *testing.T) {
	// CloudFront's alphabet is standard base64 with three characters
	// swapped; check every byte value in every padding position.
	for n := range 260 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + n)
		}
		want := strings.NewReplacer("+", "-", "=", "_", "/", "~").Replace(base64.StdEncoding.EncodeToString(b))
		got := encodeBase64(b)
		if got != want {
			t.Fatalf("encodeBase64(%d bytes) = %q, want %q", n, got, want)
		}
		back, err := decodeBase64(got)
		if err != nil || string(back) != string(b) {
			t.Fatalf("decodeBase64 round trip of %d bytes: %v", n, err)
		}
	}
}
