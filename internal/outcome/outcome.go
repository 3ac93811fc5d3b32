// Package outcome judges what became of a set of email deliveries once
// a queue has drained, read the way an operator would check them: the
// emails SES accepted (aws-ses-v2-local's store), the ledger records in
// S3 and the dead-letter queue. The crash test and the fault tests use
// it to hold the worker to its promise: every email delivered exactly
// once or, where AWS gives no way to know, ambiguous, counted and
// dead-lettered as maybe_sent with a reason that names the recipient
// and the ledger record; nothing lost.
//
// It is test infrastructure: the production binary must not import it.
package outcome

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

	"github.com/reportmailer/reportmailer/internal/emulator"
	"github.com/reportmailer/reportmailer/worker"
)

// Domain is the domain of every address an Event names; the config
// must allow it.
const Domain = "acme.example"

// Event is a native report.ready event with one report, named after the
// event, so that every email says which event it is for.
type Event struct {
	// ID is the event id; User the user's id, whose address is
	// User@Domain.
	ID, User string
	// Recipients are the extra recipients; the user is always one.
	Recipients []string
}

// Key is the S3 key of the event's report under prefix.
func (ev Event) Key(prefix string) string { return prefix + ev.ID + ".pdf" }

// Body is the event's message body, its report in bucket under prefix.
func (ev Event) Body(bucket, prefix string) string {
	b, _ := json.Marshal(map[string]any{
		"version": 1, "type": "report.ready", "id": ev.ID,
		"user":       map[string]string{"id": ev.User, "email": ev.User + "@" + Domain, "name": "User " + ev.User, "time_zone": "Europe/London"},
		"recipients": ev.Recipients,
		"reports":    []map[string]any{{"bucket": bucket, "key": ev.Key(prefix), "title": "Title of " + ev.ID + ".pdf"}},
	})
	return string(b)
}

// Pair is one delivery: an event to one recipient.
type Pair struct {
	Event, Recipient string
}

// Pairs lists the event's deliveries, the user's first.
func (ev Event) Pairs() []Pair {
	out := []Pair{{ev.ID, ev.User + "@" + Domain}}
	for _, r := range ev.Recipients {
		out = append(out, Pair{ev.ID, r})
	}
	return out
}

// subjectEvent reads the event id back from an email's subject, "Your
// report is ready: Title of <event>.pdf".
var subjectEvent = regexp.MustCompile(`Title of (.+)\.pdf$`)

// Stack is where the deliveries' traces are: clients that talk to the
// emulators directly (not through a fault proxy), aws-ses-v2-local's
// URL, the bucket of the reports and the ledger, and when the test
// started, so older emails are not counted.
type Stack struct {
	SQS    *sqs.Client
	S3     *s3.Client
	SESURL string
	Bucket string
	Since  time.Time
}

// Queues creates a queue named name and its dead-letter queue, with a
// RedrivePolicy of maxReceive. A run killed or faulted mid-batch costs
// each message of the batch a receive, and SQS's own redrive would move
// a message without the worker's reason, so tests give it room.
func (s Stack) Queues(t testing.TB, name string, maxReceive int) (queueURL, dlqURL string) {
	t.Helper()
	ctx := context.Background()
	dlq, err := s.SQS.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := s.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	redrive, _ := json.Marshal(map[string]string{"deadLetterTargetArn": attrs.Attributes["QueueArn"], "maxReceiveCount": strconv.Itoa(maxReceive)})
	q, err := s.SQS.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{"RedrivePolicy": string(redrive)}})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(q.QueueUrl), aws.ToString(dlq.QueueUrl)
}

// Enqueue puts each event's report in S3 under prefix, and the event on
// the queue.
func (s Stack) Enqueue(t testing.TB, queueURL, prefix string, events []Event) {
	t.Helper()
	ctx := context.Background()
	var entries []sqstypes.SendMessageBatchRequestEntry
	flush := func() {
		if len(entries) == 0 {
			return
		}
		out, err := s.SQS.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: entries})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Failed) > 0 {
			t.Fatalf("enqueue: %d messages failed: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
		}
		entries = entries[:0]
	}
	for _, ev := range events {
		if _, err := s.S3.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(s.Bucket), Key: aws.String(ev.Key(prefix)), Body: strings.NewReader("contents of " + ev.Key(prefix)),
			ContentType: aws.String("application/pdf"),
		}); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(len(entries))), MessageBody: aws.String(ev.Body(s.Bucket, prefix))})
		if len(entries) == 10 {
			flush()
		}
	}
	flush()
}

// QueueEmpty reports whether nothing is left on the queue, visible or
// in flight: every message was deleted.
func (s Stack) QueueEmpty(t testing.TB, queueURL string) bool {
	t.Helper()
	out, err := s.SQS.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(queueURL), AttributeNames: []sqstypes.QueueAttributeName{
		sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil {
		t.Fatal(err)
	}
	return out.Attributes["ApproximateNumberOfMessages"] == "0" && out.Attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
}

// DeadLetter is a message on the dead-letter queue.
type DeadLetter struct {
	Event, Code, Reason string
}

// Counted is what the runs' summaries counted that excuses an outcome.
type Counted struct {
	// Unrecorded ambiguous deliveries may have been delivered,
	// acknowledged and not dead-lettered: their run counted them sent
	// but could not record it (summary unrecorded).
	Unrecorded int
	// MaybeDuplicated duplicate emails may be: their run retried a send
	// that SES may have accepted, and said so (summary
	// maybe_duplicated).
	MaybeDuplicated int
}

// Result is what became of a set of deliveries.
type Result struct {
	Pairs      int // deliveries expected
	Emails     int // emails SES accepted for them
	Delivered  int // deliveries with at least one email
	Duplicates int // emails beyond the first for a delivery
	// Ambiguous are deliveries whose ledger record is "sending": the
	// send may or may not have been accepted; AmbiguousDelivered of
	// them were.
	Ambiguous, AmbiguousDelivered int
	// Unrecorded are ambiguous deliveries that were delivered and not
	// dead-lettered, excused by Counted.Unrecorded.
	Unrecorded   int
	Lost         int // deliveries with no email that are not ambiguous
	DeadLettered int // messages on the dead-letter queue
	// Settled are deliveries SES's sending events recorded as sent:
	// their ledger record says settled_by "ses-event". Each was
	// ambiguous until its event was read.
	Settled int
	// States counts the final ledger records by state ("" when none).
	States map[string]int
	// Problems are the broken promises, one line each.
	Problems []string
}

func (r Result) String() string {
	return fmt.Sprintf("pairs %d, emails %d, delivered %d, duplicates %d, ambiguous %d (of them delivered %d, unrecorded %d), settled by SES events %d, lost %d, dead-lettered %d, ledger states %v",
		r.Pairs, r.Emails, r.Delivered, r.Duplicates, r.Ambiguous, r.AmbiguousDelivered, r.Unrecorded, r.Settled, r.Lost, r.DeadLettered, r.States)
}

// Judge judges the deliveries of events, once their queue drained:
// every delivery was accepted by SES exactly once, or it is ambiguous
// (its ledger record, under ledger, says "sending") and its message is
// on the dead-letter queue with code maybe_sent and a reason that names
// the recipient and the ledger record. What the runs counted excuses
// some (see Counted). Anything else is a Problem. Judge empties the
// dead-letter queue.
func (s Stack) Judge(t testing.TB, events []Event, dlqURL, ledger string, c Counted) Result {
	t.Helper()
	ctx := context.Background()
	r := Result{States: map[string]int{}}
	want := map[Pair]bool{}
	for _, ev := range events {
		for _, p := range ev.Pairs() {
			want[p] = true
		}
	}
	r.Pairs = len(want)

	all, err := emulator.SESLocalEmails(ctx, s.SESURL, s.Since.Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := map[Pair]int{}
	for _, m := range all {
		sm := subjectEvent.FindStringSubmatch(m.Subject)
		if sm == nil || len(m.To()) != 1 {
			continue // another test's
		}
		p := Pair{sm[1], strings.ToLower(m.To()[0])}
		if !want[p] {
			if slices.ContainsFunc(events, func(ev Event) bool { return ev.ID == p.Event }) {
				r.Problems = append(r.Problems, fmt.Sprintf("an email for %s to %s, which the event did not ask for", p.Event, p.Recipient))
			}
			continue
		}
		got[p]++
		r.Emails++
	}

	dead := s.deadLetters(t, dlqURL)
	r.DeadLettered = len(dead)
	byEvent := map[string][]DeadLetter{}
	for _, d := range dead {
		byEvent[d.Event] = append(byEvent[d.Event], d)
		if d.Code != string(worker.CodeMaybeSent) {
			r.Problems = append(r.Problems, fmt.Sprintf("event %s was dead-lettered with code %q, not maybe_sent: %s", d.Event, d.Code, d.Reason))
		}
	}

	ambiguousEvents := map[string]bool{}
	for _, ev := range events {
		for _, p := range ev.Pairs() {
			n := got[p]
			key := worker.DeliveryKey(p.Event, p.Recipient)
			state, settledBy, err := s.ledgerState(ctx, ledger+key)
			if err != nil {
				t.Fatalf("ledger record of %s to %s: %v", p.Event, p.Recipient, err)
			}
			r.States[state]++
			if state == "sent" && settledBy == "ses-event" {
				r.Settled++
			}
			if n > 0 {
				r.Delivered++
			}
			if n > 1 {
				r.Duplicates += n - 1
				if r.Duplicates > c.MaybeDuplicated {
					r.Problems = append(r.Problems, fmt.Sprintf("%s to %s was sent %d times (ledger record %q), and the runs counted %d maybe duplicated in all", p.Event, p.Recipient, n, state, c.MaybeDuplicated))
				}
			}
			switch {
			case state == "sending":
				r.Ambiguous++
				ambiguousEvents[p.Event] = true
				if n > 0 {
					r.AmbiguousDelivered++
				}
				named := slices.ContainsFunc(byEvent[p.Event], func(d DeadLetter) bool {
					return d.Code == string(worker.CodeMaybeSent) && strings.Contains(d.Reason, p.Recipient) && strings.Contains(d.Reason, key)
				})
				switch {
				case named:
				case n > 0 && r.Unrecorded < c.Unrecorded && len(byEvent[p.Event]) == 0:
					r.Unrecorded++
				default:
					r.Problems = append(r.Problems, fmt.Sprintf("%s to %s is ambiguous (ledger %s), but no maybe_sent dead letter names the recipient and the record; dead letters of the event: %q",
						p.Event, p.Recipient, key, byEvent[p.Event]))
				}
			case n == 0:
				r.Lost++
				r.Problems = append(r.Problems, fmt.Sprintf("%s to %s was never sent and is not ambiguous: ledger record %q, dead letters of the event: %q", p.Event, p.Recipient, state, byEvent[p.Event]))
			case state != "sent":
				r.Problems = append(r.Problems, fmt.Sprintf("%s to %s was sent, but its ledger record says %q: a redelivery could send it again", p.Event, p.Recipient, state))
			}
		}
	}
	for ev, ds := range byEvent {
		if !ambiguousEvents[ev] {
			r.Problems = append(r.Problems, fmt.Sprintf("event %s was dead-lettered though none of its deliveries is ambiguous: %q", ev, ds))
		}
	}
	slices.Sort(r.Problems)
	return r
}

// ledgerState is the state of the ledger record at key, "" when there
// is none, and who settled it, if not the run that sent.
func (s Stack) ledgerState(ctx context.Context, key string) (state, settledBy string, err error) {
	out, err := s.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
	if err != nil {
		var nk *s3types.NoSuchKey
		if errors.As(err, &nk) {
			return "", "", nil
		}
		return "", "", err
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		return "", "", err
	}
	var rec struct {
		State     string `json:"state"`
		SettledBy string `json:"settled_by"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return "", "", fmt.Errorf("%s: %w: %s", key, err, b)
	}
	return rec.State, rec.SettledBy, nil
}

// deadLetters empties the dead-letter queue and returns its messages.
func (s Stack) deadLetters(t testing.TB, dlqURL string) []DeadLetter {
	t.Helper()
	ctx := context.Background()
	var out []DeadLetter
	for {
		r, err := s.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(dlqURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
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
			out = append(out, DeadLetter{
				Event:  body.ID,
				Code:   aws.ToString(m.MessageAttributes["reportmailer-code"].StringValue),
				Reason: aws.ToString(m.MessageAttributes["reportmailer-reason"].StringValue),
			})
			if _, err := s.SQS.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(dlqURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// SummaryCount sums a figure ("sent", "duplicates", "maybe_sent",
// "unrecorded") of the summaries runs logged when they ended
// (summary.NAME=N) over logs.
func SummaryCount(logs []string, what string) int {
	n := 0
	for _, l := range logs {
		for _, m := range summaryFigure.FindAllStringSubmatch(l, -1) {
			if m[1] == what {
				v, _ := strconv.Atoi(m[2])
				n += v
			}
		}
	}
	return n
}

var summaryFigure = regexp.MustCompile(`\bsummary\.(\w+)=(\d+)`)

// EventsSettled sums the deliveries SES's sending events settled, as
// the runs logged each settling ("ses events: deliveries settled as
// sent" deliveries=N), over logs: a run killed after settling counts
// too, unlike the summary line on its stdout.
func EventsSettled(logs []string) int {
	n := 0
	for _, l := range logs {
		for _, m := range eventsSettled.FindAllStringSubmatch(l, -1) {
			v, _ := strconv.Atoi(m[1])
			n += v
		}
	}
	return n
}

var eventsSettled = regexp.MustCompile(`msg="ses events: deliveries settled as sent".*\bdeliveries=(\d+)`)

// FastSESAccount is emulator.DefaultSESAccount with a send rate high
// enough that pacing does not set the pace of hundreds of emails.
var FastSESAccount = strings.Replace(emulator.DefaultSESAccount, `"MaxSendRate": 14`, `"MaxSendRate": 200`, 1)

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
