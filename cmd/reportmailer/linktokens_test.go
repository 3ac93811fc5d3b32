package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestTraceSecretNeverPrinted gives links.trace a real secret, from a
// file and from a variable, and a secret too short to use, and runs
// every command that reads the config: nothing any of them prints holds
// the secret or a 16-character run of it, and the short secret's error
// names the setting and its length only.
func TestTraceSecretNeverPrinted(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "k.pem")
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	event := filepath.Join(dir, "event.json")
	os.WriteFile(event, []byte(`{"version":1,"type":"report.ready","id":"e1","user":{"id":"u1","email":"u1@acme.example"},"reports":[{"bucket":"reports","key":"a.pdf"}]}`), 0o644)
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "no AWS here", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL": srv.URL, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		"AWS_MAX_ATTEMPTS": "1", "REPORTMAILER_CONFIG": "",
	} {
		t.Setenv(k, v)
	}
	const secretValue = "c0ffee1234deadbeef5678aa90bb12cc34dd56ee78ff90a1b2c3d4e5f6a7b8c9"
	short := "tooShortSecret42"
	secretFile := filepath.Join(dir, "trace.secret")
	os.WriteFile(secretFile, []byte(secretValue+"\n"), 0o600)
	shortFile := filepath.Join(dir, "short.secret")
	os.WriteFile(shortFile, []byte(short), 0o600)
	t.Setenv("TRACE_SECRET", secretValue)

	base := `sender: {from: a@acme.example}
reports: {bucket: reports}
ledger: {bucket: state}
log: {level: debug}
schedules: [{name: daily, queue_url: "http://127.0.0.1:9/000000000000/q", dead_letter_queue_url: "http://127.0.0.1:9/000000000000/dlq", budget: 2s, wait_time: 1s}]
links:
  cloudfront: {domain: "https://d111.cloudfront.net", key_id: K1, private_key_file: "` + keyFile + `", access_logs: {bucket: logs}}
  trace: true
`
	for _, tt := range []struct {
		name, yaml, secret, wantErr string
	}{
		{"file", base + "  trace_secret_file: " + secretFile + "\n", secretValue, ""},
		{"variable", base + "  trace_secret_env: TRACE_SECRET\n", secretValue, ""},
		{"short file", base + "  trace_secret_file: " + shortFile + "\n", short,
			"links.trace_secret_file: file " + `"` + shortFile + `"` + ": secret is 16 bytes, want at least 32"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := filepath.Join(dir, "c.yaml")
			os.WriteFile(cfg, []byte(tt.yaml), 0o600)
			for _, args := range [][]string{
				{"config", "check"}, {"check", "-aws"}, {"drain"}, {"keys"}, {"iam"}, {"status"}, {"history"},
				{"preview", "-event", event, "-out", filepath.Join(dir, "out")},
				{"downloads"}, {"revoke", "-event-id", "e1", "-dry-run"},
			} {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				_, stdout, stderr := runContext(ctx, append(args, "-config", cfg)...)
				cancel()
				out := stdout + stderr
				// The preview's files hold links, never the secret either.
				if args[0] == "preview" {
					filepath.WalkDir(filepath.Join(dir, "out"), func(p string, d os.DirEntry, err error) error {
						if err == nil && !d.IsDir() {
							b, _ := os.ReadFile(p)
							out += string(b)
						}
						return nil
					})
				}
				for i := 0; i+16 <= len(tt.secret); i++ {
					if strings.Contains(out, tt.secret[i:i+16]) {
						t.Errorf("%s prints %q of the trace secret:\n%s", args[0], tt.secret[i:i+16], out)
						break
					}
				}
				// The commands that load the secret.
				loads := args[0] == "drain" || args[0] == "preview" || args[0] == "downloads" || args[0] == "revoke" || args[0] == "config"
				if tt.wantErr != "" && loads && !strings.Contains(stderr, tt.wantErr) {
					t.Errorf("%s: stderr does not say %q:\n%s", args[0], tt.wantErr, stderr)
				}
				if tt.wantErr == "" && args[0] == "preview" && !strings.Contains(out, "rmt=") {
					t.Errorf("preview: the links carry no token:\n%s", out)
				}
			}
		})
	}
}
