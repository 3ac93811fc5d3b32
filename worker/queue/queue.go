// Package queue implements the worker's queue on Amazon SQS.
package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/reportmailer/reportmailer/worker"
)

// Message attributes set on a dead-lettered message.
const (
	AttrReason          = "reportmailer-reason"
	AttrSourceMessageID = "reportmailer-source-message-id"
	AttrFailedAt        = "reportmailer-failed-at"
)

// maxReason bounds the reason attribute; reasons are for people.
const maxReason = 2048

// API is the part of *sqs.Client the queue uses.
type API interface {
	ReceiveMessage(context.Context, *sqs.ReceiveMessageInput, ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(context.Context, *sqs.DeleteMessageInput, ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	DeleteMessageBatch(context.Context, *sqs.DeleteMessageBatchInput, ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibility(context.Context, *sqs.ChangeMessageVisibilityInput, ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	ChangeMessageVisibilityBatch(context.Context, *sqs.ChangeMessageVisibilityBatchInput, ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
	SendMessage(context.Context, *sqs.SendMessageInput, ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
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
}

var _ worker.Queue = (*SQS)(nil)

// Receive long-polls for up to max messages.
func (q *SQS) Receive(ctx context.Context, max int, wait time.Duration) ([]worker.Message, error) {
	in := &sqs.ReceiveMessageInput{
		QueueUrl:                    &q.URL,
		MaxNumberOfMessages:         int32(max),
		WaitTimeSeconds:             int32(wait / time.Second),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
		MessageAttributeNames:       []string{"All"},
	}
	if q.VisibilityTimeout > 0 {
		in.VisibilityTimeout = int32(q.VisibilityTimeout / time.Second)
	}
	out, err := q.Client.ReceiveMessage(ctx, in)
	if err != nil {
		return nil, err
	}
	msgs := make([]worker.Message, 0, len(out.Messages))
	for _, m := range out.Messages {
		n, _ := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
		msgs = append(msgs, worker.Message{
			ID:            aws.ToString(m.MessageId),
			ReceiptHandle: aws.ToString(m.ReceiptHandle),
			Body:          aws.ToString(m.Body),
			ReceiveCount:  n,
			Attributes:    m.MessageAttributes,
		})
	}
	return msgs, nil
}

// Delete acknowledges msgs in batches of ten.
func (q *SQS) Delete(ctx context.Context, msgs []worker.Message) error {
	var errs []error
	for batch := range chunks(msgs, 10) {
		entries := make([]types.DeleteMessageBatchRequestEntry, len(batch))
		for i, m := range batch {
			entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(m.ReceiptHandle)}
		}
		out, err := q.Client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &q.URL, Entries: entries})
		if err != nil {
			errs = append(errs, fmt.Errorf("delete batch: %w", err))
			continue
		}
		for _, f := range out.Failed {
			i, _ := strconv.Atoi(aws.ToString(f.Id))
			errs = append(errs, fmt.Errorf("delete message %s: %s: %s", batch[i].ID, aws.ToString(f.Code), aws.ToString(f.Message)))
		}
	}
	return errors.Join(errs...)
}

// Release makes msgs visible again at once. Where the batch call is not
// available it falls back to one call per message.
func (q *SQS) Release(ctx context.Context, msgs []worker.Message) error {
	return q.setVisibility(ctx, msgs, 0, "release")
}

// Extend keeps msgs invisible for d from now: the worker's heartbeat
// while it is still working on them.
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
				errs = append(errs, fmt.Errorf("%s message %s: %w", what, m.ID, err))
			}
		}
	}
	return errors.Join(errs...)
}

// DeadLetter copies msg to the dead-letter queue with reason, its
// original id and the time as message attributes, then deletes it from
// the source. If the delete fails the message is in both queues; the
// ledger keeps a later try from sending twice.
func (q *SQS) DeadLetter(ctx context.Context, msg worker.Message, reason string) error {
	if q.DeadLetterURL == "" {
		return errors.New("dead-letter: no dead-letter queue configured")
	}
	now := time.Now
	if q.Now != nil {
		now = q.Now
	}
	attrs := map[string]types.MessageAttributeValue{}
	// Keep the producer's attributes, within SQS's limit of ten.
	orig, _ := msg.Attributes.(map[string]types.MessageAttributeValue)
	for k, v := range orig {
		if len(attrs) < 7 && !strings.HasPrefix(k, "reportmailer-") {
			attrs[k] = v
		}
	}
	attrs[AttrReason] = stringAttr(clean(reason))
	attrs[AttrFailedAt] = stringAttr(now().UTC().Format(time.RFC3339))
	if msg.ID != "" {
		attrs[AttrSourceMessageID] = stringAttr(msg.ID)
	}
	if _, err := q.Client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:          &q.DeadLetterURL,
		MessageBody:       aws.String(msg.Body),
		MessageAttributes: attrs,
	}); err != nil {
		return fmt.Errorf("dead-letter send: %w", err)
	}
	if _, err := q.Client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: &q.URL, ReceiptHandle: aws.String(msg.ReceiptHandle)}); err != nil {
		return fmt.Errorf("dead-letter delete from source: %w", err)
	}
	return nil
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
