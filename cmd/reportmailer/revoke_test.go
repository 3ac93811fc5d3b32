package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/reportmailer/reportmailer/worker/iam"
	"github.com/reportmailer/reportmailer/worker/linktoken"
)

// TestRevokeDryRun drains a traced event through the permission
// proxies and runs revoke -dry-run under revoke's declared policy: it
// names the token of each recipient's delivery (the token their links
// carry), or of one with -to, and writes nothing; the CloudFront
// Function in deploy/ denies the emailed link whose token that deny
// list holds, and only that one. The KeyValueStore
// write itself has no emulator (none emulates CloudFront
// KeyValueStore), so it is not covered by a test here.
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
			[]string{`revoke: the ledger has no delivery of event "evt-none" to any recipient`}, nil},
		{[]string{"-event-id", "evt-rv-1", "-to", "cy@acme.example", "-dry-run"}, ExitFailure,
			[]string{`no delivery of event "evt-rv-1" to cy@acme.example`}, nil},
		{[]string{"-dry-run"}, ExitUsage, []string{"revoke: -event-id is required"}, nil},
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
