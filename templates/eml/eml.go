// Package eml writes a rendered email as an Internet message (RFC 5322,
// a ".eml" file) that mail clients open: multipart/alternative with the
// plain-text and HTML parts in UTF-8 quoted-printable, and every header
// that is not ASCII encoded as RFC 2047 encoded words.
//
// The MIME writing, header folding included, is
// github.com/emersion/go-message's; this package decides what goes in
// and refuses anything that could add a header.
package eml

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/mail"
	"net/textproto"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
)

// Message is one email.
type Message struct {
	From      string   // one address, e.g. "Reports <reports@example.com>"
	To        []string // addresses
	ReplyTo   []string // addresses, optional
	Subject   string   // UTF-8, one line
	Date      time.Time
	MessageID string            // without angle brackets; "" leaves the header out
	Headers   map[string]string // more headers, written sorted by name
	Text      string
	HTML      string
}

// Encode returns m as a MIME message with CRLF line ends. The output
// depends only on m: the part boundary is derived from the content, so
// the same email gives the same bytes.
//
// It fails on an address that does not parse, and on a header name or
// value that holds a line break or control character, so nothing in m
// can add a header.
func Encode(m Message) ([]byte, error) {
	if m.From == "" {
		return nil, errors.New("from: is required")
	}
	if len(m.To) == 0 {
		return nil, errors.New("to: is required")
	}
	var fields [][2]string // in the order they are written
	add := func(name, value string) error {
		if strings.ContainsFunc(value, isControl) {
			return fmt.Errorf("header %s: value %q holds a control character", name, value)
		}
		fields = append(fields, [2]string{name, value})
		return nil
	}
	addrs := func(name string, list []string) error {
		if len(list) == 0 {
			return nil
		}
		out := make([]*mail.Address, len(list))
		for i, a := range list {
			p, err := mail.ParseAddress(a)
			if err != nil {
				return fmt.Errorf("%s: %q: %w", name, a, err)
			}
			out[i] = p
		}
		var h gomail.Header
		h.SetAddressList(name, out) // encodes a non-ASCII display name
		return add(name, h.Get(name))
	}
	if err := addrs("From", []string{m.From}); err != nil {
		return nil, err
	}
	if err := addrs("To", m.To); err != nil {
		return nil, err
	}
	if err := addrs("Reply-To", m.ReplyTo); err != nil {
		return nil, err
	}
	if err := add("Subject", EncodeText(m.Subject)); err != nil {
		return nil, err
	}
	if !m.Date.IsZero() {
		add("Date", m.Date.Format(time.RFC1123Z))
	}
	if m.MessageID != "" {
		if err := add("Message-ID", "<"+m.MessageID+">"); err != nil {
			return nil, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(m.Headers)) {
		if !validName(name) {
			return nil, fmt.Errorf("header name %q is not a token", name)
		}
		if reserved[textproto.CanonicalMIMEHeaderKey(name)] {
			return nil, fmt.Errorf("header %s: set by eml itself", name)
		}
		if err := add(name, EncodeText(m.Headers[name])); err != nil {
			return nil, err
		}
	}
	// gomail.CreateInlineWriter would pick a random boundary; one derived
	// from the content keeps previews reproducible. "=_" never occurs in
	// quoted-printable output, so it cannot collide with the content.
	sum := sha256.Sum256([]byte(m.Text + "\x00" + m.HTML))
	add("MIME-Version", "1.0")
	add("Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": "=_rm_" + hex.EncodeToString(sum[:12])}))

	// go-message writes the fields it was given last first.
	var h message.Header
	for _, f := range slices.Backward(fields) {
		h.Add(f[0], f[1])
	}
	var b bytes.Buffer
	w, err := message.CreateWriter(&b, h)
	if err != nil {
		return nil, err
	}
	// Clients show the last part they can: plain text first, HTML last.
	for _, part := range []struct{ typ, body string }{{"text/plain", m.Text}, {"text/html", m.HTML}} {
		var ph message.Header
		ph.Set("Content-Transfer-Encoding", "quoted-printable")
		ph.SetContentType(part.typ, map[string]string{"charset": "utf-8"})
		pw, err := w.CreatePart(ph)
		if err != nil {
			return nil, err
		}
		if _, err := pw.Write([]byte(part.body)); err != nil {
			return nil, err
		}
		if err := pw.Close(); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// reserved are the headers Encode writes from Message's own fields.
var reserved = map[string]bool{
	"From": true, "To": true, "Reply-To": true, "Subject": true, "Date": true,
	"Message-Id": true, "Mime-Version": true, "Content-Type": true, "Content-Transfer-Encoding": true,
}

// EncodeText returns s as header text: s itself when it is printable
// ASCII, otherwise RFC 2047 encoded words (UTF-8, Q encoding) that
// decode back to exactly s. ASCII text that contains "=?" is encoded
// too, since a decoder would otherwise take it for an encoded word.
// Invalid UTF-8 is replaced by U+FFFD.
func EncodeText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	ascii := !strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r > '~' })
	switch {
	case ascii && !strings.Contains(s, "=?"):
		return s
	case !ascii:
		return mime.QEncoding.Encode("utf-8", s)
	}
	// mime's encoders leave printable ASCII alone, so encode by hand:
	// B words of at most 45 bytes (75 characters each).
	var words []string
	for len(s) > 0 {
		n := min(len(s), 45)
		for n < len(s) && !utf8.RuneStart(s[n]) {
			n--
		}
		words = append(words, "=?utf-8?b?"+base64.StdEncoding.EncodeToString([]byte(s[:n]))+"?=")
		s = s[n:]
	}
	return strings.Join(words, " ")
}

func isControl(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }

func validName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if r <= ' ' || r >= 0x7f || r == ':' {
			return false
		}
	}
	return true
}
