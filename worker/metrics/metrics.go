// Package metrics exports what the worker observes as Prometheus
// metrics: a [worker.Observer] per schedule and a [worker.PaceObserver]
// for the shared mailer, plus gauges the command refreshes (queue
// depths, key removal dates).
//
// Every label has a bounded set of values: schedule names, stages,
// classes, codes and settlements from package worker, queue roles and
// the key ids of the key ring (configured, or rotated in by `keys
// rotate`; a retirement removes a key's series). No event id, address or object key is ever a
// label.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/reportmailer/reportmailer/worker"
)

// Namespace prefixes every metric name.
const Namespace = "reportmailer"

// Run outcomes, the values of the runs_total outcome label.
const (
	RunOK         = "ok"         // every message received was dealt with for good
	RunIncomplete = "incomplete" // some messages were dead-lettered or left for retry
	RunHalted     = "halted"     // sending halted (quota, account, reports unreadable)
	RunFailed     = "failed"     // the queue itself failed
)

// Run kinds, the values of the kind label of the run metrics. Only a
// slot is a run of the schedule, what its alerts and health are about:
// a digest's ingest, every schedules[].ingest_every, moves the queue
// into the pending store and sends nothing, so an ingest of an empty
// queue must not pass for the schedule's success.
const (
	KindSlot   = "slot"   // a run of the schedule: its cron slot, POST /run, drain
	KindIngest = "ingest" // a digest's move of its queue into the pending store
)

// Metrics holds the reportmailer metrics in a registry of their own,
// with the Go and process collectors. Build one with New.
type Metrics struct {
	reg      *prometheus.Registry
	names    []string
	families []Family

	runs          *prometheus.CounterVec
	runDuration   *prometheus.HistogramVec
	lastSuccess   *prometheus.GaugeVec
	successMu     sync.Mutex
	successAt     map[[2]string]time.Time // schedule, kind → lastSuccess's time
	lastRun       *prometheus.GaugeVec
	lastFailure   *prometheus.GaugeVec
	lastSent      *prometheus.GaugeVec
	lastThrottles *prometheus.GaugeVec
	throttled     atomic.Int64 // throttles, for a run's share
	declared      *prometheus.GaugeVec
	period        *prometheus.GaugeVec
	messages      *prometheus.CounterVec
	sent          *prometheus.CounterVec
	refused       *prometheus.CounterVec
	duplicates    *prometheus.CounterVec
	stageDuration *prometheus.HistogramVec
	stageErrors   *prometheus.CounterVec
	throttles     prometheus.Counter
	pacingWait    prometheus.Histogram
	quotaMax      prometheus.Gauge
	quotaSent     prometheus.Gauge
	quotaLeft     *prometheus.GaugeVec // no labels: a vector so it can have no value
	quotaRead     prometheus.Gauge
	sendRate      prometheus.Gauge
	queueDepth    *prometheus.GaugeVec
	keyRemoval    *prometheus.GaugeVec
	linksTTL      prometheus.Gauge
}

// New returns the metrics, registered.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.runs = counterVec(m, "runs_total", "Runs by schedule, kind (slot: a run of the schedule; ingest: a digest's move of its queue into the pending store) and outcome (ok, incomplete, halted, failed).", "schedule", "kind", "outcome")
	m.runDuration = histogramVec(m, "run_duration_seconds", "How long each run took, receive to the last settle, by kind.",
		prometheus.ExponentialBuckets(0.1, 2, 14), "schedule", "kind")
	m.lastSuccess = gaugeVec(m, "last_success_timestamp_seconds", "Unix time of the schedule's last run of the kind that succeeded: ok, or incomplete but it sent, found sent or acked something; no series before the first.", "schedule", "kind")
	m.lastRun = gaugeVec(m, "last_run_timestamp_seconds", "Unix time the schedule's last run of the kind ended, whatever its outcome.", "schedule", "kind")
	m.lastFailure = gaugeVec(m, "last_failure_timestamp_seconds", "Unix time of the schedule's last run of the kind that failed, halted, or was incomplete having sent, found sent and acked nothing; no series before the first.", "schedule", "kind")
	m.lastSent = gaugeVec(m, "last_run_emails_sent", "Emails the schedule's last run of the kind sent: what a Pushgateway keeps of a drain CronJob's run, whose counters restart with each process.", "schedule", "kind")
	m.lastThrottles = gaugeVec(m, "last_run_ses_throttles", "Sends SES throttled while the schedule's last run of the kind went on (in serve, shared with the runs of other schedules at the same time).", "schedule", "kind")
	m.declared = gaugeVec(m, "schedule_declared_timestamp_seconds", "Unix time the process started running the schedule (serve on its cron spec, drain as it starts): what \"no successful run\" counts from before the first success.", "schedule")
	m.period = gaugeVec(m, "schedule_period_seconds", "The time between two runs of the schedule, from its cron spec.", "schedule")
	m.messages = counterVec(m, "messages_total", "Messages by what became of them (settlement) and, when not acked, the class and code of why.",
		"schedule", "settlement", "class", "code")
	m.sent = counterVec(m, "emails_sent_total", "Emails the mail service accepted.", "schedule")
	m.refused = counterVec(m, "recipients_refused_total", "Extra recipients the recipient policy refused, by reason.", "schedule", "reason")
	m.duplicates = counterVec(m, "ledger_duplicates_prevented_total", "Deliveries the ledger said were sent already, so not sent again.", "schedule")
	m.stageDuration = histogramVec(m, "stage_duration_seconds", "How long each stage of a message took (receive, head, claim, sign, render, send, settle).",
		prometheus.ExponentialBuckets(0.001, 2.5, 14), "schedule", "stage")
	m.stageErrors = counterVec(m, "stage_errors_total", "Stages that ended in an error.", "schedule", "stage")
	m.throttles = counter(m, "ses_throttles_total", "Sends SES refused for its sending rate, each retried by the pacer.")
	m.pacingWait = histogram(m, "ses_pacing_wait_seconds", "How long each send waited for the sending rate.",
		[]float64{0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30})
	m.quotaMax = gauge(m, "ses_quota_max_24h", "The SES account's 24-hour sending quota, in recipients (-1: unlimited).")
	m.quotaSent = gauge(m, "ses_quota_sent_24h", "Recipients SES counts as sent in the last 24 hours, at the last quota read.")
	m.quotaLeft = gaugeVec(m, "ses_quota_remaining", "Recipients left in the 24-hour quota at the last quota read; no value while the quota is unlimited.")
	m.quotaRead = gauge(m, "ses_quota_read_timestamp_seconds", "Unix time of the last successful read of the SES quota (GetAccount).")
	m.sendRate = gauge(m, "ses_max_send_rate", "The SES account's maximum send rate, recipients per second.")
	m.queueDepth = gaugeVec(m, "queue_messages", "Messages in a schedule's queue (queue=main) or dead-letter queue (queue=dlq), by state (visible, in_flight, delayed), from GetQueueAttributes.",
		"schedule", "queue", "state")
	m.keyRemoval = gaugeVec(m, "key_safe_removal_timestamp_seconds", "Unix time after which no link signed with the CloudFront key is valid, so its public key may leave CloudFront; active=true while it still signs.",
		"key_id", "active")
	m.linksTTL = gauge(m, "links_ttl_seconds", "links.ttl: how long a link lives, so how far past its last signature a key's removal date lies.")
	return m
}

// Handler serves the metrics in Prometheus's formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Gatherer is the registry, for pushing to a Pushgateway.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Family describes one reportmailer metric, for checking the queries
// of alerts and dashboards against what is exported.
type Family struct {
	Name   string   // full name, e.g. reportmailer_runs_total
	Type   string   // "counter", "gauge" or "histogram"
	Labels []string // label names
}

// LabelValues lists, for the labels whose values are a fixed set, every
// value the metrics can carry. Labels not listed (schedule, key_id,
// class, code, reason) take values from the config or the worker.
func LabelValues() map[string][]string {
	stages := make([]string, len(worker.Stages))
	for i, s := range worker.Stages {
		stages[i] = string(s)
	}
	return map[string][]string{
		"outcome": {RunOK, RunIncomplete, RunHalted, RunFailed},
		"kind":    {KindSlot, KindIngest},
		"queue":   {"main", "dlq"},
		"state":   {"visible", "in_flight", "delayed"},
		"active":  {"true", "false"},
		"stage":   stages,
		"settlement": {string(worker.SettleAcked), string(worker.SettleDropped), string(worker.SettleDeadLettered),
			string(worker.SettleRetrying), string(worker.SettleHandedBack)},
	}
}

// Families lists every reportmailer metric with its type and labels.
func (m *Metrics) Families() []Family { return slices.Clone(m.families) }

// Names lists the full name of every reportmailer metric, sorted.
// Histograms add _bucket, _sum and _count to theirs when scraped.
func (m *Metrics) Names() []string { return slices.Sorted(slices.Values(m.names)) }

// Observer returns the observer of what schedule's runs do: messages,
// emails, stages. Its RunFinished records nothing: a digest's slot is
// two runs of the worker (an ingest, then the delivery) that are one
// run of the schedule, so the command, which knows where a run starts
// and ends and what kind it is, records it with [Metrics.Run].
func (m *Metrics) Observer(schedule string) worker.Observer {
	return &observer{m: m, schedule: schedule}
}

// Pace returns the observer of the shared mailer's pacing.
func (m *Metrics) Pace() worker.PaceObserver { return pace{m} }

// Queue sets the depth of one of schedule's queues: role is "main" or
// "dlq".
func (m *Metrics) Queue(schedule, role string, visible, inFlight, delayed float64) {
	m.queueDepth.WithLabelValues(schedule, role, "visible").Set(visible)
	m.queueDepth.WithLabelValues(schedule, role, "in_flight").Set(inFlight)
	m.queueDepth.WithLabelValues(schedule, role, "delayed").Set(delayed)
}

// DropQueue removes the depth of one of schedule's queues, when it
// could not be read: a stale depth would keep alerts firing, or quiet.
func (m *Metrics) DropQueue(schedule, role string) {
	m.queueDepth.DeletePartialMatch(prometheus.Labels{"schedule": schedule, "queue": role})
}

// Key sets when the CloudFront key id may leave CloudFront. A key that
// never signed anything has no date and no series, and neither has one
// given the zero time (a retired key).
func (m *Metrics) Key(id string, active bool, safeAfter time.Time) {
	a, other := "false", "true"
	if active {
		a, other = other, a
	}
	m.keyRemoval.DeleteLabelValues(id, other)
	if safeAfter.IsZero() {
		m.keyRemoval.DeleteLabelValues(id, a)
		return
	}
	m.keyRemoval.WithLabelValues(id, a).Set(float64(safeAfter.Unix()))
}

// LinksTTL sets links.ttl, which the key alerts measure against.
func (m *Metrics) LinksTTL(d time.Duration) { m.linksTTL.Set(d.Seconds()) }

// Schedule declares schedule's series, so that rates and alerts on
// them start from the first scrape rather than from the first event:
// counters at zero, and its period when known (not 0).
func (m *Metrics) Schedule(schedule string, period time.Duration) {
	if period > 0 {
		m.period.WithLabelValues(schedule).Set(period.Seconds())
	}
	for _, o := range []string{RunOK, RunIncomplete, RunHalted, RunFailed} {
		m.runs.WithLabelValues(schedule, KindSlot, o)
	}
	m.sent.WithLabelValues(schedule)
	m.duplicates.WithLabelValues(schedule)
	m.messages.WithLabelValues(schedule, string(worker.SettleAcked), "", "")
	for _, s := range worker.Stages {
		m.stageErrors.WithLabelValues(schedule, string(s))
	}
}

// StartClock records that this process runs schedule from now (serve
// on its cron spec, or one drain), in a gauge of its own: "no
// successful run in two periods" falls back to the earliest of it only
// while no run ever succeeded, so a restart does not pass for a
// success.
func (m *Metrics) StartClock(schedule string) {
	m.declared.WithLabelValues(schedule).SetToCurrentTime()
}

// RunOutcome is the outcome label of a run that ended with sum and err.
func RunOutcome(sum worker.Summary, err error) string {
	switch {
	case err != nil:
		return RunFailed
	case sum.Halted:
		return RunHalted
	case !sum.OK():
		return RunIncomplete
	}
	return RunOK
}

// Succeeded reports whether a run that ended with sum and err is a
// success, the time "no successful run" counts from: it dealt with
// every message (ok), or left some for retry or the dead-letter queue
// (incomplete) but moved on: it sent an email, found one sent already,
// acked a message or dead-lettered one. A run that received messages
// and left them all for retry is no success, however often it runs. One
// that dead-lettered them all is: it did what it should with them, and
// the dead letters page on their own (ReportmailerDeadLetters), so a
// day of nothing but poison does not page twice.
func Succeeded(sum worker.Summary, err error) bool {
	switch RunOutcome(sum, err) {
	case RunOK:
		return true
	case RunIncomplete:
		if sum.Due > 0 {
			// A digest slot: what it did with its pending store. Its
			// own ingest's acks are not the slot's progress, and an
			// event found sent may be one whose entry the slot keeps
			// while an older one it shows a report of keeps failing.
			return sum.Sent > 0 || sum.Delivered > 0 || sum.DeadLettered > 0
		}
		return sum.Sent > 0 || sum.Duplicates > 0 || sum.Acked > 0 || sum.DeadLettered > 0
	}
	return false
}

// Throttles returns how many sends SES has throttled since New: read at
// a run's start and end, the run's share (RunEnd.Throttles).
func (m *Metrics) Throttles() int64 { return m.throttled.Load() }

// RunEnd is how a run ended, for [Metrics.Run].
type RunEnd struct {
	Summary worker.Summary
	Err     error
	Took    time.Duration
	// Throttles is how many sends SES throttled while the run went on
	// (Throttles at its end less at its start).
	Throttles int64
}

// Run records a run of schedule of kind (KindSlot, KindIngest): its
// outcome, its duration, its emails and throttles as the last run's,
// and its time as the last run and as the last success or failure.
func (m *Metrics) Run(schedule, kind string, r RunEnd) {
	sum, err := r.Summary, r.Err
	m.runs.WithLabelValues(schedule, kind, RunOutcome(sum, err)).Inc()
	m.runDuration.WithLabelValues(schedule, kind).Observe(r.Took.Seconds())
	m.lastSent.WithLabelValues(schedule, kind).Set(float64(sum.Sent))
	m.lastThrottles.WithLabelValues(schedule, kind).Set(float64(r.Throttles))
	m.lastRun.WithLabelValues(schedule, kind).SetToCurrentTime()
	if Succeeded(sum, err) {
		m.LastSuccess(schedule, kind, time.Now())
	} else {
		m.lastFailure.WithLabelValues(schedule, kind).SetToCurrentTime()
	}
}

// LastSuccess records at as schedule's last successful run of kind,
// unless a later one is recorded already. serve seeds it at its start
// from the run history, so that a restart does not forget the last
// success until the next one: "no successful run in two periods" then
// does not depend on how far back Prometheus keeps the series.
func (m *Metrics) LastSuccess(schedule, kind string, at time.Time) {
	m.successMu.Lock()
	defer m.successMu.Unlock()
	k := [2]string{schedule, kind}
	if prev, ok := m.successAt[k]; ok && !at.After(prev) {
		return
	}
	if m.successAt == nil {
		m.successAt = map[[2]string]time.Time{}
	}
	m.successAt[k] = at
	m.lastSuccess.WithLabelValues(schedule, kind).Set(float64(at.UnixNano()) / 1e9)
}

type observer struct {
	worker.NopObserver
	m        *Metrics
	schedule string
}

func (o *observer) Stage(ctx context.Context, s worker.Stage) (context.Context, func(error)) {
	start := time.Now()
	return ctx, func(err error) {
		o.m.stageDuration.WithLabelValues(o.schedule, string(s)).Observe(time.Since(start).Seconds())
		if err != nil {
			o.m.stageErrors.WithLabelValues(o.schedule, string(s)).Inc()
		}
	}
}

func (o *observer) Settled(_ context.Context, _ worker.Message, out worker.MessageOutcome) {
	o.m.messages.WithLabelValues(o.schedule, string(out.Settlement), string(out.Class), string(out.Code)).Inc()
}

func (o *observer) Sent()      { o.m.sent.WithLabelValues(o.schedule).Inc() }
func (o *observer) Duplicate() { o.m.duplicates.WithLabelValues(o.schedule).Inc() }
func (o *observer) Refused(code string) {
	o.m.refused.WithLabelValues(o.schedule, code).Inc()
}

type pace struct{ m *Metrics }

func (p pace) Waited(d time.Duration) { p.m.pacingWait.Observe(d.Seconds()) }
func (p pace) Throttled() {
	p.m.throttles.Inc()
	p.m.throttled.Add(1)
}
func (p pace) Quota(max24h, sent24h, maxRate float64) {
	p.m.quotaMax.Set(max24h)
	p.m.quotaSent.Set(sent24h)
	p.m.sendRate.Set(maxRate)
	p.m.quotaRead.SetToCurrentTime()
	if max24h < 0 {
		p.m.quotaLeft.Reset()
		return
	}
	p.m.quotaLeft.WithLabelValues().Set(max(0, max24h-sent24h))
}

func (m *Metrics) register(name, typ string, labels []string, c prometheus.Collector) {
	if err := m.reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			panic(err) // a programming error: a bad name or label
		}
	}
	m.names = append(m.names, Namespace+"_"+name)
	m.families = append(m.families, Family{Name: Namespace + "_" + name, Type: typ, Labels: labels})
}

func counterVec(m *Metrics, name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	m.register(name, "counter", labels, c)
	return c
}

func counter(m *Metrics, name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
	m.register(name, "counter", nil, c)
	return c
}

func gaugeVec(m *Metrics, name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	m.register(name, "gauge", labels, g)
	return g
}

func gauge(m *Metrics, name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help})
	m.register(name, "gauge", nil, g)
	return g
}

func histogramVec(m *Metrics, name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets}, labels)
	m.register(name, "histogram", labels, h)
	return h
}

func histogram(m *Metrics, name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets})
	m.register(name, "histogram", nil, h)
	return h
}
