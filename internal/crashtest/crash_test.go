package crashtest

// The production binary, built here, drains a queue of a few hundred
// events through the permission and latency proxy in front of the
// emulators (goaws and gofakes3 in-process, aws-ses-v2-local), and is
// killed with SIGKILL at random moments, then restarted, until the
// queue is empty. The SES proxy publishes SES's Send event for every
// email the emulator accepted to an events queue, as a configuration
// set's EventBridge destination does, and the binary reads it
// (ses_events): a delivery a kill left "sending" after SES accepted its
// email is settled by its event, without an operator. Nothing may be
// sent twice; every email SES accepted must end recorded as sent; and
// every delivery not sent must be one the ledger left "sending" (a kill
// after the record, before SES had the request), dead-lettered as
// maybe_sent with a reason naming the recipient and the record.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/internal/devstack"
	"github.com/reportmailer/reportmailer/internal/emulator"
	"github.com/reportmailer/reportmailer/internal/outcome"
	"github.com/reportmailer/reportmailer/worker/iam"
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
	// between SendEmail and recording its answer) waiting for its Send
	// event before its message is dead-lettered as maybe sent: the
	// shortest ses_events.grace the config accepts.
	crashGrace = time.Minute
	// crashEventDelay is how late SES's Send event reaches the events
	// queue after SES accepted the email: EventBridge takes seconds.
	crashEventDelay = time.Second

	bucket = "crash-reports"
	ledger = "reportmailer/ledger/"
	// The drain command's exit codes that mean it did its work: 0, or
	// 3 when messages were dead-lettered or left for retry.
	exitOK, exitPartial = 0, 3
)

// TestCrashLoop: REPORTMAILER_CRASH_SEED=N repeats a run's kills.
// It runs with ses_events.unsettled resend, as a deployment that reads
// SES's events is meant to: a delivery no Send event settled within the
// grace (a kill after its "sending" record, before SES had the request)
// was not accepted, and is sent again, so every pair must be delivered
// and none may be left ambiguous. REPORTMAILER_CRASH_UNSETTLED=dead_letter
// runs it with the default policy instead: those deliveries are then
// dead-lettered as maybe sent, and counted.
func TestCrashLoop(t *testing.T) {
	unsettled := os.Getenv("REPORTMAILER_CRASH_UNSETTLED")
	switch unsettled {
	case "", "resend":
		unsettled = "resend"
	case "dead_letter":
	default:
		t.Fatalf("REPORTMAILER_CRASH_UNSETTLED=%q: want dead_letter or resend", unsettled)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("REPORTMAILER_CRASH_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("REPORTMAILER_CRASH_SEED=%q: %v", s, err)
		}
		seed = n
	}
	t.Logf("seed %d (REPORTMAILER_CRASH_SEED=%d repeats it)", seed, seed)
	rng := mrand.New(mrand.NewPCG(seed, seed^0x5eed))

	dir := t.TempDir()
	bin := filepath.Join(dir, "reportmailer")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/reportmailer/reportmailer/cmd/reportmailer").CombinedOutput(); err != nil {
		t.Fatalf("build reportmailer: %v\n%s", err, out)
	}

	ctx := context.Background()
	stack, err := devstack.Start(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stack.Close() })
	// aws-ses-v2-local, fast enough that pacing does not set the pace.
	sesURL := emulator.StartSESLocal(t, outcome.FastSESAccount)
	creds := credentials.NewStaticCredentialsProvider("test", "test", "")
	st := outcome.Stack{
		SQS:    sqs.New(sqs.Options{Region: devstack.Region, BaseEndpoint: aws.String(stack.SQSURL), Credentials: creds}),
		S3:     s3.New(s3.Options{Region: devstack.Region, BaseEndpoint: aws.String(stack.S3URL), UsePathStyle: true, Credentials: creds}),
		SESURL: sesURL, Bucket: bucket, Since: time.Now(),
	}
	if _, err := st.S3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("crash-%d", time.Now().UnixNano()%1e9)
	q, dlq := st.Queues(t, name, 20)
	eventsQ, err := st.SQS.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-ses-events")})
	if err != nil {
		t.Fatal(err)
	}
	eventsURL := aws.ToString(eventsQ.QueueUrl)
	cfg := writeConfig(t, dir, q, dlq, eventsURL, unsettled)

	// The declared policy for drain, as `reportmailer iam` prints it,
	// enforced; a few milliseconds per call, so that kills land mid-call
	// as well as between calls.
	var policy iam.Document
	iamCmd := exec.Command(bin, "iam", "-config", cfg, "-command", "drain", "-region", devstack.Region, "-account", devstack.AccountID)
	// Without the test's REPORTMAILER_CRASH_ settings, which the config
	// would read as its own.
	iamCmd.Env = environ(awsproxy.Set{})
	iamOut, err := iamCmd.Output()
	if err != nil {
		var stderr []byte
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		t.Fatalf("reportmailer iam: %v\n%s", err, stderr)
	}
	if err := json.Unmarshal(iamOut, &policy); err != nil {
		t.Fatalf("reportmailer iam: %v\n%s", err, iamOut)
	}
	// SES publishes its events straight to the queue, under no policy
	// of the worker's.
	set := awsproxy.StartSet(t, awsproxy.Targets{SQS: stack.SQSURL, S3: stack.S3URL, SES: sesURL}, awsproxy.Options{Policy: &policy,
		SESEvents: &awsproxy.SESEvents{Publish: awsproxy.PublishToSQS(st.SQS, eventsURL), Delay: crashEventDelay}})
	t.Cleanup(func() {
		for _, p := range []*awsproxy.Proxy{set.SQS, set.S3, set.SES} {
			for _, d := range p.Denials() {
				t.Errorf("under the declared policy, %s was denied %s on %s (missing key: %v)", d.Operation, d.Action, d.Resource, d.MissingKey)
			}
		}
	})
	set.SQS.SetLatency("", 3*time.Millisecond)
	set.S3.SetLatency("", 2*time.Millisecond)
	set.SES.SetLatency("", 5*time.Millisecond)
	env := environ(set)

	events := make([]outcome.Event, crashEvents)
	for i := range events {
		ev := outcome.Event{ID: fmt.Sprintf("crash-%03d", i), User: fmt.Sprintf("cu%03d", i)}
		for j := range rng.IntN(3) { // 0 to 2 extra: 1 to 3 recipients
			ev.Recipients = append(ev.Recipients, fmt.Sprintf("cr%03d-%d@%s", i, j, outcome.Domain))
		}
		events[i] = ev
	}
	st.Enqueue(t, q, "crash/", events)

	wantKills := crashMinKills + 1 + rng.IntN(5)
	start := time.Now()
	deadline := start.Add(crashDeadline)
	var kills, runs, exits int
	var lastLogs string
	var finished []string // the logs of the runs that were not killed
	var all []string      // the logs of every run
	var current *exec.Cmd
	t.Cleanup(func() {
		if current != nil && current.ProcessState == nil {
			current.Process.Kill()
			current.Wait()
		}
	})
	for runs < crashRuns && time.Now().Before(deadline) {
		if kills >= wantKills && st.QueueEmpty(t, q) {
			break
		}
		runs++
		var stdout bytes.Buffer
		stderr := newSentWatch()
		cmd := exec.Command(bin, "drain", "-config", cfg, "-schedule", "crash")
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = &stdout, stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		current = cmd
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		if kills < wantKills {
			// Once the run has sent its first email it is deep in a
			// batch, with claims, "sending" records and completions in
			// flight: kill it at a random moment from then on. (Before
			// it, a kill meets only start-up and the first receives.)
			after := time.Duration(rng.IntN(300)) * time.Millisecond
			killed := false
			select {
			case err = <-done:
			case <-stderr.sent:
				select {
				case err = <-done:
				case <-time.After(after):
					killed = true
				}
			}
			if killed {
				cmd.Process.Kill()
				<-done
				all = append(all, stderr.String())
				kills++
				t.Logf("kill %d: run %d %s after its first email, having sent %d", kills, runs, after, stderr.sentCount())
				continue
			}
		} else {
			select {
			case err = <-done:
			case <-time.After(time.Until(deadline)):
				cmd.Process.Kill()
				<-done
				all = append(all, stderr.String())
				t.Errorf("run %d did not finish by the deadline; its last logs:\n%s", runs, outcome.Tail(stderr.String(), 20))
				continue
			}
		}
		exits++
		lastLogs = stderr.String()
		all = append(all, lastLogs)
		finished = append(finished, lastLogs)
		if code := cmd.ProcessState.ExitCode(); code != exitOK && code != exitPartial {
			t.Fatalf("run %d: exit %d (%v): %s\n%s", runs, code, err, stdout.String(), outcome.Tail(stderr.String(), 40))
		}
	}
	took := time.Since(start).Round(time.Second)
	if kills < crashMinKills {
		t.Errorf("only %d kills in %d runs, want at least %d", kills, runs, crashMinKills)
	}
	if !st.QueueEmpty(t, q) {
		t.Errorf("the queue did not drain in %s (%d runs, %d kills); the last finished run's logs:\n%s", took, runs, kills, outcome.Tail(lastLogs, 20))
	}

	o := st.Judge(t, events, dlq, ledger, outcome.Counted{Unrecorded: outcome.SummaryCount(finished, "unrecorded")})
	send := set.SES.Counts("SendEmail")
	// The figures the closing note quotes.
	t.Logf("crash loop (unsettled %s): seed %d, %d runs (%d killed, %d finished) in %s; events %d, pairs %d, emails %d, duplicates %d, "+
		"ambiguous left sending %d (of them delivered %d, unrecorded %d), settled by SES events %d (runs' logs: %d), lost %d, dead-lettered %d; "+
		"ledger %v; SES Send events published %d for %d SendEmail forwarded; finished runs' summaries: maybe sent %d, maybe duplicated %d, unrecorded %d",
		unsettled, seed, runs, kills, exits, took, len(events), o.Pairs, o.Emails, o.Duplicates,
		o.Ambiguous, o.AmbiguousDelivered, o.Unrecorded, o.Settled, outcome.EventsSettled(all), o.Lost, o.DeadLettered,
		o.States, send.Published, send.Forwarded,
		outcome.SummaryCount(finished, "maybe_sent"), outcome.SummaryCount(finished, "maybe_duplicated"), outcome.SummaryCount(finished, "unrecorded"))
	for _, p := range o.Problems {
		t.Error(p)
	}
	// SES published a Send event for every email it accepted, and the
	// runs read them: no email SES accepted may be left for an operator.
	if unsettled == "resend" && o.Ambiguous > 0 {
		t.Errorf("%d deliveries left \"sending\" with ses_events.unsettled resend: past the grace with no Send event, they should have been sent again", o.Ambiguous)
	}
	if o.AmbiguousDelivered > 0 {
		t.Errorf("%d deliveries SES accepted are still \"sending\": their Send events did not settle them", o.AmbiguousDelivered)
	}
	if o.Pairs < 300 {
		t.Errorf("%d pairs; the test wants hundreds", o.Pairs)
	}
}

// sentWatch is a run's stderr, which says when the run logged its
// first sent email, in text or JSON logs.
type sentWatch struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	sent chan struct{} // closed at the first "sent" line
}

func newSentWatch() *sentWatch { return &sentWatch{sent: make(chan struct{})} }

// sentMarkers are the starts of a "sent" line's message, as text and
// JSON logs write it.
var sentMarkers = [][]byte{[]byte("msg=sent "), []byte(`"msg":"sent"`)}

func (w *sentWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	from := max(0, w.buf.Len()-16) // a marker split across writes
	n, err := w.buf.Write(p)
	select {
	case <-w.sent:
	default:
		for _, m := range sentMarkers {
			if bytes.Contains(w.buf.Bytes()[from:], m) {
				close(w.sent)
				break
			}
		}
	}
	return n, err
}

// sentCount is how many emails the run logged as sent.
func (w *sentWatch) sentCount() int {
	s := w.String()
	return strings.Count(s, string(sentMarkers[0])) + strings.Count(s, string(sentMarkers[1]))
}

func (w *sentWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// writeConfig writes the worker's config: CloudFront links signed with
// a key made here (drain signs, nobody opens them), the ledger next to
// the reports, SES's events read from eventsURL, short timeouts so that
// what a kill leaves is picked up within the test.
func writeConfig(t *testing.T, dir, queueURL, dlqURL, eventsURL, unsettled string) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := filepath.Join(dir, "cf.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "reportmailer.yaml")
	cfg := fmt.Sprintf(`sender: {from: "Reports <reports@%[1]s>", configuration_set: %[12]s}
links:
  ttl: 48h
  cloudfront: {domain: "https://d111111abcdef8.cloudfront.net", key_id: KCRASHTEST0001, private_key_file: %[2]q}
recipients: {allowed_domains: [%[1]s]}
reports: {bucket: %[3]s}
ledger: {bucket: %[3]s, prefix: %[4]s, claim_timeout: %[5]s}
s3: {use_path_style: true}
ses_events: {queue_url: %[10]q, grace: %[6]s, unsettled: %[11]s}
log: {format: text}
schedules:
  - {name: crash, mode: each, queue_url: %[7]q, dead_letter_queue_url: %[8]q, wait_time: 1s, budget: 1m, visibility_timeout: %[9]s}
`, outcome.Domain, keyFile, bucket, ledger, crashClaimTimeout, crashGrace, queueURL, dlqURL, crashVisibility, eventsURL, unsettled, awsproxy.ConfigurationSetDefault)
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// environ is this process's environment without its AWS settings, and
// with those that point the SDK's default chain at set's proxies.
func environ(set awsproxy.Set) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "REPORTMAILER_") {
			env = append(env, kv)
		}
	}
	env = append(env, "AWS_REGION="+devstack.Region, "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull)
	for k, v := range set.Env() {
		env = append(env, k+"="+v)
	}
	return env
}
