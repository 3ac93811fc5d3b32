// Package awsproxy puts AWS's manners in front of a local emulator: a
// reverse proxy on a free 127.0.0.1 port, in front of one SQS, S3, SES
// v2, CloudFront or KMS endpoint (the last two for the calls of a key
// rotation, in front of kumo in test/kumo), that
//
//   - identifies each request's operation and the IAM action and
//     resource AWS would authorise it as, and enforces an [iam.Document]:
//     a missing permission answers AccessDenied in the service's wire
//     shape, and an S3 read of a missing key answers 403, not 404, unless
//     the policy grants s3:ListBucket for that key's prefix; a KMS
//     request on a key is authorised with the key's tags as
//     aws:ResourceTag/KEY, read from the emulator;
//   - injects faults per operation, before the request reaches the
//     emulator or after the emulator applied it (a 5xx, a throttle, or a
//     reset connection);
//   - adds latency;
//   - publishes, for SES, the Send event SES's configuration set would
//     for each email accepted (SESEvents), which the emulator does not;
//   - counts what it saw, denied, injected and forwarded, per operation.
//
// The emulator behind it still does all the work: this is a permission,
// fault and latency layer, not a mock. It works for in-process SDK
// clients (BaseEndpoint) and for a subprocess binary
// (AWS_ENDPOINT_URL_SQS, _S3, _SESV2). Requests it does not know are
// denied, and said so in the test log. It is test infrastructure: the
// production binary must not import it.
//
// All three services in front of devstack, under the policy the worker
// declares for drain:
//
//	stack, _ := devstack.Start(ctx, nil)
//	t.Cleanup(func() { stack.Close() })
//	policy := iam.For(iam.Inputs{
//		Region: devstack.Region, Account: devstack.AccountID,
//		ReportsBucket: "reports", StateBucket: "state", LedgerPrefix: "ledger/",
//		Queues: []iam.QueuePair{{URL: queueURL, DeadLetterURL: dlqURL}},
//		From:   "reports@example.com",
//	}, iam.Drain)
//	set := awsproxy.StartSet(t, awsproxy.Targets{SQS: stack.SQSURL, S3: stack.S3URL, SES: stack.SESURL},
//		awsproxy.Options{Policy: &policy})
//	for k, v := range set.Env() {
//		t.Setenv(k, v) // AWS_ENDPOINT_URL_SQS, _S3, _SESV2 for a subprocess
//	}
//	set.S3.Inject(awsproxy.Fault{Operation: "PutObject", After: true, Reset: true, Times: 1})
//	// ... run the worker ...
//	if n := set.SES.Counts("SendEmail").Forwarded; n != 0 {
//		t.Errorf("%d emails reached SES", n)
//	}
package awsproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/worker/iam"
)

// Service is the AWS service a proxy stands for.
type Service string

// The services the proxy understands.
const (
	SQS        Service = "sqs"        // JSON protocol
	S3         Service = "s3"         // path-style REST
	SES        Service = "ses"        // SES v2 REST-JSON
	CloudFront Service = "cloudfront" // REST-XML, API version 2020-05-31: the calls of a key rotation
	KMS        Service = "kms"        // JSON protocol (TrentService)
)

// Defaults for Options.
const (
	// RegionDefault is devstack's region.
	RegionDefault = "us-east-1"
	// AccountDefault is devstack's account id.
	AccountDefault = "000000000000"
)

// maxBody bounds the request body the proxy reads.
const maxBody = 64 << 20

// Options configure a Proxy.
type Options struct {
	// Service is what the target speaks. Required.
	Service Service
	// Target is the emulator's base URL, e.g. http://127.0.0.1:4566.
	// Required.
	Target string
	// Region and Account are used in the ARNs of resources whose URL
	// does not name them (emulator queue URLs, SES identities). Defaults
	// RegionDefault and AccountDefault.
	Region, Account string
	// Policy is enforced when set; nil allows everything. See SetPolicy.
	Policy *iam.Document
	// Latency is added to every request before it is handled. Default 0.
	// See SetLatency for per-operation latency.
	Latency time.Duration
	// Seed seeds the random choices of faults with a Probability, so a
	// failing run can be repeated. Default 0.
	Seed uint64
	// Sleep waits d or until ctx ends; default a timer. Tests of latency
	// can pass one that records d instead of timing the proxy.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logf receives one line per denial, unknown request, injected fault
	// and upstream failure. Start sets it to t.Logf. Default: no logging.
	Logf func(format string, args ...any)
	// SESEvents, for an SES proxy, publishes SES's Send event for each
	// email the emulator accepted. Default nil: none, as
	// aws-ses-v2-local publishes none.
	SESEvents *SESEvents
}

// Counts is what a proxy did with one operation's requests.
type Counts struct {
	// Seen is every request of the operation the proxy received.
	Seen int
	// Denied were refused by the policy, before the emulator, including
	// S3 reads of a missing key turned from 404 into 403.
	Denied int
	// Injected got an injected fault.
	Injected int
	// Forwarded reached the emulator (including those whose answer an
	// After fault then replaced).
	Forwarded int
	// Delayed is the latency added to them in all.
	Delayed time.Duration
	// Published is how many SES events were published for them (see
	// Options.SESEvents).
	Published int
}

// Denial is one request the policy refused.
type Denial struct {
	Operation, Action, Resource string
	// MissingKey is set when S3 answered 404 and the proxy, finding no
	// s3:ListBucket for the key's prefix, answered 403 instead.
	MissingKey bool
}

// Proxy is a running proxy. Its methods are safe for concurrent use.
type Proxy struct {
	// URL is the proxy's base URL, http://127.0.0.1:PORT.
	URL string

	opts     Options
	target   *url.URL
	srv      *httptest.Server
	upstream *http.Transport
	base     context.Context
	cancel   context.CancelFunc
	// publishing are the SES events waiting out SESEvents.Delay.
	publishing sync.WaitGroup

	mu        sync.Mutex
	policy    *iam.Document
	latency   map[string]time.Duration // by operation; "" for all
	rules     []*Rule
	rng       *rand.Rand
	counts    map[string]*Counts
	denials   []Denial
	requestNo int
}

// New starts a proxy on a free 127.0.0.1 port. Close it when done.
func New(opts Options) (*Proxy, error) {
	switch opts.Service {
	case SQS, S3, SES, CloudFront, KMS:
	default:
		return nil, fmt.Errorf("awsproxy: service %q is not sqs, s3, ses, cloudfront or kms", opts.Service)
	}
	if e := opts.SESEvents; e != nil && (opts.Service != SES || e.Publish == nil) {
		return nil, fmt.Errorf("awsproxy %s: SESEvents needs an SES proxy and a Publish func", opts.Service)
	}
	target, err := url.Parse(opts.Target)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return nil, fmt.Errorf("awsproxy %s: target %q is not an http(s) base URL", opts.Service, opts.Target)
	}
	if opts.Region == "" {
		opts.Region = RegionDefault
	}
	if opts.Account == "" {
		opts.Account = AccountDefault
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	p := &Proxy{
		opts:    opts,
		target:  target,
		policy:  opts.Policy,
		latency: map[string]time.Duration{"": opts.Latency},
		rng:     rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		counts:  map[string]*Counts{},
		// Compression off: bodies and lengths pass through as the
		// emulator wrote them.
		upstream: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64},
	}
	p.base, p.cancel = context.WithCancel(context.Background())
	p.srv = httptest.NewServer(p) // 127.0.0.1, a free port
	p.URL = p.srv.URL
	return p, nil
}

// Start starts a proxy for a test and closes it when the test ends (before
// the emulators the test started earlier stop). Denials, unknown requests
// and faults are logged with t.Logf. It fails the test if opts are bad.
func Start(t testing.TB, opts Options) *Proxy {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Close stops the proxy: requests in flight to the emulator (a long
// poll, say) are cancelled, and Close returns once every handler has.
// SES events still waiting out their delay are not published.
func (p *Proxy) Close() {
	p.cancel()
	p.srv.Close()
	p.publishing.Wait()
	p.upstream.CloseIdleConnections()
}

// SetPolicy replaces the policy; nil allows everything.
func (p *Proxy) SetPolicy(d *iam.Document) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.policy = d
}

// SetLatency sets the latency added to operation's requests; operation
// "" sets it for every operation without one of its own.
func (p *Proxy) SetLatency(operation string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency[operation] = d
}

// Counts returns what the proxy did with operation's requests so far.
func (p *Proxy) Counts(operation string) Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.counts[operation]; c != nil {
		return *c
	}
	return Counts{}
}

// AllCounts returns the counts of every operation seen, by operation.
// Requests the proxy could not identify count as "Unknown".
func (p *Proxy) AllCounts() map[string]Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]Counts, len(p.counts))
	for op, c := range p.counts {
		out[op] = *c
	}
	return out
}

// Denials returns the requests the policy refused so far, oldest first.
func (p *Proxy) Denials() []Denial {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Denial(nil), p.denials...)
}

// count applies f to operation's counts.
func (p *Proxy) count(operation string, f func(*Counts)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts[operation]
	if c == nil {
		c = &Counts{}
		p.counts[operation] = c
	}
	f(c)
}

func (p *Proxy) requestID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requestNo++
	return fmt.Sprintf("AWSPROXY%08d", p.requestNo)
}

func (p *Proxy) logf(format string, args ...any) {
	p.opts.Logf("awsproxy %s: "+format, append([]any{p.opts.Service}, args...)...)
}

// ServeHTTP handles one request: classify, authorise, wait, maybe fail,
// forward, maybe turn a 404 into 403, maybe fail after, answer.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		p.logf("%s %s: reading the request: %v", r.Method, r.URL.Path, err)
		resetConn(w)
		return
	}
	call, err := p.classify(r, body)
	if err != nil {
		p.count("Unknown", func(c *Counts) { c.Seen++; c.Denied++ })
		p.logf("DENY unknown request: %v", err)
		e := p.accessDenied("", "")
		e.Message = "awsproxy does not know this request, so denies it: " + err.Error()
		p.write(w, r, e)
		return
	}
	op := call.Operation
	p.count(op, func(c *Counts) { c.Seen++ })

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(p.base, cancel)()

	if d := p.delay(op); d > 0 {
		if err := p.opts.Sleep(ctx, d); err != nil {
			resetConn(w) // the proxy is closing, or the client left
			return
		}
		p.count(op, func(c *Counts) { c.Delayed += d })
	}

	if check, resource, ok := p.authorise(call); !ok {
		p.deny(w, r, call, check.Action, resource, false)
		return
	}

	if rule := p.fault(call, false); rule != nil {
		p.inject(w, r, call, rule)
		return
	}

	upstream := ctx
	if op == "SendEmail" {
		// SES goes on with a send it has received when the client goes
		// away (a worker killed mid-call): the email may be accepted,
		// and its events published, all the same.
		var cancel context.CancelFunc
		upstream, cancel = context.WithCancel(p.base)
		defer cancel()
	}
	resp, err := p.forward(upstream, r, body)
	if err != nil {
		if ctx.Err() != nil {
			// Closing, or the client left: no answer, as from a server
			// that went away.
			resetConn(w)
			return
		}
		p.logf("%s: emulator: %v", op, err)
		http.Error(w, "awsproxy: emulator: "+err.Error(), http.StatusBadGateway)
		return
	}
	p.count(op, func(c *Counts) { c.Forwarded++ })
	// SES accepted the email, and publishes its event, whatever answer
	// reaches the client.
	if op == "SendEmail" && p.opts.SESEvents != nil && resp.status/100 == 2 {
		p.publishSend(r, body, resp.body)
	}

	// Without s3:ListBucket on the key's prefix, S3 will not say that a
	// key does not exist.
	if resp.status == http.StatusNotFound && (op == "GetObject" || op == "HeadObject") {
		list := Check{Action: "s3:ListBucket", Resources: []string{iam.BucketARN(iam.Partition(p.opts.Region), call.Bucket)},
			Context: map[string]string{"s3:prefix": call.Key}}
		if _, resource, ok := p.authorise(Call{Checks: []Check{list}}); !ok {
			p.deny(w, r, call, list.Action, resource, true)
			return
		}
	}

	if rule := p.fault(call, true); rule != nil {
		p.inject(w, r, call, rule)
		return
	}
	resp.writeTo(w)
}

func (p *Proxy) delay(op string) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d, ok := p.latency[op]; ok {
		return d
	}
	return p.latency[""]
}

// authorise returns the first check the policy refuses, with the
// resource it names.
func (p *Proxy) authorise(call Call) (Check, string, bool) {
	p.mu.Lock()
	policy := p.policy
	p.mu.Unlock()
	if policy == nil {
		return Check{}, "", true
	}
	for _, c := range call.Checks {
		allowed := false
		for _, res := range c.Resources {
			if policy.Allows(c.Action, res, c.Context) {
				allowed = true
				break
			}
		}
		if !allowed {
			return c, strings.Join(c.Resources, " or "), false
		}
	}
	return Check{}, "", true
}

func (p *Proxy) deny(w http.ResponseWriter, r *http.Request, call Call, action, resource string, missingKey bool) {
	p.count(call.Operation, func(c *Counts) { c.Denied++ })
	p.mu.Lock()
	p.denials = append(p.denials, Denial{Operation: call.Operation, Action: action, Resource: resource, MissingKey: missingKey})
	p.mu.Unlock()
	e := p.accessDenied(action, resource)
	if missingKey {
		p.logf("DENY %s %s/%s: the key does not exist and no statement allows %s on %s for prefix %q, so S3 answers 403, not 404",
			call.Operation, call.Bucket, call.Key, action, resource, call.Key)
		e.Message = "Access Denied"
	} else {
		p.logf("DENY %s: no statement allows %s on %s", call.Operation, action, resource)
	}
	if call.Service == S3 && call.Key != "" {
		e.Resource = "/" + call.Bucket + "/" + call.Key
	}
	p.write(w, r, e)
}

// response is the emulator's answer, read whole so that it can be
// replaced or checked before the client sees it.
type response struct {
	status int
	header http.Header
	body   []byte
	head   bool
	length int64 // Content-Length of a HEAD answer
}

// hopHeaders are per-connection headers a proxy does not pass on.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Expect"}

func (p *Proxy) forward(ctx context.Context, r *http.Request, body []byte) (*response, error) {
	u := *p.target
	u.Path = strings.TrimSuffix(p.target.Path, "/") + r.URL.Path
	u.RawPath = ""
	if r.URL.RawPath != "" {
		u.RawPath = strings.TrimSuffix(p.target.EscapedPath(), "/") + r.URL.RawPath
	}
	u.RawQuery = r.URL.RawQuery
	var rd io.Reader
	if len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	out, err := http.NewRequestWithContext(ctx, r.Method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	out.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	out.ContentLength = int64(len(body))
	res, err := p.upstream.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	for _, h := range hopHeaders {
		res.Header.Del(h)
	}
	return &response{status: res.StatusCode, header: res.Header, body: b, head: r.Method == http.MethodHead, length: res.ContentLength}, nil
}

func (r *response) writeTo(w http.ResponseWriter) {
	h := w.Header()
	maps.Copy(h, r.header)
	if r.head {
		if r.length >= 0 {
			h.Set("Content-Length", strconv.FormatInt(r.length, 10))
		}
	} else {
		h.Set("Content-Length", strconv.Itoa(len(r.body)))
	}
	w.WriteHeader(r.status)
	if !r.head {
		w.Write(r.body)
	}
}

// resetConn closes the client's connection with a TCP RST and no answer:
// the client sees "connection reset by peer" (or EOF), as when a
// network path or load balancer drops a connection.
func resetConn(w http.ResponseWriter) error {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return errors.New("the connection cannot be hijacked")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	return conn.Close()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
