package templates_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/templates"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fixtures are the fixed data sets the default templates are checked
// against. Any change to what users receive shows up as a golden diff.
func fixtures() map[string]templates.Data {
	one := templates.Sample()

	london, _ := time.LoadLocation("Europe/London")
	gen := time.Date(2026, 12, 11, 9, 0, 0, 0, london)
	digest := templates.Data{
		User:      templates.User{Name: "Zoë Ångström-Łukasz", Email: "zoe@example.com"},
		Recipient: "cfo@example.com",
		Digest:    true,
		Schedule:  "daily",
		Generated: gen,
	}
	for i, l := range []struct {
		title, file, size string
		ttl               time.Duration
	}{
		{"Ventes — décembre", "ventes décembre.csv", "1.2 MiB", 20 * time.Hour},
		{"<script>alert(1)</script> {{.User.Email}}", "weird+name?#.pdf", "", 7 * 24 * time.Hour},
		{"日本語レポート 📈", "日本語.xlsx", "512 B", 48 * time.Hour},
	} {
		exp := gen.Add(l.ttl)
		digest.Links = append(digest.Links, templates.Link{
			Title: l.title, FileName: l.file, Size: l.size, ContentType: "application/octet-stream",
			URL:     "https://reports.example.com/r/" + string(rune('a'+i)) + "?Expires=1&Signature=s&Key-Pair-Id=K",
			Expires: exp, ExpiresText: templates.ExpiresText(exp), ExpiresSoon: l.ttl < 24*time.Hour,
		})
	}
	return map[string]templates.Data{"single": one, "digest": digest}
}

func TestGolden(t *testing.T) {
	set := templates.Default()
	for name, data := range fixtures() {
		t.Run(name, func(t *testing.T) {
			m, err := set.Render(data)
			if err != nil {
				t.Fatal(err)
			}
			for ext, got := range map[string]string{"subject.txt": m.Subject + "\n", "html": m.HTML, "txt": m.Text} {
				path := filepath.Join("testdata", name+"."+ext)
				if *update {
					if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run go test ./templates -update to create it)", err)
				}
				if got != string(want) {
					t.Errorf("%s differs from the golden file; if the change is intended, run go test ./templates -update and review the diff\n--- got ---\n%s", path, got)
				}
			}
		})
	}
}

func TestUserTextIsEscaped(t *testing.T) {
	d := fixtures()["digest"]
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
	if strings.Contains(m.Text, "zoe@example.com {{") || !strings.Contains(m.Text, "{{.User.Email}}") {
		t.Error("template braces in a title must not be executed in the text part")
	}
}

func TestSubjectIsOneLine(t *testing.T) {
	d := templates.Sample()
	d.Links[0].Title = "Q3\r\nBcc: victim@example.com"
	m, err := templates.Default().Render(d)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(m.Subject, "\r\n") {
		t.Errorf("subject %q holds a line break", m.Subject)
	}
}

func TestLoadDirOverridesOneFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, templates.SubjectFile), []byte("Custom: {{len .Links}}"), 0o644)
	set, err := templates.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := set.Render(templates.Sample())
	if m.Subject != "Custom: 1" || !strings.Contains(m.HTML, "Q3 results") {
		t.Errorf("override not applied or defaults lost: %q", m.Subject)
	}
}

func TestLoadDirReportsBrokenTemplatesAtLoad(t *testing.T) {
	tests := []struct{ name, file, src, want string }{
		{"syntax", templates.HTMLFile, "{{if}}", "email.html.tmpl"},
		{"unknown field", templates.TextFile, "{{.Nope}}", "Nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, tt.file), []byte(tt.src), 0o644)
			_, err := templates.LoadDir(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadDir error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	if _, err := templates.LoadDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing templates dir should be an error")
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "", 1: "1 B", 1023: "1023 B", 1024: "1.0 KiB", 48213: "47.1 KiB", 5 << 30: "5.0 GiB"} {
		if got := templates.HumanSize(n); got != want {
			t.Errorf("HumanSize(%d) = %q, want %q", n, got, want)
		}
	}
}
