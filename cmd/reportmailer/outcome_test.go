package main

// What became of a set of deliveries, read the way an operator would:
// the emails SES accepted (aws-ses-v2-local's store), the ledger
// records in S3 and the dead-letter queue. The crash test and the fault
// tests judge their runs with it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/internal/emulator"
	"github.com/reportmailer/reportmailer/worker"
)

// pair is one delivery: an event to one recipient.
type pair struct {
	event, recipient string
}

// outcomeEvent is an event as the tests enqueue it: its report, one
// per event, is named after the event, so every email says which event
// it is for.
type outcomeEvent struct {
	id, user   string
	recipients []string // the extra recipients; the user is always one
}

func (ev outcomeEvent) key(prefix string) string { return prefix + ev.id + ".pdf" }

func (ev outcomeEvent) body(prefix string) string {
	return nativeBody(ev.id, ev.user, ev.recipients, ev.key(prefix))
}

// pairs lists the event's deliveries, the user's first.
func (ev outcomeEvent) pairs() []pair {
	out := []pair{{ev.id, ev.user + "@acme.example"}}
	for _, r := range ev.recipients {
		out = append(out, pair{ev.id, r})
	}
	return out
}

// deadLetter is a message on the dead-letter queue.
type deadLetter struct {
	event, code, reason string
}

// outcome is what became of a set of deliveries.
type outcome struct {
	Pairs      int // deliveries expected
	Emails     int // emails SES accepted for them
	Delivered  int // deliveries with at least one email
	Duplicates int // emails beyond the first for a delivery
	// Ambiguous are deliveries whose ledger record is "sending": the
	// send may or may not have been accepted; AmbiguousDelivered of
	// them were.
	Ambiguous, AmbiguousDelivered int
	// Unrecorded are ambiguous deliveries that were delivered and not
	// dead-lettered: the run that sent them counted them as sent but
	// could not record it (Summary.Unrecorded).
	Unrecorded   int
	Lost         int // deliveries with no email that are not ambiguous
	DeadLettered int // messages on the dead-letter queue
	// Problems are the broken promises, one line each.
	Problems []string
	// States counts the final ledger records by state ("" when none).
	States map[string]int
}

func (o outcome) String() string {
	return fmt.Sprintf("pairs %d, emails %d, delivered %d, duplicates %d, ambiguous %d (of them delivered %d, unrecorded %d), lost %d, dead-lettered %d, ledger states %v",
		o.Pairs, o.Emails, o.Delivered, o.Duplicates, o.Ambiguous, o.AmbiguousDelivered, o.Unrecorded, o.Lost, o.DeadLettered, o.States)
}

// subjectEvent reads the event id back from an email's subject, "Your
// report is ready: Title of <event>.pdf".
var subjectEvent = regexp.MustCompile(`Title of (.+)\.pdf$`)

// outcome judges the deliveries of events, after the queue drained:
// every delivery was accepted by SES exactly once, or it is ambiguous
// (its ledger record says "sending") and its message is on the
// dead-letter queue with code maybe_sent and a reason that names the
// recipient and the ledger record. What the runs counted excuses some:
// see counted. Anything else is a Problem. It empties the dead-letter
// queue.
func (e *itEnv) outcome(t *testing.T, events []outcomeEvent, dlqURL, ledger string, c counted) outcome {
	t.Helper()
	ctx := context.Background()
	o := outcome{States: map[string]int{}}
	want := map[pair]bool{}
	var rcpts []string
	for _, ev := range events {
		for _, p := range ev.pairs() {
			want[p] = true
			rcpts = append(rcpts, p.recipient)
		}
	}
	o.Pairs = len(want)

	got := map[pair]int{}
	for _, m := range e.emails(t, rcpts...) {
		sm := subjectEvent.FindStringSubmatch(m.Subject)
		if sm == nil || len(m.To()) != 1 {
			o.Problems = append(o.Problems, fmt.Sprintf("an email to %v with subject %q names no single delivery", m.To(), m.Subject))
			continue
		}
		p := pair{sm[1], strings.ToLower(m.To()[0])}
		if !want[p] {
			o.Problems = append(o.Problems, fmt.Sprintf("an email for %s to %s, which no event asked for", p.event, p.recipient))
			continue
		}
		got[p]++
		o.Emails++
	}

	dead := e.deadLetters(t, dlqURL)
	o.DeadLettered = len(dead)
	byEvent := map[string][]deadLetter{}
	for _, d := range dead {
		byEvent[d.event] = append(byEvent[d.event], d)
		if d.code != string(worker.CodeMaybeSent) {
			o.Problems = append(o.Problems, fmt.Sprintf("event %s was dead-lettered with code %q, not maybe_sent: %s", d.event, d.code, d.reason))
		}
	}

	ambiguousEvents := map[string]bool{}
	for _, ev := range events {
		for _, p := range ev.pairs() {
			n := got[p]
			key := worker.DeliveryKey(p.event, p.recipient)
			state, err := e.ledgerState(ctx, ledger+key)
			if err != nil {
				t.Fatalf("ledger record of %s to %s: %v", p.event, p.recipient, err)
			}
			o.States[state]++
			if n > 0 {
				o.Delivered++
			}
			if n > 1 {
				o.Duplicates += n - 1
				if o.Duplicates > c.maybeDuplicated {
					o.Problems = append(o.Problems, fmt.Sprintf("%s to %s was sent %d times (ledger record %q), and the runs counted %d maybe duplicated in all", p.event, p.recipient, n, state, c.maybeDuplicated))
				}
			}
			switch {
			case state == "sending":
				o.Ambiguous++
				ambiguousEvents[p.event] = true
				if n > 0 {
					o.AmbiguousDelivered++
				}
				named := slices.ContainsFunc(byEvent[p.event], func(d deadLetter) bool {
					return d.code == string(worker.CodeMaybeSent) && strings.Contains(d.reason, p.recipient) && strings.Contains(d.reason, key)
				})
				switch {
				case named:
				case n > 0 && o.Unrecorded < c.unrecorded && len(byEvent[p.event]) == 0:
					o.Unrecorded++
				default:
					o.Problems = append(o.Problems, fmt.Sprintf("%s to %s is ambiguous (ledger %s), but no maybe_sent dead letter names the recipient and the record; dead letters of the event: %q",
						p.event, p.recipient, key, byEvent[p.event]))
				}
			case n == 0:
				o.Lost++
				o.Problems = append(o.Problems, fmt.Sprintf("%s to %s was never sent and is not ambiguous: ledger record %q, dead letters of the event: %q", p.event, p.recipient, state, byEvent[p.event]))
			case state != "sent":
				o.Problems = append(o.Problems, fmt.Sprintf("%s to %s was sent, but its ledger record says %q: a redelivery could send it again", p.event, p.recipient, state))
			}
		}
	}
	for ev, ds := range byEvent {
		if !ambiguousEvents[ev] {
			o.Problems = append(o.Problems, fmt.Sprintf("event %s was dead-lettered though none of its deliveries is ambiguous: %q", ev, ds))
		}
	}
	slices.Sort(o.Problems)
	return o
}

// counted is what the runs' summaries counted that excuses an outcome.
type counted struct {
	// unrecorded ambiguous deliveries may have been delivered,
	// acknowledged and not dead-lettered: their run counted them sent
	// but could not record it (summary unrecorded).
	unrecorded int
	// maybeDuplicated duplicate emails may be: their run retried a send
	// that SES may have accepted, and said so (summary maybe_duplicated).
	maybeDuplicated int
}

// ledgerState is the state of the ledger record at key, "" when there
// is none.
func (e *itEnv) ledgerState(ctx context.Context, key string) (string, error) {
	out, err := e.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(itBucket), Key: aws.String(key)})
	if err != nil {
		var nk *s3types.NoSuchKey
		if errors.As(err, &nk) {
			return "", nil
		}
		return "", err
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		return "", err
	}
	var r struct {
		State string `json:"state"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return "", fmt.Errorf("%s: %w: %s", key, err, b)
	}
	return r.State, nil
}

// deadLetters empties the dead-letter queue and returns its messages.
func (e *itEnv) deadLetters(t *testing.T, dlqURL string) []deadLetter {
	t.Helper()
	ctx := context.Background()
	var out []deadLetter
	for {
		r, err := e.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(dlqURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Messages) == 0 {
			return out
		}
		for _, m := range r.Messages {
			var body struct {
				ID string `json:"id"`
			}
			json.Unmarshal([]byte(aws.ToString(m.Body)), &body)
			out = append(out, deadLetter{
				event:  body.ID,
				code:   aws.ToString(m.MessageAttributes["reportmailer-code"].StringValue),
				reason: aws.ToString(m.MessageAttributes["reportmailer-reason"].StringValue),
			})
			if _, err := e.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(dlqURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// queuesWith is e.queues with maxReceiveCount set: a run killed or
// faulted mid-batch costs each message of the batch a receive, and
// SQS's own redrive would move a message there without a reason.
func (e *itEnv) queuesWith(t *testing.T, maxReceive int) (string, string) {
	t.Helper()
	ctx := context.Background()
	e.queueCount++
	name := fmt.Sprintf("it-%s-%d-%d", e.name, time.Now().UnixNano()%1e9, e.queueCount)
	dlq, err := e.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := e.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	redrive, _ := json.Marshal(map[string]string{"deadLetterTargetArn": attrs.Attributes["QueueArn"], "maxReceiveCount": strconv.Itoa(maxReceive)})
	q, err := e.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{"RedrivePolicy": string(redrive)}})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(q.QueueUrl), aws.ToString(dlq.QueueUrl)
}

// enqueue puts each event's report in S3 and the event on the queue,
// copies times.
func (e *itEnv) enqueue(t *testing.T, queueURL, prefix string, events []outcomeEvent, copies int) {
	t.Helper()
	ctx := context.Background()
	var entries []sqstypes.SendMessageBatchRequestEntry
	flush := func() {
		if len(entries) == 0 {
			return
		}
		out, err := e.sqs.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: entries})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Failed) > 0 {
			t.Fatalf("enqueue: %d messages failed: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
		}
		entries = entries[:0]
	}
	for _, ev := range events {
		e.put(t, ev.key(prefix), nil)
		for range copies {
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(len(entries))), MessageBody: aws.String(ev.body(prefix))})
			if len(entries) == 10 {
				flush()
			}
		}
	}
	flush()
}

// editConfig replaces old by new in the config file at path; old must
// be there.
func editConfig(t *testing.T, path string, edits ...string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(s, edits[i]) {
			t.Fatalf("config %s has no %q to replace:\n%s", path, edits[i], s)
		}
		s = strings.Replace(s, edits[i], edits[i+1], 1)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ledgerPrefix is where e.config's ledger records are.
const ledgerPrefix = config.LedgerPrefixDefault

// fastSESAccount is emulator.DefaultSESAccount with a send rate high
// enough that pacing does not set the pace of a test of hundreds of
// emails.
var fastSESAccount = strings.Replace(emulator.DefaultSESAccount, `"MaxSendRate": 14`, `"MaxSendRate": 200`, 1)
