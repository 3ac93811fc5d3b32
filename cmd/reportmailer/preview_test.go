package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const (
	exampleConfig = "../../examples/preview/reportmailer.yaml"
	exampleEvents = "../../examples/preview/events.json"
	exampleEvent  = "../../examples/preview/event.json"
	exampleS3     = "../../examples/preview/s3-notification.json"
)

// previewEnv gives the example config its throwaway CloudFront key, and
// points every AWS endpoint at a server that counts requests, so a
// test can check that preview made none.
func previewEnv(t *testing.T) *atomic.Int64 {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PREVIEW_CLOUDFRONT_KEY", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "preview must not call AWS", http.StatusTeapot)
	}))
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ENDPOINT_URL", srv.URL)
	t.Setenv("AWS_REGION", "eu-west-2")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDPREVIEWTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "preview-test-secret")
	t.Setenv("REPORTMAILER_CONFIG", "")
	return &calls
}

func runMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	m := &Main{Stdout: &out, Stderr: &errb, Getenv: os.Getenv, Environ: os.Environ}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code = m.Run(ctx, args)
	return code, out.String(), errb.String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var hrefRE = regexp.MustCompile(`href="([^"]*)"`)

func TestPreview(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		subjects map[string]string // file base -> subject
		expiry   string            // in every email's text
	}{{
		name: "each",
		args: []string{"-schedule", "on-demand", "-event", exampleEvents},
		subjects: map[string]string{
			"01-zoe@acme.example":     "Your 2 reports are ready",
			"02-cfo@acme.example":     "Your 2 reports are ready",
			"03-zoe@acme.example":     "Your report is ready: <script>alert(1)</script> {{.User.Email}}",
			"04-bo@acme.example":      "Your report is ready: Monthly usage",
			"05-juergen@acme.example": "Finance report ready: Umsätze März",
		},
	}, {
		name: "digest",
		args: []string{"-schedule", "daily", "-event", exampleEvents},
		subjects: map[string]string{
			"01-zoe@acme.example":     "Your reports: 3 new reports",
			"02-cfo@acme.example":     "Your reports: 2 new reports",
			"03-bo@acme.example":      "Your reports: 1 new report",
			"04-juergen@acme.example": "Finance report: 1 new",
		},
	}, {
		name:     "mode flag over the schedule's",
		args:     []string{"-schedule", "on-demand", "-mode", "digest", "-event", exampleEvent},
		subjects: map[string]string{"01-zoe@acme.example": "Your reports: 2 new reports", "02-cfo@acme.example": "Your reports: 2 new reports"},
		expiry:   "Link expires 18 December 2026, 09:00 GMT",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := previewEnv(t)
			out := t.TempDir()
			args := append([]string{"preview", "-config", exampleConfig, "-out", out, "-now", "2026-12-11T09:00:00Z"}, tt.args...)
			code, stdout, stderr := runMain(t, args...)
			if code != ExitOK {
				t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
			}
			if !strings.Contains(stdout, "nothing was sent") || !strings.Contains(stderr, "recipient=mallory@evil.example") {
				t.Errorf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
			}
			files, _ := filepath.Glob(filepath.Join(out, "*"))
			if len(files) != 3*len(tt.subjects) {
				t.Errorf("wrote %d files, want .html, .txt and .eml for %d emails: %v", len(files), len(tt.subjects), files)
			}
			for base, subject := range tt.subjects {
				p := filepath.Join(out, base)
				msg, err := mail.ReadMessage(strings.NewReader(readFile(t, p+".eml")))
				if err != nil {
					t.Fatalf("%s.eml: %v", base, err)
				}
				var dec mime.WordDecoder
				got, err := dec.DecodeHeader(msg.Header.Get("Subject"))
				if err != nil || got != subject {
					t.Errorf("%s.eml subject %q (%v), want %q", base, got, err, subject)
				}
				if !strings.Contains(stdout, subject) {
					t.Errorf("stdout does not list %q:\n%s", subject, stdout)
				}
				to := strings.SplitN(base, "-", 2)[1]
				if msg.Header.Get("To") != "<"+to+">" || msg.Header.Get("From") != `"Acme Reports" <reports@acme.example>` {
					t.Errorf("%s.eml: From %q To %q", base, msg.Header.Get("From"), msg.Header.Get("To"))
				}
				text, html := readFile(t, p+".txt"), readFile(t, p+".html")
				hrefs := hrefRE.FindAllStringSubmatch(html, -1)
				if len(hrefs) == 0 {
					t.Errorf("%s.html has no links", base)
				}
				for _, h := range hrefs {
					u := strings.ReplaceAll(h[1], "&amp;", "&")
					if !strings.HasPrefix(u, "https://d111111abcdef8.cloudfront.net/") || !strings.Contains(u, "Key-Pair-Id=K2JCJMDEHXQW5F") || !strings.Contains(text, u) {
						t.Errorf("%s: link %q is not a CloudFront signed URL that the text part shows too", base, u)
					}
				}
				if tt.expiry != "" && !strings.Contains(text, tt.expiry) {
					t.Errorf("%s.txt does not say %q:\n%s", base, tt.expiry, text)
				}
				if strings.Contains(html, "<script>") {
					t.Errorf("%s.html holds an unescaped <script>", base)
				}
			}
			if n := calls.Load(); n != 0 {
				t.Errorf("preview made %d AWS requests", n)
			}
		})
	}
}

func TestPreviewS3NotificationNeedsMetadata(t *testing.T) {
	calls := previewEnv(t)
	out := t.TempDir()
	base := []string{"preview", "-config", exampleConfig, "-schedule", "on-demand", "-event", exampleS3, "-out", out, "-now", "2026-12-11T09:00:00Z"}
	code, _, stderr := runMain(t, base...)
	if code != ExitUsage || !strings.Contains(stderr, "body 1 is an S3 notification for s3://acme-reports/inbox/chen/年度报告 #1.pdf") || !strings.Contains(stderr, "-metadata user-email=") {
		t.Errorf("without -metadata: exit %d, stderr:\n%s", code, stderr)
	}
	code, stdout, stderr := runMain(t, append(base,
		"-metadata", "user-email=chen@acme.example", "-metadata", "user-name==?UTF-8?B?6ZmI6Z2Z?=",
		"-metadata", "user-timezone=Asia/Shanghai", "-metadata", "title=Annual report")...)
	if code != ExitOK {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	text := readFile(t, filepath.Join(out, "01-chen@acme.example.txt"))
	for _, want := range []string{"Hello 陈静,", "Annual report\n年度报告 #1.pdf · PDF · 512.0 KiB\n", "Link expires 18 December 2026, 17:00 CST"} {
		if !strings.Contains(text, want) {
			t.Errorf("text does not hold %q:\n%s", want, text)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("preview made %d AWS requests", n)
	}
}

func TestPreviewReportsBodiesThatGiveNoEmail(t *testing.T) {
	previewEnv(t)
	dir := t.TempDir()
	events := filepath.Join(dir, "events.json")
	good := readFile(t, exampleEvent)
	os.WriteFile(events, []byte(`[`+good+`, {"version":1,"type":"report.ready","id":"bad","user":{"id":"u","email":"not-an-address"},"reports":[{"bucket":"acme-reports","key":"x.pdf"}]},
 "{\"Service\":\"Amazon S3\",\"Event\":\"s3:TestEvent\"}"]`), 0o644)
	out := filepath.Join(dir, "out")
	code, stdout, stderr := runMain(t, "preview", "-config", exampleConfig, "-schedule", "on-demand", "-event", events, "-out", out)
	if code != ExitPartial || !strings.Contains(stderr, "body 2: a run would dead-letter it") || strings.Contains(stderr, "body 3:") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "2 emails from 3 message bodies") {
		t.Errorf("stdout:\n%s", stdout)
	}
	if _, err := os.Stat(filepath.Join(out, "02-cfo@acme.example.eml")); err != nil {
		t.Errorf("the good body's emails should still be written: %v", err)
	}
}

func TestPreviewUsage(t *testing.T) {
	previewEnv(t)
	out := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-out", out}, "-event is required"},
		{[]string{"-event", exampleEvent}, "-out is required"},
		{[]string{"-event", exampleEvent, "-out", out, "-mode", "weekly"}, `-mode "weekly" is not each or digest`},
		{[]string{"-event", exampleEvent, "-out", out, "-now", "tomorrow"}, "-now"},
		{[]string{"-event", exampleEvent, "-out", out}, "-schedule is required when the config has 2 schedules"},
		{[]string{"-event", exampleEvent, "-out", out, "-schedule", "weekly"}, `no schedule named "weekly"`},
		{[]string{"-event", exampleEvent, "-out", out, "-schedule", "daily", "-metadata", "novalue"}, `"novalue" is not KEY=VALUE`},
	} {
		code, _, stderr := runMain(t, append([]string{"preview", "-config", exampleConfig}, tt.args...)...)
		if code != ExitUsage || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, stderr:\n%s\nwant exit %d and %q", tt.args, code, stderr, ExitUsage, tt.want)
		}
	}
}

// TestBrokenTemplatesStopEveryCommandAtStart checks that a broken
// override in templates_dir is reported before any work starts.
func TestBrokenTemplatesStopEveryCommandAtStart(t *testing.T) {
	calls := previewEnv(t)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "templates", "invoice"), 0o755)
	os.WriteFile(filepath.Join(dir, "templates", "invoice", "email.txt.tmpl"), []byte("{{.User.Nmae}}"), 0o644)
	cfg := strings.Replace(readFile(t, exampleConfig), `templates_dir: ""`, "templates_dir: "+filepath.Join(dir, "templates"), 1)
	path := filepath.Join(dir, "reportmailer.yaml")
	os.WriteFile(path, []byte(cfg), 0o644)
	want := filepath.Join(dir, "templates", "invoice", "email.txt.tmpl") + `: template: email.txt.tmpl:1:7: executing "email.txt.tmpl" at <.User.Nmae>: can't evaluate field Nmae`
	for _, args := range [][]string{
		{"config", "check", "-config", path},
		{"drain", "-config", path, "-schedule", "on-demand"},
		{"serve", "-config", path},
		{"preview", "-config", path, "-schedule", "on-demand", "-event", exampleEvent, "-out", filepath.Join(dir, "out")},
	} {
		code, stdout, stderr := runMain(t, args...)
		if code != ExitFailure || !strings.Contains(stderr, want) {
			t.Errorf("%s: exit %d, stdout %q, stderr:\n%s\nwant exit %d naming the broken file", args[0], code, stdout, stderr, ExitFailure)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d AWS requests before the templates were checked", n)
	}
}

// TestPreviewScreenshotPointsAtTheOtherBinary checks that the flags of
// the feature that left this binary say where it went, before anything
// is written.
func TestPreviewScreenshotPointsAtTheOtherBinary(t *testing.T) {
	previewEnv(t)
	for _, flags := range [][]string{{"-screenshot"}, {"-chromium", "/usr/bin/chromium"}} {
		out := filepath.Join(t.TempDir(), "out")
		code, stdout, stderr := runMain(t, append([]string{"preview", "-config", exampleConfig, "-schedule", "on-demand", "-event", exampleEvent, "-out", out}, flags...)...)
		if code != ExitUsage || !strings.Contains(stderr, "-screenshot is not in the production binary") || !strings.Contains(stderr, "go run ./cmd/reportmailer-screenshot DIR") {
			t.Errorf("%v: exit %d, stdout %q, stderr:\n%s\nwant exit %d pointing at reportmailer-screenshot", flags, code, stdout, stderr, ExitUsage)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%v: preview wrote %s before refusing", flags, out)
		}
	}
}
