package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reportmailer/reportmailer/internal/s3test"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/store"
)

// TestLedgerSettle runs "reportmailer ledger settle" as an operator
// would, with the record a maybe_sent dead letter names, against the
// ledger on gofakes3 (found through AWS_ENDPOINT_URL_S3), and checks
// what a redrive would then do.
func TestLedgerSettle(t *testing.T) {
	ctx := context.Background()
	s3URL, s3c := s3test.Start(t, "state")
	for k, v := range map[string]string{
		"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
		"AWS_ENDPOINT_URL_S3": s3URL, "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull, "AWS_PROFILE": "", "AWS_SESSION_TOKEN": "",
		"REPORTMAILER_CONFIG": "",
	} {
		t.Setenv(k, v)
	}
	cfgPath := filepath.Join(t.TempDir(), "reportmailer.yaml")
	cfg := `sender: {from: "Reports <reports@acme.example>"}
reports: {bucket: reports}
ledger: {bucket: state, prefix: rm/ledger/}
s3: {use_path_style: true}
`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	l := &store.Ledger{Client: s3c, Bucket: "state", Prefix: "rm/ledger/"}
	// unsettled leaves the delivery of ev to ana as an ambiguous send does.
	unsettled := func(ev string) string {
		t.Helper()
		key := worker.DeliveryKey(ev, "ana@example.com")
		c, err := l.Claim(ctx, worker.ClaimRequest{Key: key, RunID: "r"})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Sending(ctx, "email-"+ev, []*worker.Claim{&c}); err != nil {
			t.Fatal(err)
		}
		return key
	}
	redrive := func(key string) worker.ClaimState {
		t.Helper()
		c, err := l.Claim(ctx, worker.ClaimRequest{Key: key, RunID: "redrive"})
		if err != nil {
			t.Fatal(err)
		}
		return c.State
	}

	tests := []struct {
		name, ev, flag string
		record         func(key string) string
		says           string
		then           worker.ClaimState
	}{
		{"it arrived: the record URL from the reason", "e1", "-sent", func(k string) string { return "s3://state/rm/ledger/" + k },
			`marked sent; it was "sending" (email email-e1)`, worker.AlreadySent},
		{"it did not: the bare key", "e2", "-unsent", func(k string) string { return k },
			`deleted; it was "sending" (email email-e2)`, worker.Claimed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := unsettled(tt.ev)
			code, out, errOut := run(t, "ledger", "settle", "-config", cfgPath, "-record", tt.record(key), tt.flag)
			if code != ExitOK || !strings.Contains(out, "ledger record s3://state/rm/ledger/"+key+": "+tt.says) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and %q", code, out, errOut, tt.says)
			}
			if got := redrive(key); got != tt.then {
				t.Errorf("a redrive's claim = %v; want %v", got, tt.then)
			}
		})
	}

	t.Run("unsent on a sent record: refused without -force", func(t *testing.T) {
		key := unsettled("e3")
		if _, err := l.SettleRecord(ctx, key, true, false); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := run(t, "ledger", "settle", "-config", cfgPath, "-record", key, "-unsent")
		if code != ExitFailure || !strings.Contains(errOut, `the record is "sent", not "sending"`) || redrive(key) != worker.AlreadySent {
			t.Fatalf("exit %d, stdout %q, stderr %q; want %d, the record kept: a redrive would send it again", code, out, errOut, ExitFailure)
		}
		code, out, errOut = run(t, "ledger", "settle", "-config", cfgPath, "-record", key, "-unsent", "-force")
		if code != ExitOK || !strings.Contains(out, `deleted; it was "sent" (email email-e3), settled by operator`) {
			t.Fatalf("with -force: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})

	usage := []struct {
		name string
		args []string
		says string
	}{
		{"neither flag", []string{"-record", strings.Repeat("a", 64)}, "give exactly one of -sent and -unsent"},
		{"both flags", []string{"-record", strings.Repeat("a", 64), "-sent", "-unsent"}, "give exactly one of -sent and -unsent"},
		{"not a key", []string{"-record", "rm/ledger/nope", "-sent"}, `-record "rm/ledger/nope": is not a delivery key`},
		{"another bucket", []string{"-record", "s3://other/rm/ledger/" + strings.Repeat("a", 64), "-sent"}, `is in bucket "other", not the ledger's ("state")`},
	}
	for _, tt := range usage {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := run(t, append([]string{"ledger", "settle", "-config", cfgPath}, tt.args...)...)
			if code != ExitUsage || !strings.Contains(errOut, tt.says) {
				t.Errorf("exit %d, stderr %q; want %d saying %q", code, errOut, ExitUsage, tt.says)
			}
		})
	}
}
