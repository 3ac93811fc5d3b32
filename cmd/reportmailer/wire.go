package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/templates"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/link"
	"github.com/reportmailer/reportmailer/worker/linktoken"
	"github.com/reportmailer/reportmailer/worker/mail"
	"github.com/reportmailer/reportmailer/worker/metrics"
	"github.com/reportmailer/reportmailer/worker/queue"
	"github.com/reportmailer/reportmailer/worker/sesevents"
	"github.com/reportmailer/reportmailer/worker/store"
	"github.com/reportmailer/reportmailer/worker/transport"
)

// loadConfig reads the config named by the -config flag, or by
// REPORTMAILER_CONFIG when the flag is empty.
func (m *Main) loadConfig(path string) (*config.Config, error) {
	if path == "" {
		path = m.Getenv(config.EnvConfig)
	}
	if path == "" {
		return nil, usageError("-config is required (or set %s)", config.EnvConfig)
	}
	return config.Load(path)
}

func newLogger(w io.Writer, c config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if logFormat(w, c) == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// app is everything built from the config that schedules share.
type app struct {
	cfg       *config.Config
	logger    *slog.Logger
	sqs       *sqs.Client
	s3        *s3.Client
	signer    worker.Signer
	templates *templates.Sets
	mailer    worker.Mailer
	ledger    worker.Ledger
	leases    *store.Leases
	// events reads SES's sending events before each run; nil without
	// ses_events.queue_url.
	events *sesevents.Reader
	// obs is what runs report to: metrics, traces, AWS call results.
	obs *observability
	// aws is the SDK's config, for the clients only some commands use
	// (KMS, CloudFront).
	aws aws.Config
	// tokens makes traced links' tokens; nil unless links.trace.
	tokens *linktoken.Tokens
}

// offline builds what needs no AWS call: templates and the link key.
// config check uses it too, so it finds what drain would trip over.
// Every template set, embedded or from templates_dir, is parsed and
// trial-rendered here, so a broken override stops start-up.
func offline(c *config.Config) (*templates.Sets, error) {
	sets, err := templates.LoadSets(c.TemplatesDir)
	if err != nil {
		return nil, fmt.Errorf("templates_dir %q: %w", c.TemplatesDir, err)
	}
	return sets, nil
}

func (m *Main) newApp(ctx context.Context, c *config.Config) (*app, error) {
	logger := newLogger(m.Stderr, c.Log)
	set, err := offline(c)
	if err != nil {
		return nil, err
	}
	// The SDK's default chain finds credentials, region, CA bundle and
	// the AWS_ENDPOINT_URL_<SERVICE> endpoints.
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	awsCfg.HTTPClient = transport.Wrap(awsCfg.HTTPClient)
	if awsCfg.Region == "" {
		return nil, fmt.Errorf("aws config: no region: set AWS_REGION")
	}
	obs, err := m.newObservability(ctx)
	if err != nil {
		return nil, err
	}
	obs.instrument(&awsCfg)
	s3c := s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = c.S3.UsePathStyle }, obs.s3Options)
	ledger := &store.Ledger{Client: s3c, Bucket: c.Ledger.Bucket, Prefix: c.Ledger.Prefix}
	a := &app{
		cfg:       c,
		logger:    logger,
		sqs:       sqs.NewFromConfig(awsCfg, obs.sqsOptions),
		s3:        s3c,
		templates: set,
		mailer:    newMailer(c, awsCfg, logger),
		ledger:    ledger,
		leases:    &store.Leases{Client: s3c, Bucket: c.Ledger.Bucket, Prefix: c.Ledger.Prefix + "slots/", Heartbeat: c.Ledger.SlotHeartbeat},
		obs:       obs,
		aws:       awsCfg,
	}
	obs.paced(a.mailer)
	if e := c.SESEvents; e.QueueURL != "" {
		a.events = &sesevents.Reader{
			Queue: &queue.SQS{Client: a.sqs, URL: e.QueueURL, VisibilityTimeout: sesevents.VisibilityTimeout,
				Logger: logger},
			Settler:     ledger,
			MaxMessages: e.MaxEvents,
			Logger:      logger,
		}
	}
	if a.signer, err = newSignerWith(c, s3c, kms.NewFromConfig(awsCfg, kmsOptions, obs.kmsOptions), awsCfg.Credentials, logger); err != nil {
		return nil, err
	}
	if a.tokens, err = loadTokens(c.Links); err != nil {
		return nil, err
	}
	return a, nil
}

// newMailer builds the one mailer every schedule shares, since the SES
// quota belongs to the account: SES Simple content with the list and
// thread headers, paced by the account's quota (mail.Paced). SendEmail
// goes through mail.PacedRetryer, so throttles are retried by the pacer
// alone and a send SES may have accepted is never retried, except a 5xx
// when sender.retry_server_errors says so (counted as maybe duplicated);
// GetAccount, a read, keeps the SDK's standard retries.
//
// It logs to the process's stderr in the configured level and format,
// as newApp's logger does; that logger is not passed in, to keep
// newApp's call unchanged.
func newMailer(c *config.Config, awsCfg aws.Config, logger *slog.Logger) worker.Mailer {
	return &mail.Paced{
		Mailer: &mail.SES{
			Client:            sesv2.NewFromConfig(awsCfg, func(o *sesv2.Options) { o.Retryer = mail.PacedRetryer() }),
			ConfigurationSet:  c.Sender.ConfigurationSet,
			ListID:            c.Sender.ListID,
			UnsubscribeURL:    c.Sender.ListUnsubscribeURL,
			RetryServerErrors: c.Sender.RetryServerErrors,
		},
		Account:      sesv2.NewFromConfig(awsCfg),
		RateFraction: c.Pacing.RateFraction,
		Refresh:      c.Pacing.Refresh,
		FallbackRate: c.Pacing.FallbackRate,
		Replicas:     c.Pacing.Replicas,
		Logger:       logger,
	}
}

// newSigner builds the link signer from the config: the one place it
// is built. CloudFront signs with the key ring's active key and records
// each key's latest expiry next to the ledger, for "reportmailer keys";
// without CloudFront, links are S3 presigned URLs. This signer, for the
// commands that call no AWS API, signs with the configured keys only;
// newApp's (newSignerWith) also reads the ring's state and KMS keys.
func newSigner(c *config.Config, s3c *s3.Client, creds aws.CredentialsProvider, logger *slog.Logger) (worker.Signer, error) {
	return newSignerWith(c, s3c, nil, creds, logger)
}

// newSignerWith is newSigner with a KMS client: with one, the key ring
// also reads its state in the state bucket and signs with KMS keys.
func newSignerWith(c *config.Config, s3c *s3.Client, kmsc link.KMSAPI, creds aws.CredentialsProvider, logger *slog.Logger) (worker.Signer, error) {
	l := c.Links
	if cf := l.CloudFront; cf != nil {
		ring, err := newKeyRing(c, s3c, kmsc, logger)
		if err != nil {
			return nil, err
		}
		s := &link.CloudFront{
			Domain:               strings.TrimSuffix(cf.Domain, "/"),
			Bucket:               c.Reports.Bucket,
			OriginPath:           cf.OriginPath,
			Ring:                 ring,
			Hash:                 cf.Hash,
			CustomPolicy:         cf.Policy == "custom",
			OneSignaturePerEmail: cf.OneSignaturePerEmail,
			TTL:                  l.TTL,
			TTLByType:            l.TTLByType,
			MaxTTL:               l.MaxTTL,
			Expiries:             keyExpiries(c, s3c),
			Logger:               logger,
		}
		if err := s.Validate(); err != nil {
			return nil, fmt.Errorf("links: %w", err)
		}
		return s, nil
	}
	s := &link.S3Presigner{Client: s3.NewPresignClient(s3c), Credentials: creds,
		TTL: l.TTL, TTLByType: l.TTLByType, MaxTTL: l.MaxTTL, Logger: logger}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("links: %w", err)
	}
	return s, nil
}

// worker builds the worker for one schedule, with the configured
// policy for deliveries SES's events did not settle.
func (a *app) worker(s config.Schedule) (*worker.Worker, error) {
	return a.workerWith(s, worker.UnsettledPolicy(a.cfg.SESEvents.Unsettled))
}

// workerWith builds the worker for one schedule with the unsettled
// policy p.
func (a *app) workerWith(s config.Schedule, p worker.UnsettledPolicy) (*worker.Worker, error) {
	return a.newWorker(s, p, nil, a.queue(s), a.pendingStore(s), metrics.KindSlot)
}

// ingestWorker builds the worker of a digest schedule's ingest runs
// (ingestJob), which report to the schedule's metrics as the kind
// ingest and leave the progress of its slots alone.
func (a *app) ingestWorker(s config.Schedule) (*worker.Worker, error) {
	return a.newWorker(s, worker.UnsettledPolicy(a.cfg.SESEvents.Unsettled), nil, a.queue(s), a.pendingStore(s), metrics.KindIngest)
}

// queue is schedule s's queue.
func (a *app) queue(s config.Schedule) *queue.SQS {
	return &queue.SQS{
		Client:            a.sqs,
		URL:               s.QueueURL,
		DeadLetterURL:     s.DeadLetterQueueURL,
		VisibilityTimeout: s.VisibilityTimeout,
		Logger:            a.logger,
	}
}

// workerOn builds the worker for one schedule on q, with the unsettled
// policy p, sending to only (every recipient when empty).
func (a *app) workerOn(s config.Schedule, p worker.UnsettledPolicy, only []string, q worker.Queue) (*worker.Worker, error) {
	return a.newWorker(s, p, only, q, nil, metrics.KindSlot)
}

// newWorker is workerOn with a digest's pending store (a schedule's
// own runs ingest into it; a resend sends at once), for runs of kind
// (metrics.KindSlot, metrics.KindIngest).
func (a *app) newWorker(s config.Schedule, p worker.UnsettledPolicy, only []string, q worker.Queue, pending worker.Pending, kind string) (*worker.Worker, error) {
	return worker.New(worker.Config{
		Schedule:          s.Name,
		Mode:              worker.Mode(s.Mode),
		WaitTime:          s.WaitTime,
		Budget:            s.Budget,
		MaxMessages:       s.MaxMessages,
		VisibilityTimeout: s.VisibilityTimeout,
		Concurrency:       s.Concurrency,
		ClaimTimeout:      a.cfg.Ledger.ClaimTimeout,
		SettleGrace:       a.cfg.SESEvents.Grace,
		UnsettledPolicy:   p,
		AwaitSettlement:   a.cfg.SESEvents.QueueURL != "",
		Bucket:            a.cfg.Reports.Bucket,
		KeyPrefix:         a.cfg.ServedPrefix(),
		From:              a.cfg.Sender.From,
		ReplyTo:           a.cfg.Sender.ReplyTo,
		Recipients: worker.RecipientPolicy{
			AllowedDomains: a.cfg.Recipients.AllowedDomains,
			Max:            a.cfg.Recipients.Max,
		},
		OnlyRecipients:   only,
		MaxLinksPerEmail: s.MaxLinksPerEmail,
	}, worker.Deps{
		Queue:     q,
		Objects:   &store.Objects{Client: a.s3},
		Signer:    a.signer,
		Templates: a.templates,
		Mailer:    a.mailer,
		Ledger:    a.ledger,
		// One record for every schedule: what halts (the SES account,
		// the reports bucket) is shared.
		Halts:    &store.Halts{Client: a.s3, Bucket: a.cfg.Ledger.Bucket, Key: a.cfg.Ledger.Prefix + "halt.json"},
		Logger:   a.logger,
		Observer: a.obs.observer(s.Name, kind),
		Pending:  pending,

		LinkToken: a.linkToken(),
	})
}
