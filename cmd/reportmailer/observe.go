package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/mail"
	"github.com/reportmailer/reportmailer/worker/metrics"
	"github.com/reportmailer/reportmailer/worker/tracing"
)

// observability is what the app reports to: the metrics every command
// keeps (serve exposes them, drain can push them), and the record of
// each AWS service's last call, which /readyz reads.
type observability struct {
	metrics *metrics.Metrics
	aws     *awsCalls
	// tp, when set, exports traces; tracer opens a span per message
	// and per stage for a schedule.
	tp *sdktrace.TracerProvider
	// sdkTP is tp as the AWS SDK clients take it (callSpans).
	sdkTP *callSpans
	// ses is a client for /readyz's check of SES.
	ses *sesv2.Client

	// unread says that nothing will read the runs' metrics (a drain
	// with no -pushgateway): the runs then report to no metrics
	// Observer, which would cost a counter and a histogram per stage
	// of every message for nothing.
	unread bool

	mu       sync.Mutex
	progress map[string]*progress // by schedule: when a stage last ended
}

// newObservability returns the metrics, and the tracer provider when
// the OpenTelemetry variables ask for traces.
func (m *Main) newObservability(ctx context.Context) (*observability, error) {
	tp, err := newTracerProvider(ctx, m.Getenv)
	if err != nil {
		return nil, err
	}
	o := &observability{metrics: metrics.New(), aws: &awsCalls{last: map[string]awsCall{}}, tp: tp}
	if tp != nil {
		o.sdkTP = newCallSpans(tp)
	}
	return o, nil
}

// close flushes the traces not yet exported, for at most ten seconds.
func (o *observability) close(logger *slog.Logger) {
	if o == nil || o.tp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.tp.Shutdown(ctx); err != nil {
		logger.Warn("traces: not all exported", "err", err)
	}
}

// instrument adds to cfg, before any client is built from it, the
// middleware that records each service's last call.
func (o *observability) instrument(cfg *aws.Config) {
	cfg.APIOptions = append(cfg.APIOptions, o.aws.middleware)
	o.ses = sesv2.NewFromConfig(*cfg, func(o *sesv2.Options) { o.RetryMaxAttempts = 1 })
}

// observer is the Observer of schedule's runs of kind (metrics.KindSlot,
// metrics.KindIngest). Only a slot's stages count as the schedule's
// progress: an ingest that goes on every minute says nothing of
// whether a slot's run is stuck.
func (o *observability) observer(schedule, kind string) worker.Observer {
	if o == nil {
		return nil
	}
	var obs []worker.Observer
	if o.tp != nil {
		obs = append(obs, tracing.New(o.tp, schedule))
	}
	if !o.unread {
		obs = append(obs, o.metrics.Observer(schedule))
	}
	if kind == metrics.KindSlot {
		obs = append(obs, o.progressOf(schedule))
	}
	if len(obs) == 1 {
		return obs[0]
	}
	return worker.Observers(obs...)
}

// runMark is where a run started, for recordRun: its time, and the
// SES throttles so far.
type runMark struct {
	at        time.Time
	throttles int64
}

// markRun marks the start of a run.
func (a *app) markRun() runMark {
	m := runMark{at: time.Now()}
	if a.obs != nil {
		m.throttles = a.obs.metrics.Throttles()
	}
	return m
}

// recordRun records in the metrics a run of s of kind that started at
// mark and ended with sum and cause. A digest slot's acks are its
// ingest's, messages moved into the pending store, not deliveries:
// whether the slot got anywhere is whether it sent.
func (a *app) recordRun(s config.Schedule, kind string, mark runMark, sum worker.Summary, cause error) {
	if a.obs == nil {
		return
	}
	if kind == metrics.KindSlot && s.Mode == string(worker.ModeDigest) {
		sum.Acked = 0
	}
	a.obs.metrics.Run(s.Name, kind, metrics.RunEnd{Summary: sum, Err: cause, Took: time.Since(mark.at),
		Throttles: a.obs.metrics.Throttles() - mark.throttles})
}

// progressOf returns the record of when schedule's runs last moved on.
func (o *observability) progressOf(schedule string) *progress {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.progress == nil {
		o.progress = map[string]*progress{}
	}
	p := o.progress[schedule]
	if p == nil {
		p = &progress{}
		o.progress[schedule] = p
	}
	return p
}

// progress is an Observer that records when a stage last ended: a run
// that goes on is not stuck while its stages keep ending.
type progress struct {
	worker.NopObserver
	last atomic.Int64 // unix nanoseconds
}

func (p *progress) Stage(ctx context.Context, _ worker.Stage) (context.Context, func(error)) {
	return ctx, func(error) { p.last.Store(time.Now().UnixNano()) }
}

// at returns when a stage last ended, or the zero time.
func (p *progress) at() time.Time {
	if p == nil {
		return time.Time{}
	}
	if n := p.last.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// paced gives the shared mailer, when it is paced, the pacing metrics.
func (o *observability) paced(m worker.Mailer) {
	if p, ok := m.(*mail.Paced); ok && o != nil {
		p.Observer = o.metrics.Pace()
		o.traceSES(p)
	}
}

// awsCall is the last call to one AWS service.
type awsCall struct {
	at        time.Time
	operation string
	err       error // nil when the service answered
}

// awsCalls records, per service, whether its last call reached it.
type awsCalls struct {
	mu   sync.Mutex
	last map[string]awsCall // by service id: "SQS", "S3", "SESv2"
}

func (c *awsCalls) middleware(st *middleware.Stack) error {
	return st.Initialize.Add(middleware.InitializeMiddlewareFunc("reportmailer.LastCall",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleInitialize(ctx, in)
			c.record(awsmiddleware.GetServiceID(ctx), awsmiddleware.GetOperationName(ctx), err)
			return out, md, err
		}), middleware.After)
}

func (c *awsCalls) record(service, op string, err error) {
	if !failing(err) {
		err = nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last[service] = awsCall{at: time.Now(), operation: op, err: err}
}

// failed returns the services whose last call failed.
func (c *awsCalls) failed() map[string]awsCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]awsCall{}
	for s, call := range c.last {
		if call.err != nil {
			out[s] = call
		}
	}
	return out
}

// credentialCodes are the error codes that say the service refused who
// is calling, not what was asked: expired or unknown credentials, a bad
// signature, or a policy that denies the call. Some services answer
// them with a 400, so the status alone does not tell them apart.
var credentialCodes = map[string]bool{
	"AccessDenied": true, "AccessDeniedException": true,
	"ExpiredToken": true, "ExpiredTokenException": true, "RequestExpired": true,
	"InvalidClientTokenId": true, "UnrecognizedClientException": true,
	"SignatureDoesNotMatch": true, "InvalidSignatureException": true,
	"IncompleteSignature": true, "MissingAuthenticationToken": true,
	"InvalidAccessKeyId": true, "InvalidToken": true,
}

// failing reports whether err says the service did not do its part for
// this process: no answer at all, a 5xx, or a refusal of its
// credentials or permissions (401, 403, or a credential or signature
// error code). Any other answer, such as a 404, a validation error or a
// throttle, comes from a service that is there and takes its calls.
func failing(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var ae smithy.APIError
	if errors.As(err, &ae) && credentialCodes[ae.ErrorCode()] {
		return true
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		code := re.HTTPStatusCode()
		return code >= 500 || code == http.StatusUnauthorized || code == http.StatusForbidden
	}
	return true
}

// readyChecks are the cheap calls /readyz makes for a service whose
// last call failed, each a call serve's policy already allows.
func (a *app) readyChecks() map[string]func(context.Context) error {
	one := func(o *sqs.Options) { o.RetryMaxAttempts = 1 }
	checks := map[string]func(context.Context) error{
		"SESv2": func(ctx context.Context) error {
			_, err := a.obs.ses.GetAccount(ctx, &sesv2.GetAccountInput{})
			return err
		},
		"S3": func(ctx context.Context) error {
			// The halt record: a 404 is S3's answer too (serve may list
			// the ledger's prefix, so a missing key is no 403).
			_, err := a.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(a.cfg.Ledger.Bucket), Key: aws.String(a.cfg.Ledger.Prefix + "halt.json")},
				func(o *s3.Options) { o.RetryMaxAttempts = 1 })
			if failing(err) {
				return err
			}
			return nil
		},
	}
	if len(a.cfg.Schedules) > 0 {
		url := a.cfg.Schedules[0].QueueURL
		checks["SQS"] = func(ctx context.Context) error {
			_, err := a.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
				AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages}}, one)
			return err
		}
	}
	if id := kmsCheckKey(a.cfg.Links.CloudFront); id != "" {
		client := kms.NewFromConfig(a.aws, func(o *kms.Options) { o.RetryMaxAttempts = 1 })
		checks["KMS"] = func(ctx context.Context) error {
			// kms:GetPublicKey, which the policy grants with kms:Sign
			// on the signing keys (kms:DescribeKey it does not).
			_, err := client.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(id)})
			return err
		}
	}
	return checks
}

// kmsCheckKey is the KMS key /readyz checks KMS with: the active key
// when it is in KMS, else the first configured KMS key; "" when no
// configured key is in KMS (a ring that only its state puts a KMS key
// in has no check: its failures expire, readyFailureTTL).
func kmsCheckKey(cf *config.CloudFront) string {
	if cf == nil {
		return ""
	}
	if k, ok := cf.ActiveKey(); ok && k.KMSKeyID != "" {
		return k.KMSKeyID
	}
	for _, k := range cf.SigningKeys() {
		if k.KMSKeyID != "" {
			return k.KMSKeyID
		}
	}
	return ""
}

// readyCheckTimeout bounds each of /readyz's checks, which run at the
// same time: under the probe's own timeout (2 s in the manifests).
const readyCheckTimeout = 1500 * time.Millisecond

// readyFailureTTL is how long the failed last call of a service with no
// check (readyChecks) keeps /readyz failing: such a service is called
// again only when a run needs it, so without an end one failure would
// hold the replica out of service until the next run, or for good.
const readyFailureTTL = 5 * time.Minute

// ready reports whether every AWS service serve needs answered its last
// call, or answers a cheap check now.
func (a *app) ready(ctx context.Context) error {
	return checkFailed(ctx, time.Now(), a.obs.aws.failed(), a.readyChecks())
}

// checkFailed checks, all at once, each service in failed that has a
// check, and returns the failures of those that still fail, and of
// those with no check whose last call failed less than readyFailureTTL
// before now.
func checkFailed(ctx context.Context, now time.Time, failed map[string]awsCall, checks map[string]func(context.Context) error) error {
	errs := make([]error, 0, len(failed))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for service, call := range failed {
		wg.Go(func() {
			if check, ok := checks[service]; ok {
				cctx, cancel := context.WithTimeout(ctx, readyCheckTimeout)
				err := check(cctx)
				cancel()
				if !failing(err) {
					return
				}
			} else if now.Sub(call.at) > readyFailureTTL {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, fmt.Errorf("%s: last call %s at %s: %w", service, call.operation, call.at.UTC().Format(time.RFC3339), call.err))
		})
	}
	wg.Wait()
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// refreshGauges reads the gauges of schedules (readGauges), now and
// then every c.HTTP.Refresh, until ctx is done.
func (a *app) refreshGauges(ctx context.Context, schedules []config.Schedule) {
	a.readGauges(ctx, schedules)
	t := time.NewTicker(a.cfg.HTTP.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.readGauges(ctx, schedules)
		}
	}
}

// readGauges reads into the metrics what no run observes: the queue
// depths of every schedule (dropped when unreadable, so no stale depth
// is left), the key removal dates and the SES quota.
func (a *app) readGauges(ctx context.Context, schedules []config.Schedule) {
	for _, s := range schedules {
		for role, url := range map[string]string{"main": s.QueueURL, "dlq": s.DeadLetterQueueURL} {
			if err := a.queueDepth(ctx, s.Name, role, url); err != nil {
				a.obs.metrics.DropQueue(s.Name, role)
				a.logger.Warn("metrics: queue depth", "schedule", s.Name, "queue", role, "err", err)
			}
		}
	}
	a.keyGauges(ctx)
	a.quotaGauges(ctx)
}

// quotaGauges reads the SES account's sending quota into the metrics,
// which otherwise move only when the pacer reads it before a send.
func (a *app) quotaGauges(ctx context.Context) {
	if a.obs.ses == nil {
		return
	}
	out, err := a.obs.ses.GetAccount(ctx, &sesv2.GetAccountInput{})
	if err != nil || out.SendQuota == nil {
		a.logger.Warn("metrics: ses quota", "err", err)
		return
	}
	q := out.SendQuota
	a.obs.metrics.Pace().Quota(q.Max24HourSend, q.SentLast24Hours, q.MaxSendRate)
}

// queueDepth reads one queue's approximate counts into the metrics.
func (a *app) queueDepth(ctx context.Context, schedule, role, url string) error {
	out, err := a.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		}})
	if err != nil {
		return err
	}
	n := func(k sqstypes.QueueAttributeName) float64 {
		v, _ := strconv.ParseFloat(out.Attributes[string(k)], 64)
		return v
	}
	a.obs.metrics.Queue(schedule, role, n(sqstypes.QueueAttributeNameApproximateNumberOfMessages),
		n(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible), n(sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed))
	return nil
}

// keyGauges reads into the metrics the latest link expiry of each key
// the key ring knows: the configured keys and those `keys rotate`
// scheduled, active=true for the one that signs now. A retired key
// loses its series: the distribution no longer trusts it, so there is
// nothing left to remove. Without the ring's state (unreadable), the
// configured keys alone are read, and the configured active key is
// taken for the signing one.
func (a *app) keyGauges(ctx context.Context) {
	cf := a.cfg.Links.CloudFront
	if cf == nil {
		return
	}
	a.obs.metrics.LinksTTL(a.cfg.Links.TTL)
	log := keyExpiries(a.cfg, a.s3)
	ring, _, err := ringStore(a.cfg, a.s3).Load(ctx)
	if err != nil {
		a.logger.Warn("metrics: key removal dates: the key ring's state cannot be read, so only the configured keys are read", "err", err)
	}
	for _, k := range ringKeys(cf, ring, time.Now()) {
		if k.State == keyRetired {
			a.obs.metrics.Key(k.ID, false, time.Time{})
			continue
		}
		latest, err := log.Latest(ctx, k.ID)
		if err != nil {
			a.logger.Warn("metrics: key removal date", "key_id", k.ID, "err", err)
			continue
		}
		a.obs.metrics.Key(k.ID, k.State == keyActive, latest)
	}
}

// logFormat is the format logs to w are written in: c.Format, with
// auto resolved to json unless w is a terminal. A writer that is not a
// file (a test's buffer) gets text.
func logFormat(w io.Writer, c config.Log) string {
	if c.Format != config.LogFormatAuto {
		return c.Format
	}
	f, ok := w.(*os.File)
	if !ok {
		return "text"
	}
	if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		return "text"
	}
	return "json"
}
