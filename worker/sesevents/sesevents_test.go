package sesevents_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/reportmailer/reportmailer/internal/devstack"
	"github.com/reportmailer/reportmailer/internal/emulator"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/queue"
	"github.com/reportmailer/reportmailer/worker/sesevents"
)

// ledger is an in-memory sesevents.Settler: emails whose deliveries are
// "sending", and what settled or released them.
type ledger struct {
	mu       sync.Mutex
	sending  map[string]int // email id -> deliveries still "sending"
	fail     map[string]error
	settles  []pair
	releases []string
}

type pair struct{ EmailID, MessageID string }

func newLedger(sending map[string]int) *ledger {
	return &ledger{sending: sending, fail: map[string]error{}}
}

func (l *ledger) SettleEmail(_ context.Context, emailID, messageID string) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.fail[emailID]; err != nil {
		return 0, err
	}
	l.settles = append(l.settles, pair{emailID, messageID})
	n := l.sending[emailID]
	delete(l.sending, emailID)
	return n, nil
}

func (l *ledger) ReleaseEmail(_ context.Context, emailID string) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.fail[emailID]; err != nil {
		return 0, err
	}
	l.releases = append(l.releases, emailID)
	n := l.sending[emailID]
	delete(l.sending, emailID)
	return n, nil
}

func (l *ledger) setFail(emailID string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		delete(l.fail, emailID)
	} else {
		l.fail[emailID] = err
	}
}

func (l *ledger) calls() ([]pair, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := slices.Clone(l.settles)
	slices.SortFunc(s, func(a, b pair) int { return strings.Compare(a.EmailID+a.MessageID, b.EmailID+b.MessageID) })
	r := slices.Clone(l.releases)
	slices.Sort(r)
	return s, r
}

// sqsEmulators returns an SQS client on goaws and one on fauxqs.
func sqsEmulators(t *testing.T) map[string]*sqs.Client {
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

// eventsQueue creates an events queue whose RedrivePolicy moves a
// message received more than maxReceives times to its dead-letter
// queue, and returns both, as the reader sees them, with a one-second
// visibility timeout.
func eventsQueue(t *testing.T, c *sqs.Client, name string, maxReceives int) (events, dlq *queue.SQS) {
	t.Helper()
	ctx := context.Background()
	name = fmt.Sprintf("ses-%s-%d", name, time.Now().UnixNano()%1e9)
	d, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: d.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	redrive, _ := json.Marshal(map[string]string{"deadLetterTargetArn": attrs.Attributes["QueueArn"], "maxReceiveCount": fmt.Sprint(maxReceives)})
	q, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{"RedrivePolicy": string(redrive)}})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	return &queue.SQS{Client: c, URL: aws.ToString(q.QueueUrl), VisibilityTimeout: time.Second, Logger: quiet},
		&queue.SQS{Client: c, URL: aws.ToString(d.QueueUrl), Logger: quiet}
}

func sendBodies(t *testing.T, q *queue.SQS, bodies ...[]byte) {
	t.Helper()
	for _, b := range bodies {
		if _, err := q.Client.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &q.URL, MessageBody: aws.String(string(b))}); err != nil {
			t.Fatal(err)
		}
	}
}

// receiveUntil long-polls q until it has received want messages or 10
// seconds have passed, and deletes nothing.
func receiveUntil(t *testing.T, q *queue.SQS, want int) []worker.Message {
	t.Helper()
	var got []worker.Message
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		msgs, err := q.Receive(context.Background(), 10, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, msgs...)
	}
	return got
}

// withEmail returns the sample with its email id and message id
// replaced.
func withEmail(t *testing.T, sample []byte, emailID, messageID string) []byte {
	t.Helper()
	s := strings.ReplaceAll(string(sample), sampleEmailID, emailID)
	return []byte(strings.ReplaceAll(s, sampleMessageID, messageID))
}

// TestReader runs the reader on each SQS emulator, with an in-memory
// ledger.
func TestReader(t *testing.T) {
	for name, c := range sqsEmulators(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("settles from the queue", func(t *testing.T) { testSettlesFromTheQueue(t, c) })
			t.Run("leaves what it could not settle", func(t *testing.T) { testLeavesWhatItCouldNotSettle(t, c) })
			t.Run("is bounded", func(t *testing.T) { testIsBounded(t, c) })
		})
	}
}

// testSettlesFromTheQueue: events of every envelope, mixed with other
// messages and junk. The ledger sees the right (email, message) pairs;
// the queue keeps only what could not be read, and its RedrivePolicy
// takes that to the dead-letter queue.
func testSettlesFromTheQueue(t *testing.T, c *sqs.Client) {
	events, dlq := eventsQueue(t, c, "mixed", 1)
	// Hidden for longer than the run takes on a loaded machine, so that
	// no unread message comes back and is received twice within it.
	events.VisibilityTimeout = 3 * time.Second
	junk := [][]byte{[]byte("not json at all"), setTag(t, readSample(t, "raw-send.json"), []any{"a", "b"})}
	sendBodies(t, events,
		withEmail(t, readSample(t, "sns-send.json"), "email-a", "ses-a"),
		junk[0],
		withEmail(t, readSample(t, "eventbridge-delivery.json"), "email-a", "ses-a"),
		readSample(t, "raw-send-untagged.json"),
		withEmail(t, readSample(t, "raw-send.json"), "email-b", "ses-b"),
		readSample(t, "eventbridge-scheduled.json"),
		withEmail(t, readSample(t, "eventbridge-rendering-failure.json"), "email-c", "ses-c"),
		junk[1],
		withEmail(t, readSample(t, "sns-eventbridge-send.json"), "email-d", "ses-d"),
		withEmail(t, readSample(t, "raw-open.json"), "email-e", "ses-e"),
	)
	// More than a receive's ten, so the reader receives again.
	for i := range 6 {
		sendBodies(t, events, []byte(fmt.Sprintf(`{"producer":"someone else","n":%d}`, i)))
	}
	l := newLedger(map[string]int{"email-a": 2, "email-b": 1, "email-c": 1, "email-d": 1})
	r := &sesevents.Reader{Queue: events, Settler: l, Logger: slog.New(slog.DiscardHandler)}

	res, err := r.Drain(context.Background())
	if !errors.Is(err, sesevents.ErrIncomplete) {
		t.Fatalf("Drain: %v (%+v); want ErrIncomplete, with the junk left on the queue", err, res)
	}
	settles, releases := l.calls()
	wantSettles := []pair{{"email-a", "ses-a"}, {"email-a", "ses-a"}, {"email-b", "ses-b"}, {"email-d", "ses-d"}, {"email-e", "ses-e"}}
	if !slices.Equal(settles, wantSettles) {
		t.Errorf("SettleEmail calls = %v, want %v", settles, wantSettles)
	}
	if !slices.Equal(releases, []string{"email-c"}) {
		t.Errorf("ReleaseEmail calls = %v, want [email-c]", releases)
	}
	want := sesevents.Result{Received: 16, Events: 6, Settled: 4, Released: 1, Ignored: 8, Left: 2, Emptied: true}
	if res != want {
		t.Errorf("Result = %+v, want %+v", res, want)
	}

	// The junk alone is left, and goes to the dead-letter queue: SQS
	// moves a message there when a receive would take it past
	// maxReceiveCount, so the queue is received from until it has.
	var dead []worker.Message
	for deadline := time.Now().Add(15 * time.Second); len(dead) < len(junk) && time.Now().Before(deadline); {
		back, err := events.Receive(context.Background(), 10, time.Second)
		if err != nil || len(back) != 0 {
			t.Fatalf("events queue receive: %v, %d messages; want none, the junk moved to the dead-letter queue", err, len(back))
		}
		got, err := dlq.Receive(context.Background(), 10, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		dead = append(dead, got...)
	}
	var bodies []string
	for _, m := range dead {
		bodies = append(bodies, m.Body)
	}
	slices.Sort(bodies)
	wantBodies := []string{string(junk[1]), string(junk[0])}
	slices.Sort(wantBodies)
	if !slices.Equal(bodies, wantBodies) {
		t.Errorf("dead-letter queue holds %q, want the two unreadable messages", bodies)
	}
	if left, _ := events.Receive(context.Background(), 10, time.Second); len(left) != 0 {
		t.Errorf("%d messages still on the events queue", len(left))
	}
}

// testLeavesWhatItCouldNotSettle: an event whose settling failed stays
// on the queue and settles on a later run.
func testLeavesWhatItCouldNotSettle(t *testing.T, c *sqs.Client) {
	events, _ := eventsQueue(t, c, "retry", 5)
	// Hidden longer than a run's last, empty, receive waits, so
	// the first run does not see the event come back.
	events.VisibilityTimeout = 3 * time.Second
	sendBodies(t, events, withEmail(t, readSample(t, "eventbridge-send.json"), "email-a", "ses-a"))
	l := newLedger(map[string]int{"email-a": 1})
	l.setFail("email-a", errors.New("ledger read: 503 SlowDown"))
	r := &sesevents.Reader{Queue: events, Settler: l, Logger: slog.New(slog.DiscardHandler)}

	res, err := r.Drain(context.Background())
	if !errors.Is(err, sesevents.ErrIncomplete) {
		t.Fatalf("first run: err %v; want ErrIncomplete: an event left unapplied may be a Send event, so resending is not safe", err)
	}
	if res.Left != 1 || res.Settled != 0 {
		t.Fatalf("first run: %+v, want the event left and nothing settled", res)
	}

	l.setFail("email-a", nil)
	// A long poll returns when the event is visible again; the
	// run stops there, without waiting on an empty queue.
	r.Wait, r.MaxMessages = 5*time.Second, 1
	res, err = r.Drain(context.Background())
	if err != nil && !errors.Is(err, sesevents.ErrIncomplete) {
		t.Fatal(err)
	}
	if res.Settled != 1 || res.Left != 0 {
		t.Errorf("second run: %+v, want the delivery settled", res)
	}
}

// testIsBounded: a run reads at most MaxMessages and says it did not
// reach the end.
func testIsBounded(t *testing.T, c *sqs.Client) {
	events, _ := eventsQueue(t, c, "bounded", 5)
	for i := range 15 {
		sendBodies(t, events, []byte(fmt.Sprintf(`{"n":%d}`, i)))
	}
	r := &sesevents.Reader{Queue: events, Settler: newLedger(nil), MaxMessages: 10, Logger: slog.New(slog.DiscardHandler)}
	res, err := r.Drain(context.Background())
	if !errors.Is(err, sesevents.ErrIncomplete) {
		t.Fatalf("Drain error = %v, want ErrIncomplete", err)
	}
	if res.Received != 10 || res.Emptied {
		t.Errorf("Result = %+v, want 10 received and not emptied", res)
	}
	res, err = r.Drain(context.Background())
	if err != nil || res.Received != 5 || !res.Emptied {
		t.Errorf("second run: %+v, %v; want the other 5 and the queue emptied", res, err)
	}
}
