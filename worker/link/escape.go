package link

import (
	"errors"
	"fmt"
	"strings"

	"github.com/aws/smithy-go/encoding/httpbinding"
)

// EscapeKey percent-encodes an S3 object key for use as a URL path,
// segment by segment: every byte except A-Z, a-z, 0-9, "-", "_", "."
// and "~" is encoded as %XX, and the "/" separators are kept, including
// empty segments ("a//b") and a leading "/". Decoding the result once
// gives the key back.
//
// EscapeKey does not add a leading "/"; join it to a base URL with one.
func EscapeKey(key string) string {
	return httpbinding.EscapePath(key, false)
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
// server. Only ASCII passes, so s needs no escaping inside JSON.
func checkURLChars(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~:/?[]@!$&'()*+,;=", c) >= 0:
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return fmt.Errorf("malformed percent-escape at offset %d", i)
			}
		case c == '#':
			return fmt.Errorf("fragment (#) at offset %d is not allowed", i)
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
