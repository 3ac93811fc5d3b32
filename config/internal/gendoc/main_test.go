package main

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/reportmailer/reportmailer/config"
)

const (
	configDir   = "../.."
	examplePath = "../../example.yaml"
	docPath     = "../../../docs/configuration.md"
)

// TestConfigurationDocIsCurrent fails when docs/configuration.md is not
// what the generator writes from the code as it is.
func TestConfigurationDocIsCurrent(t *testing.T) {
	want, err := generate(configDir, examplePath)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatalf("%v: run go generate ./config", err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		line := 0
		for line < min(len(gl), len(wl)) && gl[line] == wl[line] {
			line++
		}
		at := func(l []string) string {
			if line < len(l) {
				return l[line]
			}
			return "(end of file)"
		}
		t.Errorf("docs/configuration.md is out of date: run\n\n\tgo generate ./config\n\nand commit it. First difference, line %d:\n  file:      %s\n  generated: %s", line+1, at(gl), at(wl))
	}
}

// TestEveryOptionIsDocumented checks what the generator cannot fix by
// itself: each option needs a doc comment and a value in
// config/example.yaml, and the example must be a real path.
func TestEveryOptionIsDocumented(t *testing.T) {
	_, w, err := collect(configDir, examplePath)
	if err != nil {
		t.Fatal(err)
	}
	leaves := 0
	for _, o := range w.options {
		if strings.TrimSpace(o.doc) == "" {
			t.Errorf("%s: the Go field %s has no doc comment", o.path, o.goName)
		}
		if o.section {
			continue
		}
		leaves++
		if o.example == "" {
			t.Errorf("%s: no example: set it in config/example.yaml (or show it there as a commented-out alternative, \"# %s: VALUE\"), then run go generate ./config", o.path, o.key)
			continue
		}
		dec := yaml.NewDecoder(strings.NewReader(o.example))
		dec.KnownFields(true)
		var c config.Config
		if err := dec.Decode(&c); err != nil {
			t.Errorf("%s: example does not decode into config.Config: %v\n%s", o.path, err, o.example)
		}
	}
	if leaves < 30 {
		t.Errorf("found %d options; the walk from config.Config lost some", leaves)
	}
}

// TestEnvironmentNames checks every documented variable against
// config.ApplyEnv: each one sets its option, and an option documented
// as file-only has none.
func TestEnvironmentNames(t *testing.T) {
	_, w, err := collect(configDir, examplePath)
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]string{
		"string": "x", "bool": "true", "integer": "7", "number": "0.5",
		"duration": "90s", "list of strings": "a.example, b.example",
	}
	for _, o := range w.options {
		if o.section {
			continue
		}
		fresh := func() *config.Config {
			return &config.Config{
				Links:     config.Links{CloudFront: &config.CloudFront{Keys: []config.CloudFrontKey{{ID: "K1"}}}},
				Schedules: []config.Schedule{{Name: "daily"}},
			}
		}
		c := fresh()
		if o.env == "" {
			name := "REPORTMAILER_" + strings.ToUpper(strings.NewReplacer(".", "_", "[]", "").Replace(o.path))
			if err := config.ApplyEnv(c, []string{name + "=x"}); err == nil {
				t.Errorf("%s is documented as file-only, but %s gives %v", o.path, name, err)
			}
			continue
		}
		value, ok := values[o.kind]
		if !ok {
			t.Errorf("%s: no test value for type %q", o.path, o.kind)
			continue
		}
		name := strings.NewReplacer("<NAME>", "DAILY", "<ID>", "K1").Replace(o.env)
		if err := config.ApplyEnv(c, []string{name + "=" + value}); err != nil {
			t.Errorf("%s: the documented %s does not work: %v", o.path, o.env, err)
			continue
		}
		if reflect.DeepEqual(c, fresh()) {
			t.Errorf("%s: %s=%s set nothing", o.path, name, value)
		}
	}
}

func TestDefaultOf(t *testing.T) {
	for _, tt := range []struct{ doc, want string }{
		{"Level is debug, info, warn or error. Default info.", "info"},
		{"RateFraction is the share. Default 0.8; more than 0 and at most 1.", "0.8"},
		{"TTL is how long. Default 168h (7 days); at least 1m.", "168h (7 days)"},
		{"ListID is ... Default \"reportmailer.\" plus the domain of From.", "\"reportmailer.\" plus the domain of From"},
		{"FallbackRate is ... Default 0: no fallback; the run stops.", "0"},
		{"AllowedDomains limits ... Default: any domain.", "any domain"},
		{"ID is the key id. Required; letters, digits.", "required"},
		{"Cron is a spec.\nRequired by serve.", "required by serve"},
		{"KeyID is the shorthand.", ""},
	} {
		if got := defaultOf(tt.doc); got != tt.want {
			t.Errorf("defaultOf(%q) = %q, want %q", tt.doc, got, tt.want)
		}
	}
}
