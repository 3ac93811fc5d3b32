package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/internal/emulator"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/metrics"
	"github.com/reportmailer/reportmailer/worker/store"
)

// digestConfig makes the env's config a digest schedule with extra
// settings, and widens the policy by it.
func (e *itEnv) digestConfig(t *testing.T, cfg, schedule, ledger string) {
	t.Helper()
	b, _ := os.ReadFile(cfg)
	b = bytes.Replace(b, []byte("{name: it, mode: each,"), []byte("{name: it, mode: digest, "+schedule+","), 1)
	if ledger != "" {
		b = bytes.Replace(b, []byte("ledger: {bucket: "+itBucket+"}"), []byte("ledger: {bucket: "+itBucket+", "+ledger+"}"), 1)
	}
	if err := os.WriteFile(cfg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	e.allow(t, cfg)
}

var reportKeyRE = regexp.MustCompile(`https?://[^/\s]+/(digest/[^?\s]+)\?`)

// reportKeys lists the report keys an email links, in order.
func reportKeys(m emulator.SESLocalEmail) []string {
	var out []string
	for _, k := range reportKeyRE.FindAllStringSubmatch(m.Text, -1) {
		out = append(out, k[1])
	}
	return out
}

// TestDrainDigestIsWholeAcrossReceivesAndSplitIntoParts: 120 events for
// 3 users, more than max_messages, and a poison message. Drain ingests
// all of them into the pending store (the poison to the DLQ with its
// code) and sends each user one digest in two parts of at most
// max_links_per_email links, every report once; a report linked by two
// events is listed once. A second drain sends nothing.
func TestDrainDigestIsWholeAcrossReceivesAndSplitIntoParts(t *testing.T) {
	e := newITEnv(t, "goaws")
	q, dlq := e.queues(t)
	cfg := e.config(t, q, dlq)
	e.digestConfig(t, cfg, "max_messages: 20, max_links_per_email: 25", "")
	ctx := context.Background()
	users := []string{"dana", "eli", "fay"}
	var bodies []string
	for i := range 120 {
		u := users[i%3]
		key := fmt.Sprintf("digest/%s/r%03d.pdf", u, i)
		e.put(t, key, nil)
		bodies = append(bodies, nativeBody(fmt.Sprintf("dg-%03d", i), u, nil, key))
	}
	// A newer event for a report dana already has: listed once.
	bodies = append(bodies, nativeBody("dg-again", "dana", nil, "digest/dana/r000.pdf"), "{not json")
	for i := 0; i < len(bodies); i += 10 {
		var entries []sqstypes.SendMessageBatchRequestEntry
		for j, b := range bodies[i:min(i+10, len(bodies))] {
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(j)), MessageBody: aws.String(b)})
		}
		if _, err := e.sqs.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(q), Entries: entries}); err != nil {
			t.Fatal(err)
		}
	}

	code, out, logs := drain(t, cfg)
	if code != ExitPartial || !strings.Contains(out, "dead-lettered 1") {
		t.Fatalf("drain: exit %d, %s; want 3 with the poison message dead-lettered\n%s", code, out, logs)
	}
	if d := e.dead(t, dlq); len(d) != 1 || !strings.Contains(d[0], string(worker.CodeInvalidJSON)) {
		t.Errorf("dead letters = %q; want the poison message with code invalid_json", d)
	}
	for _, u := range users {
		ms := e.emails(t, u+"@acme.example")
		if len(ms) != 2 {
			t.Fatalf("%s got %d emails, want one digest in 2 parts\n%s", u, len(ms), logs)
		}
		seen := map[string]bool{}
		for _, m := range ms {
			if !strings.Contains(m.Subject, "of 2)") {
				t.Errorf("%s: subject %q does not say which part", u, m.Subject)
			}
			for _, k := range reportKeys(m) {
				if seen[k] {
					t.Errorf("%s got %s twice", u, k)
				}
				seen[k] = true
			}
		}
		if len(seen) != 40 {
			t.Errorf("%s got %d reports, want 40", u, len(seen))
		}
	}
	if !e.queueEmpty(t, q) {
		t.Error("the queue still holds messages")
	}
	code, out, logs = drain(t, cfg)
	if code != ExitOK || !strings.Contains(out, "sent 0 emails") {
		t.Errorf("second drain: exit %d, %s; want 0 and nothing sent\n%s", code, out, logs)
	}
	c, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := &store.Pending{Client: e.s3, Bucket: itBucket, Prefix: store.PendingPrefix(c.Ledger.Prefix, "it")}
	if n, err := p.Count(ctx); err != nil || n != 0 {
		t.Errorf("pending store holds %d (%v), want 0", n, err)
	}
	// The empty run is recorded too.
	runs, _, err := readHistory(ctx, e.s3, c, "it", time.Time{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[1].Outcome != "ok" || runs[1].Counts.Sent != 0 || runs[0].Counts.Sent != 6 {
		t.Errorf("run records: %d; want 2, the first with 6 emails, the second empty and ok", len(runs))
	}
}

// TestServeRunsAMissedDigestSlotLateOnce: events were ingested before a
// slot no replica ran. The next start runs that slot once, late: the
// emails say so, the run record shows the planned and the actual start,
// and an event ingested after the slot waits. A second start finds the
// slot done and runs nothing.
func TestServeRunsAMissedDigestSlotLateOnce(t *testing.T) {
	e := newITEnv(t, "goaws")
	q, dlq := e.queues(t)
	cfg := e.config(t, q, dlq)
	e.digestConfig(t, cfg, `cron: "0 0 1 1 *", ingest_every: 1h`, "slot_heartbeat: 1s")
	c, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now().UTC()
	slot := time.Date(now.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
	p := &store.Pending{Client: e.s3, Bucket: itBucket, Prefix: store.PendingPrefix(c.Ledger.Prefix, "it")}
	stored := func(id, user string, at time.Time) {
		key := "digest/" + user + "/" + id + ".pdf"
		e.put(t, key, nil)
		ev := event.Event{ID: id, User: event.User{ID: user, Email: user + "@acme.example", TimeZone: "UTC"},
			Reports: []event.Report{{Bucket: itBucket, Key: key, Title: id}}}
		if err := p.Put(ctx, worker.PendingEvent{Event: ev, Ingested: at, Body: nativeBody(id, user, nil, key)}); err != nil {
			t.Fatal(err)
		}
	}
	stored("before-1", "gus", slot.Add(-48*time.Hour))
	stored("before-2", "gus", slot.Add(-time.Hour))
	stored("before-3", "hal", slot.Add(-time.Minute))
	stored("after-1", "hal", slot.Add(time.Minute))

	serve := func(want string) string {
		t.Helper()
		seen := make(chan struct{})
		logs := &signalWriter{want: want, seen: seen}
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan int, 1)
		go func() {
			m := &Main{Stdout: io.Discard, Stderr: logs, Getenv: os.Getenv, Environ: os.Environ}
			done <- m.Run(sctx, []string{"serve", "-config", cfg})
		}()
		select {
		case <-seen:
		case <-time.After(60 * time.Second): // only stops a broken build from hanging
			t.Errorf("serve never logged %q:\n%s", want, logs.String())
		}
		cancel()
		if code := <-done; code != ExitOK {
			t.Errorf("serve exit %d, want 0\n%s", code, logs.String())
		}
		return logs.String()
	}
	logs := serve(`msg="slot lease: marked done"`)
	if n := strings.Count(logs, "slot missed: no replica ran it; running it late"); n != 1 {
		t.Errorf("%d late runs, want 1:\n%s", n, logs)
	}
	for _, u := range []string{"gus", "hal"} {
		ms := e.emails(t, u+"@acme.example")
		if len(ms) != 1 {
			t.Fatalf("%s got %d emails, want 1", u, len(ms))
		}
		if !strings.Contains(ms[0].Text, "This digest was due on 1 January") || !strings.Contains(ms[0].Text, "goes out late") {
			t.Errorf("%s's email does not say it is late:\n%s", u, ms[0].Text)
		}
		if u == "gus" && len(reportKeys(ms[0])) != 2 || u == "hal" && strings.Contains(ms[0].Text, "after-1") {
			t.Errorf("%s's digest holds the wrong reports: %v", u, reportKeys(ms[0]))
		}
	}
	runs, _, err := readHistory(ctx, e.s3, c, "it", time.Time{}, false)
	if err != nil {
		t.Fatal(err)
	}
	var late *runRecord
	for _, r := range runs {
		if r.Command == "serve" {
			late = r
		}
	}
	if late == nil || !late.Late || !late.PlannedAt.Equal(slot) || !late.StartedAt.After(slot) || late.Counts.Pending != 1 || late.Counts.Sent != 2 {
		t.Fatalf("run record = %+v; want late, planned %s, started later, sent 2, pending 1", late, slot)
	}
	// The slot's record says what it delivered, not its ingest's zeros.
	const did = "2 users with 3 events due: 3 delivered, 1 left pending"
	if k := late.Counts; !late.Digest || k.Users != 2 || k.Due != 3 || k.Delivered != 3 {
		t.Errorf("run record counts = %+v; want %s", k, did)
	}
	for _, args := range [][]string{{"history", "-config", cfg, "-run", late.RunID}, {"history", "-config", cfg}, {"status", "-config", cfg}} {
		var stdout, stderr bytes.Buffer
		m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: os.Getenv, Environ: os.Environ}
		if code := m.Run(ctx, args); code != ExitOK || !strings.Contains(stdout.String(), did) {
			t.Errorf("%s: exit %d; want it to say %q:\n%s%s", args[0], code, did, stdout.String(), stderr.String())
		}
	}

	var stdout, stderr bytes.Buffer
	m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: os.Getenv, Environ: os.Environ}
	if code := m.Run(ctx, []string{"status", "-config", cfg, "-json"}); code != ExitOK {
		t.Fatalf("status: exit %d\n%s", code, stderr.String())
	}
	var st status
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if s := st.Schedules[0]; s.Pending == nil || *s.Pending != 1 || s.LastRun == nil || !s.LastRun.Late {
		t.Errorf("status: %s; want pending 1 and the last run late", stdout.String())
	}

	logs = serve(`msg="slot check at start: the latest slot is done"`)
	if strings.Contains(logs, "running it late") {
		t.Errorf("the second start ran the slot again:\n%s", logs)
	}
	if n := len(e.emails(t, "gus@acme.example")); n != 1 {
		t.Errorf("gus got %d emails after the second start, want 1", n)
	}
}

// TestIngestIsNotARunOfTheSchedule: a digest's ingest, every
// ingest_every, is counted as kind="ingest": an ingest of an empty
// queue, or one that stores events, is not a success of the schedule,
// and moves none of the progress /healthz's stuck-run check reads. The
// slot's run, ingest and delivery, counts once, as kind="slot".
func TestIngestIsNotARunOfTheSchedule(t *testing.T) {
	e := newITEnv(t, "goaws")
	q, dlq := e.queues(t)
	cfg := e.config(t, q, dlq)
	e.digestConfig(t, cfg, `cron: "0 7 * * 1-5"`, "")
	ctx := context.Background()
	c, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := &Main{Stdout: io.Discard, Stderr: io.Discard, Getenv: os.Getenv, Environ: os.Environ}
	a, err := m.newApp(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := c.Schedule("it")
	ws, err := a.scheduleWorkers(s)
	if err != nil {
		t.Fatal(err)
	}
	a.obs.metrics.Schedule(s.Name, period(s))
	scrape := func() string {
		rec := httptest.NewRecorder()
		a.obs.metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}

	ingestJob(ctx, a, s, ws.ingest)() // an empty queue
	e.put(t, "digest/ing/a.pdf", nil)
	e.send(t, q, nativeBody("ing-1", "ing", nil, "digest/ing/a.pdf"))
	ingestJob(ctx, a, s, ws.ingest)() // stores the event
	body := scrape()
	for _, want := range []string{
		`reportmailer_runs_total{kind="ingest",outcome="ok",schedule="it"} 2`,
		`reportmailer_runs_total{kind="slot",outcome="ok",schedule="it"} 0`,
		`reportmailer_last_success_timestamp_seconds{kind="ingest",schedule="it"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("after two ingests, /metrics lacks %s", want)
		}
	}
	for _, not := range []string{`reportmailer_last_success_timestamp_seconds{kind="slot"`, `reportmailer_last_run_timestamp_seconds{kind="slot"`} {
		if strings.Contains(body, not) {
			t.Errorf("an ingest passes for a run of the schedule: %s", not)
		}
	}
	if at := a.obs.progressOf(s.Name).at(); !at.IsZero() {
		t.Errorf("an ingest moved the schedule's progress to %s", at)
	}

	mark := a.markRun()
	sum, err := runSlot(ctx, ws.forRun(settleRun{}), s, worker.Slot{Planned: time.Now()})
	a.recordRun(s, metrics.KindSlot, mark, sum, err)
	if err != nil || sum.Sent != 1 {
		t.Fatalf("the slot's run: sent %d, err %v; want the stored event sent", sum.Sent, err)
	}
	body = scrape()
	for _, want := range []string{
		`reportmailer_runs_total{kind="slot",outcome="ok",schedule="it"} 1`,
		`reportmailer_run_duration_seconds_count{kind="slot",schedule="it"} 1`,
		`reportmailer_last_success_timestamp_seconds{kind="slot",schedule="it"}`,
		`reportmailer_schedule_period_seconds{schedule="it"} 259200`, // Friday to Monday
	} {
		if !strings.Contains(body, want) {
			t.Errorf("after the slot's run, /metrics lacks %s", want)
		}
	}
	if a.obs.progressOf(s.Name).at().IsZero() {
		t.Error("the slot's run did not move the schedule's progress")
	}
}

// TestDrainDigestQuarantinesAnEntryTooLargeToDeadLetter: a pending
// entry that is not an event and larger than SQS takes is kept whole
// under the quarantine prefix, and its dead letter is a note naming
// it, under the declared policy; the user's event is sent, and the
// store is left empty.
func TestDrainDigestQuarantinesAnEntryTooLargeToDeadLetter(t *testing.T) {
	e := newITEnv(t, "goaws")
	q, dlq := e.queues(t)
	cfg := e.config(t, q, dlq)
	e.digestConfig(t, cfg, "max_messages: 20", "")
	c, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p := &store.Pending{Client: e.s3, Bucket: itBucket, Prefix: store.PendingPrefix(c.Ledger.Prefix, "it")}
	e.put(t, "digest/jo/a.pdf", nil)
	ev := event.Event{ID: "jo-1", User: event.User{ID: "jo", Email: "jo@acme.example", TimeZone: "UTC"},
		Reports: []event.Report{{Bucket: itBucket, Key: "digest/jo/a.pdf", Title: "a"}}}
	if err := p.Put(ctx, worker.PendingEvent{Event: ev, Ingested: time.Now().Add(-time.Hour), Body: nativeBody("jo-1", "jo", nil, "digest/jo/a.pdf")}); err != nil {
		t.Fatal(err)
	}
	var user string
	if err := p.Users(ctx, func(u string) error { user = u; return nil }); err != nil {
		t.Fatal(err)
	}
	rest := user + "/zz.json"
	huge := strings.Repeat("x", 300<<10)
	if _, err := e.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(itBucket), Key: aws.String(p.Prefix + rest), Body: strings.NewReader(huge)}); err != nil {
		t.Fatal(err)
	}

	code, out, logs := drain(t, cfg)
	if code != ExitPartial || !strings.Contains(out, "dead-lettered 1") || !strings.Contains(out, "sent 1 email") {
		t.Fatalf("drain: exit %d, %s; want the entry dead-lettered and jo's email sent\n%s", code, out, logs)
	}
	aside := store.QuarantinePrefix(c.Ledger.Prefix, "it") + rest
	if got := e.object(t, aside); got != huge {
		t.Errorf("quarantined copy holds %d bytes, want the entry's %d", len(got), len(huge))
	}
	msgs, err := e.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(dlq), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
	if err != nil || len(msgs.Messages) != 1 {
		t.Fatalf("dead letters: %v, %d; want the note", err, len(msgs.Messages))
	}
	m := msgs.Messages[0]
	var note worker.QuarantineNote
	if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &note); err != nil || note.Entry != p.Prefix+rest || note.Size != len(huge) ||
		note.Quarantined != "s3://"+itBucket+"/"+aside || aws.ToString(m.MessageAttributes["reportmailer-code"].StringValue) != string(worker.CodeLedgerUnreadable) {
		t.Errorf("dead letter %.300s (%v); want a ledger_unreadable note of %s, kept at %s", aws.ToString(m.Body), err, p.Prefix+rest, aside)
	}
	if n, err := p.Count(ctx); err != nil || n != 0 {
		t.Errorf("pending store holds %d (%v), want 0", n, err)
	}
}
