package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	sestypes "github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/internal/devstack"
)

var interrupt = syscall.SIGTERM

func createLog(path string) (*os.File, error) { return os.Create(path) }

// loadOptions shape a load run.
type loadOptions struct {
	events      int
	latency     time.Duration // added to every SQS, S3 and SES request, by the proxies
	key         string        // "ecdsa" or "rsa"
	gomaxprocs  int           // the worker's GOMAXPROCS; 0: the machine's
	concurrency int           // schedules[].concurrency; 0: the config's default
	baseline    bool          // also time the bare-SDK loop
	python      bool          // also time the Python recipe (recipe.py); RSA only
	cpuProfile  string        // the worker's CPU profile
	memProfile  string        // the worker's heap profile
	tracePairs  int           // then time this many off/on pairs of tracing
	traceSample float64       // the on runs' trace sampling ratio; 0: every message
	// maxSendRate, when set, is the MaxSendRate the SES endpoint reports
	// and enforces (429 above it in any second), to measure pacing.
	maxSendRate float64
	// replicas, with maxSendRate, runs this many drains at once, each
	// configured with pacing.replicas of it, as replicas of one
	// deployment sharing the account.
	replicas int
	// max24h, with maxSendRate, is the Max24HourSend the SES endpoint
	// reports: the run must stop at it, sending no more than it.
	max24h float64
}

// loadReports is how many distinct report files the events link.
const loadReports = 10

// baselineLoops is how many receive loops the bare-SDK baseline runs,
// as in the measurement.
const baselineLoops = 8

// loadEvent is one event of a load run and whom it goes to.
type loadEvent struct {
	body       string
	recipients []string // the user first
}

// figures are what one timed drain did.
type figures struct {
	events, emails int
	took           time.Duration
	cpu            time.Duration // the worker process's user+system time; 0 for the in-process baseline
	peakRSS        int64         // bytes; 0 for the baseline
	p50, p99       time.Duration // enqueue to SES acceptance
}

func (f figures) eventsPerSec() float64 { return float64(f.events) / f.took.Seconds() }
func (f figures) emailsPerSec() float64 { return float64(f.emails) / f.took.Seconds() }

// load times the production binary draining a queue of events shaped
// like the (1 to 10 reports, 0 to 3 extra recipients, 2.5
// emails an event on average), and, in the same process against the
// same stack, a bare aws-sdk-go-v2 loop doing the same SQS and SES
// calls with no links or templates, so that each figure is a ratio
// measured in one run.
func load(ctx context.Context, bin, out string, o loadOptions, w io.Writer) error {
	if o.events < 1 {
		return fmt.Errorf("-events %d: want at least 1", o.events)
	}
	if o.key != "rsa" && o.key != "ecdsa" {
		return fmt.Errorf("-key %q: want rsa or ecdsa", o.key)
	}
	if o.maxSendRate > 0 && (o.baseline || o.python) {
		return fmt.Errorf("-max-send-rate %g measures the worker's pacing, and the baseline and the recipe do not pace: give -baseline=false, without -python", o.maxSendRate)
	}
	if o.traceSample < 0 || o.traceSample > 1 {
		return fmt.Errorf("-trace-sample %g: want a ratio from 0 (every message traced) to 1", o.traceSample)
	}
	if o.max24h > 0 && o.maxSendRate == 0 {
		return fmt.Errorf("-max-24h-send %g measures how the worker keeps to the account's quota: give -max-send-rate too", o.max24h)
	}
	if o.replicas > 1 && o.maxSendRate == 0 {
		return fmt.Errorf("-replicas %d measures how replicas share the account's rate: give -max-send-rate too", o.replicas)
	}
	if o.python && o.key != "rsa" {
		return fmt.Errorf("-python with -key %s: the recipe signs as botocore's CloudFrontSigner does, RSA with SHA-1; use -key rsa", o.key)
	}
	e, err := upWith(ctx, bin, out, slog.New(slog.DiscardHandler), upOptions{
		ecdsa: o.key == "ecdsa", concurrency: o.concurrency, maxMessages: o.events + 10, budget: 30 * time.Minute, replicas: o.replicas,
	})
	if err != nil {
		return err
	}
	defer e.close()
	// Real SES paces us to the account's MaxSendRate; here the quota is
	// set high so the run measures the worker itself, unless the run
	// measures pacing.
	e.stack.SetSendQuota(1e6, 1e9)
	var limit *sendLimiter
	var throttle *awsproxy.Rule
	if o.maxSendRate > 0 {
		e.stack.SetSendQuota(o.maxSendRate, cmp.Or(o.max24h, 1e9))
		limit = &sendLimiter{rate: o.maxSendRate}
		throttle = e.proxies[2].Inject(awsproxy.Fault{Operation: "SendEmail", Status: 429, Code: "TooManyRequestsException",
			Message: "Maximum sending rate exceeded.", Match: limit.over})
	}
	e.stack.KeepBodies(false)
	if o.gomaxprocs > 0 {
		e.runEnv = append(e.runEnv, fmt.Sprintf("GOMAXPROCS=%d", o.gomaxprocs))
	}
	// Without latency, time the worker, not the permission proxies
	// in front of the stack: they cost about a third of the throughput.
	// With it, both the worker and the baseline go through them, each
	// request delayed by the latency.
	endpoints := map[string]string{"sqs": e.stack.SQSURL, "s3": e.stack.S3URL, "ses": e.stack.SESURL}
	if o.latency > 0 || limit != nil {
		for _, p := range e.proxies {
			p.SetLatency("", o.latency)
		}
		endpoints = map[string]string{"sqs": e.proxies[0].URL, "s3": e.proxies[1].URL, "ses": e.proxies[2].URL}
	} else {
		e.awsEnv = e.stackEnv
	}
	for i := range loadReports {
		key := fmt.Sprintf("load/r%02d.pdf", i)
		if _, err := e.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(content(key))}); err != nil {
			return err
		}
	}
	creds := credentials.NewStaticCredentialsProvider("demo", "demo", "")
	sqsc := sqs.New(sqs.Options{Region: devstack.Region, BaseEndpoint: aws.String(endpoints["sqs"]), Credentials: creds})
	sesc := sesv2.New(sesv2.Options{Region: devstack.Region, BaseEndpoint: aws.String(endpoints["ses"]), Credentials: creds})

	fmt.Fprintf(w, "load: %d events, key %s, latency %s, worker GOMAXPROCS %s, concurrency %s; machine: %d CPUs, %s, load average %s\n",
		o.events, o.key, o.latency, orDefault(o.gomaxprocs), orDefault(o.concurrency), runtime.NumCPU(), runtime.Version(), loadAverage())
	var report strings.Builder
	var base figures
	if o.baseline {
		evs := loadEvents("base", o.events)
		enq, err := enqueueAll(ctx, e.sqs, e.queueURL, evs)
		if err != nil {
			return err
		}
		start := time.Now()
		if err := bareLoop(ctx, sqsc, sesc, e.queueURL, o.events); err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		base = e.measure(evs, enq, time.Since(start))
		fmt.Fprintf(&report, "baseline (bare SDK, %d receive loops): %s\n", baselineLoops, base)
		e.stack.ForgetSent()
	}

	var py figures
	if o.python {
		evs := loadEvents("py", o.events)
		enq, err := enqueueAll(ctx, e.sqs, e.queueURL, evs)
		if err != nil {
			return err
		}
		if py, err = e.pythonRecipe(ctx, out, endpoints, evs, enq); err != nil {
			return err
		}
		fmt.Fprintf(&report, "python recipe (boto3, jinja2, %d threads): %s\n", pythonThreads, py)
		e.stack.ForgetSent()
	}

	evs := loadEvents("evt", o.events)
	enq, err := enqueueAll(ctx, e.sqs, e.queueURL, evs)
	if err != nil {
		return err
	}
	args := []string{"drain", "-config", e.config, "-schedule", "on-demand"}
	if o.cpuProfile != "" {
		args = append(args, "-cpuprofile", o.cpuProfile)
	}
	if o.memProfile != "" {
		args = append(args, "-memprofile", o.memProfile)
	}
	start := time.Now()
	code, summary, cpu, peak, err := e.drains(ctx, out, max(1, o.replicas), args)
	if err != nil {
		return err
	}
	took := time.Since(start)
	worker := e.measure(evs, enq, took)
	worker.cpu, worker.peakRSS = cpu, peak
	who := "reportmailer"
	if o.replicas > 1 {
		who = fmt.Sprintf("reportmailer, %d replicas at once (CPU summed, RSS the largest)", o.replicas)
	}
	fmt.Fprintf(&report, "%s: %s, exit %d\n  %s\n", who, worker, code, strings.TrimSpace(summary))
	var quotaErr error
	if limit != nil {
		limit.report(&report, throttle.Injected())
		lost, twice := e.onceEach(evs)
		fmt.Fprintf(&report, "  recipients with no email %d, with more than one %d\n", lost, twice)
		if o.max24h > 0 {
			quotaErr = e.checkQuotaStop(ctx, &report, o.max24h, worker.emails, lost, twice, e.unfinished(evs), code)
		}
	}
	if o.baseline {
		fmt.Fprintf(&report, "ratio to the baseline: %.2f× events/s\n", worker.eventsPerSec()/base.eventsPerSec())
	}
	if o.python {
		fmt.Fprintf(&report, "ratio to the python recipe: %.2f× events/s, %.2f× its CPU per event\n",
			worker.eventsPerSec()/py.eventsPerSec(), worker.cpu.Seconds()/py.cpu.Seconds())
	}
	if o.key == "rsa" {
		procs := orInt(o.gomaxprocs, runtime.NumCPU())
		sigs := rsaSignatureRate(procs)
		links := meanReports
		bound := sigs / links
		fmt.Fprintf(&report, "signing bound: %.0f RSA-2048 signatures/s on %d cores, %.1f links an event: %.0f events/s; reportmailer at %.2f× it\n",
			sigs, procs, links, bound, worker.eventsPerSec()/bound)
	}
	fmt.Fprint(w, report.String())
	os.WriteFile(filepath.Join(out, "load.txt"), []byte(report.String()), 0o644)
	if o.max24h > 0 {
		return quotaErr
	}
	if code != 0 || worker.emails != wantEmails(evs) {
		return fmt.Errorf("load run: exit %d, %d emails, want exit 0 and %d emails", code, worker.emails, wantEmails(evs))
	}
	if o.tracePairs > 0 {
		e.stack.ForgetSent()
		return e.tracePairs(ctx, out, o, w)
	}
	return nil
}

// checkQuotaStop checks a run that met the SES endpoint's 24-hour
// quota: it sent no more than the quota, nothing twice, dead-lettered
// nothing, ended as a halt (exit 3), and left every event it did not
// finish on the queue for a later run.
func (e *env) checkQuotaStop(ctx context.Context, w io.Writer, max24h float64, sent, lost, twice, unfinished, code int) error {
	attrs, err := e.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(e.queueURL), AttributeNames: []sqstypes.QueueAttributeName{
		sqstypes.QueueAttributeNameApproximateNumberOfMessages}})
	if err != nil {
		return fmt.Errorf("queue depth: %w", err)
	}
	dlq, err := e.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(e.dlq), AttributeNames: []sqstypes.QueueAttributeName{
		sqstypes.QueueAttributeNameApproximateNumberOfMessages}})
	if err != nil {
		return fmt.Errorf("dlq depth: %w", err)
	}
	// goaws counts every message it holds in ApproximateNumberOfMessages,
	// hidden or not (SQS counts the hidden ones apart, in NotVisible).
	depth := func(a map[string]string) int {
		n, _ := strconv.Atoi(a[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
		return n
	}
	queued, dead := depth(attrs.Attributes), depth(dlq.Attributes)
	fmt.Fprintf(w, "24-hour quota %g: %d recipients sent, exit %d; %d events not finished, %d messages on the queue, %d dead-lettered\n", max24h, sent, code, unfinished, queued, dead)
	switch {
	case float64(sent) > max24h:
		return fmt.Errorf("quota run: %d recipients sent, more than the 24-hour quota %g", sent, max24h)
	case twice > 0 || dead > 0:
		return fmt.Errorf("quota run: %d recipients emailed twice, %d messages dead-lettered; want none", twice, dead)
	case code != 3:
		return fmt.Errorf("quota run: exit %d, want 3 (halted at the quota, messages left for a later run)", code)
	case queued < unfinished:
		return fmt.Errorf("quota run: %d events not finished (%d recipients not emailed), and only %d messages left on the queue", unfinished, lost, queued)
	}
	return nil
}

// drains runs n drains with args at once, as n replicas would, and
// returns the highest exit code, their summaries, their CPU time summed
// and the largest peak RSS. One drain's log is out/drain.log; replica
// i's, out/drain-i.log.
func (e *env) drains(ctx context.Context, out string, n int, args []string) (code int, summary string, cpu time.Duration, peak int64, err error) {
	if n == 1 {
		code, summary, err = e.reportmailer(ctx, nil, filepath.Join(out, "drain.log"), args...)
		if err != nil {
			return 0, "", 0, 0, err
		}
		return code, summary, e.lastRun.UserTime() + e.lastRun.SystemTime(), e.lastPeakRSS, nil
	}
	runs := make([]process, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			runs[i], errs[i] = e.runReportmailer(ctx, nil, filepath.Join(out, fmt.Sprintf("drain-%d.log", i+1)), args...)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, "", 0, 0, err
	}
	var sums []string
	for i, r := range runs {
		code = max(code, r.code)
		sums = append(sums, fmt.Sprintf("replica %d: %s", i+1, strings.TrimSpace(r.stdout)))
		cpu += r.state.UserTime() + r.state.SystemTime()
		peak = max(peak, r.peakRSS)
	}
	return code, strings.Join(sums, "\n  "), cpu, peak, nil
}

// meanReports is the mean number of reports, so links, of an event.
const meanReports = 5.5

func orInt(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

func orDefault(n int) string {
	if n <= 0 {
		return "default"
	}
	return fmt.Sprint(n)
}

func (f figures) String() string {
	s := fmt.Sprintf("%d events -> %d emails in %s: %.0f events/s, %.0f emails/s, enqueue-to-accept p50 %s p99 %s",
		f.events, f.emails, f.took.Round(time.Millisecond), f.eventsPerSec(), f.emailsPerSec(), f.p50.Round(time.Millisecond), f.p99.Round(time.Millisecond))
	if f.cpu > 0 {
		s += fmt.Sprintf(", CPU %.2f s per 1,000 events, peak RSS %.1f MB", f.cpu.Seconds()*1000/float64(f.events), float64(f.peakRSS)/(1<<20))
	}
	return s
}

// loadEvents makes n events, the same for every run: 1 to 10 reports
// and 0 to 3 extra recipients each, every recipient its own, so that
// an accepted email names its event.
func loadEvents(prefix string, n int) []loadEvent {
	rng := mrand.New(mrand.NewPCG(1, 2))
	evs := make([]loadEvent, n)
	for i := range evs {
		user := fmt.Sprintf("%s%06d", prefix, i)
		var reports []map[string]any
		for j := range 1 + rng.IntN(10) {
			k := (i + j) % loadReports
			reports = append(reports, map[string]any{"bucket": bucket, "key": fmt.Sprintf("load/r%02d.pdf", k), "title": fmt.Sprintf("Report %d", k), "size": 1234})
		}
		var extra []string
		for j := range rng.IntN(4) {
			extra = append(extra, fmt.Sprintf("%s-x%d@team.acme.example", user, j))
		}
		b, _ := json.Marshal(map[string]any{
			"version": 1, "type": "report.ready", "id": prefix + "-" + user,
			"user":       map[string]string{"id": user, "email": user + "@acme.example", "name": "Load " + user, "time_zone": "Europe/London"},
			"recipients": extra,
			"reports":    reports,
		})
		evs[i] = loadEvent{body: string(b), recipients: append([]string{user + "@acme.example"}, extra...)}
	}
	return evs
}

func wantEmails(evs []loadEvent) int {
	n := 0
	for _, ev := range evs {
		n += len(ev.recipients)
	}
	return n
}

// enqueueAll sends the events in batches of ten, eight batches at a
// time, and returns when each event was enqueued.
func enqueueAll(ctx context.Context, c *sqs.Client, queueURL string, evs []loadEvent) ([]time.Time, error) {
	at := make([]time.Time, len(evs))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, 8)
	for lo := 0; lo < len(evs); lo += 10 {
		hi := min(lo+10, len(evs))
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var entries []sqstypes.SendMessageBatchRequestEntry
			for i := lo; i < hi; i++ {
				entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), MessageBody: aws.String(evs[i].body)})
			}
			out, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: entries})
			if err == nil && len(out.Failed) > 0 {
				err = fmt.Errorf("%d entries failed: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
			}
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("enqueue: %w", err))
				return
			}
			for i := lo; i < hi; i++ {
				at[i] = now
			}
		})
	}
	wg.Wait()
	return at, errors.Join(errs...)
}

// onceEach counts the recipients of evs that SES accepted no email
// for, and those it accepted more than one for.
func (e *env) onceEach(evs []loadEvent) (lost, twice int) {
	got := map[string]int{}
	for _, m := range e.stack.Sent() {
		for _, to := range m.To {
			got[to]++
		}
	}
	for _, ev := range evs {
		for _, r := range ev.recipients {
			switch n := got[r]; {
			case n == 0:
				lost++
			case n > 1:
				twice++
			}
		}
	}
	return lost, twice
}

// unfinished counts the events of evs with a recipient SES has not
// accepted an email for.
func (e *env) unfinished(evs []loadEvent) int {
	got := map[string]bool{}
	for _, m := range e.stack.Sent() {
		for _, to := range m.To {
			got[to] = true
		}
	}
	n := 0
	for _, ev := range evs {
		if slices.ContainsFunc(ev.recipients, func(r string) bool { return !got[r] }) {
			n++
		}
	}
	return n
}

// measure reads what SES accepted for evs.
func (e *env) measure(evs []loadEvent, enqueued []time.Time, took time.Duration) figures {
	byRcpt := map[string]time.Time{}
	for i, ev := range evs {
		for _, r := range ev.recipients {
			byRcpt[r] = enqueued[i]
		}
	}
	var lat []time.Duration
	sent := e.stack.Sent()
	for _, m := range sent {
		for _, to := range m.To {
			if t, ok := byRcpt[to]; ok {
				lat = append(lat, m.At.Sub(t))
			}
		}
	}
	slices.Sort(lat)
	f := figures{events: len(evs), emails: len(sent), took: took}
	if len(lat) > 0 {
		f.p50 = lat[len(lat)/2]
		f.p99 = lat[min(len(lat)-1, int(math.Ceil(0.99*float64(len(lat))))-1)]
	}
	return f
}

// bareLoop is the baseline: baselineLoops loops that receive ten
// messages, read each event's recipients, send each one a plain email
// with one SendEmail, and delete the batch, until n messages are done.
func bareLoop(ctx context.Context, sqsc *sqs.Client, sesc *sesv2.Client, queueURL string, n int) error {
	var done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, baselineLoops)
	for range baselineLoops {
		wg.Go(func() {
			for done.Load() < int64(n) {
				out, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
				if err != nil {
					errs <- err
					return
				}
				var del []sqstypes.DeleteMessageBatchRequestEntry
				for i, m := range out.Messages {
					var ev struct {
						ID   string `json:"id"`
						User struct {
							Email string `json:"email"`
						} `json:"user"`
						Recipients []string `json:"recipients"`
					}
					if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &ev); err != nil {
						errs <- err
						return
					}
					for _, to := range append([]string{ev.User.Email}, ev.Recipients...) {
						_, err := sesc.SendEmail(ctx, &sesv2.SendEmailInput{
							FromEmailAddress: aws.String("reports@acme.example"),
							Destination:      &sestypes.Destination{ToAddresses: []string{to}},
							Content: &sestypes.EmailContent{Simple: &sestypes.Message{
								Subject: &sestypes.Content{Data: aws.String("Your report " + ev.ID)},
								Body:    &sestypes.Body{Text: &sestypes.Content{Data: aws.String("Your report is ready.")}},
							}},
						})
						if err != nil {
							errs <- err
							return
						}
					}
					del = append(del, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
				}
				if len(del) > 0 {
					if _, err := sqsc.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: del}); err != nil {
						errs <- err
						return
					}
				}
				done.Add(int64(len(out.Messages)))
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// rsaSignatureRate measures how many RSA-2048 PKCS#1 v1.5 signatures a
// second procs goroutines make, for about a second: the bound RSA
// signing puts on the worker.
func rsaSignatureRate(procs int) float64 {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return math.NaN()
	}
	digest := sha256.Sum256([]byte("policy"))
	var n atomic.Int64
	deadline := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	start := time.Now()
	for range procs {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if _, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, digest[:]); err == nil {
					n.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds()
}

// loadAverage is the first figure of /proc/loadavg, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(b))[0]
}
