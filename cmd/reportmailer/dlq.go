package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/queue"
	"github.com/reportmailer/reportmailer/worker/transport"
)

// opsClients are the AWS clients of the operator's commands, built the
// SDK's way as newApp builds the worker's.
type opsClients struct {
	aws aws.Config
	sqs *sqs.Client
	s3  *s3.Client
}

func newOpsClients(ctx context.Context, c *config.Config) (*opsClients, error) {
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	awsCfg.HTTPClient = transport.Wrap(awsCfg.HTTPClient)
	if awsCfg.Region == "" {
		return nil, fmt.Errorf("aws config: no region: set AWS_REGION")
	}
	return &opsClients{
		aws: awsCfg,
		sqs: sqs.NewFromConfig(awsCfg),
		s3:  s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = c.S3.UsePathStyle }),
	}, nil
}

// schedulesFor returns the schedule named, or every schedule when name
// is "".
func schedulesFor(c *config.Config, cmd, name string) ([]config.Schedule, error) {
	if name == "" {
		return c.Schedules, nil
	}
	s, err := c.Schedule(name)
	if err != nil {
		return nil, usageError("%s: -schedule: %v", cmd, err)
	}
	return []config.Schedule{s}, nil
}

// deadLetter is one message in a dead-letter queue, as the operator's
// commands show it.
type deadLetter struct {
	Schedule  string   `json:"schedule"`
	MessageID string   `json:"message_id"`
	EventIDs  []string `json:"event_ids"`
	User      string   `json:"user,omitempty"`
	// Class is the outcome that sent it here, in the vocabulary of the
	// logs and the run history: permanent, ambiguous or retry.
	Class        worker.Outcome `json:"class,omitempty"`
	Code         worker.Code    `json:"code,omitempty"`
	Reason       string         `json:"reason,omitempty"`
	ReceiveCount int            `json:"receive_count"` // on the source queue, before it was dead-lettered
	FirstFailed  time.Time      `json:"first_failed_at,omitzero"`
	LastFailed   time.Time      `json:"last_failed_at,omitzero"`
	SourceQueue  string         `json:"source_queue,omitempty"`

	msg sqstypes.Message
}

// readDeadLetter makes a deadLetter of a message received from s's
// dead-letter queue. A message SQS's own RedrivePolicy moved there has
// no reportmailer attributes: its event ids come from its body, and its
// class is "retry" with code max_receives. One with a code but no
// reportmailer-failure (written by an older version) gets the class its
// code comes with, so a maybe_sent one is still ambiguous.
func readDeadLetter(s config.Schedule, m sqstypes.Message) deadLetter {
	d := deadLetter{Schedule: s.Name, MessageID: aws.ToString(m.MessageId), SourceQueue: s.QueueURL, msg: m}
	attr := func(k string) string { return aws.ToString(m.MessageAttributes[k].StringValue) }
	d.Code, d.Reason = worker.Code(attr(queue.AttrCode)), attr(queue.AttrReason)
	if info, ok := queue.ParseDeadLetterInfo(m.MessageAttributes); ok {
		d.EventIDs, d.User, d.Code = info.EventIDs, info.User, cmp.Or(info.Code, d.Code)
		if info.Class != "" {
			d.Class = worker.Failure{Class: info.Class}.Outcome()
		}
		d.ReceiveCount, d.FirstFailed, d.LastFailed = info.ReceiveCount, info.FirstFailedAt, info.LastFailedAt
		d.SourceQueue = cmp.Or(info.SourceQueue, d.SourceQueue)
	}
	if len(d.EventIDs) == 0 {
		if dec, err := event.Decode([]byte(aws.ToString(m.Body))); err == nil {
			for _, ev := range dec.Events {
				d.EventIDs = append(d.EventIDs, ev.ID)
				d.User = cmp.Or(d.User, ev.User.ID)
			}
		}
	}
	d.Class = cmp.Or(d.Class, worker.CodeOutcome(d.Code))
	if d.Code == "" {
		// Moved by the queue's RedrivePolicy: maxReceiveCount transient
		// failures in a row.
		d.Class, d.Code = worker.OutcomeRetry, codeMaxReceives
		d.Reason = "moved by the queue's RedrivePolicy after its maxReceiveCount receives"
		d.ReceiveCount, _ = strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)])
	}
	if d.LastFailed.IsZero() {
		if ms, err := strconv.ParseInt(m.Attributes[string(sqstypes.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
			d.LastFailed = time.UnixMilli(ms).UTC()
			d.FirstFailed = cmp.Or(d.FirstFailed, d.LastFailed)
		}
	}
	return d
}

// codeMaxReceives is the code dlq list and redrive give a message SQS's
// RedrivePolicy moved, which the worker left for retry each time.
const codeMaxReceives worker.Code = "max_receives"

// dlqHold is how long reading a dead-letter queue hides each message,
// so that one pass sees each once. Every message read is made visible
// again as soon as the pass ends.
const dlqHold = 60 * time.Second

// scanDeadLetters reads every message of s's dead-letter queue, up to
// max (0: no limit), hiding each for dlqHold, and calls f on each in
// order. f returns whether it kept (moved or deleted) the message;
// scanDeadLetters makes every other one visible again at once.
// A put-back failure is returned as a *putBackError, joined to any
// other error.
// errStopScan, returned by scanDeadLetters' f, ends the scan there
// without an error: what f was looking for is found.
var errStopScan = errors.New("stop the scan")

func scanDeadLetters(ctx context.Context, c *sqs.Client, s config.Schedule, max int, f func(deadLetter) (bool, error)) (err error) {
	var back []sqstypes.Message
	defer func() {
		// Put back what was read and not kept, even after an error.
		if perr := putBack(context.WithoutCancel(ctx), c, s.DeadLetterQueueURL, back); perr != nil {
			err = errors.Join(err, perr)
		}
	}()
	seen := map[string]bool{}
	n := 0
	for max <= 0 || n < max {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(s.DeadLetterQueueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
			VisibilityTimeout:           int32(dlqHold / time.Second),
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
		})
		if err != nil {
			return fmt.Errorf("dead-letter queue %s: receive: %w", s.DeadLetterQueueURL, err)
		}
		fresh := 0
		for _, m := range out.Messages {
			id := aws.ToString(m.MessageId)
			if seen[id] {
				back = append(back, m)
				continue
			}
			seen[id] = true
			fresh++
			if max > 0 && n >= max {
				back = append(back, m)
				continue
			}
			n++
			kept, err := f(readDeadLetter(s, m))
			if !kept {
				back = append(back, m)
			}
			if errors.Is(err, errStopScan) {
				// The rest of this batch goes back too.
				for _, rest := range out.Messages {
					if !seen[aws.ToString(rest.MessageId)] {
						back = append(back, rest)
					}
				}
				return nil
			}
			if err != nil {
				return err
			}
		}
		if fresh == 0 {
			return nil
		}
	}
	return nil
}

// putBackError says which dead letters could not be made visible
// again: they reappear when dlqHold ends.
type putBackError struct {
	queue  string
	failed []string // message ids
	err    error
}

func (e *putBackError) Error() string {
	return fmt.Sprintf("dead-letter queue %s: %d messages (%s) could not be made visible again; they reappear within %s: %v",
		e.queue, len(e.failed), strings.Join(e.failed, ", "), dlqHold, e.err)
}

func (e *putBackError) Unwrap() error { return e.err }

// putBack makes msgs visible again at once, ten at a time with
// ChangeMessageVisibilityBatch, and one by one for a batch the endpoint
// refuses (goaws has no batch call) or entries it fails.
func putBack(ctx context.Context, c *sqs.Client, url string, msgs []sqstypes.Message) error {
	pe := &putBackError{queue: url}
	var errs []error
	for batch := range slices.Chunk(msgs, 10) {
		entries := make([]sqstypes.ChangeMessageVisibilityBatchRequestEntry, len(batch))
		for i, m := range batch {
			entries[i] = sqstypes.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle}
		}
		out, err := c.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(url), Entries: entries})
		retry := batch
		if err == nil {
			retry = nil
			for _, f := range out.Failed {
				if i, aerr := strconv.Atoi(aws.ToString(f.Id)); aerr == nil && i < len(batch) {
					retry = append(retry, batch[i])
				}
			}
		}
		for _, m := range retry {
			if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
				QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0}); err != nil {
				pe.failed = append(pe.failed, aws.ToString(m.MessageId))
				errs = append(errs, err)
			}
		}
	}
	if len(pe.failed) == 0 {
		return nil
	}
	pe.err = errors.Join(errs...)
	return pe
}

// splitPutBack takes the put-back failure out of err, as scanDeadLetters
// returns it: the rest of err, and the failure or nil.
func splitPutBack(err error) (error, *putBackError) {
	var pe *putBackError
	if !errors.As(err, &pe) {
		return err, nil
	}
	var rest []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			var p *putBackError
			if !errors.As(e, &p) {
				rest = append(rest, e)
			}
		}
	}
	return errors.Join(rest...), pe
}

// warnPutBack logs a put-back failure in err and returns the rest of
// err: for commands whose work does not depend on it.
func (m *Main) warnPutBack(err error) error {
	rest, pe := splitPutBack(err)
	if pe != nil {
		fmt.Fprintf(redacting{m.Stderr}, "reportmailer: warning: %v\n", pe)
	}
	return rest
}

const dlqListSynopsis = `dlq list -config FILE [-schedule NAME] [-json]

Lists what is in each schedule's dead-letter queue: the message, its
event ids and user, the class and code of its failure, the reason, how
often the source queue had handed it out, and how long ago it first
failed. Reading a queue hides its messages; dlq list hides each for at
most ` + "60s" + ` and makes every one visible again (ChangeMessageVisibility 0)
as soon as it has read the queue (any it could not is named, and the
exit code is 3), so a drain or redrive running at the
same time may miss them for that long. Reading counts as a receive of
the dead-letter queue's own messages.`

func (m *Main) dlqList(ctx context.Context, args []string) error {
	fs := m.newFlagSet("dlq list", dlqListSynopsis)
	configPath := fs.String("config", "", "config file (default $REPORTMAILER_CONFIG)")
	name := fs.String("schedule", "", "only this schedule's dead-letter queue (default: every schedule's)")
	asJSON := fs.Bool("json", false, "print JSON, one array of messages, instead of a table")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := m.loadConfig(*configPath)
	if err != nil {
		return err
	}
	scheds, err := schedulesFor(c, "dlq list", *name)
	if err != nil {
		return err
	}
	cl, err := newOpsClients(ctx, c)
	if err != nil {
		return err
	}
	var all []deadLetter
	var hidden []error
	for _, s := range scheds {
		err := scanDeadLetters(ctx, cl.sqs, s, 0, func(d deadLetter) (bool, error) {
			all = append(all, d)
			return false, nil
		})
		err, pe := splitPutBack(err)
		if pe != nil {
			hidden = append(hidden, fmt.Errorf("schedule %q: %w", s.Name, pe))
		}
		if err != nil {
			return fmt.Errorf("schedule %q: %w", s.Name, err)
		}
	}
	if *asJSON {
		if all == nil {
			all = []deadLetter{}
		}
		if err := writeJSON(m.Stdout, all); err != nil {
			return err
		}
	} else {
		printDeadLetters(m.Stdout, all, time.Now())
		if len(hidden) == 0 {
			fmt.Fprintf(m.Stdout, "%d dead letters; each was made visible again.\n", len(all))
		} else {
			fmt.Fprintf(m.Stdout, "%d dead letters; some could NOT be made visible again (they reappear within %s), named below.\n", len(all), dlqHold)
		}
	}
	if len(hidden) > 0 {
		return exitError{code: ExitPartial, err: errors.Join(hidden...)}
	}
	return nil
}

func printDeadLetters(w io.Writer, ds []deadLetter, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCHEDULE\tMESSAGE\tEVENTS\tUSER\tCLASS\tCODE\tRECEIVES\tAGE\tREASON")
	for _, d := range ds {
		age := "-"
		if !d.FirstFailed.IsZero() {
			age = now.Sub(d.FirstFailed).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Schedule, d.MessageID, or(strings.Join(d.EventIDs, ","), "-"),
			or(d.User, "-"), or(string(d.Class), "-"), or(string(d.Code), "-"), d.ReceiveCount, age, oneLine(d.Reason, 160))
	}
	tw.Flush()
}

func or(s, def string) string { return cmp.Or(s, def) }

// oneLine cuts s to n bytes for a table cell.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n-3], "") + "..."
	}
	return s
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// listFlag is a flag that may be given many times.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

const redriveSynopsis = `redrive -config FILE [-schedule NAME] [-event-id ID ...] [-code CODE ...] [-max N] [-dry-run] [-include-maybe-sent]

Moves dead letters back to their schedule's queue, where the next run
delivers them; the ledger keeps every delivery that was already made
from being made again. Messages of class ambiguous (code maybe_sent)
are skipped unless -include-maybe-sent is given: their ledger records
say "sending", so a redrive sends nothing; use "reportmailer resend".

With no filter and -include-maybe-sent, it starts an SQS message move
task and reports its progress (or follows one already running). Any
other refusal of the task (AccessDenied, a throttle) is an error.
Otherwise, or where the endpoint has no such operation (an unknown or
unsupported action, as the emulators answer), it moves message by
message: it sends
each to the queue, then deletes it from the dead-letter queue (never
the other way round), and prints each one. -dry-run moves nothing.`

func (m *Main) redrive(ctx context.Context, args []string) error {
	fs := m.newFlagSet("redrive", redriveSynopsis)
	configPath := fs.String("config", "", "config file (default $REPORTMAILER_CONFIG)")
	name := fs.String("schedule", "", "only this schedule's dead-letter queue (default: every schedule's)")
	var ids, codes listFlag
	fs.Var(&ids, "event-id", "move only messages with this event id (repeatable, or comma-separated)")
	fs.Var(&codes, "code", "move only messages with this code, e.g. recipient_refused (repeatable, or comma-separated)")
	max := fs.Int("max", 0, "move at most this many messages (0: all)")
	dry := fs.Bool("dry-run", false, "show what would move, and move nothing")
	maybe := fs.Bool("include-maybe-sent", false, "move messages of class ambiguous (maybe_sent) too")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *max < 0 {
		return usageError("redrive: -max %d: want 0 (all) or more", *max)
	}
	c, err := m.loadConfig(*configPath)
	if err != nil {
		return err
	}
	scheds, err := schedulesFor(c, "redrive", *name)
	if err != nil {
		return err
	}
	cl, err := newOpsClients(ctx, c)
	if err != nil {
		return err
	}
	verb := "moved"
	if *dry {
		verb = "would move"
	}
	moved, skipped, ambiguous := 0, 0, 0
	for _, s := range scheds {
		if len(ids) == 0 && len(codes) == 0 && *maybe && *max == 0 && !*dry {
			done, n, err := m.moveTask(ctx, cl.sqs, s)
			moved += n
			if err != nil {
				return fmt.Errorf("schedule %q: %w", s.Name, err)
			}
			if done {
				continue
			}
		}
		left := 0
		if *max > 0 {
			left = *max - moved
			if left <= 0 {
				break
			}
		}
		n := 0
		err := scanDeadLetters(ctx, cl.sqs, s, 0, func(d deadLetter) (bool, error) {
			switch {
			case len(ids) > 0 && !slices.ContainsFunc(d.EventIDs, func(id string) bool { return slices.Contains(ids, id) }):
				skipped++
				return false, nil
			case len(codes) > 0 && !slices.Contains(codes, string(d.Code)):
				skipped++
				return false, nil
			case d.Class == worker.OutcomeAmbiguous && !*maybe:
				ambiguous++
				fmt.Fprintf(m.Stdout, "skipped %s %s: %s (maybe sent): the ledger holds it; see `reportmailer resend -config FILE -event-id %s`\n",
					s.Name, d.MessageID, strings.Join(d.EventIDs, ","), or(firstOf(d.EventIDs), "ID"))
				return false, nil
			case left > 0 && n >= left:
				skipped++
				return false, nil
			}
			n++
			if *dry {
				fmt.Fprintf(m.Stdout, "%s %s %s: events %s, %s -> %s\n", verb, s.Name, d.MessageID, or(strings.Join(d.EventIDs, ","), "-"), or(string(d.Code), "-"), s.QueueURL)
				return false, nil
			}
			if err := moveBack(ctx, cl.sqs, s, d); err != nil {
				return false, err
			}
			moved++
			fmt.Fprintf(m.Stdout, "%s %s %s: events %s, %s -> %s\n", verb, s.Name, d.MessageID, or(strings.Join(d.EventIDs, ","), "-"), or(string(d.Code), "-"), s.QueueURL)
			return true, nil
		})
		if *dry {
			moved += n
		}
		if err = m.warnPutBack(err); err != nil {
			fmt.Fprintf(m.Stdout, "redrive: %s %d, left %d (filtered out or over -max), %d maybe sent\n", verb, moved, skipped, ambiguous)
			return fmt.Errorf("schedule %q: %w", s.Name, err)
		}
	}
	fmt.Fprintf(m.Stdout, "redrive: %s %d, left %d (filtered out or over -max), %d maybe sent\n", verb, moved, skipped, ambiguous)
	return nil
}

func firstOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// moveBack sends d to s's queue with its body and attributes (its
// reportmailer-failure keeps the first failure time), then deletes it
// from the dead-letter queue: a failed delete leaves it in both, which
// the ledger makes harmless; the other order could lose it.
func moveBack(ctx context.Context, c *sqs.Client, s config.Schedule, d deadLetter) error {
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl: aws.String(s.QueueURL), MessageBody: d.msg.Body, MessageAttributes: redrivenAttributes(d.msg.MessageAttributes),
	}); err != nil {
		return fmt.Errorf("queue %s: send %s back: %w", s.QueueURL, d.MessageID, err)
	}
	if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(s.DeadLetterQueueURL), ReceiptHandle: d.msg.ReceiptHandle}); err != nil {
		return fmt.Errorf("dead-letter queue %s: delete %s after sending it back (it is in both queues now; the ledger keeps it from sending twice): %w",
			s.DeadLetterQueueURL, d.MessageID, err)
	}
	return nil
}

// redrivenAttributes are the attributes a redriven message goes back
// with: the producer's, and its first failure time, but not the code
// and reason of the failure that was dealt with, so that if SQS's
// RedrivePolicy moves it again it is not listed under the old code.
func redrivenAttributes(attrs map[string]sqstypes.MessageAttributeValue) map[string]sqstypes.MessageAttributeValue {
	out := map[string]sqstypes.MessageAttributeValue{}
	for k, v := range attrs {
		switch k {
		case queue.AttrCode, queue.AttrReason, queue.AttrFailedAt, queue.AttrFailure:
		default:
			out[k] = v
		}
	}
	if info, ok := queue.ParseDeadLetterInfo(attrs); ok {
		b, _ := json.Marshal(queue.DeadLetterInfo{FirstFailedAt: info.FirstFailedAt, SourceQueue: info.SourceQueue})
		out[queue.AttrFailure] = sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(string(b))}
	}
	return out
}

// moveTaskUnsupported reports whether err says the endpoint has no
// message move task: an unknown or unsupported action (fauxqs answers
// InvalidAction; AWS names UnsupportedOperation and, in its JSON
// protocol, UnknownOperationException), or a 400 whose body is no AWS
// error at all (goaws answers "Bad Request").
func moveTaskUnsupported(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "InvalidAction", "UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation", "UnknownOperationException":
			return true
		}
		return false
	}
	var de *smithy.DeserializationError
	var re *smithyhttp.ResponseError
	return errors.As(err, &de) && errors.As(err, &re) && re.HTTPStatusCode() == 400
}

// moveTask moves everything in s's dead-letter queue back with an SQS
// message move task, printing its progress until it ends. It returns
// false, and moves nothing, when SQS does not offer the task (the
// emulators answer an error).
func (m *Main) moveTask(ctx context.Context, c *sqs.Client, s config.Schedule) (bool, int, error) {
	arn := func(url string) (string, error) {
		out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
			AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
		if err != nil {
			return "", fmt.Errorf("queue %s: %w", url, err)
		}
		return out.Attributes[string(sqstypes.QueueAttributeNameQueueArn)], nil
	}
	src, err := arn(s.DeadLetterQueueURL)
	if err != nil {
		return false, 0, err
	}
	dst, err := arn(s.QueueURL)
	if err != nil {
		return false, 0, err
	}
	start, err := c.StartMessageMoveTask(ctx, &sqs.StartMessageMoveTaskInput{SourceArn: aws.String(src), DestinationArn: aws.String(dst)})
	switch {
	case err != nil && moveTaskUnsupported(err):
		fmt.Fprintf(m.Stderr, "redrive %s: no message move task (%v); moving message by message\n", s.Name, err)
		return false, 0, nil
	case err != nil:
		// SQS runs one task per queue: follow a running one rather
		// than fail. Anything else (AccessDenied, a throttle) is the
		// operator's to see; moving by hand would hide it.
		out, lerr := c.ListMessageMoveTasks(ctx, &sqs.ListMessageMoveTasksInput{SourceArn: aws.String(src), MaxResults: aws.Int32(1)})
		if lerr != nil || len(out.Results) == 0 || aws.ToString(out.Results[0].Status) != "RUNNING" {
			return true, 0, fmt.Errorf("dead-letter queue %s: start message move task: %w", s.DeadLetterQueueURL, err)
		}
		fmt.Fprintf(m.Stdout, "redrive %s: a message move task is already running (%v): following it\n", s.Name, err)
	default:
		fmt.Fprintf(m.Stdout, "redrive %s: started message move task %s: %s -> %s\n", s.Name, aws.ToString(start.TaskHandle), src, dst)
	}
	for {
		out, err := c.ListMessageMoveTasks(ctx, &sqs.ListMessageMoveTasksInput{SourceArn: aws.String(src), MaxResults: aws.Int32(1)})
		if err != nil {
			return true, 0, fmt.Errorf("dead-letter queue %s: list move tasks: %w", s.DeadLetterQueueURL, err)
		}
		if len(out.Results) == 0 {
			return true, 0, errors.New("the message move task is not listed")
		}
		r := out.Results[0]
		fmt.Fprintf(m.Stdout, "redrive %s: %s: moved %d of %d\n", s.Name, aws.ToString(r.Status), r.ApproximateNumberOfMessagesMoved, aws.ToInt64(r.ApproximateNumberOfMessagesToMove))
		switch aws.ToString(r.Status) {
		case "COMPLETED":
			return true, int(r.ApproximateNumberOfMessagesMoved), nil
		case "FAILED", "CANCELLED":
			return true, int(r.ApproximateNumberOfMessagesMoved), fmt.Errorf("message move task %s: %s", aws.ToString(r.Status), aws.ToString(r.FailureReason))
		}
		select {
		case <-ctx.Done():
			return true, int(r.ApproximateNumberOfMessagesMoved), ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}
