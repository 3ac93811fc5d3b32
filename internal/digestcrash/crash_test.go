package digestcrash

// Two replicas of the production binary's serve share a digest slot
// that no replica ran on time, through the permission and latency proxy
// in front of the emulators (goaws and gofakes3 in-process,
// aws-ses-v2-local). The first takes the slot late and is killed with
// SIGKILL once it has sent some of the digest; the second sees the
// slot's lease stop heartbeating, takes it over and finishes it. SES's
// Send events are published (by internal/awsproxy) to a queue both read,
// so a delivery the kill left "sending" after SES accepted it is
// settled, not resent. No user may get a report twice, none may be
// missing, and a user's part labels ("part 2 of 3") must number one
// split of their digest, each part once.

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
	"slices"
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
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/iam"
	"github.com/reportmailer/reportmailer/worker/store"
)

const (
	bucket   = "digest-crash"
	ledger   = "reportmailer/ledger/"
	schedule = "monthly"
	// sentLine starts the line a replica logs for each email sent.
	sentLine = "msg=sent "
)

// bin is the production binary, built once for every test.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "digestcrash")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "reportmailer")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/reportmailer/reportmailer/cmd/reportmailer").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build reportmailer: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestDigestSlotSurvivesAKill: one report per event, one email per
// user, one user in flight (concurrency 4), and the kill at a random
// moment after the first email, which may land mid-send: SES's Send
// event then settles the delivery. REPORTMAILER_CRASH_SEED=N repeats a
// run's kill moment.
func TestDigestSlotSurvivesAKill(t *testing.T) {
	const users, reportsPerUser = 40, 3
	seed, rng := seeded(t, 0xd16e)
	r := newRig(t, rigConfig{concurrency: 4, maxLinks: worker.MaxLinksPerEmailDefault, claimTimeout: 5 * time.Second, account: outcome.FastSESAccount})
	// Slow enough sends that the kill lands mid-digest.
	r.set.S3.SetLatency("", 2*time.Millisecond)
	r.set.SES.SetLatency("", 40*time.Millisecond)

	var digests []digest
	for u := range users {
		d := digest{user: fmt.Sprintf("du%02d", u)}
		for e := range reportsPerUser {
			id := fmt.Sprintf("%s-r%d", d.user, e)
			d.events = append(d.events, []string{"dc/" + id + ".pdf"})
		}
		digests = append(digests, d)
	}
	r.store(t, digests)

	first := newWatch(sentLine)
	a := r.start(t, first)
	select {
	case <-first.seen:
	case <-time.After(90 * time.Second): // only stops a broken build from hanging
		t.Fatalf("the first replica sent nothing:\n%s", outcome.Tail(first.String(), 30))
	}
	time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond) // a random moment in the digest
	a.Process.Kill()
	a.Wait()
	sentByA := first.sentCount()
	r.checkFirst(t, first)
	r.takeOver(t)

	got := r.judge(t, digests, first)
	t.Logf("digest crash: seed %d, %d users, %d emails; the first replica sent %d before the kill", seed, users, got.emails, sentByA)
}

// TestDigestSharedPartsSurviveAKill is the slot's harder paths under a
// kill: the same report in several of a user's events (shown once,
// under the newest event that links it), digests split into parts
// (max_links_per_email 5, so "part 2 of 3"), and four users and up to
// sixteen emails in flight (concurrency 16). SES is paced at the
// default account's rate (14 a second, of which 80 %), so claimed
// deliveries queue at the pacer, as in production. The first replica
// is killed as it logs the first email of a user who surely gets
// parts, from its Kth email on (K random): the pacer sends one email
// at a time, so the kill lands between two sends, with that user's
// other parts, and those of the other users in flight, claimed and
// unsent. The claims last longer than the takeover (as claim_timeout's
// 15 minutes outlast four 30-second heartbeats by default), so the
// second replica's first run leaves them for a retry, and its next
// run, four heartbeats later, takes them over. Each user's emails are
// then read as the user would: together they list each of the user's
// reports once, under its newest event, and their part labels number
// one split, each part once. REPORTMAILER_CRASH_SEED=N repeats a run's
// digests and kill moment.
func TestDigestSharedPartsSurviveAKill(t *testing.T) {
	const users = 24
	seed, rng := seeded(t, 0x5ba2)
	r := newRig(t, rigConfig{concurrency: 16, maxLinks: 5, claimTimeout: 10 * time.Second, account: emulator.DefaultSESAccount})
	r.set.S3.SetLatency("", 2*time.Millisecond)
	r.set.SES.SetLatency("", 5*time.Millisecond)

	// Each user has 2 to 6 events, each linking 1 to 4 of the user's 3
	// to 14 reports, so reports recur across events, and a user with
	// more than 5 of them gets parts; every third user surely does.
	var digests []digest
	for u := range users {
		for {
			d := digest{user: fmt.Sprintf("su%02d", u)}
			pool := 3 + rng.IntN(12)
			for range 2 + rng.IntN(5) {
				var keys []string
				for _, k := range rng.Perm(pool)[:1+rng.IntN(min(4, pool))] {
					keys = append(keys, fmt.Sprintf("dc/%s-k%02d.pdf", d.user, k))
				}
				d.events = append(d.events, keys)
			}
			if u%3 != 0 || d.parts(5) {
				digests = append(digests, d)
				break
			}
		}
	}
	r.store(t, digests)

	// The kill comes as the first replica logs the first email of a
	// user who gets parts, from its Kth email on, K random: so the
	// user's other parts are the second replica's. Every user gets an
	// email, so K comes before the last of them.
	parted := map[string]bool{}
	for _, d := range digests {
		parted[d.user] = d.parts(5)
	}
	kill := 1 + rng.IntN(users/2)
	var sent int
	perUser := map[string]int{}
	first := newWatchFunc(func(line string) bool {
		if !strings.Contains(line, sentLine) {
			return false
		}
		sent++
		u := userRE.FindStringSubmatch(line)
		if u == nil {
			return false
		}
		perUser[u[1]]++
		return sent >= kill && perUser[u[1]] == 1 && parted[u[1]]
	})
	a := r.start(t, first)
	select {
	case <-first.seen:
	case <-time.After(90 * time.Second): // only stops a broken build from hanging
		t.Fatalf("the first replica did not send a user's first part from its email %d on:\n%s", kill, outcome.Tail(first.String(), 30))
	}
	a.Process.Kill()
	a.Wait()
	sentByA := first.sentCount()
	r.checkFirst(t, first)
	second := r.takeOver(t)

	got := r.judge(t, digests, first)
	if got.shared == 0 || got.parted == 0 {
		t.Errorf("seed %d: %d users with a report in several events, %d with parts: the test wants both", seed, got.shared, got.parted)
	}
	if got.straddledParts == 0 {
		t.Errorf("seed %d: no user got parts from both replicas: the kill did not land mid-user", seed)
	}
	t.Logf("digest crash, shared reports and parts: seed %d, %d users (%d with shared reports, %d with parts), %d emails; "+
		"the first replica was killed at its email %d (logged %d); %d users got emails from both replicas, %d of them with parts; "+
		"the second replica found %d deliveries still claimed by the first, and took over %d",
		seed, users, got.shared, got.parted, got.emails, kill, sentByA, got.straddled, got.straddledParts,
		strings.Count(second.String(), "delivery claimed by another run"), strings.Count(second.String(), "took over a ledger record claimed"))
}

// seeded returns the test's seed, REPORTMAILER_CRASH_SEED or the time,
// and a generator drawn from it.
func seeded(t *testing.T, salt uint64) (uint64, *mrand.Rand) {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("REPORTMAILER_CRASH_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("REPORTMAILER_CRASH_SEED=%q: %v", s, err)
		}
		seed = n
	}
	t.Logf("seed %d (REPORTMAILER_CRASH_SEED=%d repeats it)", seed, seed)
	return seed, mrand.New(mrand.NewPCG(seed, seed^salt))
}

// digest is what one user has pending for the slot: events[i] lists
// the report keys of event i, newest first.
type digest struct {
	user   string
	events [][]string
}

func (d digest) email() string { return d.user + "@" + outcome.Domain }

// eventID is the id of event i.
func (d digest) eventID(i int) string { return fmt.Sprintf("%s-e%d", d.user, i) }

// newest returns, for each report key, the index of the newest event
// linking it.
func (d digest) newest() map[string]int {
	m := map[string]int{}
	for i, keys := range d.events {
		for _, k := range keys {
			if _, ok := m[k]; !ok {
				m[k] = i
			}
		}
	}
	return m
}

// parts reports whether the digest is surely split at maxLinks: every
// event shows a report of its own (none goes with the newer events
// that show all of its reports), and together they show more than
// maxLinks.
func (d digest) parts(maxLinks int) bool {
	shown := map[string]bool{}
	for _, keys := range d.events {
		own := 0
		for _, k := range keys {
			if !shown[k] {
				shown[k] = true
				own++
			}
		}
		if own == 0 {
			return false
		}
	}
	return len(shown) > maxLinks
}

// rigConfig is what the tests vary: the schedule's concurrency and
// max_links_per_email, ledger.claim_timeout, and SES's account.
type rigConfig struct {
	concurrency, maxLinks int
	claimTimeout          time.Duration
	account               string // SES's GetAccount answer
}

// rig is the emulators, the proxies in front of them, and a config for
// serve that reads them.
type rig struct {
	st      outcome.Stack
	set     awsproxy.Set
	cfg     string
	env     []string
	pending *store.Pending
}

func newRig(t *testing.T, rc rigConfig) *rig {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	stack, err := devstack.Start(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stack.Close() })
	sesURL := emulator.StartSESLocal(t, rc.account)
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
	cfg := writeConfig(t, dir, rc, q, dlq, eventsURL)

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
	return &rig{st: st, set: set, cfg: cfg, env: environ(set),
		pending: &store.Pending{Client: st.S3, Bucket: bucket, Prefix: store.PendingPrefix(ledger, schedule)}}
}

// store puts each digest's reports in the bucket and its events in the
// pending store, as an ingest before this year's first slot, which no
// replica ran, would have: event i of a user an hour older than event
// i-1. Each report's title names its key and event, so that an email
// says which event showed it.
func (r *rig) store(t *testing.T, digests []digest) {
	t.Helper()
	ctx := context.Background()
	slot := time.Date(time.Now().UTC().Year(), 1, 1, 0, 0, 0, 0, time.UTC)
	put := map[string]bool{}
	for _, d := range digests {
		for i, keys := range d.events {
			ev := event.Event{ID: d.eventID(i), User: event.User{ID: d.user, Email: d.email()}}
			for _, key := range keys {
				if !put[key] {
					put[key] = true
					if _, err := r.st.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
						Body: strings.NewReader("report " + key), ContentType: aws.String("application/pdf")}); err != nil {
						t.Fatal(err)
					}
				}
				ev.Reports = append(ev.Reports, event.Report{Bucket: bucket, Key: key, Title: key + " in " + ev.ID})
			}
			if err := r.pending.Put(ctx, worker.PendingEvent{Event: ev, Ingested: slot.Add(-time.Duration(i+1) * time.Hour), Body: "{}"}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// start starts a replica of serve, its stderr to logs.
func (r *rig) start(t *testing.T, logs *watch) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "serve", "-config", r.cfg)
	cmd.Env, cmd.Stderr = r.env, logs
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

// checkFirst checks that the killed replica ran the missed slot and was
// killed before finishing it.
func (r *rig) checkFirst(t *testing.T, first *watch) {
	t.Helper()
	if !strings.Contains(first.String(), "slot missed: no replica ran it; running it late") {
		t.Errorf("the first replica did not run the missed slot:\n%s", outcome.Tail(first.String(), 30))
	}
	if strings.Contains(first.String(), "slot lease: marked done") {
		t.Fatalf("the first replica finished the digest before the kill (%d sent): nothing was tested", first.sentCount())
	}
}

// takeOver starts the second replica, waits for it to take the slot
// over and mark it done, and stops it.
func (r *rig) takeOver(t *testing.T) *watch {
	t.Helper()
	second := newWatch(`msg="slot lease: marked done"`)
	b := r.start(t, second)
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
	return second
}

// judged is what the emails SES accepted held.
type judged struct {
	emails int
	// shared counts the users with a report in several events, parted
	// those who got parts, straddled those who got emails from both
	// replicas, and straddledParts those of them who got parts.
	shared, parted, straddled, straddledParts int
}

var (
	keyRE   = regexp.MustCompile(`/(dc/[^?\s]+)\?`)
	titleRE = regexp.MustCompile(`(?m)^(dc/\S+) in (\S+)$`)
	partRE  = regexp.MustCompile(`\(part (\d+) of (\d+)\)$`)
	idRE    = regexp.MustCompile(`ses_message_id=(\S+)`)
	userRE  = regexp.MustCompile(` user=(\S+)`)
)

// judge reads the emails SES accepted as each user would: together they
// must list each of the user's reports exactly once, under the newest
// event linking it, and their part labels must number one split, each
// part once (or be one email with none). first is the killed
// replica's log, which says what it sent.
func (r *rig) judge(t *testing.T, digests []digest, first *watch) judged {
	t.Helper()
	ctx := context.Background()
	emails, err := emulator.SESLocalEmails(ctx, r.st.SESURL, r.st.Since.Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	byA := map[string]bool{}
	for _, m := range idRE.FindAllStringSubmatch(first.String(), -1) {
		byA[m[1]] = true
	}
	byUser := map[string][]emulator.SESLocalEmail{}
	for _, m := range emails {
		to := strings.ToLower(m.To()[0])
		byUser[to] = append(byUser[to], m)
	}
	var j judged
	j.emails = len(emails)
	for _, d := range digests {
		rcpt := d.email()
		got := byUser[rcpt]
		delete(byUser, rcpt)
		var problems []string
		newest := d.newest()
		if len(newest) < sumLen(d.events) {
			j.shared++
		}
		seen := map[string]int{}
		type label struct{ part, parts int }
		var labels []label
		var fromA, fromB int
		for _, m := range got {
			for _, k := range keyRE.FindAllStringSubmatch(m.Text, -1) {
				seen[k[1]]++
			}
			for _, k := range titleRE.FindAllStringSubmatch(m.Text, -1) {
				i, ok := newest[k[1]]
				if ok && k[2] != d.eventID(i) {
					problems = append(problems, fmt.Sprintf("%s shown under event %s, not under the newest linking it, %s", k[1], k[2], d.eventID(i)))
				}
			}
			if p := partRE.FindStringSubmatch(m.Subject); p != nil {
				part, _ := strconv.Atoi(p[1])
				parts, _ := strconv.Atoi(p[2])
				labels = append(labels, label{part, parts})
			} else {
				labels = append(labels, label{})
			}
			if byA[m.MessageID] {
				fromA++
			} else {
				fromB++
			}
		}
		for k := range newest {
			switch n := seen[k]; {
			case n == 0:
				problems = append(problems, "never got "+k)
			case n > 1:
				problems = append(problems, fmt.Sprintf("got %s %d times", k, n))
			}
		}
		for k := range seen {
			if _, ok := newest[k]; !ok {
				problems = append(problems, "got "+k+", not one of theirs")
			}
		}
		// One email with no label, or parts 1 to n of n, each once.
		switch {
		case len(labels) == 1 && labels[0] == label{}:
		case len(labels) == 0:
		default:
			slices.SortFunc(labels, func(a, b label) int { return a.part - b.part })
			for i, l := range labels {
				if l != (label{i + 1, len(labels)}) {
					problems = append(problems, fmt.Sprintf("part labels %v: want parts 1 to %d of %d, each once", labels, len(labels), len(labels)))
					break
				}
			}
		}
		if len(labels) > 1 {
			j.parted++
		}
		if fromA > 0 && fromB > 0 {
			j.straddled++
			if len(labels) > 1 {
				j.straddledParts++
			}
		}
		if len(problems) > 0 {
			var b strings.Builder
			fmt.Fprintf(&b, "%s: %s\nevents, newest first:", rcpt, strings.Join(problems, "; "))
			for i, keys := range d.events {
				fmt.Fprintf(&b, "\n  %s %v", d.eventID(i), keys)
			}
			b.WriteString("\nemails, as SES accepted them:")
			for _, m := range got {
				who := "second"
				if byA[m.MessageID] {
					who = "first"
				}
				var shown []string
				for _, k := range titleRE.FindAllStringSubmatch(m.Text, -1) {
					shown = append(shown, k[1]+"@"+k[2])
				}
				fmt.Fprintf(&b, "\n  %q by the %s replica: %v", m.Subject, who, shown)
			}
			t.Error(b.String())
		}
	}
	for rcpt, ms := range byUser {
		t.Errorf("%d emails to %s, who has no digest", len(ms), rcpt)
	}
	if n, err := r.pending.Count(ctx); err != nil || n != 0 {
		t.Errorf("the pending store holds %d (%v) after the slot, want 0", n, err)
	}
	return j
}

func sumLen(ss [][]string) int {
	n := 0
	for _, s := range ss {
		n += len(s)
	}
	return n
}

// watch is a replica's stderr, read line by line: seen closes at the
// first line match accepts.
type watch struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	next  int // where the next line starts
	match func(line string) bool
	seen  chan struct{}
	sent  int // lines logging an email sent
}

// newWatch watches for a line holding want.
func newWatch(want string) *watch {
	return newWatchFunc(func(line string) bool { return strings.Contains(line, want) })
}

func newWatchFunc(match func(line string) bool) *watch {
	return &watch{match: match, seen: make(chan struct{})}
}

func (w *watch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	for {
		rest := w.buf.Bytes()[w.next:]
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		line := string(rest[:i])
		w.next += i + 1
		if strings.Contains(line, sentLine) {
			w.sent++
		}
		select {
		case <-w.seen:
		default:
			if w.match(line) {
				close(w.seen)
			}
		}
	}
	return n, err
}

// sentCount is how many emails the replica logged as sent.
func (w *watch) sentCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sent
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
func writeConfig(t *testing.T, dir string, rc rigConfig, queueURL, dlqURL, eventsURL string) string {
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
ledger: {bucket: %[4]s, prefix: %[5]s, claim_timeout: %[12]s, slot_heartbeat: 1s}
s3: {use_path_style: true}
ses_events: {queue_url: %[6]q, grace: 1m, unsettled: resend}
log: {format: text}
http: {addr: off}
schedules:
  - {name: %[9]s, mode: digest, cron: "0 0 1 1 *", ingest_every: 1h, concurrency: %[10]d, max_links_per_email: %[11]d, queue_url: %[7]q, dead_letter_queue_url: %[8]q, wait_time: 1s, budget: 1m}
`, outcome.Domain, awsproxy.ConfigurationSetDefault, keyFile, bucket, ledger, eventsURL, queueURL, dlqURL, schedule, rc.concurrency, rc.maxLinks, rc.claimTimeout)
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
