package link

import (
	"errors"
	"fmt"
	"strings"
)

// EscapeKey percent-encodes an S3 object key for use as a URL path,
// segment by segment: every byte except A-Z, a-z, 0-9, "-", "_", "."
// and "~" is encoded as %XX, and the "/" separators are kept, including
// empty segments ("a//b") and a leading "/". Decoding the result once
// gives the key back. It is what smithy-go's
// httpbinding.EscapePath(key, false) does, which a test holds it to,
// with one allocation instead of one per byte.
//
// EscapeKey does not add a leading "/"; join it to a base URL with one.
func EscapeKey(key string) string {
	n := 0
	for i := 0; i < len(key); i++ {
		if !keepInPath(key[i]) {
			n++
		}
	}
	if n == 0 {
		return key
	}
	var b strings.Builder
	b.Grow(len(key) + 2*n)
	for i := 0; i < len(key); i++ {
		c := key[i]
		if keepInPath(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&0xf])
	}
	return b.String()
}

const upperHex = "0123456789ABCDEF"

// keepInPath reports whether c stays raw in an escaped key: the
// unreserved characters of RFC 3986, and "/".
func keepInPath(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '~' || c == '/'
}

// checkKey reports why key cannot be put in a link path, or nil.
//
// A "." or ".." segment is removed or resolved by browsers and HTTP
// libraries before the request is sent (RFC 3986 section 5.2.4, also
// when written as %2E), so the link would fetch another object than the
// one named by the key. No escaping can prevent that.
func checkKey(key string) error {
	if key == "" {
		return errors.New("object key is empty")
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("object key has a %q segment, which browsers resolve before the request is sent", seg)
		}
	}
	return nil
}

// checkURLChars reports the first byte of s that may not appear raw in
// a URL (RFC 3986), or a malformed percent-escape, or nil. A fragment
// ("#") is refused too: it would hide whatever follows it from the
// server. So is a raw "+", which RFC 3986 allows but S3 reads as a
// space, so that the link names another object. Only ASCII passes, so
// s needs no escaping inside JSON.
func checkURLChars(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~:/?[]@!$&'()*,;=", c) >= 0:
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return fmt.Errorf("malformed percent-escape at offset %d", i)
			}
		case c == '#':
			return fmt.Errorf("fragment (#) at offset %d is not allowed", i)
		case c == '+':
			return fmt.Errorf("raw '+' at offset %d: S3 reads it as a space; write %%2B for a plus, %%20 for a space", i)
		case c < 0x20 || c >= 0x7f:
			return fmt.Errorf("byte 0x%02X at offset %d must be percent-encoded", c, i)
		default:
			return fmt.Errorf("character %q at offset %d must be percent-encoded", c, i)
		}
	}
	return nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
