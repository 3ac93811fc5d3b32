package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
)

// TestServeHTTP runs serve against the emulators with its HTTP side on
// a free port: a run started with POST /run/it moves the counters and
// histograms /metrics shows, /healthz and /readyz answer 200, and
// /readyz answers 503 while SQS is unreachable, then 200 again.
func TestServeHTTP(t *testing.T) {
	e := newITEnv(t, "goaws")
	q, dlq := e.queues(t)
	cfg := e.config(t, q, dlq)
	const token = "it-token-0123456789abcdef"
	b, _ := os.ReadFile(cfg)
	b = bytes.Replace(b, []byte("{name: it, mode: each,"), []byte(`{name: it, cron: "@every 1h", mode: each,`), 1)
	b = bytes.Replace(b, []byte(`http: {addr: "127.0.0.1:0"}`), []byte(`http: {addr: "127.0.0.1:0", token: "`+token+`"}`), 1)
	os.WriteFile(cfg, b, 0o644)
	e.put(t, "http/a.pdf", nil)
	e.send(t, q, nativeBody("evt-http", "web", nil, "http/a.pdf"))
	e.send(t, q, s3Body("http/missing.pdf"))

	seen := make(chan struct{})
	logs := &signalWriter{want: "msg=serving", seen: seen}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		m := &Main{Stdout: io.Discard, Stderr: logs, Getenv: os.Getenv, Environ: os.Environ}
		done <- m.Run(ctx, []string{"serve", "-config", cfg})
	}()
	defer func() {
		cancel()
		if code := <-done; code != ExitOK {
			t.Errorf("serve exit %d after shutdown, want 0\n%s", code, logs.String())
		}
	}()
	select {
	case <-seen:
	case <-time.After(30 * time.Second): // only stops a broken build from hanging
		t.Fatalf("serve never started:\n%s", logs.String())
	}
	m := regexp.MustCompile(`msg=listening addr=(127\.0\.0\.1:\d+)`).FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("serve did not log its address:\n%s", logs.String())
	}
	base := "http://" + m[1]
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	run := func(auth string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/run/it?wait=true", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := get(p); code != http.StatusOK {
			t.Errorf("GET %s = %d %q before any run, want 200", p, code, body)
		}
	}
	// The SES quota is read on serve's refresh, not only by a run's
	// sends: it shows before any run.
	for deadline := time.Now().Add(30 * time.Second); ; { // only stops a broken build from hanging
		if _, body := get("/metrics"); regexp.MustCompile(`(?m)^reportmailer_ses_quota_read_timestamp_seconds [1-9]`).MatchString(body) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no SES quota read before any run:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, _ := run(""); code != http.StatusUnauthorized {
		t.Errorf("POST /run/it without a token = %d, want 401", code)
	}
	if code, body := run("Bearer " + token); code != http.StatusOK || !strings.Contains(body, `"outcome":"incomplete"`) {
		t.Fatalf("POST /run/it = %d %s; want 200 and a run that sent one email and dead-lettered one message\n%s", code, body, logs.String())
	}
	if got := e.emails(t, "web@acme.example"); len(got) != 1 {
		t.Errorf("%d emails to web, want 1", len(got))
	}

	_, metrics := get("/metrics")
	for _, want := range []string{
		`reportmailer_runs_total{kind="slot",outcome="incomplete",schedule="it"} 1`,
		`reportmailer_emails_sent_total{schedule="it"} 1`,
		`reportmailer_messages_total{class="",code="",schedule="it",settlement="acked"} 1`,
		`reportmailer_messages_total{class="permanent",code="object_missing",schedule="it",settlement="dead_lettered"} 1`,
		`reportmailer_stage_duration_seconds_count{schedule="it",stage="send"} 1`,
		`reportmailer_stage_duration_seconds_count{schedule="it",stage="receive"}`,
		`reportmailer_run_duration_seconds_count{kind="slot",schedule="it"} 1`,
		`reportmailer_ses_pacing_wait_seconds_count 1`,
		`reportmailer_ses_max_send_rate`,
		`reportmailer_queue_messages{queue="main",schedule="it",state="visible"}`,
		`reportmailer_key_safe_removal_timestamp_seconds{active="true",key_id="` + itKeyID + `"}`,
		`reportmailer_last_success_timestamp_seconds{kind="slot",schedule="it"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(metrics, "evt-http") || strings.Contains(metrics, "acme.example") {
		t.Error("/metrics names an event or an address")
	}

	// SQS unreachable: the next run fails on it, and /readyz says so
	// until SQS answers again.
	rule := e.lp.set.SQS.Inject(awsproxy.Fault{Status: http.StatusServiceUnavailable})
	if code, body := run("Bearer " + token); code != http.StatusOK || !strings.Contains(body, `"outcome":"failed"`) {
		t.Errorf("POST /run/it with SQS down = %d %s, want a failed run", code, body)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "SQS") {
		t.Errorf("GET /readyz with SQS down = %d %q, want 503 naming SQS", code, body)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz with SQS down = %d, want 200: the process itself is fine", code)
	}
	rule.Remove()
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("GET /readyz after SQS is back = %d %q, want 200", code, body)
	}
	if _, metrics := get("/metrics"); !strings.Contains(metrics, `reportmailer_runs_total{kind="slot",outcome="failed",schedule="it"} 1`) {
		t.Error("/metrics does not count the failed run")
	}

	// Credentials SQS refuses: an answer, but not one the replica can
	// work with, so not ready either.
	rule = e.lp.set.SQS.Inject(awsproxy.Fault{Status: http.StatusForbidden, Code: "InvalidClientTokenId"})
	if code, body := run("Bearer " + token); code != http.StatusOK || !strings.Contains(body, `"outcome":"failed"`) {
		t.Errorf("POST /run/it with SQS refusing the credentials = %d %s, want a failed run", code, body)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "SQS") {
		t.Errorf("GET /readyz with SQS refusing the credentials = %d %q, want 503 naming SQS", code, body)
	}
	rule.Remove()
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("GET /readyz after SQS takes the credentials again = %d %q, want 200", code, body)
	}
	if strings.Contains(logs.String(), token) {
		t.Error("the logs show the bearer token")
	}
}
