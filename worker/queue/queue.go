// Package queue implements the worker's queue on Amazon SQS.
package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/reportmailer/reportmailer/worker"
)

// Message attributes set on a dead-lettered message.
const (
	AttrReason          = "reportmailer-reason"
	AttrCode            = "reportmailer-code" // a worker.Code
	AttrSourceMessageID = "reportmailer-source-message-id"
	AttrFailedAt        = "reportmailer-failed-at"
	// AttrDroppedAttributes lists, comma-separated, the producer's
	// attributes that did not fit in SQS's ten next to ours.
	AttrDroppedAttributes = "reportmailer-dropped-attributes"
	// AttrFailure holds a [DeadLetterInfo] as JSON: everything else a
	// tool needs, in one attribute, since SQS allows ten per message
	// and the producer's own should keep as many as they can.
	AttrFailure = "reportmailer-failure"
)

// DeadLetterInfo is what the AttrFailure attribute of a dead letter
// says about it.
type DeadLetterInfo struct {
	Class    worker.Class `json:"class"`
	Code     worker.Code  `json:"code"`
	EventIDs []string     `json:"event_ids,omitempty"`
	User     string       `json:"user,omitempty"`
	Schedule string       `json:"schedule,omitempty"`
	// SourceQueue is the URL of the queue the message came from, where
	// a redrive sends it back.
	SourceQueue string `json:"source_queue"`
	// FirstFailedAt is when the message was first dead-lettered: a
	// message redriven and dead-lettered again keeps it. LastFailedAt
	// is this time.
	FirstFailedAt time.Time `json:"first_failed_at"`
	LastFailedAt  time.Time `json:"last_failed_at"`
	// ReceiveCount is how often the source queue had handed the message
	// out when it was dead-lettered.
	ReceiveCount int `json:"receive_count"`
}

// ParseDeadLetterInfo reads a message's AttrFailure attribute; ok is
// false when it has none or it cannot be read (a dead letter from an
// older version, or put there by SQS's own RedrivePolicy).
func ParseDeadLetterInfo(attrs map[string]types.MessageAttributeValue) (DeadLetterInfo, bool) {
	a, ok := attrs[AttrFailure]
	if !ok || a.StringValue == nil {
		return DeadLetterInfo{}, false
	}
	var d DeadLetterInfo
	if err := json.Unmarshal([]byte(*a.StringValue), &d); err != nil {
		return DeadLetterInfo{}, false
	}
	return d, true
}

// maxReason bounds the reason attribute; reasons are for people.
const maxReason = 2048

// maxAttributes is how many message attributes SQS allows on a message.
const maxAttributes = 10

// MaxMessageSize is the largest message DeadLetter sends: SQS's limit
// of 256 KiB, body and attributes (names, types and values) together.
// SQS has allowed queues up to 1 MiB since 2025, but a queue's
// MaximumMessageSize may be less, and 256 KiB is every queue's.
const MaxMessageSize = 256 << 10

// API is the part of *sqs.Client the queue uses.
type API interface {
	ReceiveMessage(context.Context, *sqs.ReceiveMessageInput, ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(context.Context, *sqs.DeleteMessageInput, ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	DeleteMessageBatch(context.Context, *sqs.DeleteMessageBatchInput, ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibility(context.Context, *sqs.ChangeMessageVisibilityInput, ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	ChangeMessageVisibilityBatch(context.Context, *sqs.ChangeMessageVisibilityBatchInput, ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
	SendMessage(context.Context, *sqs.SendMessageInput, ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	GetQueueAttributes(context.Context, *sqs.GetQueueAttributesInput, ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// SQS is a worker.Queue on an SQS queue and its dead-letter queue.
type SQS struct {
	Client API
	// URL is the source queue's URL. Required.
	URL string
	// DeadLetterURL is where poison messages go. Required.
	DeadLetterURL string
	// VisibilityTimeout, when set, overrides the queue's default for the
	// messages this worker receives. It must cover a whole run, or a
	// message still being worked on is handed to someone else.
	VisibilityTimeout time.Duration
	// Now is the clock for the failed-at attribute; default time.Now.
	Now func() time.Time
	// Logger receives what the queue drops or cannot check. Default
	// slog.Default().
	Logger *slog.Logger
}

var (
	_ worker.Queue   = (*SQS)(nil)
	_ worker.Checker = (*SQS)(nil)
)

// Check makes sure the queue and the dead-letter queue exist, with one
// GetQueueAttributes call each (which needs sqs:GetQueueAttributes). It
// fails, wrapping worker.ErrNoQueue and naming the URL, only when SQS
// says a queue does not exist; any other failure to check (no
// permission to ask, say) is logged and the run goes on, since the
// queues may well be there.
func (q *SQS) Check(ctx context.Context) error {
	var errs []error
	for _, c := range []struct{ what, url string }{{"queue", q.URL}, {"dead-letter queue", q.DeadLetterURL}} {
		if c.url == "" {
			errs = append(errs, fmt.Errorf("%s: no URL configured: %w", c.what, worker.ErrNoQueue))
			continue
		}
		_, err := q.Client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl: aws.String(c.url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
		})
		switch {
		case err == nil:
		case isNoQueue(err):
			errs = append(errs, noQueue(c.what, c.url, err))
		default:
			q.logger(ctx).Warn("cannot check that the queue exists", "queue", c.url, "err", err)
		}
	}
	return errors.Join(errs...)
}

// noQueue is the error for a queue that does not exist.
func noQueue(what, url string, err error) error {
	return fmt.Errorf("%s %s: %w (%w)", what, url, worker.ErrNoQueue, err)
}

// isNoQueue reports SQS's answer for a queue that does not exist:
// QueueDoesNotExist in the JSON protocol, and the query protocol's
// AWS.SimpleQueueService.NonExistentQueue, which some endpoints still
// send.
func isNoQueue(err error) bool {
	var nq *types.QueueDoesNotExist
	if errors.As(err, &nq) {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", "NonExistentQueue":
			return true
		}
	}
	return false
}

// queueErr names the queue in err, and marks a missing queue.
func (q *SQS) queueErr(what, url string, err error) error {
	if isNoQueue(err) {
		return noQueue(what, url, err)
	}
	return fmt.Errorf("%s %s: %w", what, url, err)
}

// Receive long-polls for up to max messages.
func (q *SQS) Receive(ctx context.Context, max int, wait time.Duration) ([]worker.Message, error) {
	in := &sqs.ReceiveMessageInput{
		QueueUrl:                    &q.URL,
		MaxNumberOfMessages:         int32(max),
		WaitTimeSeconds:             int32(wait / time.Second),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount, types.MessageSystemAttributeNameSentTimestamp},
		MessageAttributeNames:       []string{"All"},
	}
	if q.VisibilityTimeout > 0 {
		in.VisibilityTimeout = int32(q.VisibilityTimeout / time.Second)
	}
	out, err := q.Client.ReceiveMessage(ctx, in)
	if err != nil {
		return nil, q.queueErr("queue", q.URL, err)
	}
	msgs := make([]worker.Message, 0, len(out.Messages))
	for _, m := range out.Messages {
		n, _ := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
		var sent time.Time
		if ms, err := strconv.ParseInt(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil && ms > 0 {
			sent = time.UnixMilli(ms).UTC()
		}
		msgs = append(msgs, worker.Message{
			Sent:          sent,
			ID:            aws.ToString(m.MessageId),
			ReceiptHandle: aws.ToString(m.ReceiptHandle),
			Body:          aws.ToString(m.Body),
			ReceiveCount:  n,
			Attributes:    m.MessageAttributes,
		})
	}
	return msgs, nil
}

// Delete acknowledges msgs in batches of ten. When some are not
// deleted, the error is a *worker.BatchError naming their receipt
// handles: the others were deleted.
func (q *SQS) Delete(ctx context.Context, msgs []worker.Message) error {
	var errs []error
	var failed []string
	for batch := range chunks(msgs, 10) {
		entries := make([]types.DeleteMessageBatchRequestEntry, len(batch))
		for i, m := range batch {
			entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(m.ReceiptHandle)}
		}
		out, err := q.Client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &q.URL, Entries: entries})
		if err != nil {
			errs = append(errs, q.queueErr("queue", q.URL, fmt.Errorf("delete batch: %w", err)))
			for _, m := range batch {
				failed = append(failed, m.ReceiptHandle)
			}
			continue
		}
		for _, f := range out.Failed {
			i, err := strconv.Atoi(aws.ToString(f.Id))
			if err != nil || i < 0 || i >= len(batch) {
				errs = append(errs, fmt.Errorf("queue %s: delete: SQS names entry %q, which was not sent", q.URL, aws.ToString(f.Id)))
				continue
			}
			failed = append(failed, batch[i].ReceiptHandle)
			errs = append(errs, fmt.Errorf("queue %s: delete message %s: %s: %s", q.URL, batch[i].ID, aws.ToString(f.Code), aws.ToString(f.Message)))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &worker.BatchError{Failed: failed, Err: errors.Join(errs...)}
}

// Release makes msgs visible again at once. Where the batch call is not
// available it falls back to one call per message.
func (q *SQS) Release(ctx context.Context, msgs []worker.Message) error {
	return q.setVisibility(ctx, msgs, 0, "release")
}

// Extend keeps msgs invisible for d from now: the worker's heartbeat
// while it is still working on them, or after a halt, until sending may
// work again. SQS refuses more than 12 hours from the receive.
func (q *SQS) Extend(ctx context.Context, msgs []worker.Message, d time.Duration) error {
	return q.setVisibility(ctx, msgs, d, "extend")
}

func (q *SQS) setVisibility(ctx context.Context, msgs []worker.Message, d time.Duration, what string) error {
	secs := int32(d / time.Second)
	var errs []error
	for batch := range chunks(msgs, 10) {
		entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(batch))
		for i, m := range batch {
			entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(m.ReceiptHandle), VisibilityTimeout: secs}
		}
		out, err := q.Client.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: &q.URL, Entries: entries})
		if err == nil && len(out.Failed) == 0 {
			continue
		}
		for _, m := range batch {
			if _, err := q.Client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &q.URL, ReceiptHandle: aws.String(m.ReceiptHandle), VisibilityTimeout: secs}); err != nil {
				errs = append(errs, q.queueErr("queue", q.URL, fmt.Errorf("%s message %s: %w", what, m.ID, err)))
			}
		}
	}
	return errors.Join(errs...)
}

// DeadLetter copies msg to the dead-letter queue with f's code and
// reason, its original id, the time and a [DeadLetterInfo] (AttrFailure)
// as message attributes, then
// deletes it from the source (unless it has no receipt handle: an event
// from a digest's pending store). The producer's own attributes are kept as
// far as SQS's limit of ten allows, in order of name; the names of the
// rest are logged and listed in AttrDroppedAttributes. If the delete
// fails the message is in both queues; the ledger keeps a later try
// from sending twice.
func (q *SQS) DeadLetter(ctx context.Context, msg worker.Message, f worker.Failure) error {
	if q.DeadLetterURL == "" {
		return fmt.Errorf("dead-letter: no dead-letter queue configured: %w", worker.ErrNoQueue)
	}
	now := time.Now
	if q.Now != nil {
		now = q.Now
	}
	at := now().UTC().Truncate(time.Second)
	orig, _ := msg.Attributes.(map[string]types.MessageAttributeValue)
	info := DeadLetterInfo{Class: f.Class, Code: f.Code, User: f.User, Schedule: f.Schedule,
		SourceQueue: q.URL, FirstFailedAt: at, LastFailedAt: at, ReceiveCount: msg.ReceiveCount}
	if f.EventIDs != "" {
		info.EventIDs = strings.Split(f.EventIDs, ",")
	}
	if prev, ok := ParseDeadLetterInfo(orig); ok && !prev.FirstFailedAt.IsZero() && prev.FirstFailedAt.Before(at) {
		info.FirstFailedAt = prev.FirstFailedAt
	}
	infoJSON, _ := json.Marshal(info)
	attrs := map[string]types.MessageAttributeValue{
		AttrReason:   stringAttr(clean(f.Reason)),
		AttrCode:     stringAttr(clean(string(f.Code))),
		AttrFailedAt: stringAttr(at.Format(time.RFC3339)),
		AttrFailure:  stringAttr(string(infoJSON)),
	}
	if msg.ID != "" {
		attrs[AttrSourceMessageID] = stringAttr(msg.ID)
	}
	if dropped := keepAttributes(attrs, orig); len(dropped) > 0 {
		q.logger(ctx).Warn("dead-letter: the producer's message attributes that did not fit were dropped",
			"message_id", msg.ID, "events", f.EventIDs, "dropped", dropped)
	}
	if err := Sendable(msg.Body); err != nil {
		return fmt.Errorf("dead-letter queue %s: send: %w: %w", q.DeadLetterURL, err, worker.ErrUnsendable)
	}
	if n := messageSize(msg.Body, attrs); n > MaxMessageSize {
		return fmt.Errorf("dead-letter queue %s: send: %d bytes with its attributes, over %d: %w", q.DeadLetterURL, n, MaxMessageSize, worker.ErrTooLarge)
	}
	if _, err := q.Client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:          &q.DeadLetterURL,
		MessageBody:       aws.String(msg.Body),
		MessageAttributes: attrs,
	}); err != nil {
		switch {
		case isTooLong(err):
			err = fmt.Errorf("%w: %w", worker.ErrTooLarge, err)
		case isInvalidContents(err):
			err = fmt.Errorf("%w: %w", worker.ErrUnsendable, err)
		}
		return q.queueErr("dead-letter queue", q.DeadLetterURL, fmt.Errorf("send: %w", err))
	}
	if msg.ReceiptHandle == "" {
		// An event from a digest's pending store: no longer on the queue.
		return nil
	}
	if _, err := q.Client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &q.URL, ReceiptHandle: aws.String(msg.ReceiptHandle)}); err != nil {
		return q.queueErr("queue", q.URL, fmt.Errorf("dead-letter: delete from source: %w", err))
	}
	return nil
}

// messageSize is how SQS measures a message against its limit: the
// body, and each attribute's name, data type and value.
func messageSize(body string, attrs map[string]types.MessageAttributeValue) int {
	n := len(body)
	for k, v := range attrs {
		n += len(k) + len(aws.ToString(v.DataType)) + len(aws.ToString(v.StringValue)) + len(v.BinaryValue)
	}
	return n
}

// isTooLong reports whether SQS refused a message for its size
// ("Message must be shorter than 262144 bytes"), under a limit lower
// than MaxMessageSize set on the queue.
// isInvalidContents reports whether SQS refused a body for its
// characters.
func isInvalidContents(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "InvalidMessageContents"
}

// Sendable says why SQS would refuse body as a message body: empty,
// not UTF-8, or with a character outside those SQS allows (#x9, #xA,
// #xD, #x20 to #xD7FF, #xE000 to #xFFFD, #x10000 to #x10FFFF).
func Sendable(body string) error {
	if body == "" {
		return errors.New("empty body")
	}
	for i, r := range body {
		ok := r == 0x9 || r == 0xA || r == 0xD || (r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(body[i:]); size <= 1 {
				ok = false
			}
		}
		if !ok {
			return fmt.Errorf("byte %d: a character SQS does not take in a message body", i)
		}
	}
	return nil
}

func isTooLong(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "InvalidParameterValue" && strings.Contains(ae.ErrorMessage(), "shorter than")
}

// keepAttributes adds the producer's attributes to ours, in order of
// name, while SQS's limit allows, and returns the names left out. Ours
// win: a producer's "reportmailer-" attribute (from an earlier
// dead-lettering, say) is replaced, not counted. When some do not fit,
// one slot goes to AttrDroppedAttributes, which lists them.
func keepAttributes(ours, producer map[string]types.MessageAttributeValue) []string {
	var names []string
	for _, k := range slices.Sorted(maps.Keys(producer)) {
		if !strings.HasPrefix(k, "reportmailer-") {
			names = append(names, k)
		}
	}
	room := maxAttributes - len(ours)
	if len(names) <= room {
		for _, k := range names {
			ours[k] = producer[k]
		}
		return nil
	}
	keep, dropped := names[:room-1], names[room-1:]
	for _, k := range keep {
		ours[k] = producer[k]
	}
	ours[AttrDroppedAttributes] = stringAttr(clean(strings.Join(dropped, ",")))
	return dropped
}

// logger is q.Logger with the schedule and run of ctx.
func (q *SQS) logger(ctx context.Context) *slog.Logger {
	l := q.Logger
	if l == nil {
		l = slog.Default()
	}
	return l.With(worker.LogAttrs(ctx)...)
}

func stringAttr(s string) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(s)}
}

// clean makes s fit for an SQS attribute: valid UTF-8, no control
// characters, at most maxReason bytes.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if len(s) > maxReason {
		s = strings.ToValidUTF8(s[:maxReason-3], "") + "..."
	}
	if s == "" {
		s = "unknown"
	}
	return s
}

func chunks[T any](s []T, n int) func(func([]T) bool) {
	return func(yield func([]T) bool) {
		for len(s) > 0 {
			k := min(n, len(s))
			if !yield(s[:k]) {
				return
			}
			s = s[k:]
		}
	}
}
