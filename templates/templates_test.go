package templates_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/templates"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fixture is one email's data, built the way the worker builds it.
type fixture struct {
	name string
	data templates.Data
}

// link is one report of a fixture.
type link struct {
	title, file, contentType, reportType string
	size                                 int64
	ttl                                  time.Duration
}

func build(user templates.User, rcpt, tz, locale string, digest bool, gen time.Time, links ...link) templates.Data {
	loc, err := time.LoadLocation(tz)
	if err != nil {
		panic(err)
	}
	d := templates.Data{User: user, Recipient: rcpt, Shared: rcpt != user.Email, Digest: digest, Schedule: "daily", Locale: locale, Generated: gen.In(loc)}
	for i, l := range links {
		d.Links = append(d.Links, templates.Link{
			Title: l.title, FileName: l.file, Size: templates.HumanSize(l.size), ContentType: l.contentType, Type: l.reportType,
			URL: "https://reports.example.com/r/" + string(rune('a'+i)) + "/" + escape(l.file) +
				"?Expires=1797000000&Signature=Zm9v~YmFy-YmF6_&Key-Pair-Id=K2JCJMDEHXQW5F",
		}.Expiring(gen.Add(l.ttl), gen, loc, locale))
	}
	return d
}

// escape percent-encodes all but A-Za-z0-9-_.~, as the link signers do.
func escape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// fixtures are the fixed event set every embedded template is checked
// against: non-ASCII names and emoji, markup and template code in a
// title, a link that expires within 24 hours, a missing size and
// content type, locales with their own date forms, a time zone without
// an abbreviation, and a very long unbroken file name. Any change to
// what users receive shows up as a golden diff.
func fixtures() []fixture {
	gen := time.Date(2026, 12, 11, 9, 0, 0, 0, time.UTC)
	week := 7 * 24 * time.Hour
	return []fixture{
		{"single", templates.Sample()},
		{"digest", build(templates.User{Name: "Zoë Ångström-Łukasz", Email: "zoe@example.com"}, "cfo@example.com", "Europe/London", "en-GB", true, gen,
			link{"Ventes — décembre", "ventes décembre.csv", "text/csv", "sales", 1258291, 20 * time.Hour},
			link{"<script>alert(1)</script> {{.User.Email}}", "weird+name?#.pdf", "", "", 0, week},
			link{"日本語レポート 📈", "日本語.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "sales", 512, 48 * time.Hour},
		)},
		{"en-US", build(templates.User{Name: "Bo Berg 📈", Email: "bo@example.com"}, "bo@example.com", "America/New_York", "en-US", false, gen,
			link{"Monthly usage 100%", "Monthly usage 100%+?.csv", "text/csv", "usage", 48213, week},
		)},
		{"de", build(templates.User{Name: "Jürgen Groß", Email: "juergen@example.de"}, "juergen@example.de", "Europe/Berlin", "de-DE", false, gen,
			link{"Umsätze März", "umsätze-märz.pdf", "application/pdf", "finance", 3 << 20, 21 * 24 * time.Hour},
			link{"Bestand", "bestand.csv", "text/csv", "stock", 0, 23 * time.Hour},
		)},
		{"pt-BR", build(templates.User{Name: "Ana Lúcia", Email: "ana@example.com.br"}, "ana@example.com.br", "America/Sao_Paulo", "pt-BR", false, gen,
			link{"Relatório anual", "relatorio_anual_2026_versao_final_revisada_aprovada_pela_diretoria_financeira.pdf", "application/pdf", "finance", 10 << 20, 20*24*time.Hour + 15*time.Hour},
		)},
	}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./templates -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file; if the change is intended, run go test ./templates -update and review the diff\n--- got ---\n%s", path, got)
	}
}

// TestGolden renders every embedded set for every fixture. The default
// set's output is checked against testdata/default/; a report type's
// set against testdata/TYPE/ for the files it has of its own, and
// against the default's output for the files it inherits.
func TestGolden(t *testing.T) {
	sets := templates.DefaultSets()
	def := sets.For("")
	for _, f := range fixtures() {
		want, err := def.Render(f.data)
		if err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		t.Run("default/"+f.name, func(t *testing.T) {
			golden(t, "default/"+f.name+".subject.txt", want.Subject+"\n")
			golden(t, "default/"+f.name+".html", want.HTML)
			golden(t, "default/"+f.name+".txt", want.Text)
		})
		for _, typ := range sets.Types() {
			set := sets.For(typ)
			t.Run(typ+"/"+f.name, func(t *testing.T) {
				got, err := set.Render(f.data)
				if err != nil {
					t.Fatal(err)
				}
				for _, part := range []struct {
					file, ext, got, inherited string
				}{
					{templates.SubjectFile, "subject.txt", got.Subject + "\n", want.Subject + "\n"},
					{templates.HTMLFile, "html", got.HTML, want.HTML},
					{templates.TextFile, "txt", got.Text, want.Text},
				} {
					if set.Source(part.file) == "embedded "+typ+"/"+part.file {
						golden(t, typ+"/"+f.name+"."+part.ext, part.got)
					} else if part.got != part.inherited {
						t.Errorf("%s inherits %s from %s but renders differently from the default set", typ, part.file, set.Source(part.file))
					}
				}
			})
		}
	}
}

func TestEmbeddedSets(t *testing.T) {
	sets := templates.DefaultSets()
	if got := sets.Types(); strings.Join(got, ",") != "finance" {
		t.Errorf("embedded report types = %q, want [finance]", got)
	}
	fin := sets.For("finance")
	if fin.Name() != "finance" || fin.Source(templates.SubjectFile) != "embedded finance/subject.txt.tmpl" {
		t.Errorf("finance set %q has its subject from %q", fin.Name(), fin.Source(templates.SubjectFile))
	}
	if fin.Source(templates.HTMLFile) != "embedded default/email.html.tmpl" {
		t.Errorf("finance HTML from %q, want the default's", fin.Source(templates.HTMLFile))
	}
	for _, typ := range []string{"", "Finance", "invoice", "../finance"} {
		if got := sets.For(typ).Name(); got != templates.DefaultName {
			t.Errorf("For(%q) = set %q, want the default", typ, got)
		}
	}
}

func TestUserTextIsEscaped(t *testing.T) {
	d := fixtures()[1].data
	m, err := templates.Default().Render(d)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(m.HTML, "<script>") {
		t.Error("a title holding <script> reached the HTML unescaped")
	}
	if !strings.Contains(m.HTML, "&lt;script&gt;alert(1)&lt;/script&gt; {{.User.Email}}") {
		t.Error("the title should show as text, template braces included")
	}
	if strings.Contains(m.Text, "zoe@example.com {{") || !strings.Contains(m.Text, "<script>alert(1)</script> {{.User.Email}}") {
		t.Error("template braces in a title must not be executed in the text part")
	}
	d.User.Name = `"><img src=x onerror=alert(1)>`
	d.Links[0].URL = "javascript:alert(1)"
	m, err = templates.Default().Render(d)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(m.HTML, "<img") || strings.Contains(m.HTML, `href="javascript:`) {
		t.Errorf("a name or URL injected markup:\n%s", m.HTML)
	}
}

func TestHTMLIsSelfContained(t *testing.T) {
	for _, f := range fixtures() {
		m, err := templates.Default().Render(f.data)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"<img", "<link", "<script", "url(", "@import", "<iframe"} {
			if strings.Contains(m.HTML, bad) {
				t.Errorf("%s: the HTML holds %q; emails must need nothing from outside", f.name, bad)
			}
		}
		for _, want := range []string{`name="color-scheme"`, "max-width:560px", `role="presentation"`, "<!--[if mso]>"} {
			if !strings.Contains(m.HTML, want) {
				t.Errorf("%s: the HTML lacks %q", f.name, want)
			}
		}
	}
}

func TestSubjectIsOneLine(t *testing.T) {
	d := templates.Sample()
	d.Links[0].Title = "Q3\r\nBcc: victim@example.com\u2028x\x00y\tz"
	m, err := templates.Default().Render(d)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "Your report is ready: Q3 Bcc: victim@example.com x y z" {
		t.Errorf("subject = %q, want one line with each break or control character made a space", m.Subject)
	}
}

func TestEmptySubjectIsAnError(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, templates.SubjectFile, "{{if false}}x{{end}}")
	_, err := templates.LoadSets(dir)
	if err == nil || !strings.Contains(err.Error(), "subject is empty") {
		t.Errorf("LoadSets error = %v, want an empty subject reported at load", err)
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{-1: "", 0: "", 1: "1 B", 1023: "1023 B", 1024: "1.0 KiB", 48213: "47.1 KiB", 5 << 30: "5.0 GiB", 3 << 40: "3.0 TiB"} {
		if got := templates.HumanSize(n); got != want {
			t.Errorf("HumanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestKind(t *testing.T) {
	for ct, want := range map[string]string{"application/pdf": "PDF", "text/csv; charset=utf-8": "CSV", "": "", "application/x-unknown": "", "bad;;": ""} {
		if got := templates.Kind(ct); got != want {
			t.Errorf("Kind(%q) = %q, want %q", ct, got, want)
		}
	}
}

func TestExpiring(t *testing.T) {
	ny, _ := time.LoadLocation("America/New_York")
	now := time.Date(2026, 12, 11, 14, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		ttl  time.Duration
		soon bool
	}{{time.Hour, true}, {24*time.Hour - time.Second, true}, {24 * time.Hour, false}, {7 * 24 * time.Hour, false}} {
		l := templates.Link{}.Expiring(now.Add(tt.ttl), now, ny, "en-US")
		if l.ExpiresSoon != tt.soon {
			t.Errorf("ttl %s: ExpiresSoon = %v, want %v", tt.ttl, l.ExpiresSoon, tt.soon)
		}
		if l.Expires.Location() != ny || l.ExpiresText != "expires "+l.ExpiresDate {
			t.Errorf("ttl %s: Expires in %s, ExpiresText %q, ExpiresDate %q", tt.ttl, l.Expires.Location(), l.ExpiresText, l.ExpiresDate)
		}
	}
	l := templates.Link{}.Expiring(now.Add(time.Hour), now, ny, "en-US")
	if l.ExpiresDate != "December 11, 2026, 10:00 AM EST" {
		t.Errorf("ExpiresDate = %q", l.ExpiresDate)
	}
}

func TestFormatTime(t *testing.T) {
	zone := func(name string) *time.Location {
		l, err := time.LoadLocation(name)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	dec := time.Date(2026, 12, 12, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		locale string
		t      time.Time
		want   string
	}{
		{"", dec, "12 December 2026, 09:00 UTC"},
		{"en", dec.In(zone("Europe/London")), "12 December 2026, 09:00 GMT"},
		{"en-GB", dec.In(zone("Europe/London")), "12 December 2026, 09:00 GMT"},
		{"en-US", dec.In(zone("America/New_York")), "December 12, 2026, 4:00 AM EST"},
		{"EN-us", time.Date(2026, 7, 4, 21, 5, 0, 0, zone("America/Los_Angeles")), "July 4, 2026, 9:05 PM PDT"},
		{"de", dec.In(zone("Europe/Berlin")), "12. Dezember 2026, 10:00 CET"},
		{"de-AT", time.Date(2026, 3, 1, 8, 0, 0, 0, zone("Europe/Vienna")), "1. März 2026, 08:00 CET"},
		{"fr-FR", time.Date(2026, 8, 1, 8, 0, 0, 0, zone("Europe/Paris")), "1er août 2026, 08:00 CEST"},
		{"fr-CA", dec.In(zone("America/Montreal")), "12 décembre 2026, 04:00 EST"},
		{"es", dec.In(zone("Europe/Madrid")), "12 de diciembre de 2026, 10:00 CET"},
		{"es-MX", time.Date(2026, 2, 1, 8, 0, 0, 0, zone("America/Mexico_City")), "1 de febrero de 2026, 08:00 CST"},
		{"pt-BR", time.Date(2026, 6, 1, 8, 0, 0, 0, zone("America/Sao_Paulo")), "1º de junho de 2026, 08:00 UTC-3"},
		{"pt-PT", time.Date(2026, 6, 1, 8, 0, 0, 0, zone("Europe/Lisbon")), "1 de junho de 2026, 08:00 WEST"},
		{"hi-IN", dec.In(zone("Asia/Kolkata")), "12 December 2026, 14:30 IST"},
		{"zh-Hant-TW", dec.In(zone("Asia/Taipei")), "12 December 2026, 17:00 CST"},
		{"en", dec.In(zone("Asia/Kathmandu")), "12 December 2026, 14:45 UTC+5:45"},
		{"en", dec.In(zone("America/St_Johns")), "12 December 2026, 05:30 NST"},
		{"x-klingon", dec.In(zone("Asia/Dubai")), "12 December 2026, 13:00 UTC+4"},
		{"pt_BR", time.Date(2026, 6, 1, 8, 0, 0, 0, zone("America/Sao_Paulo")), "1º de junho de 2026, 08:00 UTC-3"},
		{"en_US", dec.In(zone("America/Chicago")), "December 12, 2026, 3:00 AM CST"},
		{"en-Latn-US", dec.In(zone("America/New_York")), "December 12, 2026, 4:00 AM EST"},
		{"en-AU", dec.In(zone("Australia/Sydney")), "12 December 2026, 20:00 AEDT"},
		{"es-419", dec.In(zone("America/Bogota")), "12 de diciembre de 2026, 04:00 UTC-5"},
		{"gl", dec.In(zone("Europe/Madrid")), "12 de diciembre de 2026, 10:00 CET"}, // CLDR: Galician readers read Spanish
		{"ja-JP", dec.In(zone("Asia/Tokyo")), "12 December 2026, 18:00 JST"},
		{"not a tag", dec, "12 December 2026, 09:00 UTC"},
	}
	for _, tt := range tests {
		if got := templates.FormatTime(tt.t, tt.locale); got != tt.want {
			t.Errorf("FormatTime(%s, %q) = %q, want %q", tt.t, tt.locale, got, tt.want)
		}
	}
}
