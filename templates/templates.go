// Package templates renders report emails: a subject, an HTML body and
// a plain-text twin. The default templates are embedded; a directory
// may override any of them.
package templates

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"os"
	"path"
	"strings"
	texttemplate "text/template"
	"time"
)

//go:embed default/*.tmpl
var defaults embed.FS

// The files a template set is made of.
const (
	SubjectFile = "subject.txt.tmpl"
	HTMLFile    = "email.html.tmpl"
	TextFile    = "email.txt.tmpl"
)

// Data is what a template sees.
type Data struct {
	User      User
	Recipient string // the address this copy goes to
	Digest    bool   // true when the email gathers several events
	Schedule  string // the schedule that sent it
	Links     []Link
	Generated time.Time // in the user's time zone
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
	ContentType string
	Expires     time.Time // in the user's time zone
	ExpiresText string    // e.g. "expires 12 December 2026, 09:00 GMT"
	ExpiresSoon bool      // the link expires within 24 hours of Generated
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
	subject *texttemplate.Template
	html    *htmltemplate.Template
	text    *texttemplate.Template
}

// Default returns the embedded default set.
func Default() *Set {
	sub, _ := fs.Sub(defaults, "default")
	s, err := Load(sub)
	if err != nil {
		panic("templates: embedded defaults do not parse: " + err.Error())
	}
	return s
}

// LoadDir parses a set from dir. A file missing from dir is taken from
// the embedded defaults, so a directory may override just one template.
func LoadDir(dir string) (*Set, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("templates dir: %w", err)
	}
	sub, _ := fs.Sub(defaults, "default")
	return Load(overlay{top: os.DirFS(dir), base: sub})
}

// Load parses a set from fsys, which must hold all three files.
func Load(fsys fs.FS) (*Set, error) {
	read := func(name string) (string, error) {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return "", fmt.Errorf("template %s: %w", name, err)
		}
		return string(b), nil
	}
	var s Set
	src, err := read(SubjectFile)
	if err != nil {
		return nil, err
	}
	if s.subject, err = texttemplate.New(SubjectFile).Funcs(funcs).Option("missingkey=error").Parse(src); err != nil {
		return nil, fmt.Errorf("template %s: %w", SubjectFile, err)
	}
	if src, err = read(HTMLFile); err != nil {
		return nil, err
	}
	if s.html, err = htmltemplate.New(HTMLFile).Funcs(funcs).Option("missingkey=error").Parse(src); err != nil {
		return nil, fmt.Errorf("template %s: %w", HTMLFile, err)
	}
	if src, err = read(TextFile); err != nil {
		return nil, err
	}
	if s.text, err = texttemplate.New(TextFile).Funcs(funcs).Option("missingkey=error").Parse(src); err != nil {
		return nil, fmt.Errorf("template %s: %w", TextFile, err)
	}
	// Render a sample now, so a template that parses but cannot execute
	// (a misspelt field) is reported at start-up, not at send time.
	if _, err := s.Render(Sample()); err != nil {
		return nil, err
	}
	return &s, nil
}

// Render executes the set for d.
func (s *Set) Render(d Data) (Message, error) {
	var m Message
	var buf bytes.Buffer
	if err := s.subject.Execute(&buf, d); err != nil {
		return m, fmt.Errorf("render subject: %w", err)
	}
	// A subject is one header line: fold any line break a template or a
	// user-supplied name brought in.
	m.Subject = strings.Join(strings.Fields(buf.String()), " ")
	buf.Reset()
	if err := s.html.Execute(&buf, d); err != nil {
		return m, fmt.Errorf("render html: %w", err)
	}
	m.HTML = buf.String()
	buf.Reset()
	if err := s.text.Execute(&buf, d); err != nil {
		return m, fmt.Errorf("render text: %w", err)
	}
	m.Text = buf.String()
	return m, nil
}

// Sample returns fixed data that exercises every field, for checking
// templates at start-up and for golden tests.
func Sample() Data {
	loc := time.FixedZone("GMT", 0)
	gen := time.Date(2026, 11, 26, 7, 0, 0, 0, loc)
	exp := gen.Add(7 * 24 * time.Hour)
	return Data{
		User:      User{Name: "Ana Lima", Email: "ana@example.com"},
		Recipient: "ana@example.com",
		Schedule:  "daily",
		Generated: gen,
		Links: []Link{{
			Title: "Q3 results", FileName: "Q3 results+notes.pdf",
			URL:  "https://reports.example.com/2026/Q3%20results%2Bnotes.pdf?Expires=1795000000&Signature=abc&Key-Pair-Id=K1",
			Size: "47.1 KiB", ContentType: "application/pdf",
			Expires: exp, ExpiresText: ExpiresText(exp),
		}},
	}
}

// ExpiresText formats an expiry the way emails show it, in t's location:
// "expires 3 December 2026, 07:00 GMT".
func ExpiresText(t time.Time) string {
	return "expires " + t.Format("2 January 2006, 15:04 MST")
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

var funcs = map[string]any{
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
}

// overlay reads from top, falling back to base for files top lacks.
type overlay struct{ top, base fs.FS }

func (o overlay) Open(name string) (fs.File, error) {
	f, err := o.top.Open(path.Clean(name))
	if err == nil {
		return f, nil
	}
	return o.base.Open(name)
}
