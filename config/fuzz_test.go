package config_test

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/internal/fuzzseed"
	"github.com/reportmailer/reportmailer/worker/secret"
)

// quoted matches a value as config quotes it.
const quoted = `("([^"\\]|\\.)*"|\(holds key material, not shown\))`

// errorLine is what each line of a Parse error must start with: the
// field path it is about, the environment variable, or for YAML the
// decoder's summary and the line of the document. A map key
// (links.ttl_by_type's report types) ends a path as a word or, like a
// variable name that is not one, quoted.
var errorLine = regexp.MustCompile(`^(` +
	`[a-z_]+(\[[0-9]+\])?(\.[a-z_]+(\[[0-9]+\])?)*(\.[A-Za-z0-9_-]+|\[` + quoted + `\])?: ` +
	`|environment (REPORTMAILER_[A-Za-z0-9_]*|` + quoted + `): ` +
	`|(  )?line [0-9]+: ` +
	`|unmarshal errors:$)`)

// checkMessage fails unless every line of msg, Parse's error for doc,
// names what it is about, and no line holds a raw control character or
// invalid UTF-8. The one exception to naming is a document that is not
// YAML at all, where the parser's message may give no line: yaml.v3
// leaves out the line number when it is the first.
func checkMessage(t *testing.T, doc []byte, msg string) {
	t.Helper()
	var n yaml.Node
	syntax := yaml.Unmarshal(doc, &n) != nil
	for line := range strings.SplitSeq(msg, "\n") {
		switch {
		case !utf8.ValidString(line) || strings.ContainsFunc(line, unicode.IsControl):
			t.Fatalf("error line %q holds a raw control character or invalid UTF-8; whole error:\n%s", line, msg)
		case !errorLine.MatchString(line) && !(syntax && !strings.Contains(msg, "\n")):
			t.Fatalf("error line %q names no field; whole error:\n%s", line, msg)
		}
	}
}

// environ splits the fuzzer's NUL-separated environment.
func environ(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\x00")
}

// FuzzParse feeds Parse any document and environment (NUL-separated).
// Beyond not panicking it checks that Parse is deterministic; that
// every line of an error names the field path, the environment variable
// or the YAML line it is about, with no raw control characters; and
// that a configuration it accepts validates again and, written out as
// YAML, reads back to the same YAML.
//
// Seeds: example.yaml and the documents and variables in this
// package's tests.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example, "")
	f.Add(example, "REPORTMAILER_SENDER_FROM=ops@example.com\x00REPORTMAILER_SCHEDULES_DAILY_BUDGET=90s\x00REPORTMAILER_LINKS_CLOUDFRONT_KEYS_K2JCJMDEHXQW5F_ACTIVE=false")
	f.Add([]byte(minimal), "REPORTMAILER_RECIPIENTS_ALLOWED_DOMAINS=example.com, *.example.org\x00REPORTMAILER_LINKS_CLOUDFRONT_DOMAIN=https://d.cloudfront.net\x00REPORTMAILER_LINKS_CLOUDFRONT_KEY_ID=K1\x00REPORTMAILER_LINKS_CLOUDFRONT_PRIVATE_KEY_ENV=CF_KEY")
	f.Add([]byte(""), "")
	f.Add([]byte("sender: {frm: x}\n\"\\x01\": 1\nlinks: {ttl_by_type: {\"a\\nb\": 0s}}"), "REPORTMAILER_X=1\x00REPORTMAILER_Y=2")
	var envs []string
	for _, s := range fuzzseed.Literals(f, "*_test.go", nil) {
		switch {
		case strings.HasPrefix(s, config.EnvPrefix):
			envs = append(envs, s)
		case strings.HasPrefix(s, "  "):
			f.Add([]byte(minimal+"links:\n"+s), "")
		case strings.Contains(s, ":"):
			f.Add([]byte(s), "")
			f.Add([]byte(minimal+s), "")
		}
	}
	f.Add([]byte(minimal), strings.Join(envs, "\x00"))
	for _, e := range envs {
		f.Add(example, e)
	}

	f.Fuzz(func(t *testing.T, doc []byte, env string) {
		c, err := config.Parse(doc, environ(env))
		c2, err2 := config.Parse(doc, environ(env))
		if fmt.Sprint(err) != fmt.Sprint(err2) || !reflect.DeepEqual(c, c2) {
			t.Fatalf("Parse is not deterministic:\n%v\nthen\n%v", err, err2)
		}
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a config with error %v", err)
			}
			checkMessage(t, doc, err.Error())
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("an accepted config does not validate: %v", err)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := config.Parse(out, nil)
		if err != nil {
			t.Fatalf("written out as\n%s\nthe config does not read back: %v", out, err)
		}
		if out2, _ := yaml.Marshal(again); string(out2) != string(out) {
			t.Fatalf("written out as\n%s\nthe config reads back as\n%s", out, out2)
		}
	})
}

// fakeKey returns PEM text shaped like a private key of the given kind:
// a real DER header, then random bytes from seed, so that the body is
// as random as a key's without a key in the repository.
func fakeKey(kind int, seed uint64) string {
	kinds := []struct {
		label  string
		header []byte
		size   int
	}{
		{"RSA PRIVATE KEY", []byte{0x30, 0x82, 0x04, 0xa4, 0x02, 0x01, 0x00, 0x02, 0x82, 0x01, 0x01, 0x00}, 1192},
		{"PRIVATE KEY", []byte{0x30, 0x82, 0x04, 0xbe, 0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00, 0x04, 0x82, 0x04, 0xa8}, 1218},
		{"EC PRIVATE KEY", []byte{0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20}, 121},
	}
	k := kinds[kind%len(kinds)]
	der := make([]byte, k.size)
	copy(der, k.header)
	r := rand.New(rand.NewChaCha8([32]byte{0: byte(seed), 1: byte(seed >> 8), 2: byte(seed >> 16), 3: byte(seed >> 24)}))
	for i := len(k.header); i < len(der); i++ {
		der[i] = byte(r.Uint32())
	}
	b64 := base64.StdEncoding.EncodeToString(der)
	var b strings.Builder
	b.WriteString("-----BEGIN " + k.label + "-----\n")
	for len(b64) > 64 {
		b.WriteString(b64[:64] + "\n")
		b64 = b64[64:]
	}
	b.WriteString(b64 + "\n-----END " + k.label + "-----\n")
	return b.String()
}

// pasted returns the forms in which key is pasted into a setting: as it
// is, flattened with "\n" escapes, and its body alone on one line.
func pasted(key string, form int) string {
	lines := strings.Split(strings.TrimSpace(key), "\n")
	switch form % 4 {
	case 1:
		return strings.ReplaceAll(key, "\n", `\n`)
	case 2:
		return strings.Join(lines[1:len(lines)-1], "")
	case 3:
		return strings.Join(lines[1:len(lines)-1], " ")
	}
	return key
}

// bodyLeak returns "PRIVATE KEY" if s holds it, or a 16-character run
// of key's base64 body found in s, or "".
func bodyLeak(s, key string) string {
	if strings.Contains(s, "PRIVATE KEY") {
		return "PRIVATE KEY"
	}
	var body strings.Builder
	for _, line := range strings.Split(key, "\n") {
		if !strings.HasPrefix(line, "-----") {
			body.WriteString(line)
		}
	}
	b := body.String()
	for i := 0; i+16 <= len(b); i++ {
		if strings.Contains(s, b[i:i+16]) {
			return b[i : i+16]
		}
	}
	return ""
}

// A placement is one string setting of example.yaml: its YAML path,
// its environment variable ("" for none) and how to set it.
type placement struct {
	path, env string
	set       func(string)
}

// placements lists the string settings of c: string fields, list
// elements (and a new element of each empty list), and map keys.
func placements(c *config.Config) []placement {
	var out []placement
	var walk func(v reflect.Value, path, env string)
	walk = func(v reflect.Value, path, env string) {
		switch v.Kind() {
		case reflect.Pointer:
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			walk(v.Elem(), path, env)
		case reflect.Struct:
			for i := range v.NumField() {
				tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
				p := tag
				if path != "" {
					p = path + "." + tag
				}
				walk(v.Field(i), p, env+"_"+strings.ToUpper(tag))
			}
		case reflect.String:
			out = append(out, placement{path, env, func(s string) { v.SetString(s) }})
		case reflect.Slice:
			if v.Type().Elem().Kind() == reflect.String {
				out = append(out, placement{path + "[new]", env, func(s string) { v.Set(reflect.Append(v, reflect.ValueOf(s))) }})
			}
			for j := range v.Len() {
				e := v.Index(j)
				id := ""
				if e.Kind() == reflect.Struct {
					for _, name := range []string{"Name", "ID"} {
						if f := e.FieldByName(name); f.IsValid() {
							id = regexp.MustCompile(`[^A-Z0-9]`).ReplaceAllString(strings.ToUpper(f.String()), "_")
						}
					}
				}
				envElem := ""
				if id != "" {
					envElem = env + "_" + id
				}
				walk(e, fmt.Sprintf("%s[%d]", path, j), envElem)
			}
		case reflect.Map:
			for _, k := range v.MapKeys() {
				out = append(out, placement{path + "[" + k.String() + "]", "", func(s string) {
					val := v.MapIndex(k)
					v.SetMapIndex(k, reflect.Value{})
					v.SetMapIndex(reflect.ValueOf(s), val)
				}})
			}
		}
	}
	walk(reflect.ValueOf(c).Elem(), "", "REPORTMAILER")
	for i := range out {
		if strings.HasSuffix(out[i].path, "]") && !strings.HasSuffix(out[i].path, "[new]") || strings.Contains(out[i].env, "REPORTMAILER__") {
			out[i].env = "" // a list element or map key has no variable of its own
		}
	}
	return out
}

// FuzzParseKeyMaterial pastes a private key, with text around it, into
// a string setting of example.yaml: as the YAML value, through the
// setting's environment variable, or as lines dropped into the file.
// Whatever Parse says, no part of the key appears in its error: not
// "PRIVATE KEY", no 16-character run of its body, and no line that
// secret.Redact, the last line of defence, would have to change. (A
// few characters of armour, as in YAML's "cannot unmarshal !!str
// `-----BE...`", give nothing away.)
func FuzzParseKeyMaterial(f *testing.F) {
	example, err := os.ReadFile("example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	var base config.Config
	if err := yaml.Unmarshal(example, &base); err != nil {
		f.Fatal(err)
	}
	n := len(placements(&base))
	lines := strings.Split(string(example), "\n")
	for i := range n + len(lines) {
		for form := range 4 {
			f.Add(uint(i), uint8(form), uint8(i%3), uint64(i), "", "")
		}
	}
	f.Add(uint(0), uint8(0), uint8(0), uint64(1), "{{", "}}")
	f.Add(uint(0), uint8(2), uint8(0), uint64(1), "/", "")
	f.Add(uint(0), uint8(3), uint8(1), uint64(1), "CRON_TZ=", " * * * *")

	f.Fuzz(func(t *testing.T, where uint, form, kind uint8, seed uint64, before, after string) {
		if len(before) > 64 || len(after) > 64 {
			return
		}
		key := fakeKey(int(kind), seed)
		value := before + pasted(key, int(form)) + after
		var doc []byte
		var env []string
		how := ""
		if i := int(where % uint(n+len(lines))); i < n {
			var c config.Config
			if err := yaml.Unmarshal(example, &c); err != nil {
				t.Fatal(err)
			}
			p := placements(&c)[i]
			if p.env != "" && form&4 != 0 {
				doc, env, how = example, []string{p.env + "=" + value}, "environment "+p.env
			} else {
				p.set(value)
				if doc, err = yaml.Marshal(&c); err != nil {
					t.Fatal(err)
				}
				how = "YAML " + p.path
			}
		} else {
			// Dropped into the file as lines, indented like the line
			// it lands before.
			at := i - n
			indent := lines[at][:len(lines[at])-len(strings.TrimLeft(lines[at], " "))]
			pastedLines := strings.Split(strings.TrimRight(value, "\n"), "\n")
			for j := range pastedLines {
				pastedLines[j] = indent + pastedLines[j]
			}
			doc = []byte(strings.Join(slices.Concat(lines[:at], pastedLines, lines[at:]), "\n"))
			how = fmt.Sprintf("lines before line %d", at+1)
		}
		_, err := config.Parse(doc, env)
		if err == nil {
			return
		}
		msg := err.Error()
		if l := bodyLeak(msg, key); l != "" {
			t.Fatalf("key pasted in %s: the error quotes it (%q):\n%s", how, l, msg)
		}
		for line := range strings.SplitSeq(msg, "\n") {
			if r := secret.Redact(line); r != line {
				t.Fatalf("key pasted in %s: secret.Redact would change error line %q to %q:\n%s", how, line, r, msg)
			}
		}
	})
}

// TestFuzzFindings holds what fuzzing found in Parse, one case each,
// with the corpus entry under testdata/fuzz that found it.
func TestFuzzFindings(t *testing.T) {
	key := fakeKey(2, 1)
	rsa8 := fakeKey(1, 129) // its first line is split by '/' into pieces secret.Redact passes
	withSender := func(setting string) string {
		from := `sender: {from: "Reports <reports@example.com>"`
		return strings.Replace(minimal, from, from+", "+setting, 1)
	}
	tests := []struct {
		name string
		yaml string
		env  []string
		want string // the error holds this
	}{
		{"a key pasted as a cron spec is not quoted by the cron parser's error",
			minimal + "  - {name: k, cron: " + strconv.Quote(pasted(key, 1)) + ", queue_url: \"https://q/1\", dead_letter_queue_url: \"https://q/2\"}\n", nil,
			"schedules[1].cron: (holds key material, not shown) is not a cron spec: (details not shown, as it holds key material)"},
		{"a key's body as a cron spec",
			minimal + "  - {name: k, cron: " + strconv.Quote(pasted(key, 3)) + ", queue_url: \"https://q/1\", dead_letter_queue_url: \"https://q/2\"}\n", nil,
			"schedules[1].cron: (holds key material, not shown) is not a cron spec: (details not shown"},
		{"a control character in a cron spec is escaped",
			strings.Replace(minimal, `"0 7 * * *"`, `"0 7 * * \x1b"`, 1), nil,
			`schedules[0].cron: "0 7 * * \x1b" is not a cron spec: failed to parse int from \x1b`},
		{"a control character in an unknown key is escaped",
			minimal + "\"\\e[31mred\": 1\n", nil,
			`line 11: field \x1b[31mred not found in type config.Config`},
		{"a report type that is not a word is quoted in the field path",
			minimal + "links: {ttl_by_type: {\"monthly\\nreport\": 1s}}\n", nil,
			`links.ttl_by_type["monthly\nreport"]: 1s is shorter than 1m`},
		{"a key after a leading slash in reports.prefix is not quoted in the suggested prefix",
			strings.Replace(minimal, "reports: {bucket: acme-reports}", "reports: {bucket: acme-reports, prefix: "+strconv.Quote("/"+pasted(key, 2))+"}", 1), nil,
			`reports.prefix: (holds key material, not shown) starts with "/", which S3 keys do not: write (holds key material, not shown)`},
		{"a rune YAML cuts in its quote of a value is escaped, not left invalid",
			"\xfe\xff00000000", nil,
			"line 1: cannot unmarshal !!str `\u3030\u3030\\xe3...` into config.Config"},
		{"a line of a key that YAML reads as a tag is not quoted",
			"!" + strings.Split(rsa8, "\n")[1] + " x\n", nil,
			"line 1: cannot unmarshal !" + secret.Redacted + " `x` into config.Config"},
		{"pieces of a key's armour in an unknown key are not quoted",
			"!" + pasted(key, 1) + ":\n", nil,
			"line 1: field " + secret.Redacted + `\n` + secret.Redacted + `\n` + secret.Redacted + `\n not found in type config.Config`},
		{"a key in an unsubscribe template is not quoted by the template parser's error",
			withSender("list_unsubscribe_url: " + strconv.Quote("{{"+pasted(key, 2)+"}}")), nil,
			"sender.list_unsubscribe_url: (holds key material, not shown) is not a template: (details not shown, as it holds key material)"},
		{"every unknown variable is named, in order",
			minimal, []string{"REPORTMAILER_Y=1", "REPORTMAILER_X=2"},
			"environment REPORTMAILER_X: no such setting\nenvironment REPORTMAILER_Y: no such setting"},
		{"a variable name that is not a word is quoted",
			minimal, []string{"REPORTMAILER_SENDER_FROM: x\nsender.from=1"},
			`environment "REPORTMAILER_SENDER_FROM: x\nsender.from": no such setting`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tt.yaml), tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v\nwant it to hold %q", err, tt.want)
			}
			checkMessage(t, []byte(tt.yaml), err.Error())
			for _, k := range []string{key, rsa8} {
				if l := bodyLeak(err.Error(), k); l != "" {
					t.Errorf("the error quotes the key (%q)", l)
				}
			}
		})
	}
}
