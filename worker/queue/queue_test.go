package queue_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/reportmailer/reportmailer/internal/devstack"
	"github.com/reportmailer/reportmailer/internal/emulator"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/queue"
)

// emulators returns an SQS client on each emulator the adapter must
// work with. goaws fails ChangeMessageVisibilityBatch; fauxqs does not.
func emulators(t *testing.T) map[string]*sqs.Client {
	t.Helper()
	stack, err := devstack.Start(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stack.Close() })
	creds := credentials.NewStaticCredentialsProvider("test", "test", "")
	client := func(url string) *sqs.Client {
		return sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(url), Credentials: creds})
	}
	return map[string]*sqs.Client{"goaws": client(stack.SQSURL), "fauxqs": client(emulator.StartFauxqs(t))}
}

func newQueue(t *testing.T, c *sqs.Client, name string) *queue.SQS {
	t.Helper()
	ctx := context.Background()
	name = fmt.Sprintf("%s-%d", name, time.Now().UnixNano()%1e9)
	q, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	return &queue.SQS{Client: c, URL: aws.ToString(q.QueueUrl), DeadLetterURL: aws.ToString(d.QueueUrl), VisibilityTimeout: time.Minute,
		Logger: slog.New(slog.DiscardHandler)}
}

func send(t *testing.T, q *queue.SQS, n int) {
	t.Helper()
	for i := range n {
		_, err := q.Client.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &q.URL, MessageBody: aws.String(fmt.Sprintf("body-%02d", i)),
			MessageAttributes: map[string]types.MessageAttributeValue{"producer": {DataType: aws.String("String"), StringValue: aws.String("billing")}}})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func receiveAll(t *testing.T, q *queue.SQS, want int) []worker.Message {
	t.Helper()
	var all []worker.Message
	for len(all) < want {
		msgs, err := q.Receive(context.Background(), 10, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			break
		}
		all = append(all, msgs...)
	}
	return all
}

func TestSQS(t *testing.T) {
	for name, c := range emulators(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()

			t.Run("receive in batches of ten, delete in batches", func(t *testing.T) {
				q := newQueue(t, c, "batch")
				send(t, q, 13)
				msgs := receiveAll(t, q, 13)
				if len(msgs) != 13 {
					t.Fatalf("received %d messages, want 13", len(msgs))
				}
				if err := q.Delete(ctx, msgs); err != nil {
					t.Fatal(err)
				}
				if again, _ := q.Receive(ctx, 10, time.Second); len(again) != 0 {
					t.Errorf("%d messages came back after delete", len(again))
				}
			})

			t.Run("release makes messages visible at once", func(t *testing.T) {
				q := newQueue(t, c, "release")
				send(t, q, 3)
				msgs := receiveAll(t, q, 3)
				if err := q.Release(ctx, msgs); err != nil {
					t.Fatal(err)
				}
				// Visibility was a minute; released, they are back now.
				back := receiveAll(t, q, 3)
				if len(back) != 3 {
					t.Errorf("got %d messages back after release, want 3", len(back))
				}
			})

			t.Run("dead-letter keeps the body and attributes and records the reason", func(t *testing.T) {
				q := newQueue(t, c, "dead")
				send(t, q, 1)
				msgs := receiveAll(t, q, 1)
				f := worker.Failure{Class: worker.ClassPermanent, Code: worker.CodeInvalidEvent, Reason: "decode: user.email: \"x\" is not a valid address\n(second line)",
					EventIDs: "e1,e2", User: "ana", Schedule: "daily"}
				first := time.Date(2026, 11, 1, 7, 0, 0, 0, time.UTC)
				q.Now = func() time.Time { return first.Add(time.Hour) }
				// Dead-lettered before, then redriven: the first failure time stays.
				msgs[0].Attributes.(map[string]types.MessageAttributeValue)[queue.AttrFailure] = types.MessageAttributeValue{
					DataType: aws.String("String"), StringValue: aws.String(`{"class":"permanent","code":"x","first_failed_at":"2026-11-01T07:00:00Z"}`)}
				msgs[0].ReceiveCount = 2
				if err := q.DeadLetter(ctx, msgs[0], f); err != nil {
					t.Fatal(err)
				}
				out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &q.DeadLetterURL, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
				if err != nil || len(out.Messages) != 1 {
					t.Fatalf("dlq receive: %v, %d messages", err, len(out.Messages))
				}
				m := out.Messages[0]
				attr := func(k string) string { return aws.ToString(m.MessageAttributes[k].StringValue) }
				if aws.ToString(m.Body) != "body-00" || attr("producer") != "billing" ||
					attr(queue.AttrReason) != "decode: user.email: \"x\" is not a valid address (second line)" ||
					attr(queue.AttrCode) != "invalid_event" || attr(queue.AttrDroppedAttributes) != "" ||
					attr(queue.AttrSourceMessageID) != msgs[0].ID || attr(queue.AttrFailedAt) == "" {
					keys := make([]string, 0, len(m.MessageAttributes))
					for k := range m.MessageAttributes {
						keys = append(keys, k+"="+attr(k))
					}
					sort.Strings(keys)
					t.Errorf("dead-lettered body %q, attributes %v", aws.ToString(m.Body), keys)
				}
				info, ok := queue.ParseDeadLetterInfo(m.MessageAttributes)
				want := queue.DeadLetterInfo{Class: worker.ClassPermanent, Code: worker.CodeInvalidEvent, EventIDs: []string{"e1", "e2"},
					User: "ana", Schedule: "daily", SourceQueue: q.URL, FirstFailedAt: first, LastFailedAt: first.Add(time.Hour), ReceiveCount: 2}
				if !ok || !reflect.DeepEqual(info, want) {
					t.Errorf("%s = %+v (%v), want %+v", queue.AttrFailure, info, ok, want)
				}
				if left := receiveAll(t, q, 1); len(left) != 0 {
					t.Error("the message is still on the source queue")
				}
			})
		})
	}
}

func TestSQSExtend(t *testing.T) {
	for name, c := range emulators(t) {
		t.Run(name, func(t *testing.T) {
			q := newQueue(t, c, "extend")
			q.VisibilityTimeout = time.Second
			send(t, q, 1)
			msgs := receiveAll(t, q, 1)
			if err := q.Extend(context.Background(), msgs, time.Minute); err != nil {
				t.Fatal(err)
			}
			// Without the extension the message would be back after 1 s.
			time.Sleep(1500 * time.Millisecond)
			if again, _ := q.Receive(context.Background(), 10, time.Second); len(again) != 0 {
				t.Errorf("an extended message came back after its original timeout")
			}
		})
	}
}

// TestSQSDeadLetterKeepsAttributesInNameOrder: SQS takes ten message
// attributes. Ours come first; the producer's fill the rest in order of
// name, and the names that do not fit are listed, the same every time.
func TestSQSDeadLetterKeepsAttributesInNameOrder(t *testing.T) {
	for name, c := range emulators(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			tests := []struct {
				name     string
				producer []string // attribute names, sent in this order
				kept     []string // the producer's, on the dead letter
				dropped  string
			}{
				{"all fit", []string{"f", "b", "reportmailer-reason", "a"}, []string{"a", "b", "f"}, ""},
				{"five fit exactly", []string{"p5", "p4", "p3", "p2", "p1"}, []string{"p1", "p2", "p3", "p4", "p5"}, ""},
				{"too many", []string{"i", "h", "g", "f", "e", "d", "c", "b", "a"}, []string{"a", "b", "c", "d"}, "e,f,g,h,i"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					q := newQueue(t, c, "attrs")
					var logs bytes.Buffer
					q.Logger = slog.New(slog.NewTextHandler(&logs, nil))
					attrs := map[string]types.MessageAttributeValue{}
					for _, n := range tt.producer {
						attrs[n] = types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String("v-" + n)}
					}
					if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &q.URL, MessageBody: aws.String("b"), MessageAttributes: attrs}); err != nil {
						t.Fatal(err)
					}
					msgs := receiveAll(t, q, 1)
					if len(msgs) != 1 {
						t.Fatalf("received %d messages", len(msgs))
					}
					runCtx := worker.WithSchedule(worker.WithRunID(ctx, "run-7"), "daily")
					if err := q.DeadLetter(runCtx, msgs[0], worker.Failure{Class: worker.ClassPermanent, Code: worker.CodeObjectMissing, Reason: "gone", EventIDs: "e1"}); err != nil {
						t.Fatal(err)
					}
					out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &q.DeadLetterURL, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
					if err != nil || len(out.Messages) != 1 {
						t.Fatalf("dlq receive: %v, %d messages", err, len(out.Messages))
					}
					got := out.Messages[0].MessageAttributes
					var producer []string
					for k, v := range got {
						if !strings.HasPrefix(k, "reportmailer-") {
							producer = append(producer, k)
							if aws.ToString(v.StringValue) != "v-"+k {
								t.Errorf("attribute %s = %q", k, aws.ToString(v.StringValue))
							}
						}
					}
					sort.Strings(producer)
					if strings.Join(producer, ",") != strings.Join(tt.kept, ",") {
						t.Errorf("kept the producer's %v, want %v", producer, tt.kept)
					}
					if d := aws.ToString(got[queue.AttrDroppedAttributes].StringValue); d != tt.dropped {
						t.Errorf("%s = %q, want %q", queue.AttrDroppedAttributes, d, tt.dropped)
					}
					if logged := strings.Contains(logs.String(), "dropped=\"["+strings.ReplaceAll(tt.dropped, ",", " ")+"]\""); logged != (tt.dropped != "") {
						t.Errorf("logs %q; want the dropped names logged when some are dropped", logs.String())
					}
					if tt.dropped != "" && !strings.Contains(logs.String(), "schedule=daily run_id=run-7 message_id="+msgs[0].ID+" events=e1 ") {
						t.Errorf("logs %q; want the line to name the schedule, the run, the message and its events", logs.String())
					}
					if aws.ToString(got[queue.AttrCode].StringValue) != "object_missing" || aws.ToString(got[queue.AttrReason].StringValue) != "gone" || len(got) > 10 {
						t.Errorf("attributes %v", got)
					}
				})
			}
		})
	}
}

// TestSQSDeletePartialFailure: DeleteMessageBatch can fail for some
// entries only; the error names exactly those.
func TestSQSDeletePartialFailure(t *testing.T) {
	for name, c := range emulators(t) {
		t.Run(name, func(t *testing.T) {
			// SQS fails a made-up handle (ReceiptHandleIsInvalid) and
			// deletes the rest. fauxqs accepts any handle, so only goaws
			// can show the partial failure.
			if name == "fauxqs" {
				t.Skip("fauxqs accepts any receipt handle")
			}
			ctx := context.Background()
			q := newQueue(t, c, "partial")
			send(t, q, 3)
			msgs := receiveAll(t, q, 3)
			msgs = append(msgs, worker.Message{ID: "bogus", ReceiptHandle: "not-a-receipt-handle"})
			err := q.Delete(ctx, msgs)
			var be *worker.BatchError
			if !errors.As(err, &be) {
				t.Fatalf("Delete = %v, want a *worker.BatchError", err)
			}
			if len(be.Failed) != 1 || be.Failed[0] != "not-a-receipt-handle" || !strings.Contains(err.Error(), q.URL) {
				t.Fatalf("failed %v, error %v; want only the bogus handle, and the queue named", be.Failed, err)
			}
			if again, _ := q.Receive(ctx, 10, time.Second); len(again) != 0 {
				t.Errorf("%d messages came back; the good ones should be deleted", len(again))
			}
		})
	}
}

// TestSQSCheck: a dead-letter queue that does not exist is found
// before a run, and named, rather than leaving poison messages to
// cycle.
func TestSQSCheck(t *testing.T) {
	for name, c := range emulators(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			q := newQueue(t, c, "check")
			if err := q.Check(ctx); err != nil {
				t.Fatalf("Check with both queues = %v", err)
			}
			missing := q.DeadLetterURL[:strings.LastIndexByte(q.DeadLetterURL, '/')+1] + "no-such-dlq-" + strconv.FormatInt(time.Now().UnixNano(), 36)
			q.DeadLetterURL = missing
			err := q.Check(ctx)
			switch name {
			case "goaws":
				// goaws answers GetQueueAttributes on a missing queue with
				// InvalidParameterValue, where SQS says QueueDoesNotExist;
				// Check cannot tell that from other refusals, so it lets
				// the run go on, and DeadLetter (below) names the queue.
				if err != nil {
					t.Fatalf("Check on goaws = %v, want nil (see the comment)", err)
				}
			default:
				if !errors.Is(err, worker.ErrNoQueue) || !strings.Contains(err.Error(), "dead-letter queue "+missing) {
					t.Fatalf("Check = %v, want it to name the missing dead-letter queue", err)
				}
			}
			send(t, q, 1)
			msgs := receiveAll(t, q, 1)
			err = q.DeadLetter(ctx, msgs[0], worker.Failure{Class: worker.ClassPermanent, Code: worker.CodeInvalidEvent, Reason: "x"})
			if !errors.Is(err, worker.ErrNoQueue) || !strings.Contains(err.Error(), missing) {
				t.Fatalf("DeadLetter = %v, want it to name the missing dead-letter queue", err)
			}
		})
	}
}

// TestSQSDeadLetterTooLarge: a message that does not fit SQS's limit
// with the dead letter's attributes is refused before it is sent,
// with worker.ErrTooLarge, so that the worker can keep it elsewhere;
// one that fits is sent.
func TestSQSDeadLetterTooLarge(t *testing.T) {
	for name, c := range emulators(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			q := newQueue(t, c, "large")
			f := worker.Failure{Class: worker.ClassPermanent, Code: worker.CodeLedgerUnreadable, Reason: "not an event"}
			err := q.DeadLetter(ctx, worker.Message{ID: "big", Body: strings.Repeat("x", queue.MaxMessageSize-100)}, f)
			if !errors.Is(err, worker.ErrTooLarge) {
				t.Fatalf("DeadLetter of a body 100 bytes short of the limit: %v; want ErrTooLarge (its attributes take more)", err)
			}
			// A pending entry can hold any bytes, and SQS takes no empty
			// body and only some characters: those are refused before
			// they are sent, as unsendable, so the worker keeps them
			// elsewhere too.
			for _, body := range []string{"", "\x1f\x8b\x08\x00 gzip", "{\"event\": \"\xff\xfe\"}", "nul \x00 in it"} {
				if err := q.DeadLetter(ctx, worker.Message{ID: "odd", Body: body}, f); !errors.Is(err, worker.ErrUnsendable) {
					t.Errorf("DeadLetter of body %q: %v; want ErrUnsendable", body, err)
				}
			}
			if err := q.DeadLetter(ctx, worker.Message{ID: "fits", Body: strings.Repeat("x", queue.MaxMessageSize-4096)}, f); err != nil {
				t.Fatalf("DeadLetter of a body that fits: %v", err)
			}
			out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &q.DeadLetterURL, WaitTimeSeconds: 1, MaxNumberOfMessages: 10,
				MessageAttributeNames: []string{"All"}})
			if err != nil || len(out.Messages) != 1 || aws.ToString(out.Messages[0].MessageAttributes[queue.AttrSourceMessageID].StringValue) != "fits" {
				t.Fatalf("dlq receive: %v, %d messages; want the one that fits alone", err, len(out.Messages))
			}
		})
	}
}
