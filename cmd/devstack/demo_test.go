package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDemo runs what `make demo` runs: the production binary, built
// fresh, against the local stack. The demo checks its own results
// (emails, refusals, DLQ, links through the edge, no resend) and fails
// when any is wrong.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "reportmailer")
	build := exec.Command("go", "build", "-o", bin, "../reportmailer")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build reportmailer: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "out")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"demo", "-reportmailer", bin, "-out", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("demo exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	for _, want := range []string{
		"Emails accepted by SES (5)",
		"recipient refused",
		`reason: decode: user.email: "not-an-address" is not a valid address`,
		"7 of 7 links answered 200 with the right file",
		"403 for the first link",
		"new emails: 0",
		"Demo OK.",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	// Every call the worker made went through the permission proxies,
	// and the policy `reportmailer iam` declares allowed each one.
	if m := regexp.MustCompile(`IAM: every call allowed by the declared least-privilege policy \((\d+) calls, 0 denied\)`).FindStringSubmatch(stdout.String()); m == nil || m[1] == "0" {
		t.Errorf("demo output lacks the IAM line with some calls, none denied")
	}
	if b, err := os.ReadFile(filepath.Join(out, "iam-policy.json")); err != nil || !bytes.Contains(b, []byte(`"s3:ListBucket"`)) {
		t.Errorf("demo should leave the policy it enforced: %v", err)
	}
	// A signature must not be printed whole.
	if strings.Contains(stdout.String(), "Signature=") && !strings.Contains(stdout.String(), "…&Key-Pair-Id") {
		t.Error("demo output shows full signatures")
	}
	emails, _ := filepath.Glob(filepath.Join(out, "emails", "*.eml"))
	if len(emails) != 5 {
		t.Errorf("wrote %d .eml files, want 5", len(emails))
	}
	b, err := os.ReadFile(filepath.Join(out, "cloudfront-private.pem"))
	if err != nil || !bytes.Contains(b, []byte("PRIVATE KEY")) {
		t.Error("demo should leave its generated key for the reader")
	}
	if fi, _ := os.Stat(filepath.Join(out, "cloudfront-private.pem")); fi != nil && fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v, want 0600", fi.Mode().Perm())
	}
	if t.Failed() {
		t.Log(stdout.String())
	}
}
