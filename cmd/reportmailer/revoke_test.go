package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/worker/iam"
	"github.com/reportmailer/reportmailer/worker/linktoken"
	"github.com/reportmailer/reportmailer/worker/store"
)

// TestRevokeDryRun drains a traced event through the permission
// proxies and runs revoke -dry-run under revoke's declared policy: it
// names the token of each recipient's delivery (the token their links
// carry), or of one with -to, and writes nothing; the CloudFront
// Function in deploy/ denies the emailed link whose token that deny
// list holds, and only that one. A KeyValueStore emulator exists
// (ministack, a PyPI package), but PyPI is not reachable from this
// project's CI, so the write (UpdateKeys, ListKeys) is still not
// covered by an emulator test.
func TestRevokeDryRun(t *testing.T) {
	e := newITEnv(t, "goaws")
	q, dlq := e.queues(t)
	e.put(t, "rv/a.pdf", nil)
	e.send(t, q, nativeBody("evt-rv-1", "ann", []string{"bob@acme.example"}, "rv/a.pdf"))
	cfg := e.tracedConfig(t, q, dlq, iam.Drain, iam.Revoke)
	if code, out, logs := drain(t, cfg); code != ExitOK {
		t.Fatalf("drain: exit %d: %s\n%s", code, out, logs)
	}
	tokens, _ := linktoken.New([]byte(itTraceSecret))
	ann, bob := tokens.Of("evt-rv-1", "ann@acme.example"), tokens.Of("evt-rv-1", "bob@acme.example")
	for _, who := range []string{"ann", "bob"} {
		m := e.emails(t, who+"@acme.example")
		if len(m) != 1 || !strings.Contains(m[0].Text, "rmt="+tokens.Of("evt-rv-1", who+"@acme.example")+"&") {
			t.Fatalf("%s's email does not carry the token revoke would deny", who)
		}
	}
	for _, tt := range []struct {
		args    []string
		code    int
		want    []string
		notWant []string
	}{
		{[]string{"-event-id", "evt-rv-1", "-dry-run"}, ExitOK,
			[]string{"would add 2 tokens to the deny list arn:aws:cloudfront::123456789012:key-value-store/0a1b2c3d", ann + "  event evt-rv-1  recipient ann@acme.example", bob + "  event evt-rv-1  recipient bob@acme.example"}, nil},
		{[]string{"-event-id", "evt-rv-1", "-to", "Bob@acme.example", "-dry-run"}, ExitOK,
			[]string{"would add 1 tokens", bob}, []string{ann}},
		{[]string{"-event-id", "evt-none", "-dry-run"}, ExitFailure,
			[]string{`revoke: the ledger has no delivery of event "evt-none" to any recipient`, "-to ADDR revokes one address's links without the record"}, nil},
		// A record gone (ledger retention shorter than links.max_ttl):
		// the token is computed from the event id and address anyway.
		{[]string{"-event-id", "evt-gone", "-to", "Cy@acme.example", "-dry-run"}, ExitOK,
			[]string{`warning: the ledger has no record of event "evt-gone" to Cy@acme.example`, "would add 1 tokens", tokens.Of("evt-gone", "cy@acme.example") + "  event evt-gone  recipient cy@acme.example"}, nil},
		{[]string{"-event-id", "evt-rv-1", "-to", "bob@acme.example", "-undo", "-dry-run"}, ExitOK,
			[]string{"would delete 1 tokens", bob}, []string{ann}},
		{[]string{"-dry-run"}, ExitUsage, []string{"revoke: -event-id is required"}, nil},
		{[]string{"-prune", "-event-id", "evt-rv-1"}, ExitUsage, []string{"revoke: -prune takes no -event-id"}, nil},
		{[]string{"-help"}, ExitOK, nil, nil},
	} {
		var stdout, stderr strings.Builder
		m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: os.Getenv, Environ: os.Environ}
		code := m.Run(t.Context(), append([]string{"revoke", "-config", cfg}, tt.args...))
		all := stdout.String() + stderr.String()
		if code != tt.code {
			t.Errorf("revoke %v: exit %d, want %d\n%s", tt.args, code, tt.code, all)
		}
		for _, w := range tt.want {
			if !strings.Contains(all, w) {
				t.Errorf("revoke %v: output lacks %q:\n%s", tt.args, w, all)
			}
		}
		for _, w := range tt.notWant {
			if strings.Contains(all, w) {
				t.Errorf("revoke %v: output has %q:\n%s", tt.args, w, all)
			}
		}
		if strings.Contains(all, itTraceSecret) {
			t.Errorf("revoke %v prints the trace secret", tt.args)
		}
	}

	// The function shipped in deploy/, given the deny list revoke -to bob
	// would write, denies bob's link as it was emailed and lets ann's
	// through.
	link := func(who string) string {
		m := e.emails(t, who+"@acme.example")
		return urlRE.FindString(m[0].Text)
	}
	runDenyRevoked(t, []denyRevokedCase{
		{Name: "bob's emailed link, bob revoked", URL: link("bob"), Deny: []string{bob}, Denied: true},
		{Name: "ann's emailed link, bob revoked", URL: link("ann"), Deny: []string{bob}, Denied: false},
	})
}

// denyRevokedCase is a case for deploy/cloudfront-function's node test.
type denyRevokedCase struct {
	Name   string   `json:"name"`
	URL    string   `json:"url"`
	Deny   []string `json:"deny"`
	Denied bool     `json:"denied"`
}

// runDenyRevoked runs the CloudFront Function's tests with cases of the
// caller's as well (DENY_REVOKED_CASES).
func runDenyRevoked(t *testing.T, cases []denyRevokedCase) {
	t.Helper()
	b, _ := json.Marshal(cases)
	cmd := exec.Command("node", "--test", "../../deploy/cloudfront-function/deny-revoked.test.mjs")
	cmd.Env = append(os.Environ(), "NODE_OPTIONS=", "DENY_REVOKED_CASES="+string(b))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test with %d given cases: %v\n%s", len(cases), err, out)
	}
	if want := fmt.Sprintf("# pass %d", 7+len(cases)); !strings.Contains(string(out), want) {
		t.Errorf("node --test: want %q:\n%s", want, out)
	}
}

func TestRevokeNeedsTrace(t *testing.T) {
	dir := t.TempDir()
	cfg := dir + "/c.yaml"
	os.WriteFile(cfg, []byte(`sender: {from: a@acme.example}
reports: {bucket: reports}
ledger: {bucket: state}
schedules: [{name: daily, queue_url: "http://127.0.0.1:9/000000000000/q", dead_letter_queue_url: "http://127.0.0.1:9/000000000000/dlq"}]
links:
  cloudfront: {domain: "https://d111.cloudfront.net", key_id: K1, private_key_file: k.pem}
`), 0o600)
	for _, c := range []string{"revoke", "downloads"} {
		args := []string{c, "-config", cfg}
		if c == "revoke" {
			args = append(args, "-event-id", "e1")
		}
		code, _, stderr := run(t, args...)
		if code != ExitFailure || !strings.Contains(stderr, c+": links.trace is off") {
			t.Errorf("%s without links.trace: exit %d, stderr %q", c, code, stderr)
		}
	}
}

// TestRevokeLinksExpire: the deny-list value is when the delivery's
// links expire at the latest: its last send (a resend included) plus
// links.max_ttl, or now plus max_ttl without a record.
func TestRevokeLinksExpire(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	sent := now.Add(-48 * time.Hour)
	ttl := 7 * 24 * time.Hour
	for _, tt := range []struct {
		name string
		rec  store.Record
		want time.Time
	}{
		{"sent", store.Record{State: "sent", SentAt: sent, Modified: sent}, sent.Add(ttl)},
		{"maybe sent", store.Record{State: "sending", SendingAt: sent}, sent.Add(ttl)},
		{"resent later", store.Record{State: "sent", SentAt: sent, Resends: []store.Resend{{At: now.Add(-time.Hour)}}}, now.Add(-time.Hour + ttl)},
		{"record gone", store.Record{State: "sent"}, now.Add(ttl)},
	} {
		got := linksExpire(tt.rec, ttl, now)
		if got.Before(tt.want) || got.After(tt.want.Add(time.Second)) {
			t.Errorf("%s: links expire %s, want %s", tt.name, got, tt.want)
		}
	}
}

// TestRevokePruneExpired: -prune deletes only entries revoke wrote
// whose links have expired, never an entry of another form.
func TestRevokePruneExpired(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		value string
		want  bool
	}{
		{expiresValue(now.Add(-time.Second)), true},
		{expiresValue(now.Add(time.Hour)), false},
		{now.Add(-time.Hour).Format(time.RFC3339), false}, // a revocation time, as written before: kept
		{"expires soon", false},
		{"", false},
	} {
		if got := expired(tt.value, now); got != tt.want {
			t.Errorf("expired(%q) = %v, want %v", tt.value, got, tt.want)
		}
	}
}

// TestRevokeWriteError: a write that stopped after some batches exits
// 3 (partial); one that wrote nothing exits 1.
func TestRevokeWriteError(t *testing.T) {
	boom := errors.New("update keys: throttled")
	for _, tt := range []struct {
		n    int
		code int
	}{{0, ExitFailure}, {50, ExitPartial}} {
		err := writeError(fmt.Sprintf("revoke: %d of 60 tokens added", tt.n), tt.n, boom)
		code := ExitFailure
		if ee, ok := err.(exitError); ok {
			code = ee.code
		}
		if code != tt.code {
			t.Errorf("%d keys written then an error: exit %d, want %d", tt.n, code, tt.code)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("%d of 60 tokens added: update keys: throttled", tt.n)) {
			t.Errorf("error %q does not say how far it got", err)
		}
	}
}
