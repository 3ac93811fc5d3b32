// Package templates renders report emails: a subject, an HTML body and
// a plain-text twin.
//
// Templates come in sets of three files (SubjectFile, HTMLFile,
// TextFile). The embedded default set is in default/; a report type may
// have its own set in a directory named after it, and a templates_dir
// may override any file of any set (see [LoadSets]). Every set is
// parsed and trial-rendered when it is loaded, so a broken template is
// reported at start-up, not at send time.
//
// User-supplied text (names, titles, file names) is data, never
// template source: the HTML template escapes it, and "{{" in a title is
// printed as it is.
package templates

import (
	"bytes"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"io/fs"
	"mime"
	"strings"
	texttemplate "text/template"
	"time"
	"unicode"
)

// The files a template set is made of.
const (
	SubjectFile = "subject.txt.tmpl"
	HTMLFile    = "email.html.tmpl"
	TextFile    = "email.txt.tmpl"
)

// Files lists the files of a set, in the order they are rendered.
var Files = []string{SubjectFile, HTMLFile, TextFile}

// Data is what a template sees.
type Data struct {
	User      User
	Recipient string // the address this copy goes to
	// Shared is true when Recipient is not the user: someone the user
	// shared the reports with.
	Shared   bool
	Digest   bool   // true when the email gathers several events
	Schedule string // the schedule that sent it
	// ReportType is the type every report in the email shares, which
	// chose the template set; "" when they differ or none is set.
	ReportType string
	// Locale is the user's BCP 47 tag, e.g. "pt-BR"; "" means English.
	// Dates in Links are already formatted for it.
	Locale    string
	Links     []Link
	Generated time.Time // in the user's time zone
	// Part and Parts number the emails of a digest split in several
	// ("part 2 of 3"); both 0 when it is whole.
	Part, Parts int
	// Late is set when a digest goes out after its slot (no replica ran
	// it on time); Due is the slot's time, in the user's time zone.
	Late bool
	Due  time.Time
}

// User is the person the reports belong to.
type User struct {
	Name  string
	Email string
}

// Link is one report and its signed URL.
type Link struct {
	Title       string
	FileName    string
	URL         string
	Size        string // human units, e.g. "47.1 KiB"; empty when unknown
	ContentType string // e.g. "application/pdf"; may be empty
	Type        string // the report's type, e.g. "finance"; may be empty
	Expires     time.Time
	// ExpiresDate is Expires in the user's time zone and locale:
	// "12 December 2026, 09:00 GMT", "December 12, 2026, 9:00 AM EST".
	ExpiresDate string
	// ExpiresText is "expires " + ExpiresDate.
	ExpiresText string
	ExpiresSoon bool // the link expires within 24 hours of when the email was composed
}

// Expiring returns l with its expiry fields set: Expires in loc,
// ExpiresDate and ExpiresText formatted for locale (see [FormatTime]),
// and ExpiresSoon when expires is within 24 hours of now.
func (l Link) Expiring(expires, now time.Time, loc *time.Location, locale string) Link {
	l.Expires = expires.In(loc)
	l.ExpiresDate = FormatTime(l.Expires, locale)
	l.ExpiresText = "expires " + l.ExpiresDate
	l.ExpiresSoon = expires.Sub(now) < 24*time.Hour
	return l
}

// Message is a rendered email.
type Message struct {
	Subject string
	HTML    string
	Text    string
}

// Set is a parsed subject, HTML and text template. It is safe for
// concurrent use.
type Set struct {
	name    string
	sources map[string]string // file -> where it was read from
	subject *texttemplate.Template
	html    *htmltemplate.Template
	text    *texttemplate.Template
}

// Name is the report type the set is for, or "default".
func (s *Set) Name() string { return s.name }

// Source tells where file (one of Files) was read from: "embedded
// default/email.html.tmpl", or a path in templates_dir such as
// "/etc/reportmailer/templates/finance/subject.txt.tmpl".
func (s *Set) Source(file string) string { return s.sources[file] }

// For returns s whatever the report type, so that one Set can stand
// wherever a [Sets] is expected.
func (s *Set) For(reportType string) *Set { return s }

// Default returns the embedded default set.
func Default() *Set { return DefaultSets().For("") }

// Load parses a complete set from fsys, which must hold all three
// files, and trial-renders it with [Samples].
func Load(fsys fs.FS) (*Set, error) {
	src := map[string]source{}
	for _, f := range Files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", f, err)
		}
		src[f] = source{text: string(b), from: f}
	}
	return parseSet(DefaultName, src)
}

// source is the text of one template file and where it came from.
type source struct {
	text string
	from string // for error messages, e.g. "templates_dir finance/email.html.tmpl"
}

// parseSet parses and trial-renders a set. The error joins one error
// per broken file, each naming the file's source, so that a file shared
// by several sets gives the same message for each (LoadSets reports it
// once).
func parseSet(name string, src map[string]source) (*Set, error) {
	s := &Set{name: name, sources: map[string]string{}}
	for _, f := range Files {
		s.sources[f] = src[f].from
	}
	var errs []error
	check := func(f string, err error) bool {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", src[f].from, err))
		}
		return err == nil
	}
	var err error
	s.subject, err = texttemplate.New(SubjectFile).Funcs(textFuncs).Option("missingkey=error").Parse(src[SubjectFile].text)
	okSubject := check(SubjectFile, err)
	s.html, err = htmltemplate.New(HTMLFile).Funcs(htmlFuncs).Option("missingkey=error").Parse(src[HTMLFile].text)
	okHTML := check(HTMLFile, err)
	s.text, err = texttemplate.New(TextFile).Funcs(textFuncs).Option("missingkey=error").Parse(src[TextFile].text)
	okText := check(TextFile, err)

	// Render samples now, so a template that parses but cannot execute
	// (a misspelt field, an index out of range for a digest) is
	// reported at start-up, not at send time.
	for _, d := range Samples() {
		if okSubject {
			_, err := s.renderSubject(d)
			okSubject = check(SubjectFile, err)
		}
		if okHTML {
			okHTML = check(HTMLFile, s.html.Execute(io.Discard, d))
		}
		if okText {
			okText = check(TextFile, s.text.Execute(io.Discard, d))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// Render executes the set for d. The subject comes back as one line:
// line breaks and other control characters that a template or a
// user-supplied name brought in are folded to single spaces, so nothing
// can add a header. An empty subject is an error.
func (s *Set) Render(d Data) (Message, error) {
	var m Message
	var err error
	if m.Subject, err = s.renderSubject(d); err != nil {
		return m, fmt.Errorf("render %s: %w", s.sources[SubjectFile], err)
	}
	var buf bytes.Buffer
	if err := s.html.Execute(&buf, d); err != nil {
		return m, fmt.Errorf("render %s: %w", s.sources[HTMLFile], err)
	}
	m.HTML = buf.String()
	buf.Reset()
	if err := s.text.Execute(&buf, d); err != nil {
		return m, fmt.Errorf("render %s: %w", s.sources[TextFile], err)
	}
	m.Text = buf.String()
	return m, nil
}

func (s *Set) renderSubject(d Data) (string, error) {
	var buf bytes.Buffer
	if err := s.subject.Execute(&buf, d); err != nil {
		return "", err
	}
	subject := oneLine(buf.String())
	if subject == "" {
		return "", errors.New("the subject is empty")
	}
	return subject, nil
}

// oneLine turns s into one line: every run of white space or control
// characters becomes one space, and the ends are trimmed.
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r)
	}), " ")
}

// Sample returns fixed data for one event with one report.
func Sample() Data { return Samples()[0] }

// Samples returns fixed data sets that between them exercise every
// field and shape a template must handle: one report, several reports,
// a digest shared with another recipient, an unknown size and content
// type, a link that expires within 24 hours, and text that looks like
// markup or template code. Every set is trial-rendered with them when
// it loads.
func Samples() []Data {
	gmt := time.FixedZone("GMT", 0)
	gen := time.Date(2026, 11, 26, 7, 0, 0, 0, gmt)
	week := gen.Add(7 * 24 * time.Hour)
	one := Data{
		User:      User{Name: "Ana Lima", Email: "ana@example.com"},
		Recipient: "ana@example.com",
		Schedule:  "daily",
		Locale:    "en-GB",
		Generated: gen,
		Links: []Link{Link{
			Title: "Q3 results", FileName: "Q3 results+notes.pdf",
			URL:  "https://reports.example.com/2026/Q3%20results%2Bnotes.pdf?Expires=1795000000&Signature=abc&Key-Pair-Id=K1",
			Size: HumanSize(48213), ContentType: "application/pdf", Type: "finance",
		}.Expiring(week, gen, gmt, "en-GB")},
	}
	many := one
	many.Links = append([]Link(nil), one.Links...)
	many.Links = append(many.Links, Link{
		Title: "<b>Pipeline</b> {{.User.Email}}", FileName: "pipeline.csv",
		URL: "https://reports.example.com/2026/pipeline.csv?Expires=1795000000&Signature=def&Key-Pair-Id=K1",
	}.Expiring(gen.Add(3*time.Hour), gen, gmt, "en-GB"))
	digest := many
	digest.Digest = true
	digest.User.Name = ""
	digest.Recipient = "cfo@example.com"
	digest.Shared = true
	return []Data{one, many, digest}
}

// HumanSize formats a byte count in binary units: "512 B", "47.1 KiB".
// It returns "" for n <= 0, which means unknown.
func HumanSize(n int64) string {
	if n <= 0 {
		return ""
	}
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= 1024
		if f < 1024 || unit == "TiB" {
			return fmt.Sprintf("%.1f %s", f, unit)
		}
	}
	panic("unreachable")
}

// Kind names a content type the way people know it: "PDF", "CSV",
// "Excel". It returns "" for an empty or unfamiliar type.
func Kind(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return ""
	}
	return kinds[mt]
}

var kinds = map[string]string{
	"application/pdf":  "PDF",
	"text/csv":         "CSV",
	"text/plain":       "text",
	"text/html":        "HTML",
	"application/json": "JSON",
	"application/zip":  "ZIP",
	"application/gzip": "gzip",
	"image/png":        "PNG image",
	"image/jpeg":       "JPEG image",

	"application/vnd.ms-excel":      "Excel",
	"application/msword":            "Word",
	"application/vnd.ms-powerpoint": "PowerPoint",

	"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":         "Excel",
	"application/vnd.openxmlformats-officedocument.wordprocessingml.document":   "Word",
	"application/vnd.openxmlformats-officedocument.presentationml.presentation": "PowerPoint",
	"application/vnd.oasis.opendocument.spreadsheet":                            "OpenDocument spreadsheet",
}

// textFuncs are the functions every template may call.
var textFuncs = texttemplate.FuncMap{
	"plural": func(n int, one, many string) string {
		if n == 1 {
			return one
		}
		return many
	},
	"firstName": func(name string) string {
		if f := strings.Fields(name); len(f) > 0 {
			return f[0]
		}
		return ""
	},
	"kind": Kind,
	// join joins non-empty strings with sep: {{join " · " .FileName .Size}}.
	"join": func(sep string, parts ...string) string {
		var out []string
		for _, p := range parts {
			if p != "" {
				out = append(out, p)
			}
		}
		return strings.Join(out, sep)
	},
}

// htmlFuncs are textFuncs plus the markup only the HTML template needs.
var htmlFuncs = func() htmltemplate.FuncMap {
	m := htmltemplate.FuncMap{}
	for k, v := range textFuncs {
		m[k] = v
	}
	// html/template drops comments from templates, so the conditional
	// comments that give Outlook for Windows (which ignores max-width)
	// a fixed-width column come from these. They take no arguments, so
	// no data can reach the markup they return.
	m["outlookOpen"] = func() htmltemplate.HTML {
		return `<!--[if mso]><table role="presentation" align="center" width="560" cellpadding="0" cellspacing="0" border="0"><tr><td><![endif]-->`
	}
	m["outlookClose"] = func() htmltemplate.HTML {
		return `<!--[if mso]></td></tr></table><![endif]-->`
	}
	return m
}()
