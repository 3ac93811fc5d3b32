package emulator_test

import (
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	sestypes "github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/reportmailer/reportmailer/internal/emulator"
)

func awsConfig() aws.Config {
	return aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}
}

func TestEmulators(t *testing.T) {
	var sqsURL, sesURL string

	// The emulators run for this subtest only, so that its cleanups have
	// stopped them by the time the checks below it run.
	t.Run("run", func(t *testing.T) {
		sqsURL = emulator.StartFauxqs(t)
		sesURL = emulator.StartSESLocal(t, "")
		for _, u := range []string{sqsURL, sesURL} {
			if !strings.HasPrefix(u, "http://127.0.0.1:") {
				t.Errorf("base url %q is not on 127.0.0.1", u)
			}
			checkLoopbackOnly(t, u)
		}
		ctx := t.Context()

		q := sqs.NewFromConfig(awsConfig(), func(o *sqs.Options) { o.BaseEndpoint = aws.String(sqsURL) })
		created, err := q.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("reports")})
		if err != nil {
			t.Fatalf("create queue: %v", err)
		}
		if u := aws.ToString(created.QueueUrl); !strings.HasPrefix(u, sqsURL+"/") {
			t.Errorf("queue url %q does not point at %s", u, sqsURL)
		}
		if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: created.QueueUrl, MessageBody: aws.String(`{"report":"r-1"}`)}); err != nil {
			t.Fatalf("send message: %v", err)
		}
		got, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: created.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatalf("receive message: %v", err)
		}
		if len(got.Messages) != 1 || aws.ToString(got.Messages[0].Body) != `{"report":"r-1"}` {
			t.Fatalf("received %+v, want the one message sent", got.Messages)
		}

		ses := sesv2.NewFromConfig(awsConfig(), func(o *sesv2.Options) { o.BaseEndpoint = aws.String(sesURL) })
		since := time.Now()
		sent, err := ses.SendEmail(ctx, &sesv2.SendEmailInput{
			FromEmailAddress: aws.String("reports@example.com"),
			Destination:      &sestypes.Destination{ToAddresses: []string{"ann@example.com", "bob@example.com"}},
			Content: &sestypes.EmailContent{Simple: &sestypes.Message{
				Subject: &sestypes.Content{Data: aws.String("Your report is ready")},
				Body: &sestypes.Body{
					Html: &sestypes.Content{Data: aws.String("<p>ready</p>")},
					Text: &sestypes.Content{Data: aws.String("ready")},
				},
				Headers: []sestypes.MessageHeader{{Name: aws.String("X-Report-Id"), Value: aws.String("r-1")}},
			}},
		})
		if err != nil {
			t.Fatalf("send email: %v", err)
		}
		acct, err := ses.GetAccount(ctx, &sesv2.GetAccountInput{})
		if err != nil {
			t.Fatalf("get account: %v", err)
		}
		if !acct.ProductionAccessEnabled || acct.SendQuota == nil || acct.SendQuota.Max24HourSend != 50000 {
			t.Errorf("get account: production %v, quota %+v", acct.ProductionAccessEnabled, acct.SendQuota)
		}

		emails, err := emulator.SESLocalEmails(ctx, sesURL, since)
		if err != nil {
			t.Fatalf("read back: %v", err)
		}
		if len(emails) != 1 {
			t.Fatalf("read back %d emails, want 1: %+v", len(emails), emails)
		}
		e := emails[0]
		if e.MessageID != aws.ToString(sent.MessageId) || e.Subject != "Your report is ready" ||
			!slices.Equal(e.To(), []string{"ann@example.com", "bob@example.com"}) || e.From != "reports@example.com" ||
			e.HTML != "<p>ready</p>" || e.Text != "ready" || e.Headers["X-Report-Id"] != "r-1" {
			t.Errorf("read back %+v", e)
		}
		if e.At.Before(since.Truncate(time.Second)) || e.At.After(time.Now()) {
			t.Errorf("read back at %v, sent after %v", e.At, since)
		}
		later, err := emulator.SESLocalEmails(ctx, sesURL, time.Now().Add(time.Hour))
		if err != nil || len(later) != 0 {
			t.Errorf("read back since an hour ahead: %d emails, %v", len(later), err)
		}
	})

	if sqsURL == "" || sesURL == "" {
		return // the subtest failed before both started
	}
	for _, u := range []string{sqsURL, sesURL} {
		host := mustHost(t, u)
		conn, err := net.DialTimeout("tcp", host, time.Second)
		if err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections after cleanup", host)
		}
	}
}

// checkLoopbackOnly fails t if the emulator at base also answers on one of
// the machine's other addresses.
func checkLoopbackOnly(t *testing.T, base string) {
	t.Helper()
	_, port, err := net.SplitHostPort(mustHost(t, base))
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatalf("interface addresses: %v", err)
	}
	for _, a := range addrs {
		ipnet, ok := a.(*net.IPNet)
		if !ok || ipnet.IP.IsLoopback() || ipnet.IP.IsLinkLocalUnicast() {
			continue
		}
		addr := net.JoinHostPort(ipnet.IP.String(), port)
		conn, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			conn.Close()
			t.Errorf("emulator at %s also listens on %s", base, addr)
		}
	}
}

func mustHost(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func TestSESLocalEmailsError(t *testing.T) {
	// Nothing listens on a port just released.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := emulator.SESLocalEmails(t.Context(), "http://"+addr, time.Time{}); err == nil {
		t.Error("SESLocalEmails against a closed port succeeded")
	}
}
