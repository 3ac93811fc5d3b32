package preflight

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// SQS limits and the margins the checks keep.
const (
	// RetentionMax is the longest SQS keeps a message.
	RetentionMax = 14 * 24 * time.Hour
	// RetentionMargin is what a queue must keep a message beyond the
	// longest wait for a run: one late or failed run, and time for
	// someone to notice, must not cost messages.
	RetentionMargin = 24 * time.Hour
	// MinReceiveCount is the lowest maxReceiveCount that does not warn:
	// a receive is spent by each shutdown or halt that releases a
	// message, so a lower count sends healthy messages to the DLQ.
	MinReceiveCount = 3
)

// periodHorizon and periodRuns bound how far ahead a schedule's runs
// are looked at: a year shows monthly and seasonal gaps, and a
// thousand runs are enough for frequent schedules, whose gaps repeat.
const (
	periodHorizon = 400 * 24 * time.Hour
	periodRuns    = 1000
)

// Never is the period of a schedule that does not run again.
const Never = time.Duration(math.MaxInt64)

// Period returns the longest gap between runs of a schedule over the
// year after from: how long a message enqueued just after a run can
// wait for the next. It is Never when next finds no run.
func Period(next func(time.Time) time.Time, from time.Time) time.Duration {
	prev := next(from)
	if prev.IsZero() {
		return Never
	}
	var longest time.Duration
	for range periodRuns {
		t := next(prev)
		if t.IsZero() {
			return Never
		}
		longest = max(longest, t.Sub(prev))
		if t.Sub(from) > periodHorizon {
			break
		}
		prev = t
	}
	return longest
}

// NeedRetention returns how long a queue drained by a schedule that
// runs at most period apart, each run taking up to budget, must keep
// its messages, and whether SQS can keep them that long.
func NeedRetention(period, budget time.Duration) (time.Duration, bool) {
	if period == Never || period > RetentionMax {
		return Never, false
	}
	need := period + budget + RetentionMargin
	return need, need <= RetentionMax
}

// queueAttrs is what the checks read of a queue.
var queueAttrs = []types.QueueAttributeName{
	types.QueueAttributeNameQueueArn,
	types.QueueAttributeNameRedrivePolicy,
	types.QueueAttributeNameVisibilityTimeout,
	types.QueueAttributeNameMessageRetentionPeriod,
}

// queue is the outcome of looking a queue up.
type queue struct {
	attrs   map[string]string // nil when the lookup failed
	failure Finding           // Detail and Fix when it failed
}

func (c *Checker) checkQueues(ctx context.Context, report func(Finding)) {
	for _, s := range c.Plan.Schedules {
		name := func(what string) string { return "schedule " + s.Name + ": " + what }
		found := func(what string, q queue) bool {
			f := q.failure
			f.Area, f.Name = "sqs", name(what)
			if q.attrs != nil {
				f = Finding{Area: "sqs", Name: name(what), Status: OK, Detail: "exists: " + q.attrs["QueueArn"]}
			}
			report(f)
			return q.attrs != nil
		}
		src := c.lookupQueue(ctx, s.QueueURL, s.Field+".queue_url")
		dlq := c.lookupQueue(ctx, s.DeadLetterURL, s.Field+".dead_letter_queue_url")
		srcOK := found("queue", src)
		dlqOK := found("dead-letter queue", dlq)
		if srcOK {
			report(c.redrive(s, src.attrs, dlq.attrs, dlqOK, name("redrive policy")))
			report(visibility(s, src.attrs, name("visibility timeout")))
			report(c.retention(s, src.attrs, name("retention")))
		}
		if srcOK && dlqOK {
			report(dlqRetention(s, src.attrs, dlq.attrs, name("dead-letter retention")))
		}
	}
}

var (
	sqsHostRE    = regexp.MustCompile(`^sqs\.([a-z0-9-]+)\.(amazonaws\.com(\.cn)?|api\.aws)$`)
	legacyHostRE = regexp.MustCompile(`^([a-z0-9-]+)\.queue\.amazonaws\.com(\.cn)?$`)
)

// queueRegion returns the region an SQS queue URL names, or "" for
// endpoints that name none (local ones).
func queueRegion(host string) string {
	if m := sqsHostRE.FindStringSubmatch(host); m != nil {
		return m[1]
	}
	if m := legacyHostRE.FindStringSubmatch(host); m != nil {
		return m[1]
	}
	if host == "queue.amazonaws.com" {
		return "us-east-1"
	}
	return ""
}

// lookupQueue finds the queue at rawURL: GetQueueUrl by its name and
// owner (which says plainly whether it exists), then its attributes.
func (c *Checker) lookupQueue(ctx context.Context, rawURL, field string) queue {
	fail := func(detail, fix string) queue {
		return queue{failure: Finding{Status: Fail, Detail: detail, Fix: fix}}
	}
	u, err := url.Parse(rawURL)
	var parts []string
	if err == nil {
		parts = strings.Split(strings.Trim(u.EscapedPath(), "/"), "/")
	}
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return fail(fmt.Sprintf("%q is not an SQS queue URL", rawURL), "set "+field+" to https://sqs.REGION.amazonaws.com/ACCOUNT/NAME")
	}
	account, name := parts[0], parts[1]
	if _, err := c.SQS.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name), QueueOwnerAWSAccountId: aws.String(account)}); err != nil {
		return c.queueError(err, rawURL, u.Host, field, "GetQueueUrl", name)
	}
	out, err := c.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(rawURL), AttributeNames: queueAttrs})
	if err != nil {
		return c.queueError(err, rawURL, u.Host, field, "GetQueueAttributes", name)
	}
	if out.Attributes == nil {
		out.Attributes = map[string]string{}
	}
	if out.Attributes["QueueArn"] == "" {
		out.Attributes["QueueArn"] = rawURL
	}
	return queue{attrs: out.Attributes}
}

func (c *Checker) queueError(err error, rawURL, host, field, op, name string) queue {
	q := func(detail, fix string) queue {
		return queue{failure: Finding{Status: Fail, Detail: detail, Fix: fix}}
	}
	switch {
	case isQueueMissing(err):
		detail := fmt.Sprintf("%s does not exist", rawURL)
		fix := "create it (deploy/terraform, the schedules variable), or correct " + field
		if r := queueRegion(host); r != "" && c.Plan.Region != "" && r != c.Plan.Region {
			detail += fmt.Sprintf(" in %s: the URL names region %s", c.Plan.Region, r)
			fix = "set AWS_REGION=" + r + ", or correct " + field
		}
		return q(detail, fix)
	case isDenied(err):
		return q(fmt.Sprintf("sqs:%s on %s refused: %s", op, name, brief(err)),
			fmt.Sprintf("grant sqs:%s on the queue to the role that runs check", op))
	default:
		return q(fmt.Sprintf("%s %s: %s", op, rawURL, brief(err)), "check the SQS endpoint and credentials")
	}
}

// isQueueMissing reports whether err says the queue does not exist.
// SQS's JSON protocol answers QueueDoesNotExist, carrying the query
// protocol's code AWS.SimpleQueueService.NonExistentQueue.
func isQueueMissing(err error) bool {
	var nq *types.QueueDoesNotExist
	if errors.As(err, &nq) {
		return true
	}
	code := errorCode(err)
	return code == "QueueDoesNotExist" || code == "AWS.SimpleQueueService.NonExistentQueue"
}

// redrivePolicy is a queue's RedrivePolicy attribute. maxReceiveCount
// comes as a number or a string, depending on who set it.
type redrivePolicy struct {
	DeadLetterTargetArn string          `json:"deadLetterTargetArn"`
	MaxReceiveCount     json.RawMessage `json:"maxReceiveCount"`
}

// parseRedrive returns the target ARN and maxReceiveCount of a
// RedrivePolicy attribute.
func parseRedrive(s string) (arn string, maxReceives int, err error) {
	var p redrivePolicy
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return "", 0, fmt.Errorf("not JSON: %w", err)
	}
	raw := strings.Trim(string(p.MaxReceiveCount), `"`)
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 {
		return p.DeadLetterTargetArn, 0, fmt.Errorf("maxReceiveCount %q is not a positive number", raw)
	}
	return p.DeadLetterTargetArn, n, nil
}

func (c *Checker) redrive(s Schedule, src, dlq map[string]string, dlqOK bool, name string) Finding {
	f := Finding{Area: "sqs", Name: name}
	want := dlq["QueueArn"]
	setFix := fmt.Sprintf(`aws sqs set-queue-attributes --queue-url %s --attributes '{"RedrivePolicy":"{\"deadLetterTargetArn\":\"%s\",\"maxReceiveCount\":\"5\"}"}'`, s.QueueURL, orPlaceholder(want, "DLQ_ARN"))
	policy := src["RedrivePolicy"]
	if policy == "" {
		f.Status, f.Detail = Fail, "the queue has no RedrivePolicy: a message that fails on every run is retried until it expires, and never reaches the DLQ"
		f.Fix = setFix
		return f
	}
	target, n, err := parseRedrive(policy)
	switch {
	case err != nil:
		f.Status, f.Detail, f.Fix = Fail, "RedrivePolicy "+policy+": "+err.Error(), setFix
	case !dlqOK:
		// The missing DLQ is its own finding; comparing against it
		// would say the same thing twice.
		f.Status, f.Detail = Warn, fmt.Sprintf("sends to %s after %d receives; not compared: the configured DLQ is missing", target, n)
		f.Fix = "fix the dead-letter queue first"
	case target != want:
		f.Status = Fail
		f.Detail = fmt.Sprintf("sends to %s, not to the configured DLQ %s: messages that fail too often go where the worker does not look", target, want)
		f.Fix = setFix + ", or set " + s.Field + ".dead_letter_queue_url to the queue of " + target
	case n < MinReceiveCount:
		f.Status = Warn
		f.Detail = fmt.Sprintf("sends to the DLQ after %d receive(s): each shutdown or halt that hands a message back spends one, so healthy messages reach the DLQ with no reason", n)
		f.Fix = fmt.Sprintf("raise maxReceiveCount to at least %d", MinReceiveCount)
	default:
		f.Status, f.Detail = OK, fmt.Sprintf("sends to the configured DLQ after %d receives", n)
	}
	return f
}

func orPlaceholder(s, placeholder string) string {
	if s == "" {
		return placeholder
	}
	return s
}

// seconds reads a queue attribute given in seconds.
func seconds(attrs map[string]string, name string) (time.Duration, bool) {
	n, err := strconv.Atoi(attrs[name])
	if err != nil {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// visibility compares the queue's default visibility timeout with the
// schedule's. The worker sets the schedule's timeout on every receive
// (worker/queue), so the queue's default only matters to whoever else
// receives from it: a short one is a warning, never a failure.
func visibility(s Schedule, attrs map[string]string, name string) Finding {
	f := Finding{Area: "sqs", Name: name}
	d, ok := seconds(attrs, "VisibilityTimeout")
	switch {
	case !ok:
		f.Status, f.Detail = Warn, fmt.Sprintf("the queue reports no VisibilityTimeout (%q); the worker sets %s on each receive", attrs["VisibilityTimeout"], s.VisibilityTimeout)
	case d < s.VisibilityTimeout:
		f.Status = Warn
		f.Detail = fmt.Sprintf("the queue's default is %s, shorter than the schedule's %s; the worker sets %s on each receive, so only other consumers of the queue get %s", d, s.VisibilityTimeout, s.VisibilityTimeout, d)
		f.Fix = fmt.Sprintf("aws sqs set-queue-attributes --queue-url %s --attributes VisibilityTimeout=%d", s.QueueURL, int(s.VisibilityTimeout/time.Second))
	default:
		f.Status, f.Detail = OK, fmt.Sprintf("queue default %s; the worker sets %s on each receive", d, s.VisibilityTimeout)
	}
	return f
}

func (c *Checker) retention(s Schedule, attrs map[string]string, name string) Finding {
	f := Finding{Area: "sqs", Name: name}
	keep, ok := seconds(attrs, "MessageRetentionPeriod")
	if !ok {
		f.Status, f.Detail = Warn, fmt.Sprintf("the queue reports no MessageRetentionPeriod (%q)", attrs["MessageRetentionPeriod"])
		return f
	}
	if s.Next == nil {
		f.Status = OK
		f.Detail = fmt.Sprintf("keeps messages %s; the schedule has no cron spec, so drain it at least every %s", days(keep), days(max(keep-s.Budget-RetentionMargin, 0)))
		return f
	}
	period := Period(s.Next, c.now())
	if s.IngestEvery > 0 {
		return digestRetention(f, s, keep, period)
	}
	need, possible := NeedRetention(period, s.Budget)
	switch {
	case !possible:
		f.Status = Fail
		f.Detail = fmt.Sprintf("runs as much as %s apart, and SQS keeps a message at most %s: messages can expire before a run takes them", days(period), days(RetentionMax))
		f.Fix = fmt.Sprintf("run %s.cron at least every %s", s.Field, days(RetentionMax-s.Budget-RetentionMargin))
	case keep < need:
		f.Status = Fail
		f.Detail = fmt.Sprintf("keeps messages %s, but runs are as much as %s apart: a message can expire before a run takes it (needs %s with a run's budget and a day's margin)", days(keep), days(period), days(need))
		f.Fix = fmt.Sprintf("aws sqs set-queue-attributes --queue-url %s --attributes MessageRetentionPeriod=%d", s.QueueURL, retentionSeconds(need))
	default:
		f.Status, f.Detail = OK, fmt.Sprintf("keeps messages %s; runs are at most %s apart", days(keep), days(period))
	}
	return f
}

// digestRetention checks a digest schedule's queue, which serve
// empties into the pending store every IngestEvery: it need keep
// messages only that long, with a run's budget and a day's margin.
// Where only drain runs (a CronJob), the ingest is the slot's own and
// the rule of mode each holds; that is said, not failed.
func digestRetention(f Finding, s Schedule, keep, period time.Duration) Finding {
	need, _ := NeedRetention(s.IngestEvery, s.Budget)
	drainNeed, drainOK := NeedRetention(period, s.Budget)
	drainOnly := fmt.Sprintf("with drain alone (a CronJob, no serve), events are ingested only at each run, as much as %s apart, and the queue would need %s", days(period), days(drainNeed))
	if !drainOK {
		drainOnly = fmt.Sprintf("with drain alone (a CronJob, no serve), events are ingested only at each run, as much as %s apart, longer than SQS keeps a message (%s): run drain more often", days(period), days(RetentionMax))
	}
	switch {
	case keep < need:
		f.Status = Fail
		f.Detail = fmt.Sprintf("keeps messages %s, but serve ingests this digest every %s: a message can expire before an ingest takes it (needs %s with a run's budget and a day's margin)", days(keep), s.IngestEvery, days(need))
		f.Fix = fmt.Sprintf("aws sqs set-queue-attributes --queue-url %s --attributes MessageRetentionPeriod=%d", s.QueueURL, retentionSeconds(need))
	default:
		f.Status = OK
		f.Detail = fmt.Sprintf("keeps messages %s; serve ingests this digest every %s", days(keep), s.IngestEvery)
		if !drainOK || keep < drainNeed {
			f.Detail += "; " + drainOnly
		}
	}
	return f
}

// retentionSeconds rounds need up to a whole hour, within SQS's range.
func retentionSeconds(need time.Duration) int {
	h := (need + time.Hour - 1) / time.Hour * time.Hour
	return int(min(h, RetentionMax) / time.Second)
}

// dlqRetention checks that the DLQ keeps messages longer than its
// source: SQS keeps a moved message's original enqueue time, so a
// message that reaches a DLQ no longer-lived than its source can expire
// there at once.
func dlqRetention(s Schedule, src, dlq map[string]string, name string) Finding {
	f := Finding{Area: "sqs", Name: name}
	srcKeep, ok1 := seconds(src, "MessageRetentionPeriod")
	dlqKeep, ok2 := seconds(dlq, "MessageRetentionPeriod")
	fix := fmt.Sprintf("aws sqs set-queue-attributes --queue-url %s --attributes MessageRetentionPeriod=%d", s.DeadLetterURL, int(RetentionMax/time.Second))
	switch {
	case !ok1 || !ok2:
		f.Status, f.Detail = Warn, "a queue reports no MessageRetentionPeriod"
	case dlqKeep < srcKeep:
		f.Status = Fail
		f.Detail = fmt.Sprintf("the DLQ keeps messages %s, less than the queue's %s: a moved message keeps its first enqueue time, so it can expire in the DLQ before anyone reads it", days(dlqKeep), days(srcKeep))
		f.Fix = fix
	case dlqKeep == srcKeep && dlqKeep < RetentionMax:
		f.Status = Warn
		f.Detail = fmt.Sprintf("the DLQ keeps messages %s, as long as the queue: a moved message keeps its first enqueue time, so it has only what is left of that in the DLQ", days(dlqKeep))
		f.Fix = fix
	default:
		f.Status, f.Detail = OK, fmt.Sprintf("the DLQ keeps messages %s, the queue %s", days(dlqKeep), days(srcKeep))
	}
	return f
}

// days formats d in days, with the rest to the minute: "7 days",
// "12 days 23h59m". Shorter durations are formatted as durations.
func days(d time.Duration) string {
	switch {
	case d == Never:
		return "never"
	case d < 24*time.Hour:
		return d.String()
	}
	n := d / (24 * time.Hour)
	s := fmt.Sprintf("%d days", n)
	if n == 1 {
		s = "1 day"
	}
	if rest := (d % (24 * time.Hour)).Truncate(time.Minute); rest > 0 {
		s += " " + strings.TrimSuffix(strings.TrimSuffix(rest.String(), "0s"), "h0m")
		if rest%time.Hour == 0 {
			s += "h"
		}
	}
	return s
}
