package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/internal/s3test"
	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/iam"
	"github.com/reportmailer/reportmailer/worker/link"
	"github.com/reportmailer/reportmailer/worker/store"
)

// TestKeys signs links as the worker does, then runs "reportmailer keys"
// against the same S3 (gofakes3, found through AWS_ENDPOINT_URL_S3 as
// in production, behind a proxy enforcing the policy declared for keys)
// and checks the safe-removal dates it reads back, through a rotation.
func TestKeys(t *testing.T) {
	ctx := context.Background()
	s3URL, s3c := s3test.Start(t, "state")
	proxy := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.S3, Target: s3URL, Policy: &iam.Document{Version: iam.Version}})
	t.Cleanup(func() {
		for _, d := range proxy.Denials() {
			t.Errorf("under the policy declared for keys, %s was denied %s on %s (missing key: %v)", d.Operation, d.Action, d.Resource, d.MissingKey)
		}
	})
	for k, v := range map[string]string{
		"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
		"AWS_ENDPOINT_URL_S3": proxy.URL, "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull, "AWS_PROFILE": "", "AWS_SESSION_TOKEN": "",
		"REPORTMAILER_CONFIG": "",
	} {
		t.Setenv(k, v)
	}

	dir := t.TempDir()
	rk, ek := cliKeys(t, dir)
	t.Setenv("KEYS_TEST_EC_PEM", ek.pemText)
	cfgPath := filepath.Join(dir, "reportmailer.yaml")
	writeConfig := func(active string) {
		t.Helper()
		// keys reads no queue; the schedule is there because the
		// policy's inputs (iamInputs) are checked for every command.
		cfg := fmt.Sprintf(`sender: {from: "Reports <reports@acme.example>"}
links:
  ttl: 48h
  cloudfront:
    domain: https://d111111abcdef8.cloudfront.net
    key_records_prefix: rm/keys/
    keys:
      - {id: %s, private_key_file: %q, active: %v}
      - {id: %s, private_key_env: KEYS_TEST_EC_PEM, active: %v}
reports: {bucket: reports}
ledger: {bucket: state, prefix: rm/ledger/}
s3: {use_path_style: true}
schedules: [{name: d, queue_url: "http://127.0.0.1:9/000000000000/q", dead_letter_queue_url: "http://127.0.0.1:9/000000000000/dlq"}]
`, rk.id, rk.private, active == rk.id, ek.id, active == ek.id)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// signLink signs one report the way drain does, through newSigner.
	signLink := func(now time.Time) time.Time {
		t.Helper()
		c, err := config.Load(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		s, err := newSigner(c, s3c, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		l, err := s.Sign(ctx, event.Report{Bucket: "reports", Key: "a/b.pdf"}, now)
		if err != nil {
			t.Fatal(err)
		}
		return l.Expires
	}
	keysTable := func() map[string][]string {
		t.Helper()
		code, out, errOut := run(t, "keys", "-config", cfgPath)
		if code != ExitOK {
			t.Fatalf("keys: exit %d\n%s%s", code, out, errOut)
		}
		if !strings.Contains(errOut, "s3://state/rm/keys/") {
			t.Errorf("keys should say where the record is kept:\n%s", errOut)
		}
		rows := map[string][]string{}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if !strings.HasPrefix(lines[0], "KEY ID") {
			t.Fatalf("no header:\n%s", out)
		}
		for _, line := range lines[1:] {
			f := regexp.MustCompile(`\s{2,}`).Split(line, -1)
			rows[f[0]] = f[1:]
		}
		return rows
	}
	fp := func(k cliKey) string {
		s, err := link.Fingerprint(k.signer)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	check := func(rows map[string][]string, id string, want ...string) {
		t.Helper()
		if got := rows[id]; strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("row %s = %q\nwant       %q", id, got, want)
		}
	}
	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }

	writeConfig(rk.id)
	policy := leastPrivilege(t, cfgPath, iam.Keys)
	proxy.SetPolicy(&policy)
	rows := keysTable()
	check(rows, rk.id, "RSA-2048", fp(rk), "yes", "never used (yet)")
	check(rows, ek.id, "ECDSA-P256", fp(ek), "no", "never used")

	// The worker signs with the active key; the record is in S3, so a
	// new process (this run of keys) reads it back.
	t0 := time.Now().Truncate(time.Second)
	exp := signLink(t0)
	rows = keysTable()
	check(rows, rk.id, "RSA-2048", fp(rk), "yes", rfc(exp.Add(link.RecordAhead))+" (still signing)")
	check(rows, ek.id, "ECDSA-P256", fp(ek), "no", "never used")

	// Rotate: the ECDSA key becomes active. The RSA key's date stays,
	// and is when its public key may go.
	writeConfig(ek.id)
	exp2 := signLink(t0.Add(time.Minute))
	rows = keysTable()
	check(rows, rk.id, "RSA-2048", fp(rk), "no", rfc(exp.Add(link.RecordAhead)))
	check(rows, ek.id, "ECDSA-P256", fp(ek), "yes", rfc(exp2.Add(link.RecordAhead))+" (still signing)")

	// A key that left the config but signed links is still listed.
	gone := &store.KeyExpiries{Client: s3c, Bucket: "state", Prefix: "rm/keys/"}
	past := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := gone.Extend(ctx, "KRETIRED00001", past); err != nil {
		t.Fatal(err)
	}
	rows = keysTable()
	check(rows, "KRETIRED00001", "-", "-", "not in config", rfc(past)+" (passed: safe now)")
	if len(rows) != 3 {
		t.Errorf("rows = %v", rows)
	}
}

func TestKeysErrors(t *testing.T) {
	dir := t.TempDir()
	rk, _ := cliKeys(t, dir)
	t.Setenv("REPORTMAILER_CONFIG", "")
	noCF := filepath.Join(dir, "no-cf.yaml")
	os.WriteFile(noCF, []byte("sender: {from: a@acme.example}\nreports: {bucket: acme-reports}\nledger: {bucket: b}\n"), 0o600)
	badKey := filepath.Join(dir, "bad-key.yaml")
	os.WriteFile(badKey, []byte(fmt.Sprintf(`sender: {from: a@acme.example}
reports: {bucket: acme-reports}
ledger: {bucket: b}
links: {cloudfront: {domain: "https://d.cloudfront.net", keys: [{id: K1, private_key_file: %q, active: true}, {id: K2, private_key_file: %q}]}}
`, rk.private, filepath.Join(dir, "missing.pem"))), 0o600)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no config", []string{"keys"}, ExitUsage, "-config is required"},
		{"no cloudfront", []string{"keys", "-config", noCF}, ExitFailure, "no links.cloudfront section"},
		{"an unreadable key", []string{"keys", "-config", badKey}, ExitFailure, "links.cloudfront.keys[1].private_key_file (key K2): private key: open " + filepath.Join(dir, "missing.pem")},
		{"config check reads every key too", []string{"config", "check", "-config", badKey}, ExitFailure, "links.cloudfront.keys[1].private_key_file (key K2)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, out, errOut, tt.code, tt.want)
			}
		})
	}
}

// TestKeysRotateRetireUsage: keys rotate and keys retire refuse a
// missing or contradictory choice with exit 2 before any AWS call.
func TestKeysRotateRetireUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"keys", "rotate", "-config", "x.yaml"}, "give -kms (a key in AWS KMS) or -generate ecdsa|rsa"},
		{[]string{"keys", "rotate", "-kms", "-generate", "rsa"}, "give -kms or -generate, not both"},
		{[]string{"keys", "rotate", "-kms", "-kms-spec", "RSA_4096"}, `-kms-spec "RSA_4096" is not ECC_NIST_P256 or RSA_2048`},
		{[]string{"keys", "rotate", "-generate", "dsa"}, `-generate "dsa" is not ecdsa or rsa`},
		{[]string{"keys", "rotate", "-generate", "rsa", "-activate-after", "30s"}, "-activate-after 30s is under 2m0s"},
		{[]string{"keys", "retire", "-config", "x.yaml"}, "-key-id is required"},
		{[]string{"keys", "retire", "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, _, errOut := run(t, tt.args...)
			if code != ExitUsage || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errOut, ExitUsage, tt.want)
			}
		})
	}
}
