package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/worker/secret"
)

// pastedKey is text a user may paste where a key's name belongs.
type pastedKey struct {
	text      string
	body      string // its base64, none of which may be printed
	malformed bool   // does not parse as a key
}

// pastedKeys returns real keys (RSA PKCS#1 and PKCS#8, ECDSA SEC1 and
// PKCS#8) and text that looks like a key but is not one.
func pastedKeys(t *testing.T) map[string]pastedKey {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa8, _ := x509.MarshalPKCS8PrivateKey(rk)
	ec1, _ := x509.MarshalECPrivateKey(ek)
	ec8, _ := x509.MarshalPKCS8PrivateKey(ek)
	keys := map[string]pastedKey{}
	add := func(name, typ string, der []byte) {
		text := string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
		keys[name] = pastedKey{text: text, body: pemBody(text)}
	}
	add("rsa pkcs1", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk))
	add("rsa pkcs8", "PRIVATE KEY", rsa8)
	add("ec sec1", "EC PRIVATE KEY", ec1)
	add("ec pkcs8", "PRIVATE KEY", ec8)

	rsa1 := keys["rsa pkcs1"]
	lines := strings.Split(strings.TrimSpace(rsa1.text), "\n")
	truncated := strings.Join(lines[:len(lines)/2], "\n") + "\n"
	keys["malformed: truncated"] = pastedKey{text: truncated, body: pemBody(truncated + "-----END-----"), malformed: true}
	corrupt := lines[0] + "\n" + strings.ReplaceAll(strings.Join(lines[1:len(lines)-1], "\n"), "Q", "!") + "\n" + lines[len(lines)-1] + "\n"
	keys["malformed: bad base64"] = pastedKey{text: corrupt, body: pemBody(corrupt), malformed: true}
	bare := strings.Join(lines[1:len(lines)-1], "\n") + "\n"
	keys["malformed: body without armour"] = pastedKey{text: bare, body: strings.ReplaceAll(bare, "\n", ""), malformed: true}
	return keys
}

// pemBody returns the base64 lines of a PEM block, joined.
func pemBody(text string) string {
	var b strings.Builder
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "-----") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// leak returns the first part of k found in out: PEM armour or a
// 16-character run of its body.
func (k pastedKey) leak(out string) string {
	if strings.Contains(out, "PRIVATE KEY") {
		return "PRIVATE KEY"
	}
	for i := 0; i+16 <= len(k.body); i++ {
		if strings.Contains(out, k.body[i:i+16]) {
			return k.body[i : i+16]
		}
	}
	return ""
}

// yamlValue writes v as a YAML value for a key indented by indent
// spaces: a block scalar when it has several lines, as a user would
// paste a PEM.
func yamlValue(v string, indent int) string {
	if !strings.Contains(v, "\n") {
		return strconv.Quote(v)
	}
	pad := strings.Repeat(" ", indent+2)
	return "|\n" + pad + strings.ReplaceAll(strings.TrimRight(v, "\n"), "\n", "\n"+pad)
}

// runContext runs the command line args with ctx, returning its exit
// code, stdout and stderr.
func runContext(ctx context.Context, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: os.Getenv, Environ: os.Environ}
	code := m.Run(ctx, args)
	return code, stdout.String(), stderr.String()
}

// TestNoCommandPrintsAKey pastes private keys, and text that looks like
// one, into every setting, environment variable and flag that names a
// key, and runs each command that reads them: nothing any command
// prints holds PEM armour or any 16-character run of the key, and the
// error names the setting.
func TestNoCommandPrintsAKey(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "k1.pem")
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(good, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	event := filepath.Join(dir, "event.json")
	os.WriteFile(event, []byte(`{"version":1,"type":"report.ready","id":"e1","user":{"id":"u1","email":"u1@acme.example"},"reports":[{"bucket":"r","key":"a.pdf"}]}`), 0o644)
	// No command may reach AWS: each must stop at the key.
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "no AWS call expected", http.StatusTeapot)
	}))
	t.Cleanup(srv.Close)
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL": srv.URL, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		"REPORTMAILER_CONFIG": "",
	} {
		t.Setenv(k, v)
	}

	const base = `sender: {from: a@acme.example}
reports: {bucket: reports}
ledger: {bucket: state}
schedules: [{name: daily, queue_url: "http://127.0.0.1:9/000000000000/q", dead_letter_queue_url: "http://127.0.0.1:9/000000000000/dlq"}]
links:
  cloudfront:
    domain: https://d111.cloudfront.net
`
	// shorthand and list write the two forms of the key settings; each
	// value given replaces the default.
	shorthand := func(set map[string]string) string {
		f := map[string]string{"key_id": "K1", "private_key_file": good}
		for k, v := range set {
			f[k] = v
		}
		y := base
		for _, k := range []string{"key_id", "private_key_file", "private_key_env"} {
			if v, ok := f[k]; ok && v != "" {
				y += fmt.Sprintf("    %s: %s\n", k, yamlValue(v, 4))
			}
		}
		return y
	}
	list := func(set map[string]string) string {
		f := map[string]string{"0.id": "K1", "0.private_key_file": good, "1.id": "K2", "1.private_key_env": "K2_PEM"}
		for k, v := range set {
			f[k] = v
		}
		y := base + "    keys:\n"
		for _, i := range []string{"0", "1"} {
			y += fmt.Sprintf("      - id: %s\n", yamlValue(f[i+".id"], 8))
			for _, k := range []string{"private_key_file", "private_key_env"} {
				if v := f[i+"."+k]; v != "" {
					y += fmt.Sprintf("        %s: %s\n", k, yamlValue(v, 8))
				}
			}
			if i == "0" {
				y += "        active: true\n"
			}
		}
		return y
	}
	t.Setenv("K2_PEM", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))

	// Every command that reads the config. readsKeys: it loads the
	// private keys, so a key file or variable that holds no key stops it;
	// iam writes a policy, which needs no key.
	configCommands := []struct {
		args      []string
		readsKeys bool
	}{
		{[]string{"config", "check"}, true},
		{[]string{"check", "-aws"}, true},
		{[]string{"drain"}, true},
		{[]string{"serve"}, true},
		{[]string{"keys"}, true},
		{[]string{"preview", "-event", event, "-out", filepath.Join(dir, "out")}, true},
		{[]string{"iam"}, false},
	}
	for name, k := range pastedKeys(t) {
		type setting struct {
			name string
			yaml string
			env  map[string]string
			want string
		}
		settings := []setting{
			{"yaml private_key_file", shorthand(map[string]string{"private_key_file": k.text}), nil,
				"links.cloudfront.private_key_file: holds key material, not a file path"},
			{"yaml private_key_env", shorthand(map[string]string{"private_key_file": "", "private_key_env": k.text}), nil,
				"links.cloudfront.private_key_env: holds key material, not a variable name"},
			{"yaml key_id", shorthand(map[string]string{"key_id": k.text}), nil,
				"links.cloudfront.key_id: (holds key material, not shown)"},
			{"yaml keys[0].private_key_file", list(map[string]string{"0.private_key_file": k.text}), nil,
				"links.cloudfront.keys[0].private_key_file: holds key material, not a file path"},
			{"yaml keys[1].private_key_env", list(map[string]string{"1.private_key_env": k.text}), nil,
				"links.cloudfront.keys[1].private_key_env: holds key material, not a variable name"},
			{"yaml keys[1].id", list(map[string]string{"1.id": k.text}), nil,
				"links.cloudfront.keys[1].id: (holds key material, not shown)"},
			{"REPORTMAILER_LINKS_CLOUDFRONT_PRIVATE_KEY_FILE", shorthand(nil), map[string]string{"REPORTMAILER_LINKS_CLOUDFRONT_PRIVATE_KEY_FILE": k.text},
				"links.cloudfront.private_key_file: holds key material, not a file path"},
			{"REPORTMAILER_LINKS_CLOUDFRONT_PRIVATE_KEY_ENV", shorthand(map[string]string{"private_key_file": "", "private_key_env": "CF_PEM"}),
				map[string]string{"REPORTMAILER_LINKS_CLOUDFRONT_PRIVATE_KEY_ENV": k.text},
				"links.cloudfront.private_key_env: holds key material, not a variable name"},
			{"REPORTMAILER_LINKS_CLOUDFRONT_KEY_ID", shorthand(nil), map[string]string{"REPORTMAILER_LINKS_CLOUDFRONT_KEY_ID": k.text},
				"links.cloudfront.key_id: (holds key material, not shown)"},
			{"REPORTMAILER_LINKS_CLOUDFRONT_KEYS_K1_PRIVATE_KEY_FILE", list(nil), map[string]string{"REPORTMAILER_LINKS_CLOUDFRONT_KEYS_K1_PRIVATE_KEY_FILE": k.text},
				"links.cloudfront.keys[0].private_key_file: holds key material, not a file path"},
			{"REPORTMAILER_LINKS_CLOUDFRONT_KEYS_K2_PRIVATE_KEY_ENV", list(nil), map[string]string{"REPORTMAILER_LINKS_CLOUDFRONT_KEYS_K2_PRIVATE_KEY_ENV": k.text},
				"links.cloudfront.keys[1].private_key_env: holds key material, not a variable name"},
			{"REPORTMAILER_LINKS_CLOUDFRONT_KEYS_K2_ID", list(nil), map[string]string{"REPORTMAILER_LINKS_CLOUDFRONT_KEYS_K2_ID": k.text},
				"links.cloudfront.keys[1].id: (holds key material, not shown)"},
			{"REPORTMAILER_LINKS_CLOUDFRONT_KEYS_K2_ACTIVE", list(nil), map[string]string{"REPORTMAILER_LINKS_CLOUDFRONT_KEYS_K2_ACTIVE": k.text},
				"environment REPORTMAILER_LINKS_CLOUDFRONT_KEYS_K2_ACTIVE: (holds key material, not shown) is not true or false"},
			{"yaml trace_secret_file", shorthand(nil) + "  trace: true\n  trace_secret_file: " + yamlValue(k.text, 2) + "\n", nil,
				"links.trace_secret_file: holds a secret, not a file path"},
			{"REPORTMAILER_LINKS_TRACE_SECRET_ENV", shorthand(nil) + "  trace: true\n  trace_secret_env: S\n",
				map[string]string{"REPORTMAILER_LINKS_TRACE_SECRET_ENV": k.text}, "links.trace_secret_env: holds a secret, not a variable name"},
		}
		// The settings from here on leave the config valid: only the key
		// it names does not parse.
		keyTextFrom := len(settings)
		if k.malformed {
			// Where the key belongs, text that is not a key: the error
			// says why it does not parse, not what it holds.
			settings = append(settings,
				setting{"private_key_env's variable", shorthand(map[string]string{"private_key_file": "", "private_key_env": "CF_PEM"}), map[string]string{"CF_PEM": k.text},
					"links.cloudfront.private_key_env (key K1): private key from environment variable CF_PEM: "},
				setting{"keys[1].private_key_env's variable", list(nil), map[string]string{"K2_PEM": k.text},
					"links.cloudfront.keys[1].private_key_env (key K2): private key from environment variable K2_PEM: "},
			)
			bad := filepath.Join(dir, "bad.pem")
			os.WriteFile(bad, []byte(k.text), 0o600)
			settings = append(settings, setting{"a private_key_file holding it", shorthand(map[string]string{"private_key_file": bad}), nil,
				"links.cloudfront.private_key_file (key K1): private key from file " + strconv.Quote(bad) + ": "})
		}
		for i, s := range settings {
			keyText := i >= keyTextFrom
			cfg := filepath.Join(dir, "reportmailer.yaml")
			t.Run(name+"/"+s.name, func(t *testing.T) {
				if err := os.WriteFile(cfg, []byte(s.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
				for k, v := range s.env {
					t.Setenv(k, v)
				}
				for _, c := range configCommands {
					args := append(append([]string{}, c.args...), "-config", cfg)
					name := strings.Join(c.args[:min(2, len(c.args))], " ")
					// serve runs until its context ends: should it get past
					// the key, this ends it, and it fails the test by
					// exiting 0.
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					code, stdout, stderr := runContext(ctx, args...)
					cancel()
					if l := k.leak(stdout + stderr); l != "" {
						t.Errorf("%s prints %q of the key:\n%s%s", name, l, stdout, stderr)
					}
					if keyText && !c.readsKeys {
						if code != ExitOK {
							t.Errorf("%s: exit %d; it needs no key, so a key that does not parse should not stop it:\n%s", name, code, stderr)
						}
						continue
					}
					if code == ExitOK {
						t.Errorf("%s: exit 0", name)
					}
					if !strings.Contains(stderr, s.want) {
						t.Errorf("%s: stderr %q does not name the setting: want %q", name, stderr, s.want)
					}
				}
			})
		}

		// The key on the command line, where a file, a key id or the
		// config belongs.
		t.Run(name+"/command line", func(t *testing.T) {
			for _, tt := range []struct {
				args []string
				env  string // REPORTMAILER_CONFIG
				want string
			}{
				{[]string{"sign", "-private-key", k.text, "-key-id", "K1", "-url", "https://d111.cloudfront.net/a.pdf"}, "",
					"sign: -private-key holds key material, not a file path"},
				{[]string{"sign", "-private-key", good, "-key-id", k.text, "-url", "https://d111.cloudfront.net/a.pdf"}, "",
					"sign: -key-id holds key material, not a key id"},
				// The flag package says "bad flag syntax" when it starts with
				// "-", and parse "unexpected argument" otherwise.
				{[]string{"sign", k.text}, "", "sign"},
				{[]string{"sign", "-private-key", good, "-key-id", "K1", "-url", "https://d111.cloudfront.net/a.pdf", k.text}, "", "sign"},
				{[]string{"verify", "-public-key", k.text, "https://d111.cloudfront.net/a.pdf?Expires=1&Signature=x&Key-Pair-Id=K1"}, "",
					"verify: -public-key holds key material, not a file or directory path"},
				{[]string{"keys", "-config", k.text}, "", "config: the file name holds key material, not a path"},
				{[]string{"config", "check", "-config", k.text}, "", "config: the file name holds key material, not a path"},
				{[]string{"drain"}, k.text, "config: the file name holds key material, not a path"},
				{[]string{k.text}, "", "unknown command"},
			} {
				t.Setenv("REPORTMAILER_CONFIG", tt.env)
				code, stdout, stderr := run(t, tt.args...)
				if code == ExitOK {
					t.Errorf("%s: exit 0", tt.want)
				}
				if l := k.leak(stdout + stderr); l != "" {
					t.Errorf("%s: prints %q of the key:\n%s%s", tt.want, l, stdout, stderr)
				}
				if !strings.Contains(stderr, tt.want) {
					t.Errorf("stderr %q does not say %q", stderr, tt.want)
				}
				if tt.want == "sign" && !strings.Contains(stderr, "bad flag syntax: "+secret.Redacted) && !strings.Contains(stderr, `unexpected argument "`+secret.Redacted) {
					t.Errorf("stderr %q does not show where the key was", stderr)
				}
			}
		})
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d AWS calls: every command should have stopped at the key", n)
	}
}
