package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/internal/cflog"
	"github.com/reportmailer/reportmailer/worker/iam"
	"github.com/reportmailer/reportmailer/worker/linktoken"
)

const (
	itLogBucket   = "it-cf-logs"
	itTraceSecret = "3f1c9a7be2d84605b91e7c2a5d6f8e0b4a2c7d9e1f3b5a7c9d0e2f4a6b8c0d1e"
)

// tracedConfig writes e's config for one schedule with links.trace on
// (the secret in a file), the access logs in itLogBucket under "cf/"
// and a deny list, and allows what cmds need.
func (e *itEnv) tracedConfig(t *testing.T, q, dlq string, cmds ...iam.Command) string {
	t.Helper()
	cfg := e.config(t, q, dlq, iam.Drain)
	secretFile := filepath.Join(t.TempDir(), "trace.secret")
	os.WriteFile(secretFile, []byte(itTraceSecret+"\n"), 0o600)
	b, _ := os.ReadFile(cfg)
	y := strings.Replace(string(b), "  ttl: 48h\n", fmt.Sprintf("  ttl: 48h\n  trace: true\n  trace_secret_file: %q\n", secretFile), 1)
	y = strings.Replace(y, "private_key_file: "+fmt.Sprintf("%q", e.keyFile)+"}",
		"private_key_file: "+fmt.Sprintf("%q", e.keyFile)+", access_logs: {bucket: "+itLogBucket+", prefix: cf/},"+
			" key_value_store_arn: \"arn:aws:cloudfront::123456789012:key-value-store/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d\"}", 1)
	if !strings.Contains(y, "trace: true") || !strings.Contains(y, "access_logs") {
		t.Fatalf("could not add trace settings to:\n%s", b)
	}
	os.WriteFile(cfg, []byte(y), 0o644)
	e.allow(t, cfg, cmds...)
	return cfg
}

// TestDownloadsReportsWhoOpened drains traced events through the
// permission proxies, writes CloudFront standard log files for requests
// made with the links in the emails (as CloudFront would log them) to
// the log bucket, and runs downloads under its declared policy: it
// names who opened their link, when first and how often, and who has
// not; links of each recipient carry that recipient's token, open at
// the edge, and the secret appears nowhere.
func TestDownloadsReportsWhoOpened(t *testing.T) {
	e := newITEnv(t, "goaws")
	ctx := context.Background()
	if _, err := e.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(itLogBucket)}); err != nil {
		t.Fatal(err)
	}
	q, dlq := e.queues(t)
	e.put(t, "dl/a.pdf", nil)
	e.put(t, "dl/b.pdf", nil)
	e.send(t, q, nativeBody("evt-dl-1", "ann", []string{"bob@acme.example", "cy@acme.example"}, "dl/a.pdf", "dl/b.pdf"))
	e.send(t, q, nativeBody("evt-dl-2", "dan", nil, "dl/a.pdf"))
	cfg := e.tracedConfig(t, q, dlq, iam.Drain, iam.Downloads)
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(b, []byte("log: {level: debug}\n")...), 0o644)

	code, out, logs := drain(t, cfg)
	if code != ExitOK {
		t.Fatalf("drain: exit %d: %s\n%s", code, out, logs)
	}
	tokens, _ := linktoken.New([]byte(itTraceSecret))
	// links[recipient] are the links in that recipient's email.
	links := map[string][]string{}
	for _, who := range []string{"ann", "bob", "cy", "dan"} {
		addr := who + "@acme.example"
		got := e.emails(t, addr)
		if len(got) != 1 {
			t.Fatalf("%s got %d emails, want 1", addr, len(got))
		}
		keys := []string{"dl/a.pdf", "dl/b.pdf"}
		ev := "evt-dl-1"
		if who == "dan" {
			keys, ev = keys[:1], "evt-dl-2"
		}
		e.checkLinks(t, got[0], keys...)
		links[who] = urlRE.FindAllString(got[0].Text, -1)
		for _, l := range links[who] {
			if want := linktoken.Param + "=" + tokens.Of(ev, addr) + "&"; !strings.Contains(l, "?"+want) {
				t.Errorf("%s's link %s does not carry their token %s", who, l, want)
			}
		}
	}

	// The log lines CloudFront would write for requests with these links.
	at := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	req := func(l string, dt time.Duration, status int) cflog.Request {
		u, _ := url.Parse(l)
		return cflog.Request{Time: at.Add(dt), Path: u.EscapedPath(), Query: u.RawQuery, Status: status}
	}
	head := func(r cflog.Request) cflog.Request { r.Method = "HEAD"; return r }
	unknown, _ := linktoken.New([]byte(strings.Repeat("another secret ", 3)))
	putLog := func(key string, body []byte) {
		t.Helper()
		if _, err := e.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(itLogBucket), Key: aws.String(key), Body: strings.NewReader(string(body))}); err != nil {
			t.Fatal(err)
		}
	}
	putLog("cf/E2EXAMPLE.2026-12-03-14.a1b2c3d4.gz", cflog.File(
		req(links["ann"][0], 5*time.Minute, 200),
		req(links["dan"][0], 7*time.Minute, 200),
		req(links["bob"][1], 9*time.Minute, 403),
		cflog.Request{Time: at, Path: "/dl/a.pdf", Query: "rmt=" + unknown.Of("evt-old", "x@acme.example"), Status: 200},
		cflog.Request{Time: at, Path: "/favicon.ico", Status: 404},
		// A link previewer's HEAD of cy's link: not a download.
		head(req(links["cy"][0], 4*time.Minute, 200)),
	))
	// Not log files: a folder marker and a note someone left there.
	putLog("cf/", nil)
	putLog("cf/README.txt", []byte("access logs of the reports distribution\n"))
	putLog("cf/E2EXAMPLE.2026-12-03-15.e5f6a7b8.gz", cflog.File(
		req(links["ann"][1], time.Minute, 206), // earlier than the first file's
		req(links["ann"][1], 70*time.Minute, 206),
	))

	run := func(args ...string) (int, string, string) {
		var stdout, stderr strings.Builder
		m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: os.Getenv, Environ: os.Environ}
		code := m.Run(ctx, append([]string{"downloads", "-config", cfg}, args...))
		if strings.Contains(stdout.String()+stderr.String()+logs, itTraceSecret) {
			t.Errorf("downloads %v: the trace secret appears in the output", args)
		}
		return code, stdout.String(), stderr.String()
	}
	code, stdout, stderr := run("-json")
	if code != ExitOK {
		t.Fatalf("downloads -json: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var rep downloadsReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, stdout)
	}
	got := map[string]string{}
	for _, d := range rep.Deliveries {
		first := "-"
		if !d.FirstDownload.IsZero() {
			first = d.FirstDownload.Sub(at).String()
		}
		got[d.EventID+" "+d.Recipient] = fmt.Sprintf("state %s, first %s, downloads %d, denied %d, files %v", d.State, first, d.Downloads, d.Denied, d.Files)
	}
	want := map[string]string{
		"evt-dl-1 ann@acme.example": "state sent, first 1m0s, downloads 3, denied 0, files map[/dl/a.pdf:1 /dl/b.pdf:2]",
		"evt-dl-1 bob@acme.example": "state sent, first -, downloads 0, denied 1, files map[]",
		"evt-dl-1 cy@acme.example":  "state sent, first -, downloads 0, denied 0, files map[]",
		"evt-dl-2 dan@acme.example": "state sent, first 7m0s, downloads 1, denied 0, files map[/dl/a.pdf:1]",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("deliveries:\n%v\nwant\n%v", got, want)
	}
	if rep.Opened != 2 || rep.NotOpened != 2 || rep.UnknownTokens != 1 || rep.LogFiles != 2 || rep.LogEntries != 8 || rep.SkippedObjects != 2 {
		t.Errorf("report %+v: want 2 opened, 2 not (cy's HEAD is no download), 1 unknown token, 2 files, 8 requests, 2 objects skipped", rep)
	}

	// The table, for one event.
	code, stdout, stderr = run("-event-id", "evt-dl-1")
	if code != ExitOK {
		t.Fatalf("downloads -event-id: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, line := range []string{"ann@acme.example", "bob@acme.example", "cy@acme.example"} {
		if !strings.Contains(stdout, line) {
			t.Errorf("table lacks %s:\n%s", line, stdout)
		}
	}
	if strings.Contains(stdout, "dan@acme.example") || !strings.Contains(stdout, "3 deliveries of event evt-dl-1 (downloads since ") || !strings.Contains(stdout, "1 opened, 2 not opened") ||
		!strings.Contains(stdout, "(other events' links, or another secret)") || !strings.Contains(stdout, "2 objects under the prefix not CloudFront log files, skipped") {
		t.Errorf("table for evt-dl-1:\n%s", stdout)
	}
	for _, l := range strings.Split(stdout, "\n") {
		if strings.Contains(l, "cy@acme.example") && !strings.Contains(l, "not opened") {
			t.Errorf("cy's row does not say not opened: %q", l)
		}
	}

	// A damaged line: counted, skipped, named, exit 3.
	good := cflog.Line(req(links["cy"][0], 3*time.Hour/2, 200))
	putLog("cf/E2EXAMPLE.2026-12-03-16.c9d0e1f2.gz", cflog.Gzip("#Version: 1.0\n#Fields: "+cflog.Fields+"\n"+good[:30]+"\n"+good+"\n"))
	code, stdout, stderr = run("-json")
	if code != ExitPartial {
		t.Errorf("downloads with a damaged line: exit %d, want %d\n%s", code, ExitPartial, stderr)
	}
	if !strings.Contains(stderr, "s3://"+itLogBucket+"/cf/E2EXAMPLE.2026-12-03-16.c9d0e1f2.gz:3: ") {
		t.Errorf("stderr does not name the file and line:\n%s", stderr)
	}
	json.Unmarshal([]byte(stdout), &rep)
	if rep.SkippedLines != 1 || rep.Opened != 3 {
		t.Errorf("report %+v: want 1 skipped line and cy's download counted", rep)
	}
}

func TestDownloadsUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"downloads", "-help"}, ExitOK, ""},
		{[]string{"downloads", "-since", "a week"}, ExitUsage, `downloads: -since "a week": want a positive duration such as 7d or 36h`},
		{[]string{"downloads", "-since", "0d"}, ExitUsage, "want a positive duration"},
		{[]string{"downloads", "extra"}, ExitUsage, `downloads: unexpected argument "extra"`},
	} {
		code, _, stderr := run(t, tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tt.args, code, stderr, tt.code, tt.want)
		}
	}
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "36h": 36 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := parseSince(in); err != nil || got != want {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}
