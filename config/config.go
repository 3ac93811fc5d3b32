// Package config loads and checks reportmailer's configuration: a YAML
// file, then environment overrides. Every default is documented on its
// field; [Load] fills them in and reports the first bad field by name
// and value.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/link"
	"github.com/reportmailer/reportmailer/worker/secret"
	"github.com/reportmailer/reportmailer/worker/store"
)

// Defaults.
const (
	LedgerPrefixDefault = "reportmailer/ledger/"
	ModeDefault         = "each"
	BudgetDefault       = 5 * time.Minute
	WaitTimeDefault     = 20 * time.Second
	MaxMessagesDefault  = 1000
	// ConcurrencyDefault is the default schedules[].concurrency: an
	// email costs four round trips in turn (ledger claim, ledger
	// "sending", SendEmail, ledger "sent"), 80 to 150 ms against AWS, so
	// 64 in flight send 400 to 800 a second, above nearly every
	// account's MaxSendRate; with 20 ms a call, 16 sent half of what a
	// bare SDK loop did (docs/benchmarks.md). Pacing holds the rate to
	// the quota whatever this is.
	ConcurrencyDefault   = 64
	VisibilityDefault    = 5 * time.Minute
	RecipientsMaxDefault = 10
	LogLevelDefault      = "info"
	LogFormatDefault     = LogFormatAuto
	// MaxLinksPerEmailDefault is schedules[].max_links_per_email's.
	MaxLinksPerEmailDefault = worker.MaxLinksPerEmailDefault
	// IngestEveryDefault is schedules[].ingest_every's.
	IngestEveryDefault = time.Minute
	// SlotHeartbeatDefault is ledger.slot_heartbeat's.
	SlotHeartbeatDefault = store.SlotHeartbeatDefault
)

// LogFormatAuto is the log.format that picks json or text by where
// stderr goes.
const LogFormatAuto = "auto"

// Limits.
const (
	// VisibilityMax is SQS's ceiling on a message's visibility timeout.
	VisibilityMax = 12 * time.Hour
	// ConcurrencyMax bounds schedules[].concurrency.
	ConcurrencyMax = 256
)

// Config is the whole configuration.
type Config struct {
	// Sender is who the email comes from. Required.
	Sender Sender `yaml:"sender"`
	// Reports is where the report files are: the only bucket, and
	// optionally key prefix, whose reports are linked. Required.
	Reports Reports `yaml:"reports"`
	// Links is how report links are made.
	Links Links `yaml:"links"`
	// Recipients is the policy for extra recipients.
	Recipients Recipients `yaml:"recipients"`
	// Ledger is where deliveries are recorded. Required.
	Ledger Ledger `yaml:"ledger"`
	// S3 holds S3 client settings.
	S3 S3 `yaml:"s3"`
	// TemplatesDir, when set, holds templates that override the
	// embedded ones file by file: files at its top override the default
	// set, and a TYPE/ directory a report type's set (see
	// templates.LoadSets). Default: the embedded templates only.
	TemplatesDir string `yaml:"templates_dir"`
	// Log is logging.
	Log Log `yaml:"log"`
	// Pacing is how fast email goes out; see config/mail.go.
	Pacing Pacing `yaml:"pacing"`
	// SESEvents is where SES's own record of what it sent is read, to
	// settle deliveries whose answer was lost; see config/sesevents.go.
	// Optional.
	SESEvents SESEvents `yaml:"ses_events"`
	// HTTP is serve's listener for metrics, probes and send-now; see
	// config/http.go.
	HTTP HTTP `yaml:"http"`
	// Schedules are the queues to drain and when. Required by drain
	// and serve.
	Schedules []Schedule `yaml:"schedules"`
}

// Sender is the From and Reply-To of every email.
type Sender struct {
	// From is the sender address, e.g. "Reports <reports@example.com>".
	// Required. The address must be verified in SES. Its local part
	// (before the @) must be ASCII, since SES does not support
	// SMTPUTF8; an internationalized domain is fine: it is sent in
	// Punycode, the form its SES identity has.
	From string `yaml:"from"`
	// ReplyTo addresses, ASCII before the @ as for From. Default none.
	ReplyTo []string `yaml:"reply_to"`
	// ConfigurationSet is the SES configuration set. Default none.
	ConfigurationSet string `yaml:"configuration_set"`
	// ListID is the RFC 2919 List-Id namespace, a domain name the
	// sender controls; each email gets "List-Id: <SCHEDULE.LIST_ID>".
	// Default "reportmailer." plus the domain of From, in Punycode if
	// it is internationalized.
	ListID string `yaml:"list_id"`
	// ListUnsubscribeURL is a Go text/template for each email's
	// one-click unsubscribe URL, over {{.UserID}}, {{.Email}} (the
	// recipient), {{.UserEmail}} and {{.Schedule}}, each already
	// percent-encoded. It must give an https URL. When set, emails carry
	// List-Unsubscribe and List-Unsubscribe-Post (RFC 8058), which Gmail
	// and Yahoo require of bulk senders. Default none.
	ListUnsubscribeURL string `yaml:"list_unsubscribe_url"`
	// RetryServerErrors retries a SendEmail that SES answered with a
	// 5xx. SES may have accepted the email before it failed, so a retry
	// may send it twice; each one is counted as maybe_duplicated.
	// Default false: the send is ambiguous (maybe_sent): its ledger
	// record stays "sending" and the message is dead-lettered, unless
	// SES's sending events settle it.
	RetryServerErrors bool `yaml:"retry_server_errors"`
}

// Reports is where the report files are. A report anywhere else is
// refused with code bucket_not_served and dead-lettered, never linked:
// a CloudFront link names a path, not a bucket, so a link to a report
// in another bucket would open the object with the same key in this
// one.
type Reports struct {
	// Bucket is the S3 bucket the reports are in: the CloudFront
	// distribution's origin, or the bucket S3 presigned links point
	// into. Required.
	Bucket string `yaml:"bucket"`
	// Prefix, when set, narrows what is linked to keys that start with
	// it, e.g. "exports/". With links.cloudfront.origin_path, keys must
	// also be under that path. Default "": the whole bucket.
	Prefix string `yaml:"prefix"`
}

// Recipients is the policy for the extra recipients a user allowed.
type Recipients struct {
	// AllowedDomains limits extra recipients to these domains;
	// "*.example.com" allows subdomains. Default: any domain.
	AllowedDomains []string `yaml:"allowed_domains"`
	// Max is the most extra recipients one event may name; those past
	// it are refused. Default 10; 0 means the default, -1 allows none.
	Max int `yaml:"max"`
}

// Ledger is where the exactly-once delivery records live.
type Ledger struct {
	// Bucket is an S3 bucket the worker may read and write. Required.
	// It may be the reports bucket; records go under Prefix.
	Bucket string `yaml:"bucket"`
	// Prefix for ledger records. Default "reportmailer/ledger/".
	Prefix string `yaml:"prefix"`
	// ClaimTimeout is how long a delivery claimed by a run that has not
	// started sending it (it is signing, rendering, or waiting its turn)
	// is left to that run; after it, by S3's clock, another run takes the
	// claim over and sends the email, since nothing was sent under it.
	// It should exceed the longest wait for a turn to send. At least 1s.
	// Default 15m.
	ClaimTimeout time.Duration `yaml:"claim_timeout"`
	// SlotHeartbeat is how often serve rewrites the lease of a slot it
	// runs (under Prefix + "slots/"); a lease not rewritten for four of
	// them is taken over by another replica, which finishes the slot.
	// 1s to 5m. Default 30s.
	SlotHeartbeat time.Duration `yaml:"slot_heartbeat"`
	// HistoryPrefix is where each run (a drain, a slot of serve) writes
	// one JSON record, for `reportmailer history` and `status`. It must
	// be under Prefix, which the declared IAM policy covers. Default
	// Prefix + "history/".
	HistoryPrefix string `yaml:"history_prefix"`
}

// S3 holds S3 client settings.
type S3 struct {
	// UsePathStyle addresses buckets as path segments rather than host
	// names, as S3-compatible local endpoints need. Default false.
	UsePathStyle bool `yaml:"use_path_style"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is text, json, or auto: json when stderr is a file or a
	// pipe (a container, systemd, a log shipper), text on a terminal.
	// Default auto.
	Format string `yaml:"format"`
}

// Schedule is one queue and when to drain it.
type Schedule struct {
	// Name identifies the schedule in commands, logs and email tags:
	// letters, digits, '.', '_' and '-'. Required.
	Name string `yaml:"name"`
	// Cron is a five-field cron spec or a descriptor such as "@hourly".
	// Required by serve.
	Cron string `yaml:"cron"`
	// TimeZone is the IANA zone Cron is read in. Default UTC.
	TimeZone string `yaml:"time_zone"`
	// Mode is "each" (one email per event) or "digest" (one email per
	// user per run). Default each.
	Mode string `yaml:"mode"`
	// QueueURL is the SQS queue to drain. Required.
	QueueURL string `yaml:"queue_url"`
	// DeadLetterQueueURL receives poison messages. Required. It should
	// be the queue's RedrivePolicy target, and no other schedule's.
	DeadLetterQueueURL string `yaml:"dead_letter_queue_url"`
	// Budget bounds a run. Default 5m. A digest's slot, its ingest
	// then its delivery, keeps to one budget: the ingest stops
	// receiving at half of it, and the delivery starts no user after
	// it (the slot then runs again for the rest).
	Budget time.Duration `yaml:"budget"`
	// WaitTime is the long-poll wait, 1s to 20s. Default 20s.
	WaitTime time.Duration `yaml:"wait_time"`
	// MaxMessages bounds the messages one run takes. Default 1000.
	MaxMessages int `yaml:"max_messages"`
	// VisibilityTimeout is set on received messages, and the worker
	// extends it every half of it while it still holds them. Default 5m
	// for mode each; Budget plus 5m for digest, whose messages wait for
	// the whole run. At most 12h.
	VisibilityTimeout time.Duration `yaml:"visibility_timeout"`
	// Concurrency is how many emails a run works on at once (claim,
	// sign, render, send), while it keeps receiving. Default 64; 1 to
	// 256. 1 sends one email at a time. The account's quota still sets
	// the rate: every email waits for the shared pacer, holding its
	// claim, so keep ledger.claim_timeout above concurrency /
	// (MaxSendRate / pacing.replicas) seconds (64 s at 1 email a
	// second); on shutdown the emails still waiting give up and their
	// messages go back to the queue.
	Concurrency int `yaml:"concurrency"`
	// Paused stops the schedule: serve skips its slots and drain
	// refuses it, each saying so; its messages wait on the queue.
	// Default false.
	Paused bool `yaml:"paused"`
	// MaxLinksPerEmail splits a digest into several emails ("part 2 of
	// 3") above this many links; no email holds more, save one whose
	// single event has more (an event is never split). A slot run
	// again after a failure sends the parts left under the numbers
	// they had. Digest mode only (refused on mode each). Default 50.
	MaxLinksPerEmail int `yaml:"max_links_per_email"`
	// IngestEvery is how often serve moves a digest schedule's queue
	// into its pending store (under ledger.prefix), so that no event
	// waits on the queue, where SQS keeps it at most 14 days, for the
	// digest's slot. Digest mode only (refused on mode each); 10s to
	// 1h. Default 1m.
	IngestEvery time.Duration `yaml:"ingest_every"`
}

// Load reads the file at path, applies REPORTMAILER_* environment
// overrides (see [ApplyEnv]), fills in defaults and validates.
func Load(path string) (*Config, error) {
	if secret.IsKeyMaterial(path) {
		// os.ReadFile's error would quote it.
		return nil, errors.New("config: the file name holds key material, not a path")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(b, os.Environ())
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse is Load on bytes and an explicit environment (KEY=VALUE).
func Parse(b []byte, environ []string) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, errEOF) {
		return nil, yamlError(err)
	}
	if err := ApplyEnv(&c, environ); err != nil {
		return nil, err
	}
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) setDefaults() {
	c.setMailDefaults()
	c.setLinksDefaults()
	c.setSESEventsDefaults()
	c.setHTTPDefaults()
	if c.Ledger.Prefix == "" {
		c.Ledger.Prefix = LedgerPrefixDefault
	}
	if c.Ledger.HistoryPrefix == "" {
		c.Ledger.HistoryPrefix = c.Ledger.Prefix + "history/"
	}
	if c.Ledger.SlotHeartbeat == 0 {
		c.Ledger.SlotHeartbeat = SlotHeartbeatDefault
	}
	if c.Ledger.ClaimTimeout == 0 {
		c.Ledger.ClaimTimeout = worker.ClaimTimeoutDefault
	}
	if c.Recipients.Max == 0 {
		c.Recipients.Max = RecipientsMaxDefault
	}
	if c.Log.Level == "" {
		c.Log.Level = LogLevelDefault
	}
	if c.Log.Format == "" {
		c.Log.Format = LogFormatDefault
	}
	for i := range c.Schedules {
		s := &c.Schedules[i]
		if s.Mode == "" {
			s.Mode = ModeDefault
		}
		if s.Budget == 0 {
			s.Budget = BudgetDefault
		}
		if s.WaitTime == 0 {
			s.WaitTime = WaitTimeDefault
		}
		if s.MaxMessages == 0 {
			s.MaxMessages = MaxMessagesDefault
		}
		if s.Concurrency == 0 {
			s.Concurrency = ConcurrencyDefault
		}
		if s.Mode == "digest" {
			if s.MaxLinksPerEmail == 0 {
				s.MaxLinksPerEmail = MaxLinksPerEmailDefault
			}
			if s.IngestEvery == 0 {
				s.IngestEvery = IngestEveryDefault
			}
		}
		if s.VisibilityTimeout == 0 {
			s.VisibilityTimeout = VisibilityDefault
			if s.Mode == "digest" {
				s.VisibilityTimeout = s.Budget + 5*time.Minute
			}
		}
	}
}

// FieldError is a bad value in the configuration.
type FieldError struct {
	Field  string // e.g. "schedules[1].cron"
	Value  any    // nil when the reason says all, or the value must not be shown
	Reason string
}

// Error names the field and quotes the value, unless the value is nil
// or looks like key material, which is never quoted.
func (e *FieldError) Error() string {
	s, isString := e.Value.(string)
	switch {
	case e.Value == nil:
		return fmt.Sprintf("%s: %s", e.Field, e.Reason)
	case isString:
		return fmt.Sprintf("%s: %s %s", e.Field, quote(s), e.Reason)
	}
	return fmt.Sprintf("%s: %v %s", e.Field, e.Value, e.Reason)
}

// quote quotes a value for an error, unless it looks like key material.
func quote(s string) string {
	if secret.Redact(s) != s {
		return "(holds key material, not shown)"
	}
	return strconv.Quote(s)
}

// sesAddress returns why SES cannot take a, an address with or without
// a display name, as a sender or reply-to address, or "" if it can. It
// applies the rules every email's addresses meet when sent (see
// event.ASCIIAddress), so that a From no email could carry is refused
// here rather than halting every run.
func sesAddress(a string) string {
	p, err := mail.ParseAddress(a)
	if err != nil || strings.ContainsAny(a, "\r\n") {
		return "is not a valid address"
	}
	at := strings.LastIndexByte(p.Address, '@')
	if local := p.Address[:at]; strings.ContainsFunc(local, func(r rune) bool { return r >= utf8.RuneSelf }) {
		return fmt.Sprintf("has a local part, %q, that is not ASCII: SES does not support SMTPUTF8 (an internationalized domain is fine; it is sent in Punycode)", local)
	}
	if _, err := event.ASCIIAddress(p.Address); err != nil {
		return "is not an address SES can take: " + err.Error()
	}
	return ""
}

// yamlError returns the YAML decoder's error without its "yaml: "
// prefix, one line per problem, each passed through clean: the decoder
// quotes the document's keys (an unknown field) and anchors as they
// are.
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		lines := make([]string, len(te.Errors))
		for i, e := range te.Errors {
			lines[i] = "  " + clean(e)
		}
		return errors.New("unmarshal errors:\n" + strings.Join(lines, "\n"))
	}
	return errors.New(clean(strings.TrimPrefix(err.Error(), "yaml: ")))
}

// clean makes a library's message, which may quote the configuration
// raw, fit for an error line: key material (and any run of base64 text
// that mixes cases and digits, and any piece of PEM armour) redacted,
// and control
// characters and invalid UTF-8 escaped, so that a value cannot break or
// forge log lines.
func clean(s string) string {
	s = secret.Redact(s)
	// Redact looks for a PEM body, and can miss one line of it, split by
	// '/' into short pieces (YAML quotes a tag such as "!MIIEvg..." in
	// full). A library message has no business holding such a run.
	s = encodedRun.ReplaceAllStringFunc(s, func(run string) string {
		if strings.ContainsAny(run, "0123456789") && strings.ToLower(run) != run && strings.ToUpper(run) != run {
			return secret.Redacted
		}
		return run
	})
	// Nor pieces of PEM armour that Redact, matching whole blocks,
	// leaves when the document split a block (as a tag and a key).
	s = armourPiece.ReplaceAllString(s, secret.Redacted)
	if utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var b strings.Builder
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size == 1:
			// YAML cuts values it quotes at 7 bytes, which can split a
			// rune.
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case unicode.IsControl(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[:size])
		}
		s = s[size:]
	}
	return b.String()
}

// armourPiece matches the pieces of a PEM block's armour.
var armourPiece = regexp.MustCompile(`(-+(BEGIN|END) )?([A-Z0-9]+ )*PRIVATE KEY-*|-{5}(BEGIN|END)( [A-Z0-9]+)*-*`)

// encodedRun matches 16 or more characters of base64 text.
var encodedRun = regexp.MustCompile(`[A-Za-z0-9+/=]{16,}`)

// detail is a library's error about value, as a reason's last part:
// passed through clean, and left out (with a note) when value holds key
// material, as such errors quote it.
func detail(err error, value string) string {
	if secret.Redact(value) != value {
		return "(details not shown, as it holds key material)"
	}
	return clean(err.Error())
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// ServedPrefix is the key prefix of the reports that are linked:
// reports.prefix, narrowed to links.cloudfront.origin_path when that
// is longer, since the distribution serves nothing outside it.
// Validate makes sure one is under the other.
func (c *Config) ServedPrefix() string {
	p := c.Reports.Prefix
	if cf := c.Links.CloudFront; cf != nil {
		if sp := link.ServedPrefix(cf.Domain, cf.OriginPath); len(sp) > len(p) {
			p = sp
		}
	}
	return p
}

// Validate checks every field, returning all problems joined.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field string, value any, reason string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Value: value, Reason: fmt.Sprintf(reason, args...)})
	}
	if c.Sender.From == "" {
		bad("sender.from", "", "is required")
	} else if reason := sesAddress(c.Sender.From); reason != "" {
		bad("sender.from", c.Sender.From, "%s", reason)
	}
	for i, a := range c.Sender.ReplyTo {
		if reason := sesAddress(a); reason != "" {
			bad(fmt.Sprintf("sender.reply_to[%d]", i), a, "%s", reason)
		}
	}
	if c.Sender.ConfigurationSet != "" && !nameRE.MatchString(c.Sender.ConfigurationSet) {
		bad("sender.configuration_set", c.Sender.ConfigurationSet, "may hold only letters, digits, '.', '_' and '-'")
	}
	errs = append(errs, c.validateMail()...)

	errs = append(errs, c.validateLinks()...)

	errs = append(errs, c.validateSESEvents()...)
	errs = append(errs, c.validateHTTP()...)

	switch b := c.Reports.Bucket; {
	case b == "":
		bad("reports.bucket", "", "is required: the bucket the reports are in; reports in any other bucket are refused, never linked")
	case !bucketRE.MatchString(b) || strings.Contains(b, ".."):
		bad("reports.bucket", b, "is not an S3 bucket name (3-63 of a-z, 0-9, '.' and '-', starting and ending with a letter or digit)")
	}
	if strings.HasPrefix(c.Reports.Prefix, "/") {
		bad("reports.prefix", c.Reports.Prefix, "starts with \"/\", which S3 keys do not: write %s", quote(strings.TrimLeft(c.Reports.Prefix, "/")))
	}

	if c.Recipients.Max < -1 {
		bad("recipients.max", c.Recipients.Max, "is less than -1")
	}
	for i, d := range c.Recipients.AllowedDomains {
		if !regexp.MustCompile(`^(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$`).MatchString(d) {
			bad(fmt.Sprintf("recipients.allowed_domains[%d]", i), d, "is not a domain (example.com or *.example.com)")
		}
	}
	if c.Ledger.Bucket == "" {
		bad("ledger.bucket", "", "is required: the ledger is what stops a redelivered event from sending twice")
	}
	if !strings.HasPrefix(c.Ledger.HistoryPrefix, c.Ledger.Prefix) {
		// ledger.prefix is not quoted: its own check quotes it, and
		// only where it holds no key material.
		bad("ledger.history_prefix", c.Ledger.HistoryPrefix, "is not under ledger.prefix, which the declared IAM policy covers")
	}
	if c.Ledger.SlotHeartbeat < time.Second || c.Ledger.SlotHeartbeat > 5*time.Minute {
		bad("ledger.slot_heartbeat", c.Ledger.SlotHeartbeat, "is not between 1s and 5m")
	}
	if c.Ledger.ClaimTimeout < worker.ClaimTimeoutMin {
		bad("ledger.claim_timeout", c.Ledger.ClaimTimeout, "is shorter than %s", worker.ClaimTimeoutMin)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", c.Log.Level, "is not debug, info, warn or error")
	}
	if c.Log.Format != "text" && c.Log.Format != "json" && c.Log.Format != "auto" {
		bad("log.format", c.Log.Format, "is not text, json or auto")
	}
	if c.TemplatesDir != "" {
		if st, err := os.Stat(c.TemplatesDir); err != nil || !st.IsDir() {
			bad("templates_dir", c.TemplatesDir, "is not a directory")
		}
	}

	errs = append(errs, c.validateEnvNames()...)

	seen := map[string]bool{}
	// dlqOwner is the index of the schedule each dead-letter queue is
	// for: redrive, resend and dlq list read a dead-letter queue as one
	// schedule's, and send what they move back to that schedule's queue.
	dlqOwner := map[string]int{}
	queueOwner := map[string]int{} // the schedule each queue_url is
	for i, s := range c.Schedules {
		queueOwner[queueID(s.QueueURL)] = i
	}
	for i, s := range c.Schedules {
		f := func(name string) string { return fmt.Sprintf("schedules[%d].%s", i, name) }
		if !nameRE.MatchString(s.Name) {
			bad(f("name"), s.Name, "must be 1-64 letters, digits, '.', '_' or '-'")
		} else if seen[s.Name] {
			bad(f("name"), s.Name, "is used by an earlier schedule")
		}
		seen[s.Name] = true
		loc := time.UTC
		if s.TimeZone != "" {
			l, err := time.LoadLocation(s.TimeZone)
			if err != nil {
				bad(f("time_zone"), s.TimeZone, "is not an IANA time zone")
			} else {
				loc = l
			}
		}
		if s.Cron != "" {
			if sched, err := ParseCron(s.Cron, loc); err != nil {
				bad(f("cron"), s.Cron, "is not a cron spec: %s", detail(err, s.Cron))
			} else if _, aligned := sched.(*cron.SpecSchedule); !aligned && s.Mode == "digest" {
				bad(f("cron"), s.Cron, "cannot time a digest: an @every schedule counts from each replica's own start, so replicas cannot agree on a slot and a digest would split; use a wall-clock spec such as \"0 8 * * 1\"")
			}
		}
		if s.Mode != "each" && s.Mode != "digest" {
			bad(f("mode"), s.Mode, "is not each or digest")
		}
		if err := checkQueueURL(s.QueueURL); err != nil {
			bad(f("queue_url"), s.QueueURL, "%v", err)
		}
		if err := checkQueueURL(s.DeadLetterQueueURL); err != nil {
			bad(f("dead_letter_queue_url"), s.DeadLetterQueueURL, "%v", err)
		} else if queueID(s.DeadLetterQueueURL) == queueID(s.QueueURL) {
			bad(f("dead_letter_queue_url"), s.DeadLetterQueueURL, "is the queue itself")
		} else if j, ok := queueOwner[queueID(s.DeadLetterQueueURL)]; ok {
			bad(f("dead_letter_queue_url"), s.DeadLetterQueueURL, "is schedules[%d].queue_url: dlq list, resend and redrive would take that schedule's live messages for dead letters", j)
		} else if j, ok := dlqOwner[queueID(s.DeadLetterQueueURL)]; ok {
			bad(f("dead_letter_queue_url"), s.DeadLetterQueueURL, "is also schedules[%d].dead_letter_queue_url: give each schedule its own dead-letter queue, so that a redrive knows where its messages go back", j)
		} else {
			dlqOwner[queueID(s.DeadLetterQueueURL)] = i
		}
		if s.Budget < time.Second {
			bad(f("budget"), s.Budget, "is shorter than 1s")
		}
		if s.WaitTime < time.Second || s.WaitTime > 20*time.Second {
			bad(f("wait_time"), s.WaitTime, "is not between 1s and 20s")
		}
		if s.MaxMessages < 1 {
			bad(f("max_messages"), s.MaxMessages, "is less than 1")
		}
		if s.Mode == "digest" {
			if s.MaxLinksPerEmail < 1 {
				bad(f("max_links_per_email"), s.MaxLinksPerEmail, "is less than 1")
			}
			if s.IngestEvery < 10*time.Second || s.IngestEvery > time.Hour {
				bad(f("ingest_every"), s.IngestEvery, "is not between 10s and 1h")
			}
		} else if s.Mode == "each" {
			// Set on a schedule that ignores them, they would say a
			// digest is configured when none is.
			if s.MaxLinksPerEmail != 0 {
				bad(f("max_links_per_email"), s.MaxLinksPerEmail, "applies to mode digest only, and this schedule is mode each")
			}
			if s.IngestEvery != 0 {
				bad(f("ingest_every"), s.IngestEvery, "applies to mode digest only, and this schedule is mode each")
			}
		}
		if s.Concurrency < 1 || s.Concurrency > ConcurrencyMax {
			bad(f("concurrency"), s.Concurrency, "is not between 1 and %d", ConcurrencyMax)
		}
		switch {
		case s.VisibilityTimeout < 10*time.Second || s.VisibilityTimeout > VisibilityMax:
			bad(f("visibility_timeout"), s.VisibilityTimeout, "is not between 10s and 12h")
		case s.Mode == "digest" && s.VisibilityTimeout <= s.Budget:
			bad(f("visibility_timeout"), s.VisibilityTimeout, "must exceed the budget (%s) in digest mode, or messages reappear mid-run and are sent twice", s.Budget)
		}
	}
	return errors.Join(errs...)
}

// Schedule returns the schedule called name.
func (c *Config) Schedule(name string) (Schedule, error) {
	var names []string
	for _, s := range c.Schedules {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return Schedule{}, fmt.Errorf("no schedule named %q (have: %s)", name, strings.Join(names, ", "))
}

// ParseCron parses a five-field spec or descriptor in loc. A
// "CRON_TZ=Zone " prefix in spec takes precedence over loc.
func ParseCron(spec string, loc *time.Location) (cron.Schedule, error) {
	p := cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	// Always name the zone: without it robfig/cron reads the spec in the
	// process's local time, and replicas in different zones would plan
	// different slots.
	if !strings.HasPrefix(spec, "CRON_TZ=") && !strings.HasPrefix(spec, "TZ=") {
		spec = "CRON_TZ=" + loc.String() + " " + spec
	}
	return p.Parse(spec)
}

// queueID is what names a queue in its URL, the account and the name
// in its path, so that two spellings of one queue (another host for the
// same region, a trailing slash) compare equal.
func queueID(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	return strings.Trim(u.Path, "/")
}

func checkQueueURL(s string) error {
	if s == "" {
		return errors.New("is required")
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("is not a queue URL")
	}
	return nil
}
