package mail

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"mime"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"unicode"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/smithy-go/encoding/httpbinding"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
)

// What SES accepts as custom headers on Simple content.
const (
	maxHeaders     = 15
	maxHeaderName  = 126
	maxHeaderValue = 870
)

// sesHeaders are the headers SES writes itself on Simple content and
// refuses as custom headers, lower-cased.
var sesHeaders = map[string]bool{
	"bcc": true, "cc": true, "content-disposition": true, "content-type": true,
	"date": true, "from": true, "message-id": true, "mime-version": true,
	"reply-to": true, "return-path": true, "subject": true, "to": true,
}

// UnsubscribeData is what the List-Unsubscribe URL template sees. Every
// field is already percent-encoded, keeping only A-Z, a-z, 0-9 and
// "-._~", so it is safe as it is in a path segment or a query value; do
// not escape it again.
type UnsubscribeData struct {
	UserID    string // the id of the user the reports belong to
	Email     string // the recipient: who is asking to unsubscribe
	UserEmail string // the user's own address; Email differs from it when the user shared the reports
	Schedule  string // the schedule's name
}

// ParseUnsubscribeURL parses a List-Unsubscribe URL template, a Go
// text/template over [UnsubscribeData] such as
//
//	https://app.example.com/unsubscribe?user={{.UserID}}&email={{.Email}}&list={{.Schedule}}
//
// and checks it by running it on sample data. The result must be an
// absolute https URL (RFC 8058 one-click unsubscribe requires https;
// http is allowed for localhost and 127.0.0.1 only, for local stacks)
// of printable ASCII without spaces, '<', '>' or ','.
func ParseUnsubscribeURL(text string) (*template.Template, error) {
	t, err := template.New("list_unsubscribe_url").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	_, err = unsubscribeURL(t, UnsubscribeData{UserID: "u-1", Email: "ana%40example.com", UserEmail: "ana%40example.com", Schedule: "daily"})
	return t, err
}

func unsubscribeURL(t *template.Template, d UnsubscribeData) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return "", err
	}
	s := b.String()
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || c == '<' || c == '>' || c == ',' {
			return "", fmt.Errorf("gives %q, with %q at byte %d: spaces, controls, non-ASCII, '<', '>' and ',' must be percent-encoded", s, c, i)
		}
	}
	if len(s)+2 > maxHeaderValue {
		return "", fmt.Errorf("gives a URL of %d bytes; SES takes header values of at most %d", len(s), maxHeaderValue)
	}
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() {
		return "", fmt.Errorf("gives %q, which is not an absolute URL", s)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && (u.Hostname() == "localhost" || u.Hostname() == "127.0.0.1"):
	default:
		return "", fmt.Errorf("gives %q: one-click unsubscribe (RFC 8058) needs https", s)
	}
	if u.Host == "" {
		return "", fmt.Errorf("gives %q, which has no host", s)
	}
	return s, nil
}

func (s *SES) unsubscribeTemplate() (*template.Template, error) {
	s.once.Do(func() { s.unsub, s.err = ParseUnsubscribeURL(s.UnsubscribeURL) })
	return s.unsub, s.err
}

// headers builds the custom headers of e:
//
//   - List-Unsubscribe and List-Unsubscribe-Post (RFC 8058), when
//     UnsubscribeURL is set;
//   - List-Id (RFC 2919), when ListID is set;
//   - References and X-Entity-Ref-ID, which make the email its own
//     thread (see [ThreadID]);
//   - Auto-Submitted: auto-generated (RFC 3834), which asks
//     auto-responders not to answer;
//   - then e.Headers, which win over the ones above.
//
// Values that are not printable ASCII are RFC 2047-encoded, so no value
// can carry a CR or LF into the message. A header SES would refuse is a
// permanent error for this email; a broken UnsubscribeURL template
// halts the run, since every email would fail alike.
func (s *SES) headers(e worker.Email) ([]types.MessageHeader, error) {
	type header struct{ name, value string }
	hs := map[string]header{} // by lower-case name
	set := func(name, value string) { hs[strings.ToLower(name)] = header{name, value} }

	if s.UnsubscribeURL != "" {
		t, err := s.unsubscribeTemplate()
		if err != nil {
			return nil, worker.Halt(fmt.Errorf("list-unsubscribe url template: %w", err))
		}
		var rcpt string
		if len(e.To) > 0 {
			rcpt = e.To[0] // the worker sends one email per recipient
		}
		u, err := unsubscribeURL(t, UnsubscribeData{
			UserID:    httpbinding.EscapePath(e.User.ID, true),
			Email:     httpbinding.EscapePath(addressOnly(rcpt), true),
			UserEmail: httpbinding.EscapePath(e.User.Email, true),
			Schedule:  httpbinding.EscapePath(e.Schedule, true),
		})
		if err != nil {
			return nil, worker.Permanent(fmt.Errorf("list-unsubscribe url for user %q: %w", e.User.ID, err))
		}
		set("List-Unsubscribe", "<"+u+">")
		set("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
	}
	if s.ListID != "" {
		set("List-Id", "<"+listLabel(e.Schedule)+"."+s.ListID+">")
	}
	if d := domainOf(e.From); d != "" {
		id := ThreadID(e)
		set("References", "<"+id+"@"+d+">")
		set("X-Entity-Ref-ID", id)
	}
	set("Auto-Submitted", "auto-generated")
	for k, v := range e.Headers {
		set(k, v)
	}

	if len(hs) > maxHeaders {
		return nil, worker.Permanent(fmt.Errorf("%d custom headers; SES takes at most %d", len(hs), maxHeaders))
	}
	out := make([]types.MessageHeader, 0, len(hs))
	for lower, h := range hs {
		if err := checkHeaderName(h.name); err != nil {
			return nil, worker.Permanent(err)
		}
		if sesHeaders[lower] {
			return nil, worker.Permanent(fmt.Errorf("header %s: SES sets it itself and refuses it as a custom header", h.name))
		}
		v := encodeHeaderValue(h.value)
		if v == "" {
			continue // SES refuses empty values; an empty header says nothing
		}
		if len(v) > maxHeaderValue {
			return nil, worker.Permanent(fmt.Errorf("header %s: %d bytes; SES takes at most %d", h.name, len(v), maxHeaderValue))
		}
		out = append(out, types.MessageHeader{Name: aws.String(h.name), Value: aws.String(v)})
	}
	slices.SortFunc(out, func(a, b types.MessageHeader) int { return strings.Compare(*a.Name, *b.Name) })
	return out, nil
}

// ThreadID returns the id that gives e a thread of its own. It is a
// hash of the schedule, the user, the recipients and the events, so
// every try and every resend of one email share it (a resend lands in
// the original's thread) and no two different emails do: each digest is
// its own thread, whatever its subject.
//
// SES replaces any Message-ID we set, so the id goes where clients that
// thread by RFC 5322 references look, "References: <id@domain>", with
// the domain of the From address (one we control, so the id cannot
// collide with anyone else's), and into X-Entity-Ref-ID, which Gmail
// uses to keep same-subject emails from the same sender apart. It holds
// no personal data.
func ThreadID(e worker.Email) string {
	h := sha256.New()
	field := func(s string) { fmt.Fprintf(h, "%d:%s;", len(s), s) }
	field(e.Schedule)
	field(e.User.ID)
	field(e.User.Email)
	for _, list := range [][]string{e.To, e.EventIDs} {
		sorted := slices.Sorted(slices.Values(list))
		field(strconv.Itoa(len(sorted)))
		for _, s := range sorted {
			field(s)
		}
	}
	return "rm." + hex.EncodeToString(h.Sum(nil)[:16])
}

var (
	hostnameRE  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$`)
	headerNameR = regexp.MustCompile(`^[!-9;-~]+$`)
)

// domainOf returns the lower-cased domain of the address in from, in
// ASCII form (Punycode for an internationalized domain), or "" when it
// has none that is a host name.
func domainOf(from string) string {
	a := addressOnly(from)
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return ""
	}
	d, err := event.ASCIIDomain(a[at+1:])
	if d = strings.ToLower(d); err != nil || !hostnameRE.MatchString(d) {
		return ""
	}
	return d
}

// addressOnly returns the bare address of "Name <addr>" or addr.
func addressOnly(s string) string {
	if a, err := mail.ParseAddress(s); err == nil {
		return a.Address
	}
	return s
}

// listLabel turns a schedule name into a List-Id label: lower-case
// letters, digits and '-'.
func listLabel(schedule string) string {
	b := []byte(strings.ToLower(schedule))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			b[i] = '-'
		}
	}
	if l := strings.Trim(string(b), "-"); l != "" {
		return l
	}
	return "reports"
}

func checkHeaderName(name string) error {
	if len(name) > maxHeaderName || !headerNameR.MatchString(name) {
		return fmt.Errorf("header name %q: SES takes 1 to %d printable ASCII characters without ':'", name, maxHeaderName)
	}
	return nil
}

// encodeHeaderValue returns v as SES takes it: printable ASCII. A value
// with anything else (non-ASCII text, or a CR, LF or other control
// character) becomes RFC 2047 encoded-words, in which such bytes are
// inert =XX escapes.
func encodeHeaderValue(v string) string {
	v = strings.ToValidUTF8(v, "\uFFFD")
	for i := 0; i < len(v); i++ {
		if v[i] < ' ' || v[i] > '~' {
			return mime.QEncoding.Encode("UTF-8", v)
		}
	}
	return v
}

// cleanSubject makes a rendered subject safe for SES: valid UTF-8 on a
// single line. Names and titles in it come from events, so a CR, LF,
// tab or other control character becomes a space. SES, given Charset
// UTF-8, then encodes the subject per RFC 2047.
func cleanSubject(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// encodeAddress returns a, an address with or without a display name,
// as SES takes it: ASCII, with a non-ASCII display name RFC 2047-encoded
// and an internationalized domain in Punycode (see
// [event.ASCIIAddress]). An address already in that form is returned as
// it is. It fails for an address that does not parse, and for one SES
// cannot send to: a local part that is not ASCII (SES does not support
// SMTPUTF8), or a domain that is not a valid internationalized name.
func encodeAddress(a string) (string, error) {
	p, err := mail.ParseAddress(a)
	if err != nil {
		return "", fmt.Errorf("address %q: %v", a, err)
	}
	addr, err := event.ASCIIAddress(p.Address)
	if err != nil {
		return "", fmt.Errorf("address %q: %v", a, err)
	}
	switch {
	case addr == p.Address && isASCII(p.Name):
		return a, nil
	case p.Name == "":
		return addr, nil
	}
	return (&mail.Address{Name: p.Name, Address: addr}).String(), nil
}

func encodeAddresses(as []string) ([]string, error) {
	if as == nil {
		return nil, nil
	}
	out := make([]string, len(as))
	for i, a := range as {
		var err error
		if out[i], err = encodeAddress(a); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
