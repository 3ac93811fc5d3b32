package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker/store"
)

// lineSignals is serve's log, passing on each line that contains want
// as it is written.
type lineSignals struct {
	mu    sync.Mutex
	b     bytes.Buffer
	part  []byte
	want  []string
	lines chan string
}

func (w *lineSignals) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	w.part = append(w.part, p...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		line := string(w.part[:i])
		w.part = w.part[i+1:]
		for _, want := range w.want {
			if strings.Contains(line, want) {
				select {
				case w.lines <- line:
				default: // more than the test waits for
				}
				break
			}
		}
	}
	return len(p), nil
}

func (w *lineSignals) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestServeIngestsEveryIngestEvery: serve moves a digest's queue into
// its pending store every ingest_every, no more often and no less: a
// message sent just after an ingest waits for the next, one interval
// after the last, and none waits on the queue much longer than one
// interval. The slot (once a year) and its catch-up (every 5m) stay out
// of the way. Each ingest that received a message writes its record,
// which is the signal the test waits on. status then shows no run of
// the schedule (no slot ran) and the last ingest apart.
func TestServeIngestsEveryIngestEvery(t *testing.T) {
	const every = 10 * time.Second // the least ingest_every takes
	e := newITEnv(t, "goaws")
	q, dlq := e.queues(t)
	cfg := e.config(t, q, dlq)
	e.digestConfig(t, cfg, `cron: "0 0 1 1 *", ingest_every: 10s`, "slot_heartbeat: 5m")
	c, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.put(t, "digest/ivy/a.pdf", nil)

	ctx, cancel := context.WithCancel(context.Background())
	logs := &lineSignals{want: []string{`msg=serving`, `/ingest/`}, lines: make(chan string, 16)}
	done := make(chan int, 1)
	go func() {
		m := &Main{Stdout: &bytes.Buffer{}, Stderr: logs, Getenv: os.Getenv, Environ: os.Environ}
		done <- m.Run(ctx, []string{"serve", "-config", cfg})
	}()
	defer func() {
		cancel()
		if code := <-done; code != ExitOK {
			t.Errorf("serve exit %d, want 0\n%s", code, logs.String())
		}
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case l := <-logs.lines:
			return l
		case <-time.After(3 * every): // only stops a broken build from hanging
			t.Fatalf("serve never logged %s:\n%s", what, logs.String())
			return ""
		}
	}
	if l := next("serving"); !strings.Contains(l, "msg=serving") {
		t.Fatalf("first line %q, want serving", l)
	}
	var sent []time.Time
	for i, id := range []string{"ivy-1", "ivy-2"} {
		sent = append(sent, time.Now())
		e.send(t, q, nativeBody(id, "ivy", nil, "digest/ivy/a.pdf"))
		if l := next("ingest " + id); !strings.Contains(l, "run history written") {
			t.Fatalf("ingest %d: logged %q, want its record written", i+1, l)
		}
	}
	runs, skipped, err := readRuns(context.Background(), e.s3, c, "it", runsIngest, time.Time{}, false)
	if err != nil || len(skipped) != 0 || len(runs) != 2 {
		t.Fatalf("ingest records: %d, skipped %v, %v; want 2", len(runs), skipped, err)
	}
	for i, r := range runs {
		if r.Command != "ingest" || r.Counts.Received != 1 || r.Outcome != "ok" {
			t.Errorf("ingest %d: %s received %d, %s; want an ingest of one message, ok", i+1, r.Command, r.Counts.Received, r.Outcome)
		}
		// Sent at most one interval before its ingest started; stored
		// by the ingest's end, after one empty long poll (wait_time: 1s).
		waited := r.EndedAt.Sub(sent[i])
		t.Logf("message %d: sent %s, ingest started %s, ended %s: waited %s", i+1, sent[i].Format(time.StampMilli),
			r.StartedAt.Local().Format(time.StampMilli), r.EndedAt.Local().Format(time.StampMilli), waited.Round(time.Millisecond))
		if r.StartedAt.Sub(sent[i]) > every+time.Second || waited > every+3*time.Second {
			t.Errorf("message %d waited %s for its ingest, more than ingest_every (%s) and the ingest's own time", i+1, waited, every)
		}
	}
	// The second message was sent as soon as the first ingest ended: it
	// waited for the next tick, one interval after the first.
	if gap := runs[1].StartedAt.Sub(runs[0].StartedAt); gap < every-time.Second || gap > every+time.Second {
		t.Errorf("ingests started %s apart, want ingest_every (%s)", gap, every)
	}
	p := &store.Pending{Client: e.s3, Bucket: itBucket, Prefix: store.PendingPrefix(c.Ledger.Prefix, "it")}
	if n, err := p.Count(context.Background()); err != nil || n != 2 {
		t.Errorf("pending store holds %d (%v), want the 2 events", n, err)
	}
	if !e.queueEmpty(t, q) {
		t.Error("the queue still holds a message")
	}

	// status: no slot has run, whatever the ingests did; the last
	// ingest is shown apart.
	var stdout, stderr bytes.Buffer
	m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: os.Getenv, Environ: os.Environ}
	if code := m.Run(context.Background(), []string{"status", "-config", cfg, "-json"}); code != ExitOK {
		t.Fatalf("status: exit %d\n%s", code, stderr.String())
	}
	var st status
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if s := st.Schedules[0]; s.LastRun != nil || s.LastIngest == nil || s.LastIngest.RunID != runs[1].RunID {
		t.Errorf("status: last run %+v, last ingest %+v; want no run and the second ingest", s.LastRun, s.LastIngest)
	}
	stdout.Reset()
	if code := m.Run(context.Background(), []string{"status", "-config", cfg}); code != ExitOK ||
		!strings.Contains(stdout.String(), "none recorded") || !strings.Contains(stdout.String(), runs[1].RunID+"): received 1") {
		t.Errorf("status: exit %d; want no run and the last ingest:\n%s%s", code, stdout.String(), stderr.String())
	}
}
