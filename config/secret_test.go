package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reportmailer/reportmailer/config"
)

// pastedKeys are the values a user may paste where a key's file or
// variable name belongs: RSA (PKCS#1 and PKCS#8) and ECDSA (SEC1)
// keys, and text that looks like a key but does not parse.
func pastedKeys(t *testing.T) map[string]string {
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
	enc := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	pkcs1 := enc("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk))
	lines := strings.Split(strings.TrimSpace(pkcs1), "\n")
	return map[string]string{
		"rsa pkcs1":          pkcs1,
		"rsa pkcs8":          enc("PRIVATE KEY", rsa8),
		"ec sec1":            enc("EC PRIVATE KEY", ec1),
		"flattened with \\n": strings.ReplaceAll(pkcs1, "\n", `\n`),
		"malformed":          lines[0] + "\n" + strings.Join(lines[1:len(lines)/2], "\n") + "\n",
		"body alone":         strings.Join(lines[1:len(lines)-1], ""),
	}
}

// leak returns a 16-character run of the key's base64 body found in s,
// or PEM armour, or "".
func leak(s, key string) string {
	if strings.Contains(s, "PRIVATE KEY") || strings.Contains(s, "-----") {
		return "PEM armour"
	}
	var body strings.Builder
	for _, line := range strings.Split(strings.ReplaceAll(key, `\n`, "\n"), "\n") {
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

// TestKeySettingsNeverQuoteKeyMaterial pastes keys into every setting
// that names a key, from the file and from the environment: the error
// names the setting and the kind of problem, and quotes no part of the
// key.
func TestKeySettingsNeverQuoteKeyMaterial(t *testing.T) {
	shorthand := func(file, env string) string {
		y := withLinks("  cloudfront:\n    domain: https://d.cloudfront.net\n    key_id: K1\n")
		if file != "" {
			y += "    private_key_file: " + file + "\n"
		}
		if env != "" {
			y += "    private_key_env: " + env + "\n"
		}
		return y
	}
	list := withLinks("  cloudfront:\n    domain: https://d.cloudfront.net\n    keys:\n      - {id: K1, private_key_file: k1.pem, active: true}\n      - {id: K2, private_key_env: K2_PEM}\n")
	// yamlString makes v a YAML block scalar, as a user would paste it.
	yamlString := func(v string) string {
		return "|\n" + "      " + strings.ReplaceAll(strings.TrimRight(v, "\n"), "\n", "\n      ")
	}
	for name, key := range pastedKeys(t) {
		tests := []struct {
			setting string
			yaml    string
			env     []string
			want    string
		}{
			{"yaml private_key_file", shorthand(yamlString(key), ""), nil,
				"links.cloudfront.private_key_file: holds key material, not a file path"},
			{"yaml private_key_env", shorthand("", yamlString(key)), nil,
				"links.cloudfront.private_key_env: holds key material, not a variable name"},
			{"yaml both", shorthand(yamlString(key), yamlString(key)), nil,
				"links.cloudfront.private_key_env: holds key material"},
			{"yaml key_id", strings.Replace(shorthand("k.pem", ""), "key_id: K1", "key_id: "+yamlString(key), 1), nil,
				"links.cloudfront.key_id: (holds key material, not shown) may hold only letters"},
			{"env private_key_file", shorthand("k.pem", ""), []string{"REPORTMAILER_LINKS_CLOUDFRONT_PRIVATE_KEY_FILE=" + key},
				"links.cloudfront.private_key_file: holds key material, not a file path"},
			{"env private_key_env", shorthand("", "CF_PEM"), []string{"REPORTMAILER_LINKS_CLOUDFRONT_PRIVATE_KEY_ENV=" + key},
				"links.cloudfront.private_key_env: holds key material, not a variable name"},
			{"env key_id", shorthand("k.pem", ""), []string{"REPORTMAILER_LINKS_CLOUDFRONT_KEY_ID=" + key},
				"links.cloudfront.key_id: (holds key material, not shown)"},
			{"env keys[i].private_key_file", list, []string{"REPORTMAILER_LINKS_CLOUDFRONT_KEYS_K1_PRIVATE_KEY_FILE=" + key},
				"links.cloudfront.keys[0].private_key_file: holds key material, not a file path"},
			{"env keys[i].private_key_env", list, []string{"REPORTMAILER_LINKS_CLOUDFRONT_KEYS_K2_PRIVATE_KEY_ENV=" + key},
				"links.cloudfront.keys[1].private_key_env: holds key material, not a variable name"},
			{"env keys[i].id", list, []string{"REPORTMAILER_LINKS_CLOUDFRONT_KEYS_K2_ID=" + key},
				"links.cloudfront.keys[1].id: (holds key material, not shown)"},
			{"env keys[i].active", list, []string{"REPORTMAILER_LINKS_CLOUDFRONT_KEYS_K2_ACTIVE=" + key},
				"environment REPORTMAILER_LINKS_CLOUDFRONT_KEYS_K2_ACTIVE: (holds key material, not shown) is not true or false"},
			{"yaml trace_secret_file", shorthand("k.pem", "") + "  trace: true\n  trace_secret_file: " + yamlString(key) + "\n", nil,
				"links.trace_secret_file: holds a secret, not a file path"},
			{"yaml trace_secret_env", shorthand("k.pem", "") + "  trace: true\n  trace_secret_env: " + yamlString(key) + "\n", nil,
				"links.trace_secret_env: holds a secret, not a variable name"},
			{"env trace_secret_env", shorthand("k.pem", "") + "  trace: true\n  trace_secret_env: S\n", []string{"REPORTMAILER_LINKS_TRACE_SECRET_ENV=" + key},
				"links.trace_secret_env: holds a secret, not a variable name"},
		}
		for _, tt := range tests {
			t.Run(name+"/"+tt.setting, func(t *testing.T) {
				_, err := config.Parse([]byte(tt.yaml), tt.env)
				if err == nil {
					t.Fatal("accepted")
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error = %v\nwant it to contain %q", err, tt.want)
				}
				if l := leak(err.Error(), key); l != "" {
					t.Errorf("the error quotes the key (%q):\n%v", l, err)
				}
			})
		}
	}
}

func TestKeySourceNames(t *testing.T) {
	tests := []struct{ env, want string }{
		{"CF_KEY", ""},
		{"_cf_key_2", ""},
		{"/etc/cf.pem", `links.cloudfront.private_key_env: "/etc/cf.pem" is not an environment variable name`},
		{"REPORTMAILER_CF_KEY", `links.cloudfront.private_key_env: "REPORTMAILER_CF_KEY" starts with REPORTMAILER_, which is reserved for config overrides`},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			_, err := config.Parse([]byte(withLinks("  cloudfront: {domain: \"https://d.cloudfront.net\", key_id: K1, private_key_env: \""+tt.env+"\"}\n")), nil)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestLoadNeverQuotesAKeyGivenAsTheFileName(t *testing.T) {
	for name, key := range pastedKeys(t) {
		t.Run(name, func(t *testing.T) {
			_, err := config.Load(key)
			if err == nil || !strings.Contains(err.Error(), "the file name holds key material, not a path") {
				t.Errorf("error = %v", err)
			}
			if err != nil && leak(err.Error(), key) != "" {
				t.Errorf("the error quotes the key:\n%v", err)
			}
		})
	}
	// An ordinary path is still named.
	p := filepath.Join(t.TempDir(), "missing.yaml")
	if _, err := config.Load(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("error %v should name %s", err, p)
	}
	_ = os.Remove(p)
}
