package main

// Least privilege: the integration tests run the command through
// internal/awsproxy, which enforces the policy worker/iam declares, so a
// call the declaration forgot fails here as it would on AWS, and S3
// answers a missing key with 403 wherever the declaration lacks
// s3:ListBucket.

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/worker/iam"
)

// withLeastPrivilege puts an awsproxy in front of each of e's emulators,
// enforcing the policy `reportmailer iam` writes for the config at
// cfgPath and cmds (drain and serve when none are given), and points the
// command at the proxies through AWS_ENDPOINT_URL_SQS, _S3 and _SESV2.
// The test's own clients (e.sqs, e.s3) keep talking to the emulators
// directly. When the test ends, any request the policy refused fails it:
// under the declared policy the command must never be denied.
//
// Call it after newITEnv and e.config, before running the command:
//
//	e := newITEnv(t, "goaws")
//	q, dlq := e.queues(t)
//	cfg := e.config(t, q, dlq) // the config must set reports.bucket
//	set := withLeastPrivilege(t, e, cfg)
//	code, out, logs := drain(t, cfg)
//
// The returned set gives each proxy's counts (set.SES.Counts("SendEmail"))
// and takes faults (set.S3.Inject(awsproxy.Fault{...})).
func withLeastPrivilege(t *testing.T, e *itEnv, cfgPath string, cmds ...iam.Command) awsproxy.Set {
	t.Helper()
	policy := leastPrivilege(t, cfgPath, cmds...)
	set := awsproxy.StartSet(t, awsproxy.Targets{SQS: e.sqsURL, S3: e.s3URL, SES: e.sesURL},
		awsproxy.Options{Policy: &policy})
	for k, v := range set.Env() {
		t.Setenv(k, v)
	}
	t.Cleanup(func() {
		for _, p := range []*awsproxy.Proxy{set.SQS, set.S3, set.SES} {
			for _, d := range p.Denials() {
				t.Errorf("under the declared policy, %s was denied %s on %s (missing key: %v)", d.Operation, d.Action, d.Resource, d.MissingKey)
			}
		}
	})
	return set
}

// leastPrivilege is the policy `reportmailer iam` prints for the config
// at cfgPath and cmds, in devstack's region and account.
func leastPrivilege(t *testing.T, cfgPath string, cmds ...iam.Command) iam.Document {
	t.Helper()
	if len(cmds) == 0 {
		cmds = []iam.Command{iam.Drain, iam.Serve}
	}
	c, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	in, err := iamInputs(c, awsproxy.RegionDefault, awsproxy.AccountDefault)
	if err != nil {
		t.Fatalf("least privilege: %v", err)
	}
	return iam.For(in, cmds...)
}

// configWithReports is e.config with reports.bucket set, which the
// policy needs to name the reports bucket.
func configWithReports(t *testing.T, e *itEnv, queueURL, dlqURL string) string {
	t.Helper()
	p := e.config(t, queueURL, dlqURL)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\nreports:") {
		b = append(b, "reports: {bucket: "+itBucket+"}\n"...)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDrainUnderLeastPrivilege runs drain and keys through the
// permission layer with exactly the declared policy: every call the
// worker makes must be allowed, and a missing report must still answer
// 404 (and be dead-lettered at once), which it does only because the
// policy grants s3:ListBucket on the reports' prefix.
func TestDrainUnderLeastPrivilege(t *testing.T) {
	for _, emu := range sqsEmulators {
		t.Run(emu, func(t *testing.T) { testDrainUnderLeastPrivilege(t, emu) })
	}
}

func testDrainUnderLeastPrivilege(t *testing.T, sqsEmulator string) {
	e := newITEnv(t, sqsEmulator)
	q, dlq := e.queues(t)
	cfg := configWithReports(t, e, q, dlq)
	set := withLeastPrivilege(t, e, cfg)

	e.put(t, "lp/q3.pdf", map[string]string{"user-email": "ana@acme.example"})
	e.send(t, q, nativeBody("lp-1", "ana", nil, "lp/q3.pdf"))
	e.send(t, q, s3Body("lp/deleted.pdf"))

	code, out, logs := drain(t, cfg)
	if code != ExitPartial || !strings.Contains(out, "sent 1 emails") || !strings.Contains(out, "dead-lettered 1") {
		t.Fatalf("exit %d, %q; want one email and the missing report dead-lettered\n%s", code, out, logs)
	}
	if got := e.emails(t, "ana@acme.example"); len(got) != 1 {
		t.Errorf("%d emails to ana, want 1", len(got))
	}
	if reasons := e.dead(t, dlq); len(reasons) != 1 || !strings.Contains(reasons[0], "does not exist") {
		t.Errorf("dead-letter reasons %q; want the missing object's", reasons)
	}
	if c := set.SES.Counts("SendEmail"); c.Forwarded != 1 {
		t.Errorf("SendEmail counts %+v", c)
	}
	if c := set.S3.Counts("HeadObject"); c.Forwarded < 1 || c.Denied != 0 {
		t.Errorf("HeadObject counts %+v", c)
	}

	// keys reads the records drain wrote, under the keys policy alone.
	keysPolicy := leastPrivilege(t, cfg, iam.Keys)
	set.SetPolicy(&keysPolicy)
	var stdout, stderr bytes.Buffer
	m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: os.Getenv, Environ: os.Environ}
	if code := m.Run(context.Background(), []string{"keys", "-config", cfg}); code != ExitOK || !strings.Contains(stdout.String(), itKeyID) {
		t.Errorf("keys: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if strings.Contains(stderr.String(), "warning") {
		t.Errorf("keys could not list its records under the keys policy:\n%s", stderr.String())
	}
}

// TestBinaryLinksNoTestInfrastructure: nothing under internal/ (the
// emulators, the edge, the permission proxy) is part of the production
// binary.
func TestBinaryLinksNoTestInfrastructure(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/reportmailer/reportmailer/internal/") {
			t.Errorf("the production binary depends on %s", dep)
		}
	}
}
