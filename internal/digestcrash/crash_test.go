package digestcrash

// Two replicas of the production binary's serve share a digest slot
// that no replica ran on time, through the permission and latency proxy
// in front of the emulators (goaws and gofakes3 in-process,
// aws-ses-v2-local). The first takes the slot late and is killed with
// SIGKILL once it has sent some of the digest; the second sees the
// slot's lease stop heartbeating, takes it over and finishes it. SES's
// Send events are published (by internal/awsproxy) to a queue both read,
// so a delivery the kill left "sending" after SES accepted it is
// settled, not resent. No user may get a report twice, and none may be
// missing.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/iam"
	"github.com/reportmailer/reportmailer/worker/store"
)

const (
	users          = 40
	reportsPerUser = 3
	bucket         = "digest-crash"
	ledger         = "reportmailer/ledger/"
	schedule       = "monthly"
)

// TestDigestSlotSurvivesAKill: REPORTMAILER_CRASH_SEED=N repeats a
// run's kill moment.
func TestDigestSlotSurvivesAKill(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("REPORTMAILER_CRASH_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (REPORTMAILER_CRASH_SEED=%d repeats it)", seed, seed)
	rng := mrand.New(mrand.NewPCG(seed, seed^0xd16e))

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
	name := fmt.Sprintf("dcrash-%d", time.Now().UnixNano()%1e9)
	q, dlq := st.Queues(t, name, 20)
	eventsQ, err := st.SQS.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-ses-events")})
	if err != nil {
		t.Fatal(err)
	}
	eventsURL := aws.ToString(eventsQ.QueueUrl)
	cfg := writeConfig(t, dir, q, dlq, eventsURL)

	var policy iam.Document
	iamCmd := exec.Command(bin, "iam", "-config", cfg, "-command", "serve", "-region", devstack.Region, "-account", devstack.AccountID)
	iamCmd.Env = environ(awsproxy.Set{})
	iamOut, err := iamCmd.Output()
	if err != nil {
		t.Fatalf("reportmailer iam: %v", err)
	}
	if err := json.Unmarshal(iamOut, &policy); err != nil {
		t.Fatalf("reportmailer iam: %v\n%s", err, iamOut)
	}
	set := awsproxy.StartSet(t, awsproxy.Targets{SQS: stack.SQSURL, S3: stack.S3URL, SES: sesURL}, awsproxy.Options{Policy: &policy,
		SESEvents: &awsproxy.SESEvents{Publish: awsproxy.PublishToSQS(st.SQS, eventsURL), Delay: time.Second}})
	t.Cleanup(func() {
		for _, p := range []*awsproxy.Proxy{set.SQS, set.S3, set.SES} {
			for _, d := range p.Denials() {
				t.Errorf("under the declared policy, %s was denied %s on %s", d.Operation, d.Action, d.Resource)
			}
		}
	})
	// Slow enough sends that the kill lands mid-digest.
	set.S3.SetLatency("", 2*time.Millisecond)
	set.SES.SetLatency("", 40*time.Millisecond)
	env := environ(set)

	// What an ingest stored before this year's first slot, which no
	// replica ran.
	slot := time.Date(time.Now().UTC().Year(), 1, 1, 0, 0, 0, 0, time.UTC)
	p := &store.Pending{Client: st.S3, Bucket: bucket, Prefix: store.PendingPrefix(ledger, schedule)}
	want := map[string][]string{} // user -> report keys
	for u := range users {
		user := fmt.Sprintf("du%02d", u)
		for r := range reportsPerUser {
			id := fmt.Sprintf("%s-r%d", user, r)
			key := "dc/" + id + ".pdf"
			if _, err := st.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
				Body: strings.NewReader("report " + id), ContentType: aws.String("application/pdf")}); err != nil {
				t.Fatal(err)
			}
			ev := event.Event{ID: id, User: event.User{ID: user, Email: user + "@" + outcome.Domain},
				Reports: []event.Report{{Bucket: bucket, Key: key, Title: id}}}
			if err := p.Put(ctx, worker.PendingEvent{Event: ev, Ingested: slot.Add(-time.Duration(r+1) * time.Hour), Body: "{}"}); err != nil {
				t.Fatal(err)
			}
			want[user+"@"+outcome.Domain] = append(want[user+"@"+outcome.Domain], key)
		}
	}

	start := func(logs *watch) *exec.Cmd {
		cmd := exec.Command(bin, "serve", "-config", cfg)
		cmd.Env, cmd.Stderr = env, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Kill()
				cmd.Wait()
			}
		})
		return cmd
	}
	first := newWatch("msg=sent ")
	a := start(first)
	select {
	case <-first.seen:
	case <-time.After(90 * time.Second): // only stops a broken build from hanging
		t.Fatalf("the first replica sent nothing:\n%s", outcome.Tail(first.String(), 30))
	}
	time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond) // a random moment in the digest
	a.Process.Kill()
	a.Wait()
	sentByA := strings.Count(first.String(), "msg=sent ")
	if !strings.Contains(first.String(), "slot missed: no replica ran it; running it late") {
		t.Errorf("the first replica did not run the missed slot:\n%s", outcome.Tail(first.String(), 30))
	}
	if strings.Contains(first.String(), "slot lease: marked done") {
		t.Fatalf("the first replica finished the digest before the kill (%d sent): nothing was tested", sentByA)
	}

	second := newWatch(`msg="slot lease: marked done"`)
	b := start(second)
	select {
	case <-second.seen:
	case <-time.After(150 * time.Second): // past the SES events' grace, with room
		t.Fatalf("the second replica did not finish the slot:\n%s", outcome.Tail(second.String(), 40))
	}
	b.Process.Signal(os.Interrupt)
	b.Wait()
	if !strings.Contains(second.String(), "slot taken over: its holder stopped heartbeating") {
		t.Errorf("the second replica did not take the slot over:\n%s", outcome.Tail(second.String(), 30))
	}

	emails, err := emulator.SESLocalEmails(ctx, sesURL, st.Since.Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	keyRE := regexp.MustCompile(`/(dc/[^?\s]+)\?`)
	got := map[string]map[string]int{}
	for _, m := range emails {
		to := strings.ToLower(m.To()[0])
		if got[to] == nil {
			got[to] = map[string]int{}
		}
		for _, k := range keyRE.FindAllStringSubmatch(m.Text, -1) {
			got[to][k[1]]++
		}
	}
	for rcpt, keys := range want {
		for _, k := range keys {
			switch n := got[rcpt][k]; {
			case n == 0:
				t.Errorf("%s never got %s", rcpt, k)
			case n > 1:
				t.Errorf("%s got %s %d times", rcpt, k, n)
			}
		}
	}
	if n, err := p.Count(ctx); err != nil || n != 0 {
		t.Errorf("the pending store holds %d (%v) after the slot, want 0", n, err)
	}
	t.Logf("digest crash: seed %d, %d users, %d emails; the first replica sent %d before the kill", seed, users, len(emails), sentByA)
}

// watch is a replica's stderr; seen closes when it holds want.
type watch struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
}

func newWatch(want string) *watch { return &watch{want: want, seen: make(chan struct{})} }

func (w *watch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	select {
	case <-w.seen:
	default:
		if bytes.Contains(w.buf.Bytes(), []byte(w.want)) {
			close(w.seen)
		}
	}
	return n, err
}

func (w *watch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// writeConfig writes a digest schedule whose last slot (1 January) no
// replica ran, with one-second heartbeats, so a killed holder's slot is
// taken over within seconds, and SES's events read with the shortest
// grace.
func writeConfig(t *testing.T, dir, queueURL, dlqURL, eventsURL string) string {
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
	cfg := fmt.Sprintf(`sender: {from: "Reports <reports@%[1]s>", configuration_set: %[2]s}
links:
  ttl: 48h
  cloudfront: {domain: "https://d111111abcdef8.cloudfront.net", key_id: KCRASHTEST0001, private_key_file: %[3]q}
recipients: {allowed_domains: [%[1]s]}
reports: {bucket: %[4]s}
ledger: {bucket: %[4]s, prefix: %[5]s, claim_timeout: 5s, slot_heartbeat: 1s}
s3: {use_path_style: true}
ses_events: {queue_url: %[6]q, grace: 1m, unsettled: resend}
log: {format: text}
http: {addr: off}
schedules:
  - {name: %[9]s, mode: digest, cron: "0 0 1 1 *", ingest_every: 1h, concurrency: 4, queue_url: %[7]q, dead_letter_queue_url: %[8]q, wait_time: 1s, budget: 1m}
`, outcome.Domain, awsproxy.ConfigurationSetDefault, keyFile, bucket, ledger, eventsURL, queueURL, dlqURL, schedule)
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
