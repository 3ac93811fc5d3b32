// Package linktoken makes the opaque per-recipient tokens of traced
// links (links.trace): an HMAC-SHA256 of an event id and a recipient,
// keyed by a secret of the operator's, truncated to 128 bits and
// written in URL-safe base64 without padding (22 characters).
//
// A token names a delivery without naming the address: whoever holds
// the secret and the ledger can recompute every token of a delivery
// and join it to CloudFront's access logs (reportmailer downloads) or
// put it on a deny list (reportmailer revoke); whoever holds only a
// link learns nothing. The secret is never logged, nor any part of it.
package linktoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Param is the query parameter a traced link carries its token in,
// before the signing parameters, so that the signature covers it.
const Param = "rmt"

// Len is the length of a token: 16 bytes in unpadded base64.
const Len = 22

// MinSecret is the shortest secret accepted, in bytes.
const MinSecret = 32

// Tokens makes tokens with one secret. The zero value is not usable;
// use [New].
type Tokens struct {
	secret []byte
}

// New returns Tokens keyed by secret, which must hold at least
// MinSecret bytes. A trailing newline, as files and environment
// variables often end with, is not part of it.
func New(secret []byte) (*Tokens, error) {
	s := strings.TrimRight(string(secret), "\r\n")
	if len(s) < MinSecret {
		// The length only: never the secret.
		return nil, fmt.Errorf("secret is %d bytes, want at least %d (e.g. openssl rand -hex 32)", len(s), MinSecret)
	}
	return &Tokens{secret: []byte(s)}, nil
}

// Of returns the token of the delivery of eventID to recipient. The
// recipient is compared without case, as the ledger keeps it.
func (t *Tokens) Of(eventID, recipient string) string {
	m := hmac.New(sha256.New, t.secret)
	m.Write([]byte(eventID))
	m.Write([]byte{0})
	m.Write([]byte(strings.ToLower(recipient)))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// String hides the secret from %v and slog.
func (t *Tokens) String() string { return "linktoken.Tokens{secret not shown}" }

// Check reports why s cannot be a token, or nil: Len characters of
// URL-safe base64, which need no escaping in a URL, a log or a
// KeyValueStore key.
func Check(s string) error {
	if len(s) != Len {
		return fmt.Errorf("token is %d characters, want %d", len(s), Len)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return errors.New("token has a character other than letters, digits, - and _")
		}
	}
	return nil
}

// FromQuery returns the token values in a raw query string (as in a
// URL after "?", or CloudFront's cs-uri-query), in order; a value that
// cannot be a token is left out. A token needs no percent-encoding, so
// it reads the same whether a log keeps the query as sent or encodes it
// once more: a query with no token whose "&" and "=" arrive as %26 and
// %3D is read again, decoded once.
func FromQuery(rawQuery string) []string {
	out := fromQuery(rawQuery)
	if out == nil && (strings.Contains(rawQuery, "%3D") || strings.Contains(rawQuery, "%3d")) {
		if q, err := url.QueryUnescape(rawQuery); err == nil {
			out = fromQuery(q)
		}
	}
	return out
}

func fromQuery(rawQuery string) []string {
	var out []string
	for part := range strings.SplitSeq(rawQuery, "&") {
		name, value, ok := strings.Cut(part, "=")
		if !ok || name != Param {
			continue
		}
		if Check(value) == nil {
			out = append(out, value)
		}
	}
	return out
}
