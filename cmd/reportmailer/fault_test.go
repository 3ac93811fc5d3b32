package main

// Fault tests: drain, in-process, through internal/awsproxy in front of
// the emulators, with one class of fault injected per case, run again
// and again until the queue is empty. Each ends with every email
// delivered exactly once or, where AWS gives no way to know, ambiguous:
// counted in the summary and dead-lettered as maybe_sent with a reason
// that names the recipient and the ledger record. Nothing else is lost.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/internal/outcome"
	"github.com/reportmailer/reportmailer/worker/iam"
)

const (
	// faultVisibility is the shortest visibility timeout the config
	// accepts: how long a message left for retry stays hidden.
	faultVisibility = 10 * time.Second
	// faultClaimTimeout is how old a claim that never reached
	// "sending" must be before another run takes it over.
	faultClaimTimeout = 3 * time.Second
	// faultDeadline bounds one case's runs.
	faultDeadline = 60 * time.Second
	// faultSESGrace is how long a delivery may wait, "sending", for
	// SES's events to settle it (ses_events.grace, its shortest): a case
	// with the event stream gets that much longer, since its ambiguous
	// messages are hidden for it.
	faultSESGrace = time.Minute
	// faultSESEventDelay is how late SES's events reach their queue.
	faultSESEventDelay = time.Second
)

// faultCase is one class of fault.
type faultCase struct {
	name string
	// events is how many events, each to its user and extra more
	// recipients.
	events, extra int
	// again enqueues the events a second time once the queue drained:
	// their claims then find the records, and read them (GetObject).
	again bool
	// inject adds the faults; each returned rule must fire.
	inject func(t *testing.T, fx *faultEnv) []*awsproxy.Rule
	// config edits the config, as editConfig's old, new pairs.
	config []string
	// ambiguous is whether the fault may leave deliveries ambiguous:
	// it falls where SES may have accepted the email. minAmbiguous is
	// how many must be.
	ambiguous    bool
	minAmbiguous int
	// duplicated is whether an email may go twice, when the runs count
	// it as maybe duplicated: the config asks for SES's 5xx to be
	// retried.
	duplicated bool
	// run replaces the default runs (drain until the queue is empty).
	run func(t *testing.T, fx *faultEnv) []drainResult
	// check adds checks of the runs.
	check func(t *testing.T, fx *faultEnv, runs []drainResult, o outcome.Result)
	// shared runs the case alongside the other shared cases, behind one
	// set of proxies, to save the suite's time: each waits out
	// visibility timeouts, or SES events' grace. Its faults are scoped
	// to its own queues, keys and recipients (faultEnv's s3, sqs and
	// ses); a case that adds latency, or moves SES, is not shared.
	shared bool
	// sesEvents has the SES proxy publish SES's Send event for every
	// email it accepted to a queue the worker reads (ses_events), as a
	// configuration set's EventBridge destination does; minSettled
	// deliveries must be settled by them, with none left ambiguous.
	sesEvents  bool
	minSettled int
}

// faultEnv is one case's queues, config, events and proxies.
type faultEnv struct {
	e      *itEnv
	tc     faultCase
	q, dlq string
	cfg    string
	// prefix holds the case's reports, and ledger its ledger.
	prefix, ledger string
	events         []outcome.Event
	set            awsproxy.Set
	deadline       time.Time
	// sesEventsQ is the queue SES's events go to, with tc.sesEvents,
	// and published counts the events SES published for the case's
	// emails.
	sesEventsQ string
	published  atomic.Int64
	// i is the case's index, which its addresses carry.
	i int
}

// newFaultEnv makes case i's queues, config and events.
func newFaultEnv(t *testing.T, e *itEnv, i int, tc faultCase) *faultEnv {
	t.Helper()
	fx := &faultEnv{e: e, tc: tc, prefix: fmt.Sprintf("fault/%02d/", i), i: i}
	fx.ledger = fx.prefix + "ledger/"
	fx.q, fx.dlq = e.queuesWith(t, 10)
	fx.cfg = e.config(t, fx.q, fx.dlq)
	editConfig(t, fx.cfg, append([]string{
		"budget: 1m}", fmt.Sprintf("budget: 1m, visibility_timeout: %s}", faultVisibility),
		"ledger: {bucket: " + itBucket + "}", fmt.Sprintf("ledger: {bucket: %s, prefix: %s, claim_timeout: %s}", itBucket, fx.ledger, faultClaimTimeout),
	}, tc.config...)...)
	fx.events = make([]outcome.Event, tc.events)
	for j := range fx.events {
		ev := outcome.Event{ID: fmt.Sprintf("f%02d-%d", i, j), User: fmt.Sprintf("fu%02d-%d", i, j)}
		for k := range tc.extra {
			ev.Recipients = append(ev.Recipients, fmt.Sprintf("fr%02d-%d-%d@%s", i, j, k, outcome.Domain))
		}
		fx.events[j] = ev
	}
	if tc.sesEvents {
		out, err := e.sqs.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(fmt.Sprintf("it-ses-events-%02d-%d", i, time.Now().UnixNano()%1e9))})
		if err != nil {
			t.Fatal(err)
		}
		fx.sesEventsQ = aws.ToString(out.QueueUrl)
		appendConfig(t, fx.cfg, fmt.Sprintf("ses_events: {queue_url: %q, grace: %s}\n", fx.sesEventsQ, faultSESGrace))
	}
	return fx
}

// mine reports whether addr is one of the case's users or recipients.
func (fx *faultEnv) mine(addr string) bool {
	return strings.HasPrefix(addr, fmt.Sprintf("fu%02d-", fx.i)) || strings.HasPrefix(addr, fmt.Sprintf("fr%02d-", fx.i))
}

// sesEvents is what the SES proxy in front of cases publishes: SES's
// events for the emails of a case with tc.sesEvents to its events
// queue, straight to the emulator (AWS delivers them, under no policy
// of the worker's), and nothing for the others' emails; nil when no
// case reads SES's events.
func sesEvents(cases []*faultEnv) *awsproxy.SESEvents {
	if !slices.ContainsFunc(cases, func(fx *faultEnv) bool { return fx.tc.sesEvents }) {
		return nil
	}
	publish := func(ctx context.Context, body []byte) error {
		var ev struct {
			Detail struct {
				Mail struct{ Destination []string }
			}
		}
		if err := json.Unmarshal(body, &ev); err != nil {
			return fmt.Errorf("SES event: %w", err)
		}
		for _, fx := range cases {
			if fx.tc.sesEvents && slices.ContainsFunc(ev.Detail.Mail.Destination, fx.mine) {
				if err := awsproxy.PublishToSQS(fx.e.sqs, fx.sesEventsQ)(ctx, body); err != nil {
					return err
				}
				fx.published.Add(1)
				return nil
			}
		}
		return nil
	}
	return &awsproxy.SESEvents{Publish: publish, Delay: faultSESEventDelay}
}

// settledIn sums what SES's events settled, as the runs' summaries say
// ("settled N").
func settledIn(runs []drainResult) int {
	n := 0
	for _, r := range runs {
		if m := summarySettled.FindStringSubmatch(r.out); m != nil {
			v, _ := strconv.Atoi(m[1])
			n += v
		}
	}
	return n
}

var summarySettled = regexp.MustCompile(`, settled (\d+)`)

// s3 injects f into the case's own S3 requests.
func (fx *faultEnv) s3(f awsproxy.Fault) *awsproxy.Rule {
	f.Match = both(func(c awsproxy.Call) bool { return strings.HasPrefix(c.Key, fx.prefix) }, f.Match)
	return fx.set.S3.Inject(f)
}

// sqs injects f into the requests for the case's own queues.
func (fx *faultEnv) sqs(f awsproxy.Fault) *awsproxy.Rule {
	f.Match = both(func(c awsproxy.Call) bool { return c.QueueURL == fx.q || c.QueueURL == fx.dlq }, f.Match)
	return fx.set.SQS.Inject(f)
}

// ses injects f into the SendEmails to the case's own addresses.
func (fx *faultEnv) ses(f awsproxy.Fault) *awsproxy.Rule {
	f.Match = both(func(c awsproxy.Call) bool { return slices.ContainsFunc(c.Recipients, fx.mine) }, f.Match)
	return fx.set.SES.Inject(f)
}

func both(a, b func(awsproxy.Call) bool) func(awsproxy.Call) bool {
	if b == nil {
		return a
	}
	return func(c awsproxy.Call) bool { return a(c) && b(c) }
}

// drainResult is one run of drain.
type drainResult struct {
	code      int
	out, logs string
}

// count sums a figure of the runs' summaries ("sent", "duplicates",
// "maybe_sent") over runs.
func count(runs []drainResult, what string) int {
	return outcome.SummaryCount(logsOf(runs), what)
}

// drainUntilEmpty runs drain until the queue is empty, or the case's
// deadline. A message left for retry stays hidden for the visibility
// timeout, so the runs in between find nothing and end after one empty
// receive.
func (fx *faultEnv) drainUntilEmpty(t *testing.T) []drainResult {
	t.Helper()
	var runs []drainResult
	for time.Now().Before(fx.deadline) {
		code, out, logs := drain(t, fx.cfg)
		runs = append(runs, drainResult{code, out, logs})
		if fx.e.queueEmpty(t, fx.q) {
			return runs
		}
	}
	t.Errorf("the queue did not drain in %s (%d runs); the last run: exit %d, %s\n%s", faultDeadline, len(runs), runs[len(runs)-1].code, runs[len(runs)-1].out, outcome.Tail(runs[len(runs)-1].logs, 30))
	return runs
}

// firstWrite matches the first write of each delivery record under
// ledger (not the email index or the send slots next to them): its
// claim. The SDK's retry of it is a second write, and goes through.
func firstWrite(ledger string) func(awsproxy.Call) bool {
	var mu sync.Mutex
	seen := map[string]bool{}
	return func(c awsproxy.Call) bool {
		if rest, ok := strings.CutPrefix(c.Key, ledger); !ok || strings.Contains(rest, "/") {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		if seen[c.Key] {
			return false
		}
		seen[c.Key] = true
		return true
	}
}

func TestFaults(t *testing.T) {
	e := newITEnv(t, "goaws")
	sesBefore := func(status, times int) func(*testing.T, *faultEnv) []*awsproxy.Rule {
		return func(t *testing.T, fx *faultEnv) []*awsproxy.Rule {
			return []*awsproxy.Rule{fx.ses(awsproxy.Fault{Operation: "SendEmail", Status: status, Times: times})}
		}
	}
	cases := []faultCase{
		{
			name: "SES 429 before acceptance", shared: true, events: 3, extra: 1,
			inject: sesBefore(429, 4),
		},
		{
			// SES's 500 says nothing of whether the email was accepted,
			// so the worker may treat it as ambiguous.
			name: "SES 500 before acceptance", shared: true, events: 3, extra: 1, ambiguous: true,
			inject: sesBefore(500, 2),
		},
		{
			name: "SES 500 before acceptance, on every try of one email", shared: true, events: 3, extra: 1, ambiguous: true,
			inject: sesBefore(500, 3),
		},
		{
			name: "SES 500 after acceptance", shared: true, events: 3, extra: 1, ambiguous: true, minAmbiguous: 1,
			inject: func(_ *testing.T, fx *faultEnv) []*awsproxy.Rule {
				return []*awsproxy.Rule{fx.ses(awsproxy.Fault{Operation: "SendEmail", After: true, Status: 500, Times: 1})}
			},
		},
		{
			name: "SES connection reset after acceptance", shared: true, events: 3, extra: 1, ambiguous: true, minAmbiguous: 1,
			inject: func(_ *testing.T, fx *faultEnv) []*awsproxy.Rule {
				return []*awsproxy.Rule{fx.ses(awsproxy.Fault{Operation: "SendEmail", After: true, Reset: true, Times: 1})}
			},
		},
		{
			// The worker retries, or not, as configured; either way it
			// says so.
			name: "SES 500 after acceptance, with retry_server_errors", shared: true, events: 3, extra: 1, duplicated: true,
			config: []string{`from: "Reports <reports@acme.example>"}`, `from: "Reports <reports@acme.example>", retry_server_errors: true}`},
			inject: func(_ *testing.T, fx *faultEnv) []*awsproxy.Rule {
				return []*awsproxy.Rule{fx.ses(awsproxy.Fault{Operation: "SendEmail", After: true, Status: 500, Times: 1})}
			},
			check: func(t *testing.T, fx *faultEnv, runs []drainResult, o outcome.Result) {
				// The setting is what makes this a duplicate: without it
				// the email is left ambiguous (the case above).
				if o.Duplicates != 1 || o.Ambiguous != 0 || count(runs, "maybe_duplicated") < 1 {
					t.Errorf("SES accepted an email and answered 500: %d duplicates, %d ambiguous, maybe duplicated %d; want the SDK's retry to send it again, once, counted as maybe duplicated",
						o.Duplicates, o.Ambiguous, count(runs, "maybe_duplicated"))
				}
			},
		},
		{
			// SES publishes its Send event for each email it accepted,
			// whatever answer the client got, and the worker reads
			// them: both emails whose answers were lost are settled as
			// sent, their messages acknowledged when they come back
			// after the grace, and none is left to an operator.
			name: "SES reset and 500 after acceptance, with SES's events read", shared: true, events: 3, extra: 1, sesEvents: true, minSettled: 2,
			inject: func(t *testing.T, fx *faultEnv) []*awsproxy.Rule {
				return []*awsproxy.Rule{
					fx.ses(awsproxy.Fault{Operation: "SendEmail", After: true, Reset: true, Times: 1}),
					fx.ses(awsproxy.Fault{Operation: "SendEmail", After: true, Status: 500, Times: 1}),
				}
			},
		},
		{
			// SQS deleted the message from the source after the worker
			// dead-lettered it, and the answer was lost: the SDK's retry
			// finds the receipt handle spent.
			name: "SES reset after acceptance, then a reset after SQS applied the dead letter's DeleteMessage", shared: true, events: 2, ambiguous: true, minAmbiguous: 1,
			inject: func(_ *testing.T, fx *faultEnv) []*awsproxy.Rule {
				return []*awsproxy.Rule{
					fx.ses(awsproxy.Fault{Operation: "SendEmail", After: true, Reset: true, Times: 1}),
					fx.sqs(awsproxy.Fault{Operation: "DeleteMessage", After: true, Reset: true, Times: 1}),
				}
			},
		},
		{
			name: "SES behind an untrusted certificate", events: 3, extra: 1,
			// Past GetAccount, which fails the same way, to SendEmail.
			config: []string{"s3: {", "pacing: {fallback_rate: 50}\ns3: {"},
			run:    untrustedSES,
		},
		{
			name: "S3 503 SlowDown on PutObject", shared: true, events: 4, extra: 1,
			inject: func(_ *testing.T, fx *faultEnv) []*awsproxy.Rule {
				return []*awsproxy.Rule{fx.s3(awsproxy.Fault{Operation: "PutObject", Status: 503, Probability: 0.25})}
			},
		},
		{
			name: "S3 503 SlowDown on HeadObject and GetObject", shared: true, events: 3, extra: 1, again: true,
			inject: func(_ *testing.T, fx *faultEnv) []*awsproxy.Rule {
				return []*awsproxy.Rule{
					// Counted, not drawn: the proxy's seeded source is shared
					// with the cases running beside this one, so a draw could
					// miss all six heads.
					fx.s3(awsproxy.Fault{Operation: "HeadObject", Status: 503, Times: 2}),
					fx.s3(awsproxy.Fault{Operation: "GetObject", Status: 503, Times: 2}),
				}
			},
		},
		{
			name: "S3 connection resets on PutObject and GetObject", shared: true, events: 3, extra: 1, again: true,
			inject: func(_ *testing.T, fx *faultEnv) []*awsproxy.Rule {
				return []*awsproxy.Rule{
					fx.s3(awsproxy.Fault{Operation: "PutObject", Reset: true, Probability: 0.3}),
					fx.s3(awsproxy.Fault{Operation: "GetObject", Reset: true, Times: 2}),
				}
			},
		},
		{
			// The SDK retries the conditional PutObject and gets 412
			// against the claim it made: the claim is its own.
			name: "S3 reset after it applied the claim", shared: true, events: 3, extra: 1,
			inject: func(_ *testing.T, fx *faultEnv) []*awsproxy.Rule {
				return []*awsproxy.Rule{fx.s3(awsproxy.Fault{Operation: "PutObject", After: true, Reset: true, Match: firstWrite(fx.ledger)})}
			},
			check: func(t *testing.T, fx *faultEnv, runs []drainResult, o outcome.Result) {
				if len(runs) > 1 {
					t.Errorf("%d runs, want 1: a claim the worker made is its own to send\n%s", len(runs), outcome.Tail(runs[0].logs, 20))
				}
			},
		},
		{
			name: "S3 reset after it applied any ledger write", shared: true, events: 3, extra: 1,
			inject: func(_ *testing.T, fx *faultEnv) []*awsproxy.Rule {
				return []*awsproxy.Rule{fx.s3(awsproxy.Fault{Operation: "PutObject", After: true, Reset: true, Probability: 0.5,
					Match: func(c awsproxy.Call) bool { return strings.HasPrefix(c.Key, fx.ledger) }})}
			},
		},
		{
			name: "SQS ReceiveMessage 500", shared: true, events: 3, extra: 1,
			inject: func(_ *testing.T, fx *faultEnv) []*awsproxy.Rule {
				return []*awsproxy.Rule{fx.sqs(awsproxy.Fault{Operation: "ReceiveMessage", Status: 500, Times: 4})}
			},
		},
		{
			// The messages were handed out and their receipt handles
			// lost: they come back after the visibility timeout.
			name: "SQS reset after ReceiveMessage handed out the messages", shared: true, events: 3, extra: 1,
			inject: func(_ *testing.T, fx *faultEnv) []*awsproxy.Rule {
				return []*awsproxy.Rule{fx.sqs(awsproxy.Fault{Operation: "ReceiveMessage", After: true, Reset: true, Times: 1})}
			},
		},
		{
			// The emails went; the messages come back and are skipped
			// as duplicates.
			name: "SQS DeleteMessageBatch 500", shared: true, events: 3, extra: 1,
			inject: func(_ *testing.T, fx *faultEnv) []*awsproxy.Rule {
				return []*awsproxy.Rule{fx.sqs(awsproxy.Fault{Operation: "DeleteMessageBatch", Status: 500, Times: 3})}
			},
			check: func(t *testing.T, fx *faultEnv, runs []drainResult, o outcome.Result) {
				if d := count(runs, "duplicates"); d < o.Pairs {
					t.Errorf("duplicates %d in the summaries, want the %d deliveries the redelivered messages carried", d, o.Pairs)
				}
			},
		},
		{
			name: "SQS reset after DeleteMessageBatch deleted", shared: true, events: 3, extra: 1,
			inject: func(_ *testing.T, fx *faultEnv) []*awsproxy.Rule {
				return []*awsproxy.Rule{fx.sqs(awsproxy.Fault{Operation: "DeleteMessageBatch", After: true, Reset: true, Times: 1})}
			},
		},
		{
			// The heartbeat cannot extend the batch, which outlasts its
			// visibility timeout: another run receives the messages
			// while the first is still sending them.
			name: "SQS ChangeMessageVisibility(Batch) 500 while another run polls", events: 8,
			// One email at a time, so that the run outlasts the
			// visibility timeout: with the default concurrency its 8
			// slow sends would overlap and end first.
			config: []string{fmt.Sprintf("visibility_timeout: %s}", faultVisibility), fmt.Sprintf("visibility_timeout: %s, concurrency: 1}", faultVisibility)},
			inject: func(_ *testing.T, fx *faultEnv) []*awsproxy.Rule {
				fx.set.SES.SetLatency("SendEmail", 1500*time.Millisecond)
				return []*awsproxy.Rule{
					fx.sqs(awsproxy.Fault{Operation: "ChangeMessageVisibilityBatch", Status: 500}),
					fx.sqs(awsproxy.Fault{Operation: "ChangeMessageVisibility", Status: 500}),
				}
			},
			run: racingDrains,
			check: func(t *testing.T, fx *faultEnv, runs []drainResult, o outcome.Result) {
				if n := count(runs, "received"); n <= 8 {
					t.Errorf("%d messages received for 8 events: no run received a message another was still working on", n)
				}
			},
		},
	}
	for i, tc := range cases {
		if !tc.shared {
			t.Run(tc.name, func(t *testing.T) {
				fx := newFaultEnv(t, e, i, tc)
				fx.set = sharedLeastPrivilege(t, e, leastPrivilege(t, fx.cfg), sesEvents([]*faultEnv{fx}))
				fx.run(t)
			})
		}
	}
	t.Run("shared", func(t *testing.T) {
		// One set of proxies, allowing what each case's config needs.
		var fxs []*faultEnv
		var policy iam.Document
		for i, tc := range cases {
			if tc.shared {
				fx := newFaultEnv(t, e, i, tc)
				p := leastPrivilege(t, fx.cfg)
				policy.Version = p.Version
				policy.Statement = append(policy.Statement, p.Statement...)
				fxs = append(fxs, fx)
			}
		}
		set := sharedLeastPrivilege(t, e, policy, sesEvents(fxs))
		for _, fx := range fxs {
			fx.set = set
			t.Run(fx.tc.name, func(t *testing.T) {
				t.Parallel()
				fx.run(t)
			})
		}
	})
}

// sharedLeastPrivilege starts a proxy set of the case's own in front of
// e's emulators, enforcing policy (the declared policy of one config,
// or the union of several), its SES proxy publishing events (nil for
// none), and points the command at it: faults injected into it reach no
// other test.
func sharedLeastPrivilege(t *testing.T, e *itEnv, policy iam.Document, events *awsproxy.SESEvents) awsproxy.Set {
	t.Helper()
	set := awsproxy.StartSet(t, awsproxy.Targets{SQS: e.sqsURL, S3: e.s3URL, SES: e.sesURL}, awsproxy.Options{Policy: &policy, SESEvents: events})
	for k, v := range set.Env() {
		t.Setenv(k, v)
	}
	t.Cleanup(func() {
		for _, p := range []*awsproxy.Proxy{set.SQS, set.S3, set.SES} {
			for _, d := range p.Denials() {
				t.Errorf("under the declared policy, %s was denied %s on %s (missing key: %v)", d.Operation, d.Action, d.Resource, d.MissingKey)
			}
		}
	})
	return set
}

// run injects the case's faults, enqueues its events, drains them and
// judges the outcome.
func (fx *faultEnv) run(t *testing.T) {
	e, tc, events, prefix, q, dlq := fx.e, fx.tc, fx.events, fx.prefix, fx.q, fx.dlq
	fx.deadline = time.Now().Add(faultDeadline)
	if tc.sesEvents {
		fx.deadline = fx.deadline.Add(faultSESGrace)
	}
	var rules []*awsproxy.Rule
	if tc.inject != nil {
		rules = tc.inject(t, fx)
	}
	e.stack().Enqueue(t, q, prefix, events)

	var runs []drainResult
	if tc.run != nil {
		runs = tc.run(t, fx)
	} else {
		runs = fx.drainUntilEmpty(t)
	}
	if tc.again {
		e.stack().Enqueue(t, q, prefix, events)
		again := fx.drainUntilEmpty(t)
		if d, n := count(again, "duplicates"), len(events)*(1+tc.extra); d < n {
			t.Errorf("the events enqueued again: duplicates %d in the summaries, want at least %d", d, n)
		}
		runs = append(runs, again...)
	}
	for j, r := range rules {
		if r.Injected() == 0 {
			t.Errorf("fault %d never fired: the case tests nothing", j)
		}
	}

	o := e.stack().Judge(t, events, dlq, fx.ledger, outcome.Counted{Unrecorded: count(runs, "unrecorded"), MaybeDuplicated: count(runs, "maybe_duplicated")})
	t.Logf("%s: %d runs; %s; summaries: sent %d, duplicates %d, maybe sent %d, maybe duplicated %d, unrecorded %d, settled %d",
		tc.name, len(runs), o, count(runs, "sent"), count(runs, "duplicates"), count(runs, "maybe_sent"), count(runs, "maybe_duplicated"), count(runs, "unrecorded"), settledIn(runs))
	for _, p := range o.Problems {
		t.Error(p)
	}
	switch {
	case !tc.ambiguous && o.Ambiguous > 0:
		t.Errorf("%d deliveries ambiguous, but this fault leaves no doubt whether SES accepted an email", o.Ambiguous)
	case o.Ambiguous < tc.minAmbiguous:
		t.Errorf("%d deliveries ambiguous, want at least %d: the fault fell after SES accepted the email", o.Ambiguous, tc.minAmbiguous)
	}
	if n := count(runs, "maybe_sent") + count(runs, "unrecorded"); n < o.Ambiguous {
		t.Errorf("the summaries count %d emails maybe sent or unrecorded, but %d deliveries are ambiguous", n, o.Ambiguous)
	}
	// What drain prints must not read "duplicates 0" and nothing more
	// when an email may be out, or out twice.
	if count(runs, "maybe_sent")+count(runs, "maybe_duplicated") > 0 && !slices.ContainsFunc(runs, func(r drainResult) bool { return strings.Contains(r.out, "maybe") }) {
		t.Errorf("the runs counted emails maybe sent or maybe duplicated, but no summary drain printed says so")
	}
	if o.Duplicates > 0 && !tc.duplicated {
		t.Errorf("%d duplicate emails: this case's fault must not double an email, counted or not", o.Duplicates)
	}
	if tc.sesEvents {
		fx.checkSettled(t, runs, o)
	}
	if tc.check != nil {
		tc.check(t, fx, runs, o)
	}
	if t.Failed() {
		for j, r := range runs {
			if strings.Contains(r.out, "received 0,") {
				t.Logf("run %d: exit %d, %s", j+1, r.code, r.out)
				continue
			}
			t.Logf("run %d: exit %d, %s\n%s", j+1, r.code, r.out, outcome.Tail(r.logs, 30))
		}
	}
}

// checkSettled checks a case with SES's events read: SES published one
// Send event per email it accepted, they settled at least minSettled
// deliveries, and the runs' summaries counted each once.
func (fx *faultEnv) checkSettled(t *testing.T, runs []drainResult, o outcome.Result) {
	t.Helper()
	if o.Settled < fx.tc.minSettled {
		t.Errorf("SES's events settled %d deliveries, want at least %d: the emails whose answers were lost", o.Settled, fx.tc.minSettled)
	}
	if n := settledIn(runs); n != o.Settled {
		t.Errorf("the summaries say settled %d in all, but %d ledger records were settled by SES's events", n, o.Settled)
	}
	if n := int(fx.published.Load()); n != o.Emails {
		t.Errorf("SES published %d Send events for the %d emails it accepted", n, o.Emails)
	}
}

// untrustedSES runs drain with SES behind a certificate the SDK does
// not trust: nothing is sent and the messages stay for a later run,
// which, with SES reachable again, sends each email once.
func untrustedSES(t *testing.T, fx *faultEnv) []drainResult {
	target, _ := url.Parse(fx.set.SES.URL)
	srv := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(target))
	var hellos atomic.Int64
	srv.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		hellos.Add(1)
		return nil, nil
	}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes fail by design
	srv.StartTLS()
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ENDPOINT_URL_SESV2", srv.URL)

	code, out, logs := drain(t, fx.cfg)
	runs := []drainResult{{code, out, logs}}
	if hellos.Load() == 0 {
		t.Errorf("no TLS handshake reached the untrusted endpoint\n%s", outcome.Tail(logs, 20))
	}
	if c := fx.set.SES.Counts("SendEmail"); c.Seen != 0 {
		t.Errorf("SendEmail reached SES %d times through an untrusted certificate", c.Seen)
	}
	if !strings.Contains(out, "sent 0 emails") || count(runs, "retrying") == 0 || count(runs, "dead_lettered") != 0 {
		t.Errorf("run with SES untrusted: %s; want nothing sent, the messages left for retry, none dead-lettered\n%s", out, outcome.Tail(logs, 20))
	}
	if !strings.Contains(logs, "certificate") {
		t.Errorf("the logs do not say the certificate was the trouble:\n%s", outcome.Tail(logs, 20))
	}

	t.Setenv("AWS_ENDPOINT_URL_SESV2", fx.set.SES.URL)
	return append(runs, fx.drainUntilEmpty(t)...)
}

// racingDrains runs one drain and, alongside it, drain after drain,
// until the first ends; then, with SQS and SES well again, drains until
// the queue is empty.
func racingDrains(t *testing.T, fx *faultEnv) []drainResult {
	var mu sync.Mutex
	var runs []drainResult
	record := func(code int, out, logs string) {
		mu.Lock()
		defer mu.Unlock()
		runs = append(runs, drainResult{code, out, logs})
	}
	first := make(chan struct{})
	go func() {
		defer close(first)
		record(drain(t, fx.cfg))
	}()
	for racing := true; racing; {
		select {
		case <-first:
			racing = false
		default:
			record(drain(t, fx.cfg))
		}
	}
	if !strings.Contains(strings.Join(logsOf(runs), ""), "extend visibility") {
		t.Errorf("no run logged the failed heartbeat")
	}
	fx.set.SQS.ClearFaults()
	fx.set.SES.SetLatency("SendEmail", 0)
	return append(runs, fx.drainUntilEmpty(t)...)
}

func logsOf(runs []drainResult) []string {
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = r.logs
	}
	return out
}
