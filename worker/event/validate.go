package event

import (
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"path"
	"strings"
	"time"
	_ "time/tzdata" // time zones must not depend on the host's zoneinfo files
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Limits the decoders enforce. They are documented in docs/events.md.
const (
	maxIDLen       = 256  // event id and user id, in bytes
	maxKeyLen      = 1024 // S3's own limit on a key, in bytes
	maxTextLen     = 1024 // user name, title, report type, content type
	maxAddressLen  = 254  // RFC 5321 path limit less the angle brackets
	maxLocaleLen   = 35   // BCP 47's recommended buffer size
	maxTimeZoneLen = 64   // the longest IANA name is about 30 bytes
	maxReports     = 100
)

// ValidAddress reports whether addr is a single bare email address, such
// as "ana@example.com": one that net/mail parses back to exactly itself,
// so no display name, angle brackets, comments, surrounding spaces or
// control characters (CR and LF included).
//
// [Decode] and [FromObject] require it of the user's address but keep
// extra recipients that fail it, so the recipient policy step can refuse
// and log them; that step should use this function.
func ValidAddress(addr string) bool {
	if addr == "" || len(addr) > maxAddressLen || hasControl(addr) {
		return false
	}
	a, err := mail.ParseAddress(addr)
	return err == nil && a.Name == "" && a.Address == addr
}

// ASCIIAddress returns addr, a bare address that passes [ValidAddress],
// in the form SES takes: the local part as it is and the domain in its
// ASCII form, such as "user@xn--bcher-kva.example" for
// "user@bücher.example". SES needs an internationalized domain in
// Punycode and does not support SMTPUTF8, so it cannot send to a local
// part that is not ASCII; for such an address, and for a domain that is
// not a valid internationalized domain name, it returns an error that
// says why. See [ASCIIDomain] for the domain.
func ASCIIAddress(addr string) (string, error) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "", errors.New("has no '@'")
	}
	local, domain := addr[:at], addr[at+1:]
	if !isASCII(local) {
		return "", fmt.Errorf("local part %q is not ASCII, and SES cannot send to it (it does not support SMTPUTF8)", local)
	}
	d, err := ASCIIDomain(domain)
	if err != nil {
		return "", err
	}
	a := local + "@" + d
	if len(a) > maxAddressLen {
		return "", fmt.Errorf("is %d bytes once its domain is in ASCII form (%s); the limit is %d", len(a), d, maxAddressLen)
	}
	return a, nil
}

// ASCIIDomain returns domain in the ASCII form that SES and DNS take. A
// domain with a non-ASCII or a Punycode ("xn--") label goes through
// IDNA's lookup rules (UTS #46, as browsers resolve names): it comes
// back lower-cased with each such label in Punycode, or with an error
// if IDNA refuses it or a label is longer than 63 bytes once encoded.
// Any other ASCII domain is returned as it is, for SES to judge.
func ASCIIDomain(domain string) (string, error) {
	if isASCII(domain) && !hasPunycode(domain) {
		return domain, nil
	}
	d, err := idna.Lookup.ToASCII(domain)
	if err != nil {
		return "", fmt.Errorf("domain %q is not a valid internationalized domain name: %v", domain, err)
	}
	for l := range strings.SplitSeq(d, ".") {
		if len(l) > 63 {
			return "", fmt.Errorf("domain %q has a label of %d bytes once in ASCII form (%s); DNS takes at most 63", domain, len(l), l)
		}
	}
	return d, nil
}

func hasPunycode(domain string) bool {
	for l := range strings.SplitSeq(domain, ".") {
		if len(l) >= 4 && strings.EqualFold(l[:4], "xn--") {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// hasControl reports whether s holds a control character (C0, DEL or C1).
// For invalid UTF-8 it reports false; check that separately.
func hasControl(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}

// checkID validates an event or user id: printable UTF-8 of at most
// maxIDLen bytes.
func checkID(field, id string) error {
	switch {
	case id == "":
		return missing(field)
	case len(id) > maxIDLen:
		return invalid(field, id, "is longer than 256 bytes")
	case !utf8.ValidString(id):
		return invalid(field, id, "is not valid UTF-8")
	case strings.IndexFunc(id, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return invalid(field, id, "contains a character that is not printable")
	}
	return nil
}

// checkText validates an optional free-text field (a name, title, type or
// content type): at most maxTextLen bytes of UTF-8 with no control
// characters, since these values end up in email headers and logs.
func checkText(field, s string) error {
	switch {
	case len(s) > maxTextLen:
		return invalid(field, s, "is longer than 1024 bytes")
	case !utf8.ValidString(s):
		return invalid(field, s, "is not valid UTF-8")
	case hasControl(s):
		return invalid(field, s, "contains a control character")
	}
	return nil
}

// keyProblem says what is wrong with an S3 object key, or "" if nothing.
func keyProblem(key string) string {
	switch {
	case key == "":
		return "is empty"
	case len(key) > maxKeyLen:
		return "is longer than 1024 bytes"
	case !utf8.ValidString(key):
		return "is not valid UTF-8"
	case hasControl(key):
		return "contains a control character"
	}
	return ""
}

// checkKey validates a raw (not URL-encoded) S3 object key.
func checkKey(field, key string) error {
	if key == "" {
		return missing(field)
	}
	if p := keyProblem(key); p != "" {
		return invalid(field, key, p)
	}
	return nil
}

// validBucket reports whether name follows S3's rules for bucket names:
// 3 to 63 lower-case letters, digits, dots and hyphens, starting and
// ending with a letter or digit, no "..", and not an IPv4 address.
func validBucket(name string) bool {
	if len(name) < 3 || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	if !isAlnum(name[0]) || !isAlnum(name[len(name)-1]) || strings.Contains(name, "..") {
		return false
	}
	_, err := netip.ParseAddr(name)
	return err != nil
}

// checkBucket validates a required bucket name.
func checkBucket(field, name string) error {
	if name == "" {
		return missing(field)
	}
	if !validBucket(name) {
		return invalid(field, name, "is not a valid S3 bucket name")
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isAlpha(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// validLocale reports whether tag is a plausible BCP 47 language tag:
// hyphen-separated subtags of 1 to 8 ASCII letters or digits, the first
// being 2 to 8 letters (a language) or the singleton "x" or "i", and at
// most 35 bytes in all. It checks the shape only, not the registry, so
// "pt-BR", "zh-Hant-TW" and "x-klingon" pass and "pt_BR" does not.
func validLocale(tag string) bool {
	if tag == "" || len(tag) > maxLocaleLen {
		return false
	}
	for i, sub := range strings.Split(tag, "-") {
		if len(sub) < 1 || len(sub) > 8 {
			return false
		}
		for j := 0; j < len(sub); j++ {
			if !isAlnum(sub[j]) || i == 0 && !isAlpha(sub[j]) {
				return false
			}
		}
		if i == 0 && len(sub) == 1 && sub != "x" && sub != "X" && sub != "i" && sub != "I" {
			return false
		}
	}
	return true
}

// checkLocale validates an optional locale.
func checkLocale(field, tag string) error {
	if tag != "" && !validLocale(tag) {
		return invalid(field, tag, "is not a BCP 47 language tag")
	}
	return nil
}

// validTimeZone reports whether name is an IANA time zone name that
// time.LoadLocation knows. Names are first held to the IANA character set
// ([A-Za-z0-9/_+-], no empty segment), so a hostile name cannot make
// LoadLocation probe arbitrary paths, and "Local" is refused because it
// means the worker's zone, not the user's.
func validTimeZone(name string) bool {
	if name == "" || len(name) > maxTimeZoneLen || name == "Local" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(isAlnum(c) || c == '/' || c == '_' || c == '-' || c == '+') {
			return false
		}
	}
	if name[0] == '/' || name[len(name)-1] == '/' || strings.Contains(name, "//") {
		return false
	}
	_, err := time.LoadLocation(name)
	return err == nil
}

// checkTimeZone validates an optional time zone.
func checkTimeZone(field, name string) error {
	if name != "" && !validTimeZone(name) {
		return invalid(field, name, "is not a known IANA time zone")
	}
	return nil
}

// checkEmail validates the user's address, which is required: a bad one
// makes the event poison, unlike a bad extra recipient.
func checkEmail(field, addr string) error {
	if addr == "" {
		return missing(field)
	}
	if !ValidAddress(addr) {
		return invalid(field, addr, "is not a valid address")
	}
	if _, err := ASCIIAddress(addr); err != nil {
		return invalid(field, addr, "is not an address SES can send to: "+err.Error())
	}
	return nil
}

// defaultTitle is the title of a report that has none: the key's base
// name, so "2026/11/Q3 results.pdf" becomes "Q3 results.pdf".
func defaultTitle(key string) string {
	return path.Base(key)
}
