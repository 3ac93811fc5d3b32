package main

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker/iam"
)

var update = flag.Bool("update", false, "rewrite deploy/iam-policy.json from config/example.yaml")

// policyGolden is the policy deploy/ ships, for config/example.yaml and
// what a deployment runs.
const policyGolden = "../../deploy/iam-policy.json"

// TestIAMPolicyGolden keeps deploy/iam-policy.json equal to what
// `reportmailer iam` prints for config/example.yaml, so the shipped
// policy cannot drift from the declaration. `go test ./cmd/reportmailer
// -run TestIAMPolicyGolden -update` rewrites it.
func TestIAMPolicyGolden(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("REPORTMAILER_CONFIG", "")
	code, out, errOut := run(t, "iam", "-config", "../../config/example.yaml", "-command", "drain,serve,keys,check")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if *update {
		if err := os.WriteFile(policyGolden, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(policyGolden)
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Fatalf("%s is out of date: run go test ./cmd/reportmailer -run TestIAMPolicyGolden -update\ngot:\n%s", policyGolden, out)
	}
	// What a reviewer of the file would check first.
	for _, s := range []string{
		`"arn:aws:sqs:eu-west-2:123456789012:reports-ready"`,
		`"arn:aws:s3:::acme-reports/reports/*"`,
		`"s3:ListBucket"`,
		`"arn:aws:ses:eu-west-2:123456789012:identity/example.com"`,
	} {
		if !strings.Contains(out, s) {
			t.Errorf("policy lacks %s", s)
		}
	}
}

func TestIAMCommand(t *testing.T) {
	t.Setenv("REPORTMAILER_CONFIG", "")
	dir := t.TempDir()
	write := func(name, yaml string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	local := write("local.yaml", `sender: {from: "Reports <reports@acme.example>"}
reports: {bucket: reports}
ledger: {bucket: state, prefix: rm/ledger/}
schedules:
  - {name: it, queue_url: "http://127.0.0.1:4566/000000000000/ready", dead_letter_queue_url: "http://127.0.0.1:4566/000000000000/ready-dlq"}
`)
	noReports := write("noreports.yaml", `sender: {from: "Reports <reports@acme.example>"}
ledger: {bucket: state}
schedules:
  - {name: it, queue_url: "https://sqs.eu-west-2.amazonaws.com/123456789012/q", dead_letter_queue_url: "https://sqs.eu-west-2.amazonaws.com/123456789012/q-dlq"}
`)

	t.Run("emulator URLs take the region from AWS_REGION", func(t *testing.T) {
		t.Setenv("AWS_REGION", "eu-north-1")
		code, out, errOut := run(t, "iam", "-config", local, "-command", "drain")
		if code != ExitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var d iam.Document
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("output is not a policy: %v\n%s", err, out)
		}
		if !d.Allows("sqs:ReceiveMessage", "arn:aws:sqs:eu-north-1:000000000000:ready", nil) ||
			!d.Allows("ses:SendEmail", "arn:aws:ses:eu-north-1:000000000000:identity/acme.example", nil) {
			t.Errorf("policy does not name the emulator's queue and account in eu-north-1:\n%s", out)
		}
		if d.Allows("s3:GetObject", "arn:aws:s3:::state/other/x", nil) {
			t.Error("the ledger grant leaks outside ledger.prefix")
		}
	})
	t.Run("the -region flag wins", func(t *testing.T) {
		t.Setenv("AWS_REGION", "eu-north-1")
		_, out, _ := run(t, "iam", "-config", local, "-command", "drain", "-region", "ap-south-1", "-account", "111122223333")
		if !strings.Contains(out, "arn:aws:sqs:ap-south-1:000000000000:ready") || !strings.Contains(out, "arn:aws:ses:ap-south-1:111122223333:identity/acme.example") {
			t.Errorf("flags not used:\n%s", out)
		}
	})
	t.Run("offline commands get an empty policy", func(t *testing.T) {
		t.Setenv("AWS_REGION", "eu-north-1")
		code, out, _ := run(t, "iam", "-config", local, "-command", "preview,sign")
		if code != ExitOK || !strings.Contains(out, `"Statement": []`) {
			t.Errorf("exit %d, %s", code, out)
		}
	})

	errs := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown command", []string{"-config", local, "-command", "drain,rewind"}, ExitUsage, `unknown command "rewind"`},
		{"no region for emulator URLs", []string{"-config", local}, ExitUsage, "give -region or set AWS_REGION"},
		{"no reports bucket", []string{"-config", noReports}, ExitFailure, `reports.bucket: "" is required`},
		{"no config", nil, ExitUsage, "-config is required"},
		{"downloads without the access logs' bucket", []string{"-config", local, "-command", "downloads", "-region", "eu-north-1"}, ExitFailure,
			"iam: links.cloudfront.access_logs.bucket is not set"},
		{"revoke without the KeyValueStore", []string{"-config", local, "-command", "history,revoke", "-region", "eu-north-1"}, ExitFailure,
			"iam: links.cloudfront.key_value_store_arn is not set"},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("AWS_REGION", "")
			code, out, errOut := run(t, append([]string{"iam"}, tt.args...)...)
			if code != tt.code || !strings.Contains(errOut, tt.want) || out != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, out, errOut, tt.code, tt.want)
			}
		})
	}
}

// TestIAMInputsFromConfig checks the one mapping from config to policy
// inputs against the example config, field by field.
func TestIAMInputsFromConfig(t *testing.T) {
	t.Setenv("REPORTMAILER_CONFIG", "")
	c, err := config.Load("../../config/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in, err := iamInputs(c, "eu-west-2", "")
	if err != nil {
		t.Fatal(err)
	}
	if in.ReportsBucket != "acme-reports" || in.ReportsPrefix != "reports/" || in.StateBucket != "acme-reportmailer-state" ||
		in.LedgerPrefix != "reportmailer/ledger/" || in.KeyRecordsPrefix != "reportmailer/keys/" || !in.CloudFront ||
		in.Account != "123456789012" || in.From != c.Sender.From || len(in.Queues) != 2 ||
		in.Queues[1].DeadLetterURL != "https://sqs.eu-west-2.amazonaws.com/123456789012/reports-daily-dlq" ||
		in.EventsQueueURL != "https://sqs.eu-west-2.amazonaws.com/123456789012/reportmailer-ses-events" {
		t.Errorf("iamInputs = %+v", in)
	}
	// The key records live where keyExpiries writes them.
	if got := keyExpiries(c, nil).Prefix; got != in.KeyRecordsPrefix {
		t.Errorf("key records at %q, policy grants %q", got, in.KeyRecordsPrefix)
	}
}
