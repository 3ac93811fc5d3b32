package main

// Integration tests of the operator's commands (dlq list, redrive,
// resend, history, status) against the emulators, through the
// permission proxies under the policy declared for each command. The
// commands in docs/operations.md are the ones these tests run.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/smithy-go"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/iam"
	"github.com/reportmailer/reportmailer/worker/store"
)

// opsCommands are the commands the operator's tests run.
var opsCommands = []iam.Command{iam.Drain, iam.DLQList, iam.DLQDelete, iam.Redrive, iam.Resend, iam.History, iam.Status, iam.Keys}

// withConfig writes a copy of the config at cfg with old replaced by
// new, and widens the env's policy for it.
func (e *itEnv) withConfig(t *testing.T, cfg, old, new string) string {
	t.Helper()
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("config %s has no %q", cfg, old)
	}
	p := filepath.Join(t.TempDir(), "reportmailer.yaml")
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.allow(t, p, opsCommands...)
	return p
}

// dlqList runs "dlq list -json" and returns what it lists.
func dlqList(t *testing.T, cfg string) []deadLetter {
	t.Helper()
	code, out, errOut := run(t, "dlq", "list", "-config", cfg, "-json")
	if code != ExitOK {
		t.Fatalf("dlq list: exit %d: %s", code, errOut)
	}
	var ds []deadLetter
	if err := json.Unmarshal([]byte(out), &ds); err != nil {
		t.Fatalf("dlq list -json: %v\n%s", err, out)
	}
	return ds
}

func codesOf(ds []deadLetter) []string {
	var out []string
	for _, d := range ds {
		out = append(out, string(d.Code)+":"+strings.Join(d.EventIDs, ","))
	}
	slices.Sort(out)
	return out
}

// TestRedrive: messages dead-lettered because an extra recipient's
// domain was not allowed are redriven, once the config allows it, and
// each refused recipient then gets exactly one email (the users, who
// had theirs, get no second one); a message of another code stays in
// the dead-letter queue when the redrive is filtered by code.
func TestRedrive(t *testing.T) {
	for _, emu := range sqsEmulators {
		t.Run(emu, func(t *testing.T) {
			e := newITEnv(t, emu)
			q, dlq := e.queues(t)
			cfg := e.config(t, q, dlq, opsCommands...)
			partner := []string{"pat-" + emu + "@partner.example", "kim-" + emu + "@partner.example"}
			for i, p := range partner {
				key := "redrive/" + emu + "/r" + string(rune('0'+i)) + ".pdf"
				e.put(t, key, nil)
				e.send(t, q, nativeBody("evt-rr-"+emu+"-"+string(rune('0'+i)), "user"+string(rune('0'+i))+"-"+emu, []string{p}, key))
			}
			e.send(t, q, nativeBody("evt-gone-"+emu, "gone-"+emu, nil, "redrive/"+emu+"/missing.pdf"))
			if code, out, logs := drain(t, cfg); code != ExitPartial || !strings.Contains(out, "dead-lettered 3") {
				t.Fatalf("first drain: exit %d: %s\n%s", code, out, logs)
			}
			want := []string{"object_missing:evt-gone-" + emu, "recipient_refused:evt-rr-" + emu + "-0", "recipient_refused:evt-rr-" + emu + "-1"}
			ds := dlqList(t, cfg)
			if got := codesOf(ds); !slices.Equal(got, want) {
				t.Fatalf("dlq list: %v, want %v", got, want)
			}
			for _, d := range ds {
				if d.Schedule != "it" || d.SourceQueue != q || d.FirstFailed.IsZero() || d.Reason == "" || (d.Code == "recipient_refused" && (d.Class != "permanent" || !strings.HasPrefix(d.User, "user"))) {
					t.Errorf("dlq list entry %+v lacks its class, user, schedule, source queue, reason or failure time", d)
				}
			}
			// The table says the same, and listing twice lists the same:
			// each message was put back.
			code, table, _ := run(t, "dlq", "list", "-config", cfg)
			if code != ExitOK || !strings.Contains(table, "recipient_refused") || !strings.Contains(table, "3 dead letters; each was made visible again") {
				t.Errorf("dlq list: exit %d:\n%s", code, table)
			}

			// A dry run moves nothing.
			code, out, errOut := run(t, "redrive", "-config", cfg, "-code", "recipient_refused", "-dry-run")
			if code != ExitOK || !strings.Contains(out, "redrive: would move 2, left 1") {
				t.Fatalf("redrive -dry-run: exit %d: %s%s", code, out, errOut)
			}
			if got := codesOf(dlqList(t, cfg)); !slices.Equal(got, want) {
				t.Fatalf("after a dry run, dlq list: %v, want %v", got, want)
			}

			allowed := e.withConfig(t, cfg, "allowed_domains: [acme.example]", "allowed_domains: [acme.example, partner.example]")
			code, out, errOut = run(t, "redrive", "-config", allowed, "-code", "recipient_refused")
			if code != ExitOK || !strings.Contains(out, "redrive: moved 2, left 1") || strings.Count(out, "moved it ") != 2 {
				t.Fatalf("redrive: exit %d: %s%s", code, out, errOut)
			}
			if got := codesOf(dlqList(t, allowed)); !slices.Equal(got, want[:1]) {
				t.Errorf("after the redrive, dlq list: %v, want the object_missing one alone", got)
			}
			if code, out, logs := drain(t, allowed); code != ExitOK || !strings.Contains(out, "sent 2 emails") || !strings.Contains(out, "duplicates 2") {
				t.Fatalf("drain after the redrive: exit %d: %s\n%s", code, out, logs)
			}
			for i, p := range partner {
				if got := e.emails(t, p); len(got) != 1 {
					t.Errorf("%s got %d emails, want exactly 1", p, len(got))
				}
				if got := e.emails(t, "user"+string(rune('0'+i))+"-"+emu+"@acme.example"); len(got) != 1 {
					t.Errorf("user %d got %d emails, want exactly 1", i, len(got))
				}
			}
			if !e.queueEmpty(t, q) {
				t.Error("the queue is not empty after the drain")
			}

			// Messages SQS's RedrivePolicy moved carry no attributes of
			// ours: they are listed as max_receives, and redriven by it.
			e.send(t, dlq, nativeBody("evt-mr1-"+emu, "mo-"+emu, nil, "redrive/"+emu+"/r0.pdf"))
			e.send(t, dlq, nativeBody("evt-mr2-"+emu, "mo-"+emu, nil, "redrive/"+emu+"/r1.pdf"))
			gone := want[0]
			want = []string{"max_receives:evt-mr1-" + emu, "max_receives:evt-mr2-" + emu, gone}
			if got := codesOf(dlqList(t, allowed)); !slices.Equal(got, want) {
				t.Fatalf("dlq list: %v, want %v", got, want)
			}
			for i, wantOut := range []string{"redrive: moved 1, left 2", "redrive: moved 1, left 1"} {
				if code, out, errOut := run(t, "redrive", "-config", allowed, "-code", "max_receives", "-max", "1"); code != ExitOK || !strings.Contains(out, wantOut) {
					t.Fatalf("redrive -max 1 (%d): exit %d: %s%s", i, code, out, errOut)
				}
			}
			if code, out, logs := drain(t, allowed); code != ExitOK || !strings.Contains(out, "sent 2 emails") {
				t.Fatalf("drain after the max_receives redrive: exit %d: %s\n%s", code, out, logs)
			}
			if got := codesOf(dlqList(t, allowed)); !slices.Equal(got, []string{gone}) {
				t.Errorf("dlq list at the end: %v, want the object_missing one alone", got)
			}

			// Unfiltered, with -include-maybe-sent: an SQS message move
			// task where the endpoint has one, else message by message.
			code, out, errOut = run(t, "redrive", "-config", allowed, "-include-maybe-sent")
			if code != ExitOK || !(strings.Contains(out, "COMPLETED: moved 1 of 1") && strings.Contains(out, "redrive: moved 1,") || strings.Contains(out, "redrive: moved 1, left 0") && strings.Contains(errOut, "no message move task")) {
				t.Fatalf("unfiltered redrive: exit %d: %s%s", code, out, errOut)
			}
			t.Logf("unfiltered redrive on %s:\n%s%s", emu, out, errOut)
			if ds := dlqList(t, allowed); len(ds) != 0 || e.queueEmpty(t, q) {
				t.Errorf("after an unfiltered redrive, dlq list %v and the queue is empty: %v", codesOf(ds), e.queueEmpty(t, q))
			}
		})
	}
}

// TestResend: a delivery left maybe sent (SES answered 500) is listed
// by dlq list with its code, skipped by redrive, refused by resend
// without -force, and sent exactly once with it, the dead letter then
// deleted; a second resend -force (from the body in a file) sends it
// again and is recorded as the second resend.
func TestResend(t *testing.T) {
	for _, emu := range sqsEmulators {
		t.Run(emu, func(t *testing.T) {
			e := newITEnv(t, emu)
			q, dlq := e.queues(t)
			cfg := e.config(t, q, dlq, opsCommands...)
			set := sharedLeastPrivilege(t, e, leastPrivilege(t, cfg, opsCommands...), nil)
			set.SES.Inject(awsproxy.Fault{Operation: "SendEmail", Status: 500, Times: 1})
			id, user := "evt-resend-"+emu, "rita-"+emu
			addr := user + "@acme.example"
			key := "resend/" + emu + "/r.pdf"
			e.put(t, key, nil)
			body := nativeBody(id, user, nil, key)
			e.send(t, q, body)
			if code, out, logs := drain(t, cfg); code != ExitPartial || !strings.Contains(out, "maybe sent 1") {
				t.Fatalf("drain: exit %d: %s\n%s", code, out, logs)
			}
			if got := codesOf(dlqList(t, cfg)); !slices.Equal(got, []string{"maybe_sent:" + id}) {
				t.Fatalf("dlq list: %v, want the maybe_sent one", got)
			}
			code, out, _ := run(t, "redrive", "-config", cfg)
			if code != ExitOK || !strings.Contains(out, "redrive: moved 0, left 0 (filtered out or over -max), 1 maybe sent") || !strings.Contains(out, "reportmailer resend -config FILE -event-id "+id) {
				t.Errorf("redrive: exit %d: %s", code, out)
			}

			code, out, errOut := run(t, "resend", "-config", cfg, "-event-id", id, "-dry-run")
			if code != ExitOK || !strings.Contains(out, "maybe sent: sending since") || !strings.Contains(out, "resend: dry run: would send 0, skip 1") {
				t.Fatalf("resend -dry-run: exit %d: %s%s", code, out, errOut)
			}
			code, out, errOut = run(t, "resend", "-config", cfg, "-event-id", id)
			if code != ExitPartial || !strings.Contains(out, "maybe sent: sending since") || !strings.Contains(out, "skip: give -force") || !strings.Contains(errOut, "nothing sent") ||
				!strings.Contains(out, "event "+id+" of user "+user+" <"+addr+">, schedule it: 1 reports: s3://"+itBucket+"/"+key) {
				t.Fatalf("resend without -force: exit %d: %s%s", code, out, errOut)
			}
			if n := len(e.emails(t, addr)); n != 0 {
				t.Fatalf("resend without -force sent %d emails", n)
			}

			code, out, errOut = run(t, "resend", "-config", cfg, "-event-id", id, "-force", "-by", "ops-on-call")
			if code != ExitOK || !strings.Contains(out, "will send AGAIN (-force)") || !strings.Contains(out, "resend 1 of this delivery, recorded by ops-on-call") || !strings.Contains(out, "deleted dead letter") {
				t.Fatalf("resend -force: exit %d: %s%s", code, out, errOut)
			}
			if n := len(e.emails(t, addr)); n != 1 {
				t.Fatalf("after resend -force, %d emails, want exactly 1", n)
			}
			if ds := dlqList(t, cfg); len(ds) != 0 {
				t.Errorf("the dead letter is still there: %v", codesOf(ds))
			}

			file := filepath.Join(t.TempDir(), "event.json")
			os.WriteFile(file, []byte(body), 0o644)
			code, out, errOut = run(t, "resend", "-config", cfg, "-event", file, "-force", "-by", "ops-second")
			if code != ExitOK || !strings.Contains(out, "sent at") || !strings.Contains(out, "resend 2 of this delivery, recorded by ops-second") {
				t.Fatalf("second resend -force: exit %d: %s%s", code, out, errOut)
			}
			if n := len(e.emails(t, addr)); n != 2 {
				t.Errorf("after the second resend -force, %d emails, want 2", n)
			}
			l := &store.Ledger{Client: e.s3, Bucket: itBucket, Prefix: "reportmailer/ledger/"}
			rec, ok, err := l.Lookup(t.Context(), worker.DeliveryKey(id, addr))
			if err != nil || !ok || rec.State != "sent" || len(rec.Resends) != 2 || rec.Resends[0].By != "ops-on-call" || rec.Resends[1].By != "ops-second" ||
				rec.Resends[0].MessageID == "" || rec.Resends[1].MessageID == rec.Resends[0].MessageID || !rec.Resends[0].Forced || rec.Resends[0].Was != "sending" || rec.Resends[1].Was != "sent" {
				t.Errorf("ledger record %+v (%v, %v), want sent with two resends, by ops-on-call then ops-second", rec, ok, err)
			}
			// What each forced resend replaced stays on the record.
			if len(rec.Resends) == 2 {
				p0, p1 := rec.Resends[0].Previous, rec.Resends[1].Previous
				if p0 == nil || p0.SendingAt.IsZero() || p0.EmailID == "" || p0.Attempts < 1 || p0.MessageID != "" || p0.RunID == "" {
					t.Errorf("first resend's previous send %+v, want the maybe-sent attempt: its email id, sending time, attempts and run", p0)
				}
				if p1 == nil || p1.MessageID != rec.Resends[0].MessageID || !p1.SentAt.Equal(rec.Resends[0].At) || p1.Attempts < 1 {
					t.Errorf("second resend's previous send %+v, want the first resend's message %s sent at %s", p1, rec.Resends[0].MessageID, rec.Resends[0].At)
				}
			}

			// The event's deliveries are listed from its index, with one
			// ListObjectsV2.
			if recs, err := l.EventDeliveries(t.Context(), id); err != nil || len(recs) != 1 || recs[0].Recipient != addr || recs[0].EventID != id || len(recs[0].Resends) != 2 {
				t.Errorf("EventDeliveries(%s) = %+v, %v; want the one delivery to %s", id, recs, err, addr)
			}

			// -to must be one of the event's recipients, and pass the policy.
			if code, _, errOut := run(t, "resend", "-config", cfg, "-event", file, "-to", "x@evil.example", "-dry-run"); code != ExitUsage || !strings.Contains(errOut, "not a recipient") {
				t.Errorf("resend -to a stranger: exit %d: %s", code, errOut)
			}
		})
	}
}

// TestHistoryAndStatus: each drain writes one run record; history
// lists the runs with their counts and shows one in full with each
// delivery; status shows the schedule's next run in its zone, its last
// run, the queue depths, the SES quota and the signing key; a paused
// schedule is not drained and status says so.
func TestHistoryAndStatus(t *testing.T) {
	for _, emu := range sqsEmulators {
		t.Run(emu, func(t *testing.T) {
			e := newITEnv(t, emu)
			q, dlq := e.queues(t)
			cfg := e.withConfig(t, e.config(t, q, dlq, opsCommands...), "budget: 1m}", `budget: 1m, cron: "0 7 * * *", time_zone: Europe/London}`)
			key := "history/" + emu + "/h.pdf"
			e.put(t, key, nil)
			e.send(t, q, nativeBody("evt-h1-"+emu, "hana-"+emu, nil, key))
			e.send(t, q, nativeBody("evt-h2-"+emu, "hana-"+emu, nil, "history/"+emu+"/missing.pdf"))
			if code, out, logs := drain(t, cfg); code != ExitPartial {
				t.Fatalf("first drain: exit %d: %s\n%s", code, out, logs)
			}
			e.send(t, q, nativeBody("evt-h3-"+emu, "hugo-"+emu, nil, key))
			if code, out, logs := drain(t, cfg); code != ExitOK {
				t.Fatalf("second drain: exit %d: %s\n%s", code, out, logs)
			}

			code, out, errOut := run(t, "history", "-config", cfg, "-json")
			if code != ExitOK {
				t.Fatalf("history: exit %d: %s", code, errOut)
			}
			var runs []*runRecord
			if err := json.Unmarshal([]byte(out), &runs); err != nil || len(runs) != 2 {
				t.Fatalf("history -json: %v, %d runs:\n%s", err, len(runs), out)
			}
			first, second := runs[0], runs[1]
			if first.Schedule != "it" || first.Command != "drain" || first.Outcome != "incomplete" || first.Counts.Received != 2 || first.Counts.Sent != 1 || first.Counts.DeadLettered != 1 ||
				second.Outcome != "ok" || second.Counts.Received != 1 || second.Counts.Sent != 1 || first.EndedAt.Before(first.StartedAt) || first.RunID == second.RunID {
				t.Errorf("runs: %+v\n%+v", first, second)
			}
			var got []string
			for _, d := range first.Deliveries {
				got = append(got, d.EventID+" "+d.Recipient+" "+string(d.Outcome)+" "+string(d.Code)+" "+strconv.FormatBool(d.MessageID != ""))
			}
			slices.Sort(got)
			want := []string{"evt-h1-" + emu + " hana-" + emu + "@acme.example delivered  true", "evt-h2-" + emu + "  permanent object_missing false"}
			if !slices.Equal(got, want) {
				t.Errorf("first run's deliveries %q, want %q", got, want)
			}
			code, out, _ = run(t, "history", "-config", cfg, "-run", second.RunID)
			if code != ExitOK || !strings.Contains(out, "run "+second.RunID+" of it (drain): ok") || !strings.Contains(out, "evt-h3-"+emu) ||
				!strings.Contains(out, "hugo-"+emu+"@acme.example") || !strings.Contains(out, second.Deliveries[0].MessageID) {
				t.Errorf("history -run: exit %d:\n%s", code, out)
			}
			code, out, _ = run(t, "history", "-config", cfg, "-since", "1h")
			if code != ExitOK || !strings.Contains(out, first.RunID) || !strings.Contains(out, second.RunID) || !strings.Contains(out, "2 runs since") {
				t.Errorf("history: exit %d:\n%s", code, out)
			}

			code, out, errOut = run(t, "status", "-config", cfg, "-json")
			if code != ExitOK {
				t.Fatalf("status: exit %d: %s", code, errOut)
			}
			var st status
			if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Schedules) != 1 {
				t.Fatalf("status -json: %v:\n%s", err, out)
			}
			s := st.Schedules[0]
			london, _ := time.LoadLocation("Europe/London")
			if next := s.Next.In(london); next.Hour() != 7 || next.Minute() != 0 || !next.After(time.Now()) || next.After(time.Now().Add(25*time.Hour)) {
				t.Errorf("next run %s, want the next 07:00 in Europe/London", s.Next)
			}
			if s.LastRun == nil || s.LastRun.RunID != second.RunID {
				t.Errorf("last run %+v, want %s", s.LastRun, second.RunID)
			}
			if s.Queue != (queueDepth{URL: q}) || s.DeadLetter != (queueDepth{URL: dlq, Visible: 1}) {
				t.Errorf("depths %+v, %+v; want an empty queue and one dead letter", s.Queue, s.DeadLetter)
			}
			if st.SES.Error != "" || st.SES.Max24Hour != 50000 || st.SES.MaxSendRate != 14 || st.SES.Sandbox || !st.SES.SendingEnabled {
				t.Errorf("SES %+v, want the emulator's account", st.SES)
			}
			if len(st.Keys) != 1 || st.Keys[0].ID != itKeyID || !st.Keys[0].Active || st.Keys[0].SafeToRemove.Before(time.Now().Add(47*time.Hour)) ||
				st.Keys[0].FirstUsed.Before(e.started.Add(-time.Second)) || st.Keys[0].FirstUsed.After(time.Now()) {
				t.Errorf("keys %+v, want the active test key, safe to remove after the links it signed expire", st.Keys)
			}
			code, out, _ = run(t, "status", "-config", cfg)
			if code != ExitOK || !strings.Contains(out, "0/0/0") || !strings.Contains(out, "1/0/0") || !strings.Contains(out, "SES: quota 50000 per 24h") || !strings.Contains(out, "key "+itKeyID+" (active)") {
				t.Errorf("status: exit %d:\n%s", code, out)
			}

			// The dead letter, dealt with otherwise, is deleted by event id.
			code, out, errOut = run(t, "dlq", "delete", "-config", cfg, "-event-id", "evt-h2-"+emu, "-dry-run")
			if code != ExitOK || !strings.Contains(out, "would delete it ") || !strings.Contains(out, "dlq delete: would delete 1") || len(dlqList(t, cfg)) != 1 {
				t.Errorf("dlq delete -dry-run: exit %d: %s%s", code, out, errOut)
			}
			code, out, errOut = run(t, "dlq", "delete", "-config", cfg, "-event-id", "evt-h2-"+emu+",evt-nowhere")
			if code != ExitPartial || !strings.Contains(out, "dlq delete: deleted 1") || !strings.Contains(errOut, "event evt-nowhere: in no dead-letter queue") {
				t.Errorf("dlq delete: exit %d: %s%s", code, out, errOut)
			}
			if ds := dlqList(t, cfg); len(ds) != 0 {
				t.Errorf("after dlq delete, dlq list %v", codesOf(ds))
			}

			// Paused: drain receives nothing and says so; status too.
			paused := e.withConfig(t, cfg, "time_zone: Europe/London}", "time_zone: Europe/London, paused: true}")
			e.send(t, q, nativeBody("evt-h4-"+emu, "hugo-"+emu, nil, key))
			if code, out, _ := drain(t, paused); code != ExitOK || !strings.Contains(out, "paused (paused: true in the config)") {
				t.Errorf("drain of a paused schedule: exit %d: %s", code, out)
			}
			if e.queueEmpty(t, q) {
				t.Error("a paused schedule's queue was drained")
			}
			if code, out, _ := run(t, "status", "-config", paused); code != ExitOK || !strings.Contains(out, "paused") {
				t.Errorf("status of a paused schedule: exit %d:\n%s", code, out)
			}

			// A record that is no run record is skipped, with a warning
			// naming it; the runs around it are still listed.
			junk := historyKey("reportmailer/ledger/history/", "it", "drain", time.Now(), "junk")
			e.put(t, junk, nil)
			code, out, errOut = run(t, "history", "-config", cfg, "-since", "1h")
			if code != ExitOK || !strings.Contains(out, first.RunID) || !strings.Contains(out, second.RunID) || !strings.Contains(errOut, "skipped a run record") || !strings.Contains(errOut, junk) {
				t.Errorf("history with a junk record: exit %d:\n%s%s", code, out, errOut)
			}
			if code, out, errOut := run(t, "status", "-config", cfg); code != ExitOK || !strings.Contains(errOut, "skipped a run record") || strings.Contains(out, "none recorded") {
				t.Errorf("status with a junk record: exit %d:\n%s%s", code, out, errOut)
			}
		})
	}
}

// TestResendKeepsUnfinishedDeadLetter: a resend that leaves some of a
// dead letter's emails unsent keeps the dead letter: with -to (one
// recipient only), and with -force on a recipient_refused letter whose
// refused recipient is still not allowed.
func TestResendKeepsUnfinishedDeadLetter(t *testing.T) {
	for _, emu := range sqsEmulators {
		t.Run(emu, func(t *testing.T) {
			e := newITEnv(t, emu)
			q, dlq := e.queues(t)
			cfg := e.config(t, q, dlq, opsCommands...)
			id, user, partner := "evt-keep-"+emu, "kate-"+emu, "pia-"+emu+"@partner.example"
			addr := user + "@acme.example"
			key := "keep/" + emu + "/r.pdf"
			e.put(t, key, nil)
			e.send(t, q, nativeBody(id, user, []string{partner}, key))
			if code, out, logs := drain(t, cfg); code != ExitPartial || !strings.Contains(out, "dead-lettered 1") {
				t.Fatalf("drain: exit %d: %s\n%s", code, out, logs)
			}
			want := []string{"recipient_refused:" + id}

			code, out, errOut := run(t, "resend", "-config", cfg, "-event-id", id, "-to", addr, "-force")
			if code != ExitOK || !strings.Contains(out, "resend 1 of this delivery") || !strings.Contains(out, "stays: -to sends to one recipient only") {
				t.Fatalf("resend -to -force: exit %d: %s%s", code, out, errOut)
			}
			if got := codesOf(dlqList(t, cfg)); !slices.Equal(got, want) {
				t.Errorf("after resend -to, dlq list %v, want %v: the partner never got theirs", got, want)
			}

			code, out, errOut = run(t, "resend", "-config", cfg, "-event-id", id, "-force")
			if code != ExitPartial || !strings.Contains(out, "resend 2 of this delivery") || !strings.Contains(out, "stays: the recipient policy refuses") {
				t.Fatalf("resend -force of a recipient_refused letter: exit %d: %s%s", code, out, errOut)
			}
			if got := codesOf(dlqList(t, cfg)); !slices.Equal(got, want) {
				t.Errorf("after resend -force, dlq list %v, want %v: the partner never got theirs", got, want)
			}
			if n, p := len(e.emails(t, addr)), len(e.emails(t, partner)); n != 3 || p != 0 {
				t.Errorf("%s got %d emails (want 3: the run's and two resends), %s got %d (want 0)", addr, n, partner, p)
			}

			// Kept, it is redriven once the partner is allowed, and the
			// partner alone gets an email.
			allowed := e.withConfig(t, cfg, "allowed_domains: [acme.example]", "allowed_domains: [acme.example, partner.example]")
			if code, out, errOut := run(t, "redrive", "-config", allowed, "-event-id", id, "-dry-run"); code != ExitOK || !strings.Contains(out, "redrive: would move 1, left 0") {
				t.Fatalf("redrive -event-id -dry-run: exit %d: %s%s", code, out, errOut)
			}
			if code, out, errOut := run(t, "redrive", "-config", allowed, "-event-id", id); code != ExitOK || !strings.Contains(out, "redrive: moved 1, left 0") {
				t.Fatalf("redrive -event-id: exit %d: %s%s", code, out, errOut)
			}
			if code, out, logs := drain(t, allowed); code != ExitOK || !strings.Contains(out, "sent 1 email") {
				t.Fatalf("drain after the redrive: exit %d: %s\n%s", code, out, logs)
			}
			if n, p := len(e.emails(t, addr)), len(e.emails(t, partner)); n != 3 || p != 1 {
				t.Errorf("after the redrive, %s got %d emails (want still 3), %s got %d (want 1)", addr, n, partner, p)
			}
		})
	}
}

// TestRedriveMoveTaskRefused: an unfiltered redrive moves message by
// message only where the endpoint has no message move task (the
// emulators' own answer); when SQS refuses the task (AccessDenied) it
// fails, saying so, and moves nothing.
func TestRedriveMoveTaskRefused(t *testing.T) {
	for _, emu := range sqsEmulators {
		t.Run(emu, func(t *testing.T) {
			e := newITEnv(t, emu)
			q, dlq := e.queues(t)
			cfg := e.config(t, q, dlq, opsCommands...)
			set := sharedLeastPrivilege(t, e, leastPrivilege(t, cfg, opsCommands...), nil)
			e.send(t, dlq, nativeBody("evt-mt-"+emu, "mo-"+emu, nil, "mt/"+emu+"/r.pdf"))
			set.SQS.Inject(awsproxy.Fault{Operation: "StartMessageMoveTask", Status: 403, Code: "AccessDenied", Message: "not allowed to start a move task", Times: 1})
			code, out, errOut := run(t, "redrive", "-config", cfg, "-include-maybe-sent")
			if code != ExitFailure || !strings.Contains(errOut, "start message move task") || !strings.Contains(errOut, "AccessDenied") || strings.Contains(out, "moved it ") {
				t.Fatalf("redrive with the move task refused: exit %d: %s%s", code, out, errOut)
			}
			if got := codesOf(dlqList(t, cfg)); !slices.Equal(got, []string{"max_receives:evt-mt-" + emu}) {
				t.Errorf("after the refused redrive, dlq list %v, want the message still there", got)
			}
			code, out, errOut = run(t, "redrive", "-config", cfg, "-include-maybe-sent")
			if code != ExitOK || !strings.Contains(errOut, "no message move task") || !strings.Contains(out, "redrive: moved 1, left 0") {
				t.Fatalf("redrive where the emulator has no move task: exit %d: %s%s", code, out, errOut)
			}
		})
	}
}

// TestMoveTaskUnsupported: which errors of StartMessageMoveTask mean
// "no such operation here" (move by hand) and which are the operator's.
func TestMoveTaskUnsupported(t *testing.T) {
	for _, tt := range []struct {
		code string
		want bool
	}{
		{"InvalidAction", true},
		{"UnsupportedOperation", true},
		{"UnknownOperationException", true},
		{"AccessDenied", false},
		{"AccessDeniedException", false},
		{"RequestThrottled", false},
		{"ResourceNotFoundException", false},
	} {
		err := fmt.Errorf("start: %w", &smithy.GenericAPIError{Code: tt.code, Message: "m"})
		if got := moveTaskUnsupported(err); got != tt.want {
			t.Errorf("moveTaskUnsupported(%s) = %v, want %v", tt.code, got, tt.want)
		}
	}
	if moveTaskUnsupported(errors.New("dial tcp: connection refused")) {
		t.Error("a network error is taken for a missing operation")
	}
}

// TestResendReportsUndeletedDeadLetter: when every email of a resend
// went out but the dead letter cannot be deleted, resend says so, with
// the command that deletes it, and exits 3; the letter is still listed.
func TestResendReportsUndeletedDeadLetter(t *testing.T) {
	for _, emu := range sqsEmulators {
		t.Run(emu, func(t *testing.T) {
			e := newITEnv(t, emu)
			q, dlq := e.queues(t)
			cfg := e.config(t, q, dlq, opsCommands...)
			set := sharedLeastPrivilege(t, e, leastPrivilege(t, cfg, opsCommands...), nil)
			id, user := "evt-undel-"+emu, "ursula-"+emu
			key := "undel/" + emu + "/r.pdf"
			e.put(t, key, nil)
			e.send(t, dlq, nativeBody(id, user, nil, key))
			set.SQS.Inject(awsproxy.Fault{Operation: "DeleteMessage", Match: func(c awsproxy.Call) bool { return c.QueueURL == dlq }, Status: 403, Code: "AccessDenied", Message: "no delete"})
			code, out, errOut := run(t, "resend", "-config", cfg, "-event-id", id)
			if code != ExitPartial || !strings.Contains(out, "resend 1 of this delivery") || !strings.Contains(out, "is STILL in "+dlq) ||
				!strings.Contains(out, "reportmailer dlq delete -config FILE -event-id "+id) || !strings.Contains(errOut, "every email went out") {
				t.Fatalf("resend with the delete refused: exit %d: %s%s", code, out, errOut)
			}
			if n := len(e.emails(t, user+"@acme.example")); n != 1 {
				t.Errorf("%d emails, want 1", n)
			}
			if got := codesOf(dlqList(t, cfg)); !slices.Equal(got, []string{"max_receives:" + id}) {
				t.Errorf("dlq list %v, want the dead letter still there", got)
			}
		})
	}
}

// TestDLQListReportsHiddenMessages: dlq list puts messages back with
// the batch call where the endpoint has it, and when SQS refuses to
// make them visible again it says so, naming them, and exits 3 instead
// of claiming each was made visible.
func TestDLQListReportsHiddenMessages(t *testing.T) {
	for _, emu := range sqsEmulators {
		t.Run(emu, func(t *testing.T) {
			e := newITEnv(t, emu)
			q, dlq := e.queues(t)
			cfg := e.config(t, q, dlq, opsCommands...)
			set := sharedLeastPrivilege(t, e, leastPrivilege(t, cfg, opsCommands...), nil)
			e.send(t, dlq, nativeBody("evt-hid1-"+emu, "hid-"+emu, nil, "hid/r.pdf"))
			e.send(t, dlq, nativeBody("evt-hid2-"+emu, "hid-"+emu, nil, "hid/r.pdf"))
			if got := dlqList(t, cfg); len(got) != 2 {
				t.Fatalf("dlq list: %v, want 2", codesOf(got))
			}
			batch, single := set.SQS.Counts("ChangeMessageVisibilityBatch"), set.SQS.Counts("ChangeMessageVisibility")
			if batch.Seen != 1 || emu == "fauxqs" && single.Seen != 0 {
				t.Errorf("putting 2 back: %d batch calls and %d single ones, want 1 batch (and no single one where the batch works)", batch.Seen, single.Seen)
			}

			for _, op := range []string{"ChangeMessageVisibilityBatch", "ChangeMessageVisibility"} {
				set.SQS.Inject(awsproxy.Fault{Operation: op, Status: 403, Code: "AccessDenied", Message: "no visibility"})
			}
			code, out, errOut := run(t, "dlq", "list", "-config", cfg)
			if code != ExitPartial || strings.Contains(out, "each was made visible again") || !strings.Contains(out, "2 dead letters; some could NOT be made visible again") ||
				!strings.Contains(errOut, "2 messages") || !strings.Contains(errOut, "AccessDenied") {
				t.Errorf("dlq list with visibility refused: exit %d: %s%s", code, out, errOut)
			}
		})
	}
}

// TestResendSaysCovered: resend tells a delivery recorded covered (a
// digest's older event whose reports newer events' emails showed) from
// one sent as an email of its own, naming those emails, and sends it
// again only with -force.
func TestResendSaysCovered(t *testing.T) {
	e := newITEnv(t, sqsEmulators[0])
	q, dlq := e.queues(t)
	cfg := e.config(t, q, dlq, opsCommands...)
	id, user := "evt-covered", "cora"
	addr := user + "@acme.example"
	key := "resend/covered/r.pdf"
	e.put(t, key, nil)
	l := &store.Ledger{Client: e.s3, Bucket: itBucket, Prefix: "reportmailer/ledger/"}
	c, err := l.Claim(t.Context(), worker.ClaimRequest{Key: worker.DeliveryKey(id, addr), RunID: "run-1",
		Delivery: worker.Delivery{EventID: id, Recipient: addr, Schedule: "it"}})
	if err != nil || c.State != worker.Claimed {
		t.Fatalf("claim = %+v, %v", c, err)
	}
	if err := l.Cover(t.Context(), &c, []string{"email-newer"}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "event.json")
	os.WriteFile(file, []byte(nativeBody(id, user, nil, key)), 0o644)
	code, out, errOut := run(t, "resend", "-config", cfg, "-event", file, "-dry-run")
	if code != ExitOK || !strings.Contains(out, "covered at ") || !strings.Contains(out, "its reports went out in newer events' emails email-newer") ||
		!strings.Contains(out, "skip: give -force") || strings.Contains(out, "as SES message") {
		t.Errorf("resend -dry-run of a covered delivery: exit %d: %s%s", code, out, errOut)
	}
}
