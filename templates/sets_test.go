package templates_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reportmailer/reportmailer/templates"
)

func write(t *testing.T, dir, rel, src string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

func render(t *testing.T, set *templates.Set) templates.Message {
	t.Helper()
	m, err := set.Render(templates.Sample())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLoadSetsOverridesFileByFile(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, templates.TextFile, "Custom text for {{.User.Email}}")
	write(t, dir, "invoice/"+templates.SubjectFile, "Invoice: {{(index .Links 0).Title}}")
	write(t, dir, "finance/"+templates.HTMLFile, "<p>Finance: {{range .Links}}{{.Title}}{{end}}</p>")
	write(t, dir, "README.md", "notes for operators are ignored")
	write(t, dir, ".git/config", "hidden entries are ignored")
	sets, err := templates.LoadSets(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(sets.Types(), ","); got != "finance,invoice" {
		t.Errorf("types = %q, want finance,invoice", got)
	}

	def := render(t, sets.For(""))
	if def.Subject != "Your report is ready: Q3 results" || def.Text != "Custom text for ana@example.com" || !strings.Contains(def.HTML, "<h1") {
		t.Errorf("default set: subject %q, text %q: want the embedded subject and HTML and the overriding text", def.Subject, def.Text)
	}

	inv := render(t, sets.For("invoice"))
	if inv.Subject != "Invoice: Q3 results" || inv.Text != def.Text || inv.HTML != def.HTML {
		t.Errorf("invoice set: subject %q; want its own subject and the rest from the default set", inv.Subject)
	}
	if src := sets.For("invoice").Source(templates.TextFile); src != filepath.Join(dir, templates.TextFile) {
		t.Errorf("invoice text from %q, want the templates_dir default", src)
	}

	fin := render(t, sets.For("finance"))
	if fin.Subject != "Finance report ready: Q3 results" {
		t.Errorf("finance subject %q: want the embedded finance subject kept", fin.Subject)
	}
	if fin.HTML != "<p>Finance: Q3 results</p>" || fin.Text != def.Text {
		t.Errorf("finance set: html %q text %q", fin.HTML, fin.Text)
	}
}

func TestLoadSetsTemplatesDirBeatsEmbedded(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, templates.SubjectFile, "ACME: {{len .Links}} report(s)")
	sets, err := templates.LoadSets(dir)
	if err != nil {
		t.Fatal(err)
	}
	// An operator's default subject applies to every report type, even
	// one with an embedded subject of its own.
	for _, typ := range []string{"", "finance"} {
		if got := render(t, sets.For(typ)).Subject; got != "ACME: 1 report(s)" {
			t.Errorf("For(%q) subject = %q", typ, got)
		}
	}
}

func TestLoadSetsReportsEveryMistakeAtLoad(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"syntax", map[string]string{templates.HTMLFile: "{{if}}"}, []string{filepath.Join("DIR", templates.HTMLFile), "missing value for if"}},
		{"unknown field", map[string]string{templates.TextFile: "{{.Nope}}"}, []string{filepath.Join("DIR", templates.TextFile), "can't evaluate field Nope"}},
		{"fails only for a digest", map[string]string{templates.SubjectFile: "{{(index .Links 1).Title}}"}, []string{"index out of range"}},
		{"broken type set", map[string]string{"invoice/" + templates.TextFile: "{{.User.Nope}}"}, []string{filepath.Join("DIR", "invoice", templates.TextFile), "can't evaluate field Nope"}},
		{"misspelt file", map[string]string{"email.htm.tmpl": "x"}, []string{filepath.Join("DIR", "email.htm.tmpl"), "not a template name"}},
		{"misspelt file in a type", map[string]string{"finance/subject.tmpl": "x"}, []string{filepath.Join("DIR", "finance", "subject.tmpl")}},
		{"type dir without templates", map[string]string{"invoice/notes.md": "x"}, []string{filepath.Join("DIR", "invoice"), "holds none of"}},
		{"nested dir", map[string]string{"finance/old/" + templates.SubjectFile: "x"}, []string{filepath.Join("DIR", "finance", "old"), "nested"}},
		{"default dir", map[string]string{"default/" + templates.SubjectFile: "x"}, []string{filepath.Join("DIR", "default"), "top of templates_dir"}},
		{"two at once", map[string]string{templates.HTMLFile: "{{end}}", "invoice/" + templates.SubjectFile: "{{.Nope}}"}, []string{"unexpected {{end}}", filepath.Join("DIR", "invoice", templates.SubjectFile)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for rel, src := range tt.files {
				write(t, dir, rel, src)
			}
			_, err := templates.LoadSets(dir)
			if err == nil {
				t.Fatal("LoadSets succeeded, want an error")
			}
			msg := strings.ReplaceAll(err.Error(), dir, "DIR")
			for _, w := range tt.want {
				if n := strings.Count(msg, w); n != 1 {
					t.Errorf("error %q mentions %q %d times, want once", msg, w, n)
				}
			}
		})
	}
}

func TestLoadSetsMissingDir(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	if _, err := templates.LoadSets(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("LoadSets(missing) error = %v, want one naming the directory", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	write(t, filepath.Dir(file), "file", "x")
	if _, err := templates.LoadSets(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("LoadSets(file) error = %v", err)
	}
}

func TestLoadCompleteSet(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, templates.SubjectFile, "S {{len .Links}}")
	write(t, dir, templates.HTMLFile, "<p>{{.User.Name}}</p>")
	write(t, dir, templates.TextFile, "T")
	set, err := templates.Load(os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	if m := render(t, set); m.Subject != "S 1" || m.HTML != "<p>Ana Lima</p>" {
		t.Errorf("got %+v", m)
	}
	if err := os.Remove(filepath.Join(dir, templates.TextFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := templates.Load(os.DirFS(dir)); err == nil {
		t.Error("Load of a set without its text template should fail")
	}
}
