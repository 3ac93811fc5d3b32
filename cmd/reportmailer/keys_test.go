package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/internal/s3test"
	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/iam"
	"github.com/reportmailer/reportmailer/worker/link"
	"github.com/reportmailer/reportmailer/worker/metrics"
	"github.com/reportmailer/reportmailer/worker/store"
)

// TestKeys signs links as the worker does, then runs "reportmailer keys"
// against the same S3 (gofakes3, found through AWS_ENDPOINT_URL_S3 as
// in production, behind a proxy enforcing the policy declared for keys)
// and checks the safe-removal dates it reads back, through a rotation;
// then, with a key ring's state holding rotated-in, scheduled and
// retired keys, what keys, status and the key metrics show of each.
func TestKeys(t *testing.T) {
	ctx := context.Background()
	s3URL, s3c := s3test.Start(t, "state")
	proxy := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.S3, Target: s3URL, Policy: &iam.Document{Version: iam.Version}})
	t.Cleanup(func() {
		for _, d := range proxy.Denials() {
			t.Errorf("under the policy declared for keys, %s was denied %s on %s (missing key: %v)", d.Operation, d.Action, d.Resource, d.MissingKey)
		}
	})
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) }))
	t.Cleanup(refuse.Close)
	for k, v := range map[string]string{
		"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
		"AWS_ENDPOINT_URL_S3": proxy.URL, "AWS_EC2_METADATA_DISABLED": "true",
		// status reads queues and SES too; an endpoint that refuses each
		// call at once stands in for both, and status shows the errors.
		"AWS_ENDPOINT_URL_SQS": refuse.URL, "AWS_ENDPOINT_URL_SESV2": refuse.URL,
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

	// The key ring's state, as keys rotate and keys retire leave it: a
	// key rotated in that signs now (a key file the state names, not the
	// config), one scheduled whose file is on the workers' disks only,
	// and two retired keys, one forced. keys, status and the metrics
	// show every one, by public key id, with its state.
	now := time.Now()
	retiredAt := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	ring := &store.RingStore{Client: s3c, Bucket: "state", Prefix: "rm/keys/"}
	if _, err := ring.Save(ctx, store.RingState{
		Keys: []store.RingStateKey{
			{ID: "KROTATEDIN001", ActivatesAt: now.Add(-time.Hour), PrivateKeyFile: rk.private, AddedAt: now.Add(-2 * time.Hour)},
			{ID: "KSCHEDULED001", ActivatesAt: now.Add(time.Hour), PrivateKeyFile: filepath.Join(dir, "on-the-workers.pem"), AddedAt: now},
		},
		Retired: []store.RetiredKey{{ID: "KRETIRED00001", RetiredAt: retiredAt}, {ID: "KRETIRED00002", RetiredAt: retiredAt, Forced: true}},
	}, ""); err != nil {
		t.Fatal(err)
	}
	rotatedExp := now.Add(48 * time.Hour).Truncate(time.Second)
	if err := gone.Extend(ctx, "KROTATEDIN001", rotatedExp); err != nil {
		t.Fatal(err)
	}
	rows = keysTable()
	check(rows, "KROTATEDIN001", "RSA-2048", fp(rk), "yes", rfc(rotatedExp)+" (still signing)")
	check(rows, ek.id, "ECDSA-P256", fp(ek), "no", rfc(exp2.Add(link.RecordAhead)))
	check(rows, rk.id, "RSA-2048", fp(rk), "no", rfc(exp.Add(link.RecordAhead)))
	check(rows, "KSCHEDULED001", "-", "-", "from "+rfc(now.Add(time.Hour)), "-")
	check(rows, "KRETIRED00001", "-", "-", "retired", "retired "+rfc(retiredAt))
	check(rows, "KRETIRED00002", "-", "-", "retired", "retired "+rfc(retiredAt)+" (forced, before its safe-removal date)")
	if len(rows) != 6 {
		t.Errorf("rows = %v", rows)
	}

	// status, under the policy declared for it.
	policy = leastPrivilege(t, cfgPath, iam.Status)
	proxy.SetPolicy(&policy)
	code, out, errOut := run(t, "status", "-config", cfgPath, "-json")
	if code != ExitOK {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	var st status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -json: %v\n%s", err, out)
	}
	if st.KeyRingError != "" {
		t.Errorf("status: key ring error %q", st.KeyRingError)
	}
	var got []string
	for _, k := range st.Keys {
		got = append(got, fmt.Sprintf("%s %s active=%v", k.ID, k.State, k.Active))
	}
	want := []string{
		rk.id + " retiring active=false", ek.id + " retiring active=false", "KROTATEDIN001 active active=true",
		"KSCHEDULED001 scheduled active=false", "KRETIRED00001 retired active=false", "KRETIRED00002 retired active=false",
	}
	if !slices.Equal(got, want) {
		t.Errorf("status keys:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if strings.Contains(strings.ToLower(out), "private") || strings.Contains(out, "on-the-workers.pem") || strings.Contains(out, rk.private) {
		t.Errorf("status -json shows where a private key is:\n%s", out)
	}
	code, out, errOut = run(t, "status", "-config", cfgPath)
	for _, want := range []string{
		"key KROTATEDIN001 (active): ",
		"key KSCHEDULED001 (scheduled from " + rfc(now.Add(time.Hour)) + "): ",
		"key " + ek.id + " (retiring): ",
		"key KRETIRED00002 (retired): retired " + rfc(retiredAt) + " (forced",
	} {
		if code != ExitOK || !strings.Contains(out, want) {
			t.Errorf("status: exit %d, no %q:\n%s%s", code, want, out, errOut)
		}
	}

	// The metrics: a series per key that is not retired and signed
	// something, active="true" for the key the ring signs with now; a
	// key retired since the last read loses its series.
	c, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a := &app{cfg: c, s3: s3c, logger: slog.New(slog.DiscardHandler), obs: &observability{metrics: metrics.New()}}
	a.obs.metrics.Key("KRETIRED00001", false, past)
	a.keyGauges(ctx)
	rec := httptest.NewRecorder()
	a.obs.metrics.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	var series []string
	for line := range strings.SplitSeq(rec.Body.String(), "\n") {
		if name, labels, ok := strings.Cut(line, "{"); ok && name == "reportmailer_key_safe_removal_timestamp_seconds" {
			series = append(series, strings.Fields(labels)[0])
		}
	}
	slices.Sort(series)
	wantSeries := []string{
		`active="false",key_id="` + ek.id + `"}`, `active="false",key_id="` + rk.id + `"}`, `active="true",key_id="KROTATEDIN001"}`,
	}
	slices.Sort(wantSeries)
	if !slices.Equal(series, wantSeries) {
		t.Errorf("key series:\n%s\nwant\n%s", strings.Join(series, "\n"), strings.Join(wantSeries, "\n"))
	}
}

// TestRingKeys: the key ring's keys and their states, from the config
// and the ring's state.
func TestRingKeys(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cf := &config.CloudFront{Keys: []config.CloudFrontKey{{ID: "KA", Active: true}, {ID: "KB"}}}
	retired := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		st   store.RingState
		want []string
	}{
		{"config alone", store.RingState{}, []string{"KA active", "KB retiring"}},
		{"a rotation scheduled", store.RingState{Keys: []store.RingStateKey{{ID: "KC", ActivatesAt: now.Add(time.Minute)}}},
			[]string{"KA active", "KB retiring", "KC scheduled"}},
		{"a rotation done", store.RingState{Keys: []store.RingStateKey{{ID: "KC", ActivatesAt: now.Add(-time.Minute)}}},
			[]string{"KA retiring", "KB retiring", "KC active"}},
		{"two rotations, the later pending", store.RingState{Keys: []store.RingStateKey{
			{ID: "KC", ActivatesAt: now.Add(-time.Hour)}, {ID: "KD", ActivatesAt: now.Add(time.Hour)}}},
			[]string{"KA retiring", "KB retiring", "KC active", "KD scheduled"}},
		{"the configured key retired", store.RingState{
			Keys:    []store.RingStateKey{{ID: "KC", ActivatesAt: now.Add(-time.Hour)}},
			Retired: []store.RetiredKey{{ID: "KA", RetiredAt: retired}, {ID: "KOLD", RetiredAt: retired, Forced: true}}},
			[]string{"KA retired", "KB retiring", "KC active", "KOLD retired"}},
		{"a configured key scheduled by the state", store.RingState{Keys: []store.RingStateKey{{ID: "KB", ActivatesAt: now.Add(time.Hour)}}},
			[]string{"KA active", "KB scheduled"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, k := range ringKeys(cf, tt.st, now) {
				got = append(got, k.ID+" "+k.State)
				if k.State == keyRetired && k.RetiredAt != retired {
					t.Errorf("%s: retired at %s, want %s", k.ID, k.RetiredAt, retired)
				}
				if k.Configured != (k.ID == "KA" || k.ID == "KB") {
					t.Errorf("%s: configured = %v", k.ID, k.Configured)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ringKeys = %q, want %q", got, tt.want)
			}
		})
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
