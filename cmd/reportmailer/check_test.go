package main

// Tests of "reportmailer check -aws" against the emulators the other
// integration tests use (newITEnv): a stack set up as deploy/ sets up
// AWS passes, and each broken setting gives exactly one FAIL line that
// names it.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/reportmailer/reportmailer/internal/emulator"
	"github.com/reportmailer/reportmailer/worker/iam"
)

const (
	day              = 24 * time.Hour
	checkReportsPath = "reports/"
)

// runCheck runs "reportmailer check ARGS" in-process.
func runCheck(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: os.Getenv, Environ: os.Environ}
	code := m.Run(context.Background(), append([]string{"check"}, args...))
	return code, stdout.String(), stderr.String()
}

// failLines returns the FAIL lines of check's output.
func failLines(out string) []string {
	var fails []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "FAIL") {
			fails = append(fails, l)
		}
	}
	return fails
}

// queueSpec is how a test's queue pair is set up.
type queueSpec struct {
	srcRetention, dlqRetention time.Duration
	visibility                 time.Duration
	// redrive is "dlq" (the configured DLQ), "other" (another queue)
	// or "" (none).
	redrive string
}

// goodQueues is what deploy/terraform makes by default: the DLQ keeps
// messages 14 days, the queue 4, and redrives after 5 receives.
var goodQueues = queueSpec{srcRetention: 4 * day, dlqRetention: 14 * day, visibility: 5 * time.Minute, redrive: "dlq"}

func (e *itEnv) createQueue(t *testing.T, name string, attrs map[string]string) (string, string) {
	t.Helper()
	ctx := context.Background()
	q, err := e.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		t.Fatalf("create queue %s: %v", name, err)
	}
	a, err := e.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(q.QueueUrl), a.Attributes["QueueArn"]
}

// checkQueues creates a queue and its DLQ as spec says.
func (e *itEnv) checkQueues(t *testing.T, spec queueSpec) (string, string) {
	t.Helper()
	e.queueCount++
	name := fmt.Sprintf("ck-%s-%d-%d", e.name, time.Now().UnixNano()%1e9, e.queueCount)
	secs := func(d time.Duration) string { return fmt.Sprint(int(d / time.Second)) }
	dlqURL, dlqARN := e.createQueue(t, name+"-dlq", map[string]string{"MessageRetentionPeriod": secs(spec.dlqRetention)})
	attrs := map[string]string{"MessageRetentionPeriod": secs(spec.srcRetention), "VisibilityTimeout": secs(spec.visibility)}
	target := dlqARN
	if spec.redrive == "other" {
		_, target = e.createQueue(t, name+"-other", nil)
	}
	if spec.redrive != "" {
		b, _ := json.Marshal(map[string]string{"deadLetterTargetArn": target, "maxReceiveCount": "5"})
		attrs["RedrivePolicy"] = string(b)
	}
	q, _ := e.createQueue(t, name, attrs)
	return q, dlqURL
}

// checkConfig writes a config for check (edit changes the YAML first),
// and widens the policy the env enforces as e.config does.
func (e *itEnv) checkConfig(t *testing.T, queueURL, dlqURL string, edit func(string) string) string {
	t.Helper()
	cfg := fmt.Sprintf(`sender: {from: "Reports <reports@acme.example>"}
reports: {bucket: %s, prefix: %s}
ledger: {bucket: %s}
s3: {use_path_style: true}
schedules:
  - {name: it, cron: "0 7 * * *", mode: each, queue_url: %q, dead_letter_queue_url: %q, wait_time: 1s, budget: 1m}
`, itBucket, checkReportsPath, itBucket, queueURL, dlqURL)
	if edit != nil {
		cfg = edit(cfg)
	}
	p := filepath.Join(t.TempDir(), "reportmailer.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	e.allow(t, p)
	return p
}

// probesLeft lists objects the check left in the bucket.
func (e *itEnv) probesLeft(t *testing.T) []string {
	t.Helper()
	out, err := e.s3.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(itBucket)})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, o := range out.Contents {
		if strings.Contains(aws.ToString(o.Key), "reportmailer-check") {
			left = append(left, aws.ToString(o.Key))
		}
	}
	return left
}

// sesAccount returns DefaultSESAccount with fields changed.
func sesAccount(t *testing.T, change map[string]any) string {
	t.Helper()
	var acct map[string]any
	if err := json.Unmarshal([]byte(emulator.DefaultSESAccount), &acct); err != nil {
		t.Fatal(err)
	}
	for k, v := range change {
		acct[k] = v
	}
	b, _ := json.Marshal(acct)
	return string(b)
}

func TestCheckAWS(t *testing.T) {
	for _, emu := range sqsEmulators {
		t.Run(emu, func(t *testing.T) {
			e := newITEnv(t, emu)

			t.Run("a correct set-up passes", func(t *testing.T) {
				q, dlq := e.checkQueues(t, goodQueues)
				code, out, errOut := runCheck(t, "-aws", "-config", e.checkConfig(t, q, dlq, nil))
				if code != ExitOK || len(failLines(out)) != 0 {
					t.Fatalf("exit %d, want 0 and no FAIL:\n%s%s", code, out, errOut)
				}
				for _, want := range []string{
					"config OK",
					"ok    sqs         schedule it: queue: exists",
					"ok    sqs         schedule it: dead-letter queue: exists",
					"ok    sqs         schedule it: redrive policy: sends to the configured DLQ after 5 receives",
					"ok    sqs         schedule it: visibility timeout",
					"ok    sqs         schedule it: retention: keeps messages 4 days; runs are at most 1 day apart",
					"ok    sqs         schedule it: dead-letter retention",
					"ok    s3          ledger write",
					"ok    s3          ledger conditional write: a second If-None-Match: * write of the probe answered 412",
					"ok    s3          ledger delete",
					"ok    s3          ledger missing key: a missing key under s3://it-reports/reportmailer/ledger/ answers 404",
					"ok    s3          reports missing key: a missing key under s3://it-reports/reports/ answers 404",
					"ok    ses         account sending",
					"ok    ses         account production access",
					"ok    ses         account quota: Max24HourSend 50000, MaxSendRate 14/s, SentLast24Hours 0",
					// aws-ses-v2-local has no GetEmailIdentity: say so, do not pass it.
					"warn  ses         sender identity: not checked: the SES endpoint does not implement GetEmailIdentity",
					"check passed:",
				} {
					if !strings.Contains(out, want) {
						t.Errorf("output lacks %q:\n%s", want, out)
					}
				}
				if left := e.probesLeft(t); len(left) != 0 {
					t.Errorf("probe objects left behind: %v", left)
				}
			})

			// serve moves a digest's queue into the pending store every
			// ingest_every: a monthly digest needs no month on the queue.
			t.Run("a monthly digest passes on a 4-day queue", func(t *testing.T) {
				q, dlq := e.checkQueues(t, goodQueues)
				cfg := e.checkConfig(t, q, dlq, func(s string) string {
					return strings.Replace(s, `cron: "0 7 * * *", mode: each`, `cron: "0 7 1 * *", mode: digest`, 1)
				})
				code, out, errOut := runCheck(t, "-aws", "-config", cfg)
				if code != ExitOK || len(failLines(out)) != 0 {
					t.Fatalf("exit %d, want 0 and no FAIL:\n%s%s", code, out, errOut)
				}
				want := "ok    sqs         schedule it: retention: keeps messages 4 days; serve ingests this digest every 1m0s; with drain alone (a CronJob, no serve)"
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			})

			missingQ := e.sqsURL + "/000000000000/ck-" + emu + "-no-such-queue"
			tests := []struct {
				name  string
				spec  queueSpec
				edit  func(q, dlq, cfg string) string
				ses   map[string]any // GetAccount fields to change
				fails []string       // what the one FAIL line says
			}{
				{name: "missing queue", spec: goodQueues,
					edit:  func(q, _, cfg string) string { return strings.Replace(cfg, q, missingQ, 1) },
					fails: []string{"schedule it: queue:", missingQ + " does not exist", "deploy/terraform", "schedules[0].queue_url"}},
				{name: "missing dead-letter queue", spec: goodQueues,
					edit:  func(_, dlq, cfg string) string { return strings.Replace(cfg, dlq, missingQ, 1) },
					fails: []string{"schedule it: dead-letter queue:", missingQ + " does not exist", "deploy/terraform", "schedules[0].dead_letter_queue_url"}},
				{name: "redrive policy points elsewhere",
					spec:  queueSpec{srcRetention: 4 * day, dlqRetention: 14 * day, visibility: 5 * time.Minute, redrive: "other"},
					fails: []string{"schedule it: redrive policy:", "-other, not to the configured DLQ", "set-queue-attributes"}},
				{name: "no redrive policy",
					spec:  queueSpec{srcRetention: 4 * day, dlqRetention: 14 * day, visibility: 5 * time.Minute},
					fails: []string{"schedule it: redrive policy:", "no RedrivePolicy", "deadLetterTargetArn"}},
				{name: "dead-letter queue keeps messages for less time than its source",
					spec:  queueSpec{srcRetention: 4 * day, dlqRetention: 2 * day, visibility: 5 * time.Minute, redrive: "dlq"},
					fails: []string{"schedule it: dead-letter retention:", "the DLQ keeps messages 2 days, less than the queue's 4 days", "MessageRetentionPeriod=1209600"}},
				{name: "weekly schedule on a 4-day queue", spec: goodQueues,
					edit:  func(_, _, cfg string) string { return strings.Replace(cfg, `"0 7 * * *"`, `"0 7 * * 1"`, 1) },
					fails: []string{"schedule it: retention:", "keeps messages 4 days, but runs are as much as 7 days apart", "MessageRetentionPeriod=694800"}},
				{name: "monthly schedule cannot fit any queue", spec: queueSpec{srcRetention: 14 * day, dlqRetention: 14 * day, visibility: 5 * time.Minute, redrive: "dlq"},
					edit:  func(_, _, cfg string) string { return strings.Replace(cfg, `"0 7 * * *"`, `"0 7 1 * *"`, 1) },
					fails: []string{"schedule it: retention:", "SQS keeps a message at most 14 days", "schedules[0].cron"}},
				{name: "state bucket missing", spec: goodQueues,
					edit: func(_, _, cfg string) string {
						return strings.Replace(cfg, "ledger: {bucket: "+itBucket, "ledger: {bucket: it-no-such-state", 1)
					},
					fails: []string{"ledger bucket:", "bucket it-no-such-state does not exist", "ledger.bucket"}},
				{name: "reports bucket missing", spec: goodQueues,
					edit: func(_, _, cfg string) string {
						return strings.Replace(cfg, "reports: {bucket: "+itBucket, "reports: {bucket: it-no-such-reports", 1)
					},
					fails: []string{"reports bucket:", "bucket it-no-such-reports does not exist", "reports.bucket"}},
				{name: "SES sending disabled", spec: goodQueues, ses: map[string]any{"SendingEnabled": false},
					fails: []string{"ses ", "account sending:", "sending is disabled", "put-account-sending-attributes"}},
				{name: "SES account shut down", spec: goodQueues, ses: map[string]any{"EnforcementStatus": "SHUTDOWN"},
					fails: []string{"account enforcement:", "SHUTDOWN"}},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					if tt.ses != nil {
						e.useSES(t, sesAccount(t, tt.ses))
					}
					q, dlq := e.checkQueues(t, tt.spec)
					cfg := e.checkConfig(t, q, dlq, func(s string) string {
						if tt.edit != nil {
							return tt.edit(q, dlq, s)
						}
						return s
					})
					code, out, errOut := runCheck(t, "-aws", "-config", cfg)
					fails := failLines(out)
					if code != ExitFailure || len(fails) != 1 {
						t.Fatalf("exit %d with %d FAIL lines, want exit 1 and exactly one:\n%s%s", code, len(fails), out, errOut)
					}
					for _, want := range tt.fails {
						if !strings.Contains(fails[0], want) {
							t.Errorf("the FAIL line does not say %q:\n%s", want, fails[0])
						}
					}
					if !strings.Contains(out, "check FAILED: ") {
						t.Errorf("no summary line:\n%s", out)
					}
					if left := e.probesLeft(t); len(left) != 0 {
						t.Errorf("probe objects left behind: %v", left)
					}
				})
			}
		})
	}
}

func TestCheckAWSSandboxOnlyWarns(t *testing.T) {
	e := newITEnv(t, "goaws")
	e.useSES(t, sesAccount(t, map[string]any{
		"ProductionAccessEnabled": false,
		"SendQuota":               map[string]any{"Max24HourSend": 200, "MaxSendRate": 1, "SentLast24Hours": 12},
	}))
	q, dlq := e.checkQueues(t, goodQueues)
	code, out, errOut := runCheck(t, "-aws", "-config", e.checkConfig(t, q, dlq, nil))
	if code != ExitOK || len(failLines(out)) != 0 {
		t.Fatalf("exit %d, want 0 with no FAIL for a sandboxed account:\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"warn  ses         account production access: the account is in the SES sandbox",
		"ok    ses         account quota: Max24HourSend 200, MaxSendRate 1/s, SentLast24Hours 12",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// closedPort returns an address on 127.0.0.1 where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// No CloudFront API emulator can be installed here, so only the path
// where the API gives no answer is tested end to end: the worker signs
// offline and never calls that API, so check warns "not checked" and
// still passes. The comparisons themselves (origin, public key) are
// unit-tested in worker/preflight.
func TestCheckAWSCloudFrontUnreachableWarns(t *testing.T) {
	e := newITEnv(t, "goaws")
	t.Setenv("AWS_ENDPOINT_URL_CLOUDFRONT", closedPort(t))
	q, dlq := e.checkQueues(t, goodQueues)
	cfg := e.checkConfig(t, q, dlq, func(s string) string {
		return s + fmt.Sprintf("links:\n  cloudfront: {domain: %q, key_id: %s, private_key_file: %q, distribution_id: E2QWRUHAPOMQZL}\n", e.edge.URL, itKeyID, e.keyFile)
	})
	code, out, errOut := runCheck(t, "-aws", "-config", cfg)
	if code != ExitOK || len(failLines(out)) != 0 {
		t.Fatalf("exit %d, want 0 and no FAIL:\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"warn  cloudfront  distribution origin: not checked: GetDistributionConfig:",
		"warn  cloudfront  key " + itKeyID + ": not checked: GetPublicKey:",
		// The signer's key records share the ledger's bucket: probed too.
		"ok    s3          key records missing key: a missing key under s3://it-reports/reportmailer/keys/ answers 404",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestCheckAWSJSON(t *testing.T) {
	e := newITEnv(t, "goaws")
	q, dlq := e.checkQueues(t, goodQueues)
	code, out, errOut := runCheck(t, "-aws", "-json", "-config", e.checkConfig(t, q, dlq, func(s string) string {
		return strings.Replace(s, "dead_letter_queue_url: \""+dlq, "dead_letter_queue_url: \""+dlq+"-gone", 1)
	}))
	if code != ExitFailure {
		t.Fatalf("exit %d, want 1:\n%s%s", code, out, errOut)
	}
	var fails []map[string]string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var f map[string]string
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("stdout line is not a JSON object: %q: %v", line, err)
		}
		if f["area"] == "" || f["name"] == "" || f["detail"] == "" {
			t.Errorf("finding lacks a field: %q", line)
		}
		if f["status"] == "fail" {
			fails = append(fails, f)
		}
	}
	if len(fails) != 1 || fails[0]["name"] != "schedule it: dead-letter queue" || fails[0]["fix"] == "" {
		t.Errorf("fail findings = %v, want the dead-letter queue with a fix", fails)
	}
	if !strings.Contains(errOut, "config OK") || !strings.Contains(errOut, "check FAILED: ") {
		t.Errorf("the config summary and the verdict belong on stderr with -json:\n%s", errOut)
	}
}

func TestCheckCommandLine(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(`sender: {from: a@acme.example}
reports: {bucket: reports}
ledger: {bucket: b}
schedules: [{name: d, queue_url: "https://sqs.eu-west-2.amazonaws.com/1/q", dead_letter_queue_url: "https://sqs.eu-west-2.amazonaws.com/1/d"}]
`), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("sender: {from: a@acme.example}\nreports: {bucket: reports}\nledger: {bucket: b}\nschedules: [{name: d, mode: weekly, queue_url: x, dead_letter_queue_url: y}]\n"), 0o644)
	// AWS must not be called in any of these: an endpoint that refuses
	// connections would make the test fail slowly if it were.
	nowhere := closedPort(t)
	for _, svc := range []string{"SQS", "S3", "SESV2", "CLOUDFRONT"} {
		t.Setenv("AWS_ENDPOINT_URL_"+svc, nowhere)
	}
	t.Setenv("REPORTMAILER_CONFIG", "")
	tests := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"without -aws it is config check", []string{"check", "-config", good}, ExitOK, "config OK: links are S3 presigned URLs"},
		{"config check is still there", []string{"config", "check", "-config", good}, ExitOK, "config OK: links are S3 presigned URLs"},
		{"a bad config stops before AWS", []string{"check", "-aws", "-config", bad}, ExitFailure, `schedules[0].mode: "weekly" is not each or digest`},
		{"-json needs -aws", []string{"check", "-json", "-config", good}, ExitUsage, "-json needs -aws"},
		{"-timeout needs -aws", []string{"check", "-timeout", "1m", "-config", good}, ExitUsage, "-timeout needs -aws"},
		{"no config", []string{"check", "-aws"}, ExitUsage, "-config is required"},
		{"stray argument", []string{"check", "-config", good, "now"}, ExitUsage, `unexpected argument "now"`},
		{"help documents every flag", []string{"check", "-help"}, ExitOK, "-aws"},
		{"help", []string{"help"}, ExitOK, "check         validate a config file; with -aws"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			m := &Main{Stdout: &out, Stderr: &out, Getenv: os.Getenv, Environ: os.Environ}
			if code := m.Run(context.Background(), tt.args); code != tt.code || !strings.Contains(out.String(), tt.out) {
				t.Errorf("exit %d, output:\n%s\nwant exit %d and %q", code, out.String(), tt.code, tt.out)
			}
			if tt.name == "help documents every flag" {
				for _, flag := range []string{"-aws", "-config", "-json", "-timeout"} {
					if !strings.Contains(out.String(), "  "+flag+" ") && !strings.Contains(out.String(), "  "+flag+"\n") {
						t.Errorf("-help does not document %s:\n%s", flag, out.String())
					}
				}
			}
		})
	}
}

// checkPolicy is the least-privilege policy the code declares for
// check -aws alone and the config at cfgPath, without the actions drop
// names.
func checkPolicy(t *testing.T, cfgPath string, drop ...string) iam.Document {
	t.Helper()
	d := leastPrivilege(t, cfgPath, iam.Check)
	var kept []iam.Statement
	for _, s := range d.Statement {
		s.Action = slices.DeleteFunc(slices.Clone(s.Action), func(a string) bool { return slices.Contains(drop, a) })
		if len(s.Action) > 0 {
			kept = append(kept, s)
		}
	}
	d.Statement = kept
	return d
}

// The policy the code declares for check alone is enough for check:
// under it, a correct set-up passes, with 404s for missing keys. (Any
// denial fails the test.)
func TestCheckAWSUnderDeclaredPolicy(t *testing.T) {
	e := newITEnv(t, "goaws")
	q, dlq := e.checkQueues(t, goodQueues)
	cfg := e.checkConfig(t, q, dlq, nil)
	e.pinPolicy(checkPolicy(t, cfg))
	code, out, errOut := runCheck(t, "-aws", "-config", cfg)
	if code != ExitOK || len(failLines(out)) != 0 {
		t.Fatalf("exit %d under the declared check policy, want 0 and no FAIL:\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "ok    s3          reports missing key: a missing key under s3://it-reports/reports/ answers 404") {
		t.Errorf("no 404 for a missing report:\n%s", out)
	}
}

// Without s3:ListBucket, S3 answers 403 for a missing key: check names
// the statements to add, once for the bucket, as the declared policy
// (`reportmailer iam`) has them: one per prefix, with its condition.
func TestCheckAWSMissingKeyAnswers403WithoutListBucket(t *testing.T) {
	e := newITEnv(t, "goaws")
	q, dlq := e.checkQueues(t, goodQueues)
	cfg := e.checkConfig(t, q, dlq, nil)
	e.pinPolicy(checkPolicy(t, cfg, "s3:ListBucket"))
	e.expectDenials()
	var lists []string
	for _, s := range checkPolicy(t, cfg).Statement {
		if slices.Contains(s.Action, "s3:ListBucket") {
			b, _ := json.Marshal(s)
			lists = append(lists, string(b))
		}
	}
	if len(lists) != 2 {
		t.Fatalf("the declared policy has %d s3:ListBucket statements, want 2 (reports and ledger): %v", len(lists), lists)
	}
	code, out, errOut := runCheck(t, "-aws", "-config", cfg)
	fails := failLines(out)
	if code != ExitFailure || len(fails) != 1 {
		t.Fatalf("exit %d with %d FAIL lines, want exit 1 and exactly one:\n%s%s", code, len(fails), out, errOut)
	}
	for _, want := range append([]string{
		"bucket it-reports missing keys:",
		"answers 403 AccessDenied, not 404",
		"reportmailer/ledger/ (ledger)", "reports/ (reports)",
	}, lists...) {
		if !strings.Contains(fails[0], want) {
			t.Errorf("the FAIL line does not say %q:\n%s", want, fails[0])
		}
	}
	// The only refusals are the missing keys the proxy turned into 403.
	denials := e.lp.set.S3.Denials()
	if len(denials) == 0 {
		t.Error("the proxy refused nothing; the 403 did not come from the missing s3:ListBucket")
	}
	for _, d := range append(denials, append(e.lp.set.SQS.Denials(), e.lp.set.SES.Denials()...)...) {
		if !d.MissingKey {
			t.Errorf("denied %s %s on %s, not a missing key", d.Operation, d.Action, d.Resource)
		}
	}
	if left := e.probesLeft(t); len(left) != 0 {
		t.Errorf("probe objects left behind: %v", left)
	}
}
