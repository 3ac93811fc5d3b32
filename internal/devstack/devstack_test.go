package devstack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	sestypes "github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/reportmailer/reportmailer/internal/devstack"
)

func startStack(t *testing.T) *devstack.Stack {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := devstack.Start(t.Context(), logger)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return st
}

func awsConfig() aws.Config {
	return aws.Config{
		Region:      devstack.Region,
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}
}

func sqsClient(st *devstack.Stack) *sqs.Client {
	return sqs.NewFromConfig(awsConfig(), func(o *sqs.Options) { o.BaseEndpoint = aws.String(st.SQSURL) })
}

// uniqueName returns a queue name no other test in this process uses, since
// goaws's queues are process-wide.
func uniqueName(base string) string {
	return fmt.Sprintf("%s-%d-%d", base, time.Now().UnixNano(), queueSeq.Add(1))
}

var queueSeq atomic.Int64

func TestSQS(t *testing.T) {
	st := startStack(t)
	ctx := t.Context()
	c := sqsClient(st)

	dlq, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(uniqueName("reports-dlq"))})
	if err != nil {
		t.Fatalf("create dlq: %v", err)
	}
	attrs, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       dlq.QueueUrl,
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		t.Fatalf("dlq attributes: %v", err)
	}
	dlqARN := attrs.Attributes["QueueArn"]
	if !strings.HasPrefix(dlqARN, "arn:aws:sqs:us-east-1:"+devstack.AccountID+":reports-dlq-") {
		t.Errorf("dlq arn = %q", dlqARN)
	}

	policy := fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"1"}`, dlqARN)
	q, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{
		QueueName: aws.String(uniqueName("reports")),
		Attributes: map[string]string{
			"RedrivePolicy":     policy,
			"VisibilityTimeout": "1",
		},
	})
	if err != nil {
		t.Fatalf("create queue: %v", err)
	}
	queueURL := aws.ToString(q.QueueUrl)
	if !strings.HasPrefix(queueURL, st.SQSURL+"/"+devstack.AccountID+"/reports-") {
		t.Fatalf("queue url %q does not point at %s", queueURL, st.SQSURL)
	}
	// The URL really is the stack's: the client works with it as endpoint.
	u, _ := url.Parse(queueURL)
	viaURL := sqs.NewFromConfig(awsConfig(), func(o *sqs.Options) { o.BaseEndpoint = aws.String("http://" + u.Host) })
	if _, err := viaURL.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(u.Path[strings.LastIndex(u.Path, "/")+1:])}); err != nil {
		t.Fatalf("get queue url through %s: %v", u.Host, err)
	}

	for i := range 3 {
		_, err := c.SendMessage(ctx, &sqs.SendMessageInput{
			QueueUrl:    q.QueueUrl,
			MessageBody: aws.String(fmt.Sprintf(`{"report":%d}`, i)),
			MessageAttributes: map[string]sqstypes.MessageAttributeValue{
				"kind": {DataType: aws.String("String"), StringValue: aws.String("report-ready")},
			},
		})
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}

	var got []sqstypes.Message
	for deadline := time.Now().Add(5 * time.Second); len(got) < 3 && time.Now().Before(deadline); {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:              q.QueueUrl,
			MaxNumberOfMessages:   10,
			WaitTimeSeconds:       1,
			MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		got = append(got, out.Messages...)
	}
	if len(got) != 3 {
		t.Fatalf("received %d messages, want 3", len(got))
	}
	for _, m := range got {
		if v := m.MessageAttributes["kind"].StringValue; aws.ToString(v) != "report-ready" {
			t.Errorf("message %s: kind attribute = %q", aws.ToString(m.MessageId), aws.ToString(v))
		}
	}

	// Acknowledge two; the third outlives its visibility timeout and, with
	// maxReceiveCount 1, moves to the dead-letter queue.
	for _, m := range got[:2] {
		if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: q.QueueUrl, ReceiptHandle: m.ReceiptHandle}); err != nil {
			t.Fatalf("delete: %v", err)
		}
	}
	var dead []sqstypes.Message
	for deadline := time.Now().Add(5 * time.Second); len(dead) == 0 && time.Now().Before(deadline); {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: dlq.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatalf("receive dlq: %v", err)
		}
		dead = append(dead, out.Messages...)
	}
	if len(dead) != 1 || aws.ToString(dead[0].Body) != aws.ToString(got[2].Body) {
		t.Fatalf("dead-letter queue holds %v, want the body %q", bodies(dead), aws.ToString(got[2].Body))
	}

	// An empty long poll waits, then answers with nothing.
	start := time.Now()
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
	if err != nil {
		t.Fatalf("receive empty: %v", err)
	}
	if len(out.Messages) != 0 {
		t.Errorf("empty queue returned %v", bodies(out.Messages))
	}
	if d := time.Since(start); d < 800*time.Millisecond {
		t.Errorf("empty long poll returned after %v, want about 1s", d)
	}
}

func bodies(msgs []sqstypes.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, aws.ToString(m.Body))
	}
	return out
}

func TestS3(t *testing.T) {
	st := startStack(t)
	ctx := t.Context()
	c := s3.NewFromConfig(awsConfig(), func(o *s3.Options) {
		o.BaseEndpoint = aws.String(st.S3URL)
		o.UsePathStyle = true
	})

	const bucket, key = "reports", "2025/07/report-1.pdf"
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	body := []byte("%PDF-1.7 not really")
	_, err := c.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(bucket),
		Key:         aws.String(key),
		Body:        bytes.NewReader(body),
		ContentType: aws.String("application/pdf"),
		Metadata:    map[string]string{"report-id": "r-1"},
	})
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("head: %v", err)
	}
	if got := head.Metadata["report-id"]; got != "r-1" {
		t.Errorf("metadata report-id = %q, want r-1 (all: %v)", got, head.Metadata)
	}
	if aws.ToInt64(head.ContentLength) != int64(len(body)) || aws.ToString(head.ContentType) != "application/pdf" {
		t.Errorf("head: length %d type %q", aws.ToInt64(head.ContentLength), aws.ToString(head.ContentType))
	}

	// The backend serves the same object in-process.
	obj, err := st.S3Backend().GetObject(bucket, key, nil)
	if err != nil {
		t.Fatalf("backend get: %v", err)
	}
	b, err := io.ReadAll(obj.Contents)
	obj.Contents.Close()
	if err != nil || !bytes.Equal(b, body) {
		t.Errorf("backend get = %q, %v", b, err)
	}

	// Conditional create: the first wins, the second gets 412.
	put := func() error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{
			Bucket:      aws.String(bucket),
			Key:         aws.String("sent/r-1"),
			Body:        strings.NewReader("claimed"),
			IfNoneMatch: aws.String("*"),
		})
		return err
	}
	if err := put(); err != nil {
		t.Fatalf("first conditional put: %v", err)
	}
	err = put()
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusPreconditionFailed {
		t.Fatalf("second conditional put: err = %v, want status 412", err)
	}
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "PreconditionFailed" {
		t.Errorf("second conditional put: code = %v, want PreconditionFailed", err)
	}
}

func TestSES(t *testing.T) {
	st := startStack(t)
	ctx := t.Context()
	c := sesv2.NewFromConfig(awsConfig(), func(o *sesv2.Options) { o.BaseEndpoint = aws.String(st.SESURL) })

	before := time.Now()
	out, err := c.SendEmail(ctx, &sesv2.SendEmailInput{
		FromEmailAddress: aws.String("Reports <reports@example.com>"),
		Destination: &sestypes.Destination{
			ToAddresses:  []string{"ann@example.com", "bob@example.com"},
			CcAddresses:  []string{"cat@example.com"},
			BccAddresses: []string{"audit@example.com"},
		},
		ReplyToAddresses: []string{"help@example.com"},
		Content: &sestypes.EmailContent{Simple: &sestypes.Message{
			Subject: &sestypes.Content{Data: aws.String("Your report is ready")},
			Body: &sestypes.Body{
				Html: &sestypes.Content{Data: aws.String(`<p><a href="https://cdn.example.com/r-1">Open</a></p>`)},
				Text: &sestypes.Content{Data: aws.String("Open https://cdn.example.com/r-1")},
			},
			Headers: []sestypes.MessageHeader{{Name: aws.String("X-Report-Id"), Value: aws.String("r-1")}},
		}},
		EmailTags:            []sestypes.MessageTag{{Name: aws.String("report"), Value: aws.String("r-1")}},
		ConfigurationSetName: aws.String("reports"),
	})
	if err != nil {
		t.Fatalf("send simple: %v", err)
	}

	raw := strings.Join([]string{
		"From: Reports <reports@example.com>",
		"To: dan@example.com",
		"Subject: =?UTF-8?Q?Raw_r=C3=A9port?=",
		"MIME-Version: 1.0",
		`Content-Type: multipart/alternative; boundary="b1"`,
		"",
		"--b1",
		"Content-Type: text/plain; charset=UTF-8",
		"Content-Transfer-Encoding: quoted-printable",
		"",
		"r=C3=A9port text",
		"--b1",
		"Content-Type: text/html; charset=UTF-8",
		"Content-Transfer-Encoding: base64",
		"",
		"PHA+aHRtbDwvcD4=",
		"--b1--",
		"",
	}, "\r\n")
	rawOut, err := c.SendEmail(ctx, &sesv2.SendEmailInput{
		Content: &sestypes.EmailContent{Raw: &sestypes.RawMessage{Data: []byte(raw)}},
	})
	if err != nil {
		t.Fatalf("send raw: %v", err)
	}

	sent := st.Sent()
	if len(sent) != 2 {
		t.Fatalf("Sent() has %d emails, want 2", len(sent))
	}
	e := sent[0]
	if e.MessageID != aws.ToString(out.MessageId) || e.MessageID == "" {
		t.Errorf("message id %q, SendEmail said %q", e.MessageID, aws.ToString(out.MessageId))
	}
	if e.From != "Reports <reports@example.com>" || e.Subject != "Your report is ready" ||
		!slices.Equal(e.To, []string{"ann@example.com", "bob@example.com"}) ||
		!slices.Equal(e.Cc, []string{"cat@example.com"}) || !slices.Equal(e.Bcc, []string{"audit@example.com"}) ||
		!slices.Equal(e.ReplyTo, []string{"help@example.com"}) {
		t.Errorf("simple email addressing/subject wrong: %+v", e)
	}
	if !strings.Contains(e.HTML, `href="https://cdn.example.com/r-1"`) || e.Text != "Open https://cdn.example.com/r-1" {
		t.Errorf("simple email bodies: html %q text %q", e.HTML, e.Text)
	}
	if e.Headers["X-Report-Id"] != "r-1" || e.Tags["report"] != "r-1" || e.ConfigurationSet != "reports" || e.Raw != nil {
		t.Errorf("simple email headers %v tags %v config set %q raw %d bytes", e.Headers, e.Tags, e.ConfigurationSet, len(e.Raw))
	}
	if e.At.Before(before.Add(-time.Second)) || e.At.After(time.Now()) {
		t.Errorf("simple email at %v", e.At)
	}

	r := sent[1]
	if r.MessageID != aws.ToString(rawOut.MessageId) || string(r.Raw) != raw {
		t.Errorf("raw email: id %q (want %q), raw kept: %v", r.MessageID, aws.ToString(rawOut.MessageId), string(r.Raw) == raw)
	}
	if r.From != "Reports <reports@example.com>" || !slices.Equal(r.To, []string{"dan@example.com"}) ||
		r.Subject != "Raw réport" || r.Text != "réport text" || r.HTML != "<p>html</p>" {
		t.Errorf("raw email parsed as from %q to %v subject %q text %q html %q", r.From, r.To, r.Subject, r.Text, r.HTML)
	}

	acct, err := c.GetAccount(ctx, &sesv2.GetAccountInput{})
	if err != nil {
		t.Fatalf("get account: %v", err)
	}
	if q := acct.SendQuota; q == nil || q.Max24HourSend != 50000 || q.MaxSendRate != 14 || q.SentLast24Hours != 2 {
		t.Errorf("send quota = %+v", acct.SendQuota)
	}
	if !acct.ProductionAccessEnabled || !acct.SendingEnabled {
		t.Errorf("account: production access %v, sending %v", acct.ProductionAccessEnabled, acct.SendingEnabled)
	}

	// SES's own validation errors come back typed.
	_, err = c.SendEmail(ctx, &sesv2.SendEmailInput{
		Destination: &sestypes.Destination{ToAddresses: []string{"ann@example.com"}},
		Content: &sestypes.EmailContent{Simple: &sestypes.Message{
			Subject: &sestypes.Content{Data: aws.String("no sender")},
			Body:    &sestypes.Body{Text: &sestypes.Content{Data: aws.String("x")}},
		}},
	})
	var bad *sestypes.BadRequestException
	if !errors.As(err, &bad) {
		t.Errorf("send without From: err = %v, want BadRequestException", err)
	}

	// The read-back endpoint serves the same list.
	var store struct{ Emails []devstack.SentEmail }
	getJSON(t, st.SESURL+"/store", http.StatusOK, &store)
	if len(store.Emails) != 2 || store.Emails[0].MessageID != e.MessageID || store.Emails[1].Subject != "Raw réport" {
		t.Errorf("/store = %+v", store.Emails)
	}
	getJSON(t, fmt.Sprintf("%s/store?since=%d", st.SESURL, time.Now().Add(time.Hour).Unix()), http.StatusOK, &store)
	if len(store.Emails) != 0 {
		t.Errorf("/store?since=<future> returned %d emails", len(store.Emails))
	}

	var unknown struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}
	getJSON(t, st.SESURL+"/v2/email/identities", http.StatusNotFound, &unknown)
	if unknown.Type != "UnknownOperationException" || unknown.Message == "" {
		t.Errorf("unknown route answered %+v", unknown)
	}
}

func getJSON(t *testing.T, url string, wantStatus int, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("get %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != wantStatus {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("get %s: status %d, want %d: %s", url, resp.StatusCode, wantStatus, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("get %s: decode: %v", url, err)
	}
}

// TestStacksShareQueues documents that goaws's queues are process-wide:
// a second stack sees the first one's queues, under its own address.
func TestStacksShareQueues(t *testing.T) {
	a, b := startStack(t), startStack(t)
	ctx := t.Context()
	name := uniqueName("shared")
	if _, err := sqsClient(a).CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)}); err != nil {
		t.Fatalf("create through a: %v", err)
	}
	out, err := sqsClient(b).GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatalf("get url through b: %v", err)
	}
	if want := b.SQSURL + "/" + devstack.AccountID + "/" + name; aws.ToString(out.QueueUrl) != want {
		t.Errorf("queue url through b = %q, want %q", aws.ToString(out.QueueUrl), want)
	}
}

func TestCloseStopsListeners(t *testing.T) {
	st, err := devstack.Start(context.Background(), nil)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	urls := []string{st.SQSURL, st.S3URL, st.SESURL}
	for _, u := range urls {
		if !strings.HasPrefix(u, "http://127.0.0.1:") {
			t.Errorf("url %q is not on 127.0.0.1", u)
		}
		dial(t, u, true)
	}

	// A long poll in flight must not hold Close up.
	polling := make(chan error, 1)
	go func() {
		c := sqsClient(st)
		q, err := c.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(uniqueName("closing"))})
		if err == nil {
			_, err = c.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, WaitTimeSeconds: 20})
		}
		polling <- err
	}()
	time.Sleep(200 * time.Millisecond)

	start := time.Now()
	if err := st.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("close took %v", d)
	}
	if err := st.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	for _, u := range urls {
		dial(t, u, false)
	}
	select {
	case <-polling:
	case <-time.After(5 * time.Second):
		t.Error("long poll still running 5s after close")
	}
}

func dial(t *testing.T, rawURL string, wantOpen bool) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, time.Second)
	if conn != nil {
		conn.Close()
	}
	if open := err == nil; open != wantOpen {
		t.Errorf("dial %s: open = %v, want %v (err %v)", u.Host, open, wantOpen, err)
	}
}
