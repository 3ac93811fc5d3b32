package main

// Least privilege: every integration test (newITEnv) runs the command
// through internal/awsproxy, which enforces the policy worker/iam
// declares for the configs the test writes. A call the declaration
// forgot fails the test as it would fail on AWS, and S3 answers a
// missing key with 403 wherever the declaration lacks s3:ListBucket.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/internal/emulator"
	"github.com/reportmailer/reportmailer/worker/iam"
)

// lpState is what an itEnv keeps about the policy its proxies enforce.
type lpState struct {
	// set stands in front of the env's emulators; the command's
	// AWS_ENDPOINT_URL_* variables point at it.
	set awsproxy.Set
	// proxies are every proxy the env started: the set's, and those in
	// front of an SES a test started for itself (useSES).
	proxies []*awsproxy.Proxy
	// policy is the union of the policies declared for the configs
	// written in the env; nothing is allowed before the first.
	policy iam.Document
	// pinned is set when a test chose the policy itself (pinPolicy):
	// configs written later no longer widen it.
	pinned bool
	// denialsExpected is set by a test that breaks permissions on
	// purpose and checks the denials itself.
	denialsExpected bool
	// reported counts the denials of each proxy already reported.
	reported map[*awsproxy.Proxy]int
}

// startProxies puts a permission proxy in front of each of e's
// emulators and points the command at them. The proxies allow nothing
// until e.config (or e.checkConfig) declares a policy; when the test
// ends, any request they refused fails it.
func (e *itEnv) startProxies(t *testing.T) {
	t.Helper()
	e.lp.policy = iam.Document{Version: iam.Version, Statement: []iam.Statement{}}
	e.lp.reported = map[*awsproxy.Proxy]int{}
	e.lp.set = awsproxy.StartSet(t, awsproxy.Targets{SQS: e.sqsURL, S3: e.s3URL, SES: e.sesURL}, awsproxy.Options{Policy: e.policyCopy()})
	e.lp.proxies = []*awsproxy.Proxy{e.lp.set.SQS, e.lp.set.S3, e.lp.set.SES}
	for k, v := range e.lp.set.Env() {
		t.Setenv(k, v)
	}
	t.Cleanup(func() { e.failDenials(t) })
}

// policyCopy is the policy to hand a proxy: a copy, so that widening
// it later does not change what a proxy reads under its lock.
func (e *itEnv) policyCopy() *iam.Document {
	d := e.lp.policy
	d.Statement = slices.Clone(d.Statement)
	return &d
}

// allow widens the env's policy by what the code declares for the
// config at cfgPath and cmds (by default what `reportmailer iam`
// declares for a deployment: drain, serve, keys and check). Denials are
// reported when t ends, so a subtest's denial fails that subtest.
func (e *itEnv) allow(t *testing.T, cfgPath string, cmds ...iam.Command) {
	t.Helper()
	d := leastPrivilege(t, cfgPath, cmds...)
	if !e.lp.pinned {
		e.lp.policy.Statement = append(e.lp.policy.Statement, d.Statement...)
		e.setPolicy(e.policyCopy())
	}
	t.Cleanup(func() { e.failDenials(t) })
}

// pinPolicy makes every proxy of the env enforce d from now on, for a
// test that narrows the permissions itself; configs written afterwards
// no longer widen it. Denials still fail the test unless it calls
// expectDenials.
func (e *itEnv) pinPolicy(d iam.Document) {
	e.lp.pinned = true
	e.lp.policy = d
	e.setPolicy(e.policyCopy())
}

// expectDenials is for a test that breaks permissions on purpose: the
// requests refused no longer fail it, and it checks them itself.
func (e *itEnv) expectDenials() { e.lp.denialsExpected = true }

func (e *itEnv) setPolicy(d *iam.Document) {
	for _, p := range e.lp.proxies {
		p.SetPolicy(d)
	}
}

// failDenials fails t with each request refused since the last report:
// under the declared policy the command must never be denied.
func (e *itEnv) failDenials(t errorReporter) {
	t.Helper()
	for _, p := range e.lp.proxies {
		ds := p.Denials()
		if !e.lp.denialsExpected {
			for _, d := range ds[e.lp.reported[p]:] {
				t.Errorf("under the declared least-privilege policy, %s was denied %s on %s (missing key: %v)", d.Operation, d.Action, d.Resource, d.MissingKey)
			}
		}
		e.lp.reported[p] = len(ds)
	}
}

// errorReporter is the part of testing.T failDenials uses.
type errorReporter interface {
	Helper()
	Errorf(format string, args ...any)
}

// useSES starts another aws-ses-v2-local, whose GetAccount answers
// account, for the rest of test t, behind a proxy that enforces the
// env's policy, and points the command at it.
func (e *itEnv) useSES(t *testing.T, account string) {
	t.Helper()
	p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.SES, Target: emulator.StartSESLocal(t, account), Policy: e.policyCopy()})
	e.lp.proxies = append(e.lp.proxies, p)
	t.Setenv("AWS_ENDPOINT_URL_SESV2", p.URL)
	t.Cleanup(func() {
		e.failDenials(t)
		e.lp.proxies = slices.DeleteFunc(e.lp.proxies, func(q *awsproxy.Proxy) bool { return q == p })
	})
}

// leastPrivilege is the policy `reportmailer iam` prints for the config
// at cfgPath and cmds (by default those it prints a policy for without
// -command), in devstack's region and account.
func leastPrivilege(t *testing.T, cfgPath string, cmds ...iam.Command) iam.Document {
	t.Helper()
	if len(cmds) == 0 {
		var err error
		if cmds, err = iam.ParseCommands(iamCommandsDefault); err != nil {
			t.Fatal(err)
		}
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

// TestDrainUnderLeastPrivilege runs drain under the policy declared
// for drain alone, and keys under the one for keys alone: every call
// must be allowed, and a missing report must still answer 404 (and be
// dead-lettered at once), which it does only because the policy grants
// s3:ListBucket on the reports' prefix.
func TestDrainUnderLeastPrivilege(t *testing.T) {
	for _, emu := range sqsEmulators {
		t.Run(emu, func(t *testing.T) { testDrainUnderLeastPrivilege(t, emu) })
	}
}

func testDrainUnderLeastPrivilege(t *testing.T, sqsEmulator string) {
	e := newITEnv(t, sqsEmulator)
	q, dlq := e.queues(t)
	cfg := e.config(t, q, dlq, iam.Drain)
	set := e.lp.set

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
	e.pinPolicy(leastPrivilege(t, cfg, iam.Keys))
	var stdout, stderr bytes.Buffer
	m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: os.Getenv, Environ: os.Environ}
	if code := m.Run(context.Background(), []string{"keys", "-config", cfg}); code != ExitOK || !strings.Contains(stdout.String(), itKeyID) {
		t.Errorf("keys: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if strings.Contains(stderr.String(), "warning") {
		t.Errorf("keys could not list its records under the keys policy:\n%s", stderr.String())
	}
}

// TestITEnvReportsDenials: the command really goes through the proxies
// newITEnv starts, a call no policy allows is refused, and the refusal
// is reported as a failure. Without this, a suite that bypassed the
// proxies, or dropped their denials, would still pass.
func TestITEnvReportsDenials(t *testing.T) {
	e := newITEnv(t, "goaws")
	q, dlq := e.queues(t)
	cfg := e.config(t, q, dlq)
	e.pinPolicy(iam.Document{Version: iam.Version, Statement: []iam.Statement{}})
	if code, out, logs := drain(t, cfg); code != ExitFailure {
		t.Errorf("drain allowed nothing: exit %d, want %d: %s\n%s", code, ExitFailure, out, logs)
	}
	var rec errorRecorder
	e.failDenials(&rec)
	want := "GetQueueAttributes was denied sqs:GetQueueAttributes on arn:aws:sqs:us-east-1:000000000000:"
	if len(rec.errs) == 0 || !strings.Contains(rec.errs[0], want) {
		t.Errorf("reported %q, want a first failure saying %q", rec.errs, want)
	}
	rec.errs = nil
	e.failDenials(&rec)
	if len(rec.errs) != 0 {
		t.Errorf("denials reported twice: %q", rec.errs)
	}
}

// errorRecorder keeps what failDenials would fail a test with.
type errorRecorder struct{ errs []string }

func (r *errorRecorder) Helper() {}

func (r *errorRecorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
