package awsproxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	sestypes "github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/internal/devstack"
	"github.com/reportmailer/reportmailer/internal/emulator"
	"github.com/reportmailer/reportmailer/internal/s3test"
	"github.com/reportmailer/reportmailer/worker/iam"
)

var creds = credentials.NewStaticCredentialsProvider("test", "test", "")

func s3Client(url string, opts ...func(*s3.Options)) *s3.Client {
	return s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(url), UsePathStyle: true, Credentials: creds,
		DisableLogOutputChecksumValidationSkipped: true,
	}, opts...)
}

func sqsClient(url string, opts ...func(*sqs.Options)) *sqs.Client {
	return sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(url), Credentials: creds}, opts...)
}

func sesClient(url string) *sesv2.Client {
	return sesv2.New(sesv2.Options{Region: "us-east-1", BaseEndpoint: aws.String(url), Credentials: creds})
}

// allow is a policy of Allow statements, each "ACTIONS RESOURCE" with
// comma-separated actions, and an optional s3:prefix condition after a
// second space.
func allow(stmts ...string) *iam.Document {
	d := &iam.Document{Version: iam.Version}
	for _, s := range stmts {
		f := strings.Fields(s)
		st := iam.Statement{Effect: "Allow", Action: strings.Split(f[0], ","), Resource: []string{f[1]}}
		if len(f) > 2 {
			st.Condition = map[string]map[string][]string{"StringLike": {"s3:prefix": {f[2]}}}
		}
		d.Statement = append(d.Statement, st)
	}
	return d
}

func status(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// TestS3MissingKey is the behaviour the emulators hide: without
// s3:ListBucket for a key's prefix, S3 answers a read of a missing key
// with 403, and with it 404.
func TestS3MissingKey(t *testing.T) {
	ctx := context.Background()
	emuURL, direct := s3test.Start(t, "reports")
	if _, err := direct.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("reports"), Key: aws.String("r/here.pdf"), Body: strings.NewReader("12345")}); err != nil {
		t.Fatal(err)
	}
	read := "s3:GetObject arn:aws:s3:::reports/r/*"
	policies := []struct {
		name   string
		policy *iam.Document
		want   int // status of a read of a missing key
	}{
		{"GetObject only", allow(read), http.StatusForbidden},
		{"ListBucket for the prefix", allow(read, "s3:ListBucket arn:aws:s3:::reports r/*"), http.StatusNotFound},
		{"ListBucket for the whole bucket", allow(read, "s3:ListBucket arn:aws:s3:::reports"), http.StatusNotFound},
		{"ListBucket for another prefix", allow(read, "s3:ListBucket arn:aws:s3:::reports other/*"), http.StatusForbidden},
		{"ListBucket on another bucket", allow(read, "s3:ListBucket arn:aws:s3:::state"), http.StatusForbidden},
	}
	for _, pt := range policies {
		t.Run(pt.name, func(t *testing.T) {
			p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.S3, Target: emuURL, Policy: pt.policy})
			c := s3Client(p.URL)

			out, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("reports"), Key: aws.String("r/here.pdf")})
			if err != nil || aws.ToInt64(out.ContentLength) != 5 {
				t.Fatalf("HeadObject of an existing key = %v; want it, size 5", err)
			}

			_, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("reports"), Key: aws.String("r/gone.pdf")})
			var nf *s3types.NotFound
			if status(err) != pt.want || (pt.want == http.StatusNotFound) != errors.As(err, &nf) {
				t.Errorf("HeadObject of a missing key: %v (status %d); want status %d", err, status(err), pt.want)
			}

			_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("reports"), Key: aws.String("r/gone.pdf")})
			wantCode := map[int]string{http.StatusForbidden: "AccessDenied", http.StatusNotFound: "NoSuchKey"}[pt.want]
			if status(err) != pt.want || code(err) != wantCode {
				t.Errorf("GetObject of a missing key: %v; want status %d, code %s", err, pt.want, wantCode)
			}

			got := p.Counts("HeadObject")
			if got.Seen != 2 || got.Forwarded != 2 {
				t.Errorf("HeadObject counts %+v; want both seen and forwarded", got)
			}
			if denied := pt.want == http.StatusForbidden; (got.Denied == 1) != denied || len(p.Denials()) != map[bool]int{true: 2, false: 0}[denied] {
				t.Errorf("denials %+v, counts %+v", p.Denials(), got)
			} else if denied && (!p.Denials()[0].MissingKey || p.Denials()[0].Action != "s3:ListBucket") {
				t.Errorf("denial %+v; want a missing key for lack of s3:ListBucket", p.Denials()[0])
			}
		})
	}
}

// TestAccessDenied checks that each SDK sees a missing permission as the
// service reports it, and that the denied request never reaches the
// emulator.
func TestAccessDenied(t *testing.T) {
	ctx := context.Background()

	t.Run("s3", func(t *testing.T) {
		emuURL, _ := s3test.Start(t, "state")
		p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.S3, Target: emuURL,
			Policy: allow("s3:GetObject arn:aws:s3:::state/*")})
		_, err := s3Client(p.URL).PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("state"), Key: aws.String("ledger/k"), Body: strings.NewReader("x")})
		if code(err) != "AccessDenied" || status(err) != http.StatusForbidden {
			t.Fatalf("PutObject without s3:PutObject: %v (code %q, status %d); want AccessDenied, 403", err, code(err), status(err))
		}
		if !strings.Contains(err.Error(), "s3:PutObject") || !strings.Contains(err.Error(), "arn:aws:s3:::state/ledger/k") {
			t.Errorf("the error should name the action and the resource: %v", err)
		}
		if c := p.Counts("PutObject"); c.Denied != 1 || c.Forwarded != 0 {
			t.Errorf("PutObject counts %+v; want denied, never forwarded", c)
		}
	})

	t.Run("sqs", func(t *testing.T) {
		stack := startStack(t)
		q := createQueue(t, stack.SQSURL, "denied")
		arn := "arn:aws:sqs:us-east-1:000000000000:" + queueName(q)
		p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.SQS, Target: stack.SQSURL,
			Policy: allow("sqs:SendMessage " + arn)})
		c := sqsClient(p.URL)
		if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &q, MessageBody: aws.String("hello")}); err != nil {
			t.Fatalf("SendMessage, allowed: %v", err)
		}
		_, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &q, WaitTimeSeconds: 1})
		// Real SQS answers AccessDenied in x-amzn-query-error, which the
		// SDK reports as the code, over AccessDeniedException in the body.
		if code(err) != "AccessDenied" || status(err) != http.StatusForbidden {
			t.Fatalf("ReceiveMessage without sqs:ReceiveMessage: %v (code %q, status %d); want AccessDenied, 403", err, code(err), status(err))
		}
		if !strings.Contains(err.Error(), "sqs:receivemessage on resource: "+arn) {
			t.Errorf("the error should name the action and the queue: %v", err)
		}
		// The message is still there, unreceived: the emulator never saw
		// the denied receive.
		out, err := sqsClient(stack.SQSURL).ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &q, WaitTimeSeconds: 1})
		if err != nil || len(out.Messages) != 1 {
			t.Fatalf("direct receive = %v, %v; want the one message", out, err)
		}
		if c := p.Counts("ReceiveMessage"); c.Denied != 1 || c.Forwarded != 0 {
			t.Errorf("ReceiveMessage counts %+v", c)
		}
	})

	t.Run("ses", func(t *testing.T) {
		emuURL := emulator.StartSESLocal(t, "")
		p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.SES, Target: emuURL,
			Policy: allow("ses:GetAccount *", "ses:SendEmail arn:aws:ses:us-east-1:000000000000:identity/allowed.example")})
		c := sesClient(p.URL)
		if _, err := c.GetAccount(ctx, &sesv2.GetAccountInput{}); err != nil {
			t.Fatalf("GetAccount, allowed: %v", err)
		}
		send := func(from string) error {
			_, err := c.SendEmail(ctx, &sesv2.SendEmailInput{
				FromEmailAddress: aws.String(from),
				Destination:      &sestypes.Destination{ToAddresses: []string{"ana@example.com"}},
				Content: &sestypes.EmailContent{Simple: &sestypes.Message{
					Subject: &sestypes.Content{Data: aws.String("hi")},
					Body:    &sestypes.Body{Text: &sestypes.Content{Data: aws.String("hi")}},
				}},
			})
			return err
		}
		if err := send("Reports <reports@allowed.example>"); err != nil {
			t.Fatalf("SendEmail as the allowed domain: %v", err)
		}
		err := send("reports@other.example")
		if code(err) != "AccessDeniedException" || status(err) != http.StatusForbidden {
			t.Fatalf("SendEmail as another identity: %v (code %q, status %d); want AccessDeniedException, 403", err, code(err), status(err))
		}
		if c := p.Counts("SendEmail"); c.Seen != 2 || c.Forwarded != 1 || c.Denied != 1 {
			t.Errorf("SendEmail counts %+v", c)
		}
		// A configuration set is a resource of the send too.
		_, err = c.SendEmail(ctx, &sesv2.SendEmailInput{
			FromEmailAddress: aws.String("reports@allowed.example"), ConfigurationSetName: aws.String("tracking"),
			Destination: &sestypes.Destination{ToAddresses: []string{"ana@example.com"}},
			Content:     &sestypes.EmailContent{Simple: &sestypes.Message{Subject: &sestypes.Content{Data: aws.String("hi")}, Body: &sestypes.Body{Text: &sestypes.Content{Data: aws.String("hi")}}}},
		})
		if code(err) != "AccessDeniedException" || !strings.Contains(err.Error(), "configuration-set/tracking") {
			t.Errorf("SendEmail with an ungranted configuration set: %v", err)
		}
		_, err = c.GetEmailIdentity(ctx, &sesv2.GetEmailIdentityInput{EmailIdentity: aws.String("allowed.example")})
		if code(err) != "AccessDeniedException" || !strings.Contains(err.Error(), "ses:GetEmailIdentity on resource: arn:aws:ses:us-east-1:000000000000:identity/allowed.example") {
			t.Errorf("GetEmailIdentity, not granted: %v", err)
		}
		sent, err := emulator.SESLocalEmails(ctx, emuURL, time.Time{})
		if err != nil || len(sent) != 1 || !strings.Contains(sent[0].From, "allowed.example") {
			t.Fatalf("the emulator has %+v, %v; want only the allowed email", sent, err)
		}
	})
}

// TestFaultAfterConditionalPut reproduces the SDK retry that answers 412
// against the caller's own write: the emulator applies a conditional put,
// the connection is reset before the answer, the SDK retries, and the
// key now exists.
func TestFaultAfterConditionalPut(t *testing.T) {
	ctx := context.Background()
	emuURL, direct := s3test.Start(t, "state")
	p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.S3, Target: emuURL})
	rule := p.Inject(awsproxy.Fault{Operation: "PutObject", After: true, Reset: true, Times: 1})

	_, err := s3Client(p.URL).PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String("state"), Key: aws.String("ledger/claim"), Body: strings.NewReader(`{"state":"sending"}`),
		IfNoneMatch: aws.String("*"),
	})
	if code(err) != "PreconditionFailed" || status(err) != http.StatusPreconditionFailed {
		t.Fatalf("conditional put after a lost answer: %v; want the retry's 412 PreconditionFailed", err)
	}
	out, err := direct.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("state"), Key: aws.String("ledger/claim")})
	if err != nil {
		t.Fatalf("the first attempt's object should exist: %v", err)
	}
	b, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(b) != `{"state":"sending"}` {
		t.Errorf("object = %q", b)
	}
	if got := p.Counts("PutObject"); rule.Injected() != 1 || got.Injected != 1 || got.Forwarded != 2 || got.Seen != 2 {
		t.Errorf("rule injected %d, counts %+v; want 1 injected, 2 forwarded", rule.Injected(), got)
	}
}

// TestFaults fails requests before the emulator (the SDK retries a 503
// SlowDown and a reset, and the emulator applies the request once) and
// after it (SES accepted the email, the client sees a 500).
func TestFaults(t *testing.T) {
	ctx := context.Background()

	t.Run("s3 SlowDown", func(t *testing.T) {
		emuURL, _ := s3test.Start(t, "state")
		p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.S3, Target: emuURL})
		p.Inject(awsproxy.Fault{Operation: "PutObject", Status: http.StatusServiceUnavailable, Times: 2})
		noWait := func(o *s3.Options) {
			o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
				so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
			})
		}
		_, err := s3Client(p.URL, noWait).PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("state"), Key: aws.String("k"), Body: strings.NewReader("x")})
		if err != nil {
			t.Fatalf("PutObject after two SlowDowns (the SDK makes 3 attempts): %v", err)
		}
		if got := p.Counts("PutObject"); got.Injected != 2 || got.Forwarded != 1 {
			t.Errorf("counts %+v; want 2 injected, 1 forwarded", got)
		}
		// A removed rule injects no more.
		rule := p.Inject(awsproxy.Fault{Operation: "PutObject", Status: http.StatusServiceUnavailable})
		rule.Remove()
		if _, err := s3Client(p.URL, func(o *s3.Options) { o.RetryMaxAttempts = 1 }).PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("state"), Key: aws.String("k"), Body: strings.NewReader("y")}); err != nil || rule.Injected() != 0 {
			t.Errorf("PutObject after Remove: %v, injected %d", err, rule.Injected())
		}
		// With retries off, the client sees the injected error as S3's.
		p.Inject(awsproxy.Fault{Operation: "HeadObject", Status: http.StatusServiceUnavailable, Times: 1})
		p.Inject(awsproxy.Fault{Operation: "GetObject", Status: http.StatusServiceUnavailable, Times: 1})
		once := s3Client(p.URL, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
		_, err = once.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("state"), Key: aws.String("k")})
		if code(err) != "SlowDown" || status(err) != http.StatusServiceUnavailable {
			t.Errorf("GetObject: %v; want SlowDown, 503", err)
		}
		_, err = once.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("state"), Key: aws.String("k")})
		if status(err) != http.StatusServiceUnavailable {
			t.Errorf("HeadObject: %v; want 503", err)
		}
	})

	t.Run("sqs reset", func(t *testing.T) {
		stack := startStack(t)
		q := createQueue(t, stack.SQSURL, "reset")
		p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.SQS, Target: stack.SQSURL})
		p.Inject(awsproxy.Fault{Operation: "SendMessage", Reset: true, Times: 1})
		if _, err := sqsClient(p.URL).SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &q, MessageBody: aws.String("once")}); err != nil {
			t.Fatalf("SendMessage after a reset: %v", err)
		}
		out, err := sqsClient(stack.SQSURL).ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &q, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil || len(out.Messages) != 1 {
			t.Fatalf("queue holds %d messages, %v; a reset before the emulator must not duplicate", len(out.Messages), err)
		}
		once := sqsClient(p.URL, func(o *sqs.Options) { o.RetryMaxAttempts = 1 })
		p.Inject(awsproxy.Fault{Operation: "ReceiveMessage", Status: http.StatusTooManyRequests, Times: 1})
		_, err = once.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &q, WaitTimeSeconds: 1})
		if code(err) != "RequestThrottled" {
			t.Errorf("ReceiveMessage: %v; want RequestThrottled", err)
		}
	})

	t.Run("ses throttle, and a send accepted then failed", func(t *testing.T) {
		emuURL := emulator.StartSESLocal(t, "")
		p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.SES, Target: emuURL})
		p.Inject(awsproxy.Fault{Operation: "GetAccount", Status: http.StatusTooManyRequests, Times: 1})
		c := sesv2.New(sesv2.Options{Region: "us-east-1", BaseEndpoint: aws.String(p.URL), Credentials: creds, RetryMaxAttempts: 1})
		_, err := c.GetAccount(ctx, &sesv2.GetAccountInput{})
		var tm *sestypes.TooManyRequestsException
		if !errors.As(err, &tm) {
			t.Fatalf("GetAccount: %v; want a typed TooManyRequestsException", err)
		}
		if _, err := c.GetAccount(ctx, &sesv2.GetAccountInput{}); err != nil {
			t.Fatalf("the fault was for one request: %v", err)
		}

		// Matched by recipient: Bob's email passes untouched, Ana's
		// (her address in Cc) gets the fault.
		p.Inject(awsproxy.Fault{Operation: "SendEmail", After: true, Status: http.StatusInternalServerError, Times: 1,
			Match: func(c awsproxy.Call) bool { return slices.Contains(c.Recipients, "ana@example.com") }})
		send := func(subject string, d *sestypes.Destination) error {
			_, err := c.SendEmail(ctx, &sesv2.SendEmailInput{
				FromEmailAddress: aws.String("reports@example.com"),
				Destination:      d,
				Content:          &sestypes.EmailContent{Simple: &sestypes.Message{Subject: &sestypes.Content{Data: aws.String(subject)}, Body: &sestypes.Body{Text: &sestypes.Content{Data: aws.String("hi")}}}},
			})
			return err
		}
		if err := send("fine", &sestypes.Destination{ToAddresses: []string{"bob@example.com"}}); err != nil {
			t.Fatalf("SendEmail to a recipient the fault does not match: %v", err)
		}
		err = send("maybe", &sestypes.Destination{ToAddresses: []string{"bob@example.com"}, CcAddresses: []string{"ana@example.com"}})
		if status(err) != http.StatusInternalServerError {
			t.Fatalf("SendEmail: %v; want the injected 500", err)
		}
		sent, err := emulator.SESLocalEmails(ctx, emuURL, time.Time{})
		if err != nil || len(sent) != 2 || sent[1].Subject != "maybe" {
			t.Fatalf("emulator has %+v, %v; the failed send was accepted and must be there", sent, err)
		}
	})
}

// TestSESErrorShape: an SES fault reaches the client as SES v2 writes
// one (REST-JSON): the code in the x-amzn-ErrorType header, exactly as
// given, with the namespace AWS may append, and only {"message": ...}
// in the body. The SDK then builds the typed error from it.
func TestSESErrorShape(t *testing.T) {
	ctx := context.Background()
	emuURL := emulator.StartSESLocal(t, "")
	const (
		msg       = "Email address is not verified. The following identities failed the check in region US-EAST-1: reports@example.com"
		namespace = "MessageRejected:http://internal.amazon.com/coral/com.amazonaws.sesv2/"
	)
	send := `{"FromEmailAddress":"reports@example.com","Destination":{"ToAddresses":["ana@example.com"]},` +
		`"Content":{"Simple":{"Subject":{"Data":"hi"},"Body":{"Text":{"Data":"hi"}}}}}`
	tests := []struct {
		name, errorType, wantHeader string
	}{
		{"code", "", "MessageRejected"},
		{"code with its namespace", namespace, namespace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.SES, Target: emuURL})
			p.Inject(awsproxy.Fault{Operation: "SendEmail", Status: http.StatusBadRequest, Code: "MessageRejected", ErrorType: tt.errorType, Message: msg})

			res, err := http.Post(p.URL+"/v2/email/outbound-emails", "application/json", strings.NewReader(send))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusBadRequest || res.Header.Get("X-Amzn-ErrorType") != tt.wantHeader ||
				res.Header.Get("Content-Type") != "application/json" || res.Header.Get("X-Amzn-RequestId") == "" {
				t.Errorf("answer %d, headers %v; want 400, x-amzn-ErrorType %q, application/json and a request id", res.StatusCode, res.Header, tt.wantHeader)
			}
			var fields map[string]any
			if err := json.Unmarshal(body, &fields); err != nil || len(fields) != 1 || fields["message"] != msg {
				t.Errorf("body %s; want only {\"message\": %q}", body, msg)
			}

			_, err = sesClient(p.URL).SendEmail(ctx, &sesv2.SendEmailInput{
				FromEmailAddress: aws.String("reports@example.com"),
				Destination:      &sestypes.Destination{ToAddresses: []string{"ana@example.com"}},
				Content:          &sestypes.EmailContent{Simple: &sestypes.Message{Subject: &sestypes.Content{Data: aws.String("hi")}, Body: &sestypes.Body{Text: &sestypes.Content{Data: aws.String("hi")}}}},
			})
			var rejected *sestypes.MessageRejected
			if !errors.As(err, &rejected) || rejected.ErrorMessage() != msg {
				t.Errorf("SendEmail: %v; want a typed MessageRejected with SES's message", err)
			}
			if c := p.Counts("SendEmail"); c.Injected != 2 || c.Forwarded != 0 {
				t.Errorf("SendEmail counts %+v; want both refused before the emulator", c)
			}
		})
	}
	sent, err := emulator.SESLocalEmails(ctx, emuURL, time.Time{})
	if err != nil || len(sent) != 0 {
		t.Errorf("the emulator has %d emails, %v; want none", len(sent), err)
	}
}

// TestFaultProbability draws faults from the seeded source: the same
// seed fails the same requests.
func TestFaultProbability(t *testing.T) {
	ctx := context.Background()
	emuURL, direct := s3test.Start(t, "state")
	if _, err := direct.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("state"), Key: aws.String("k"), Body: strings.NewReader("x")}); err != nil {
		t.Fatal(err)
	}
	pattern := func(seed uint64) string {
		p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.S3, Target: emuURL, Seed: seed})
		rule := p.Inject(awsproxy.Fault{Operation: "HeadObject", Status: http.StatusServiceUnavailable, Probability: 0.5})
		c := s3Client(p.URL, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
		var b strings.Builder
		for range 40 {
			if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("state"), Key: aws.String("k")}); err != nil {
				b.WriteByte('x')
			} else {
				b.WriteByte('.')
			}
		}
		if n := strings.Count(b.String(), "x"); n != rule.Injected() || n != p.Counts("HeadObject").Injected {
			t.Errorf("%d failures, rule counted %d", n, rule.Injected())
		}
		return b.String()
	}
	a, b := pattern(7), pattern(7)
	if a != b {
		t.Errorf("same seed, different faults:\n%s\n%s", a, b)
	}
	if n := strings.Count(a, "x"); n == 0 || n == 40 {
		t.Errorf("probability 0.5 failed %d of 40: %s", n, a)
	}
}

// TestLatency records the latency the proxy adds, per operation, through
// its Sleep hook rather than by timing it.
func TestLatency(t *testing.T) {
	ctx := context.Background()
	emuURL, _ := s3test.Start(t, "state")
	var mu sync.Mutex
	var slept []string
	p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.S3, Target: emuURL, Latency: 20 * time.Millisecond,
		Sleep: func(_ context.Context, d time.Duration) error {
			mu.Lock()
			defer mu.Unlock()
			slept = append(slept, d.String())
			return nil
		}})
	p.SetLatency("PutObject", 80*time.Millisecond)
	c := s3Client(p.URL)
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("state"), Key: aws.String("k"), Body: strings.NewReader("x")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("state"), Key: aws.String("k")}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(slept, " "); got != "80ms 20ms" {
		t.Errorf("latencies %q; want 80ms for PutObject, then the default 20ms", got)
	}
	if d := p.Counts("PutObject").Delayed; d != 80*time.Millisecond {
		t.Errorf("PutObject delayed %v", d)
	}
}

// TestUnknownRequestsAreDenied: the proxy refuses what it cannot
// authorise, rather than pass it through unchecked.
func TestUnknownRequestsAreDenied(t *testing.T) {
	ctx := context.Background()
	emuURL, _ := s3test.Start(t, "state")
	var logged atomic.Value
	p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.S3, Target: emuURL,
		Logf: func(format string, args ...any) { logged.Store(fmt.Sprintf(format, args...)) }})
	_, err := s3Client(p.URL).CopyObject(ctx, &s3.CopyObjectInput{Bucket: aws.String("state"), Key: aws.String("b"), CopySource: aws.String("state/a")})
	if code(err) != "AccessDenied" {
		t.Fatalf("CopyObject: %v; want AccessDenied", err)
	}
	if msg, _ := logged.Load().(string); !strings.Contains(msg, "DENY unknown request") || !strings.Contains(msg, "CopyObject") {
		t.Errorf("log %q should say why", msg)
	}
	if c := p.Counts("Unknown"); c.Seen != 1 || c.Denied != 1 {
		t.Errorf("Unknown counts %+v", c)
	}
}

// TestSQSActions checks the operation-to-action mapping on the calls the
// worker makes: batches are authorised by their single action, on the
// queue's ARN.
func TestSQSActions(t *testing.T) {
	ctx := context.Background()
	stack := startStack(t)
	q := createQueue(t, stack.SQSURL, "actions")
	arn := "arn:aws:sqs:us-east-1:000000000000:" + queueName(q)
	p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.SQS, Target: stack.SQSURL,
		Policy: allow("sqs:SendMessage,sqs:ReceiveMessage,sqs:DeleteMessage,sqs:GetQueueUrl " + arn)})
	c := sqsClient(p.URL)
	for _, body := range []string{"a", "b"} {
		if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &q, MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(queueName(q))})
	if err != nil || aws.ToString(got.QueueUrl) != q {
		t.Fatalf("GetQueueUrl = %v, %v", got, err)
	}
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &q, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
	if err != nil || len(out.Messages) == 0 {
		t.Fatalf("ReceiveMessage = %v, %v", out, err)
	}
	var entries []sqstypes.DeleteMessageBatchRequestEntry
	for i, m := range out.Messages {
		entries = append(entries, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), ReceiptHandle: m.ReceiptHandle})
	}
	if _, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &q, Entries: entries}); err != nil {
		t.Errorf("DeleteMessageBatch, authorised by sqs:DeleteMessage: %v", err)
	}
	_, err = c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: &q, ReceiptHandle: out.Messages[0].ReceiptHandle})
	if code(err) != "AccessDenied" {
		t.Errorf("ChangeMessageVisibility, not granted: %v", err)
	}
	other := createQueue(t, stack.SQSURL, "other")
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &other, MessageBody: aws.String("x")}); code(err) != "AccessDenied" {
		t.Errorf("SendMessage to another queue: %v", err)
	}
	want := map[string]awsproxy.Counts{
		"SendMessage":             {Seen: 3, Forwarded: 2, Denied: 1},
		"GetQueueUrl":             {Seen: 1, Forwarded: 1},
		"ReceiveMessage":          {Seen: 1, Forwarded: 1},
		"DeleteMessageBatch":      {Seen: 1, Forwarded: 1},
		"ChangeMessageVisibility": {Seen: 1, Denied: 1},
	}
	if got := p.AllCounts(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("counts\n got %v\nwant %v", got, want)
	}
}

// TestS3ListObjects checks that a listing is s3:ListBucket with the
// request's prefix as s3:prefix.
func TestS3ListObjects(t *testing.T) {
	ctx := context.Background()
	emuURL, _ := s3test.Start(t, "state")
	p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.S3, Target: emuURL,
		Policy: allow("s3:ListBucket arn:aws:s3:::state keys/*")})
	c := s3Client(p.URL)
	if _, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("state"), Prefix: aws.String("keys/")}); err != nil {
		t.Errorf("listing the granted prefix: %v", err)
	}
	for _, prefix := range []*string{aws.String("ledger/"), nil} {
		if _, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("state"), Prefix: prefix}); code(err) != "AccessDenied" {
			t.Errorf("listing prefix %v: %v; want AccessDenied", aws.ToString(prefix), err)
		}
	}
}

// TestCloseCancelsLongPolls: Close does not wait out a 20 s long poll
// the proxy is holding open to the emulator.
func TestCloseCancelsLongPolls(t *testing.T) {
	stack := startStack(t)
	q := createQueue(t, stack.SQSURL, "longpoll")
	arrived := make(chan struct{}, 1)
	p, err := awsproxy.New(awsproxy.Options{Service: awsproxy.SQS, Target: stack.SQSURL, Latency: time.Nanosecond,
		Sleep: func(context.Context, time.Duration) error { arrived <- struct{}{}; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := sqsClient(p.URL, func(o *sqs.Options) { o.RetryMaxAttempts = 1 }).
			ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &q, WaitTimeSeconds: 20})
		done <- err
	}()
	<-arrived
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for the long poll")
	}
	if err := <-done; err == nil {
		t.Error("the long poll cut by Close should fail")
	}
	if _, err := http.Get(p.URL); err == nil {
		t.Error("the proxy still answers after Close")
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	for _, o := range []awsproxy.Options{
		{Service: "dynamodb", Target: "http://127.0.0.1:1"},
		{Service: awsproxy.S3, Target: "127.0.0.1:1"},
		{Service: awsproxy.S3},
		// SES's events come from SES, and need somewhere to go.
		{Service: awsproxy.SQS, Target: "http://127.0.0.1:1", SESEvents: &awsproxy.SESEvents{Publish: func(context.Context, []byte) error { return nil }}},
		{Service: awsproxy.SES, Target: "http://127.0.0.1:1", SESEvents: &awsproxy.SESEvents{}},
	} {
		if p, err := awsproxy.New(o); err == nil {
			p.Close()
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

func TestSetEnv(t *testing.T) {
	emuURL, _ := s3test.Start(t, "state")
	set := awsproxy.StartSet(t, awsproxy.Targets{S3: emuURL}, awsproxy.Options{})
	env := set.Env()
	if len(env) != 1 || env["AWS_ENDPOINT_URL_S3"] != set.S3.URL || set.SQS != nil {
		t.Errorf("Env = %v", env)
	}
}

func startStack(t *testing.T) *devstack.Stack {
	t.Helper()
	st, err := devstack.Start(t.Context(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

var queueSeq atomic.Int64

// createQueue creates a queue with a process-unique name (goaws's queues
// are process-wide) directly on the emulator, and returns its URL.
func createQueue(t *testing.T, emuURL, name string) string {
	t.Helper()
	name = fmt.Sprintf("awsproxy-%s-%d-%d", name, time.Now().UnixNano()%1e6, queueSeq.Add(1))
	out, err := sqsClient(emuURL).CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.QueueUrl)
}

func queueName(url string) string { return url[strings.LastIndexByte(url, '/')+1:] }
