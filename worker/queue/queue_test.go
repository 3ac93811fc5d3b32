package queue_test

import (
	"context"
	"fmt"
	"sort"
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
	return &queue.SQS{Client: c, URL: aws.ToString(q.QueueUrl), DeadLetterURL: aws.ToString(d.QueueUrl), VisibilityTimeout: time.Minute}
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
				if err := q.DeadLetter(ctx, msgs[0], "decode: user.email: \"x\" is not a valid address\n(second line)"); err != nil {
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
					attr(queue.AttrSourceMessageID) != msgs[0].ID || attr(queue.AttrFailedAt) == "" {
					keys := make([]string, 0, len(m.MessageAttributes))
					for k := range m.MessageAttributes {
						keys = append(keys, k+"="+attr(k))
					}
					sort.Strings(keys)
					t.Errorf("dead-lettered body %q, attributes %v", aws.ToString(m.Body), keys)
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
