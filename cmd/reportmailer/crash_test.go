package main

// The crash test: the production binary, built here, drains a queue of
// a few hundred events through the permission and fault proxy in front
// of the emulators, and is killed with SIGKILL at random moments, then
// restarted, until the queue is empty. Nothing may be sent twice, and
// every delivery not sent must be one the ledger left "sending": the
// one window in which no one can know whether SES accepted it.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/internal/emulator"
)

const (
	crashEvents = 300
	// crashMinKills is the fewest kills the test accepts; it aims for
	// a few more.
	crashMinKills = 15
	// crashRuns caps the runs of the binary, killed or not.
	crashRuns = 250
	// crashDeadline bounds the kill-and-restart loop. It must leave
	// room for crashGrace after the last kill.
	crashDeadline = 150 * time.Second
	// crashVisibility is the shortest visibility timeout the config
	// accepts: how long a killed run's batch stays hidden.
	crashVisibility = 10 * time.Second
	// crashClaimTimeout is how old a claim that never reached
	// "sending" must be before another run takes it over.
	crashClaimTimeout = 5 * time.Second
	// crashGrace is how long a delivery may stay "sending" (a kill
	// between SendEmail and recording its answer) before its message
	// is dead-lettered as maybe sent: the shortest ses_events.grace the
	// config accepts. The crash test has no SES event stream to settle
	// them sooner.
	crashGrace = time.Minute
)

// TestCrashLoop: REPORTMAILER_CRASH_SEED=N repeats a run's kills.
func TestCrashLoop(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("REPORTMAILER_CRASH_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("REPORTMAILER_CRASH_SEED=%q: %v", s, err)
		}
		seed = n
	}
	t.Logf("seed %d (REPORTMAILER_CRASH_SEED=%d repeats it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))

	dir := t.TempDir()
	bin := filepath.Join(dir, "reportmailer")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build reportmailer: %v\n%s", err, out)
	}

	e := newITEnv(t, "goaws")
	// Its own SES, fast enough that pacing does not set the pace.
	e.sesURL = emulator.StartSESLocal(t, fastSESAccount)
	t.Setenv("AWS_ENDPOINT_URL_SESV2", e.sesURL)
	q, dlq := e.queuesWith(t, 20)
	cfg := e.config(t, q, dlq)
	editConfig(t, cfg,
		"budget: 1m}", fmt.Sprintf("budget: 1m, visibility_timeout: %s}", crashVisibility),
		"ledger: {bucket: "+itBucket+"}", fmt.Sprintf("ledger: {bucket: %s, claim_timeout: %s}", itBucket, crashClaimTimeout),
		"schedules:", fmt.Sprintf("ses_events: {grace: %s}\nschedules:", crashGrace))
	set := withLeastPrivilege(t, e, cfg)
	// A few milliseconds per call, so that kills land mid-call as well
	// as between calls.
	set.SQS.SetLatency("", 3*time.Millisecond)
	set.S3.SetLatency("", 2*time.Millisecond)
	set.SES.SetLatency("", 5*time.Millisecond)

	events := make([]outcomeEvent, crashEvents)
	for i := range events {
		ev := outcomeEvent{id: fmt.Sprintf("crash-%03d", i), user: fmt.Sprintf("cu%03d", i)}
		for j := range rng.IntN(3) { // 0 to 2 extra: 1 to 3 recipients
			ev.recipients = append(ev.recipients, fmt.Sprintf("cr%03d-%d@acme.example", i, j))
		}
		events[i] = ev
	}
	e.enqueue(t, q, "crash/", events, 1)

	wantKills := crashMinKills + 1 + rng.IntN(5)
	start := time.Now()
	deadline := start.Add(crashDeadline)
	var kills, runs, exits int
	var lastLogs string
	var finished []string // the logs of the runs that were not killed
	var current *exec.Cmd
	t.Cleanup(func() {
		if current != nil && current.ProcessState == nil {
			current.Process.Kill()
		}
	})
	for runs < crashRuns && time.Now().Before(deadline) {
		if kills >= wantKills && e.queueEmpty(t, q) {
			break
		}
		runs++
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, "drain", "-config", cfg, "-schedule", "it")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		current = cmd
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		if kills < wantKills {
			// From before the first receive to deep into a batch.
			after := time.Duration(100+rng.IntN(1900)) * time.Millisecond
			select {
			case err = <-done:
			case <-time.After(after):
				cmd.Process.Kill()
				<-done
				kills++
				t.Logf("kill %d: run %d after %s, having sent %d emails", kills, runs, after, strings.Count(stderr.String(), "msg=sent "))
				continue
			}
		} else {
			select {
			case err = <-done:
			case <-time.After(time.Until(deadline)):
				cmd.Process.Kill()
				<-done
				t.Errorf("run %d did not finish by the deadline; its last logs:\n%s", runs, tail(stderr.String(), 20))
				continue
			}
		}
		exits++
		lastLogs = stderr.String()
		finished = append(finished, lastLogs)
		// 0, or 3 when messages were dead-lettered or left for retry;
		// anything else means the run could not work.
		if code := cmd.ProcessState.ExitCode(); code != ExitOK && code != ExitPartial {
			t.Fatalf("run %d: exit %d (%v): %s\n%s", runs, code, err, stdout.String(), stderr.String())
		}
	}
	took := time.Since(start).Round(time.Second)
	if kills < crashMinKills {
		t.Errorf("only %d kills in %d runs, want at least %d", kills, runs, crashMinKills)
	}
	if !e.queueEmpty(t, q) {
		t.Errorf("the queue did not drain in %s (%d runs, %d kills); the last finished run's logs:\n%s", took, runs, kills, tail(lastLogs, 20))
	}

	o := e.outcome(t, events, dlq, ledgerPrefix, counted{unrecorded: countLogs(finished, "unrecorded")})
	// The figures the closing note quotes.
	t.Logf("crash loop: seed %d, %d runs (%d killed, %d finished) in %s; events %d, pairs %d, emails %d, duplicates %d, ambiguous %d (of them delivered %d, unrecorded %d), lost %d, dead-lettered %d; ledger %v; finished runs' summaries: maybe sent %d, maybe duplicated %d, unrecorded %d",
		seed, runs, kills, exits, took, len(events), o.Pairs, o.Emails, o.Duplicates, o.Ambiguous, o.AmbiguousDelivered, o.Unrecorded, o.Lost, o.DeadLettered, o.States,
		countLogs(finished, "maybe_sent"), countLogs(finished, "maybe_duplicated"), countLogs(finished, "unrecorded"))
	for _, p := range o.Problems {
		t.Error(p)
	}
	if o.Pairs < 300 {
		t.Errorf("%d pairs; the test wants hundreds", o.Pairs)
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
