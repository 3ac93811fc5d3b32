package mail

// These tests run the real aws-sdk-go-v2 SES v2 client against
// aws-ses-v2-local (npm), through throttleProxy where SES's rate limit
// matters. They need node and `npm ci` (make test does it).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"github.com/reportmailer/reportmailer/internal/emulator"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/transport"
)

// sesAccount returns emulator.DefaultSESAccount with its SendQuota and
// ProductionAccessEnabled changed.
func sesAccount(t *testing.T, maxRate, max24, sent float64, production bool) string {
	t.Helper()
	var a map[string]any
	if err := json.Unmarshal([]byte(emulator.DefaultSESAccount), &a); err != nil {
		t.Fatal(err)
	}
	a["SendQuota"] = map[string]any{"MaxSendRate": maxRate, "Max24HourSend": max24, "SentLast24Hours": sent}
	a["ProductionAccessEnabled"] = production
	b, _ := json.Marshal(a)
	return string(b)
}

// sesClient is the client newMailer builds, pointed at url.
func sesClient(url string) *sesv2.Client {
	return sesv2.New(sesv2.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(url),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		Retryer:      PacedRetryer(),
		HTTPClient:   transport.Wrap(nil),
	})
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu chan struct{}
	b  bytes.Buffer
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{mu: make(chan struct{}, 1)} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu <- struct{}{}
	defer func() { <-s.mu }()
	return s.b.String()
}

// exactlyOnce checks that the emulator accepted one email for each of
// want and nothing else.
func exactlyOnce(t *testing.T, sesURL string, want []string) []emulator.SESLocalEmail {
	t.Helper()
	got, err := emulator.SESLocalEmails(context.Background(), sesURL, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, e := range got {
		for _, to := range e.To() {
			count[to]++
		}
	}
	var lost, twice []string
	for _, w := range want {
		switch count[w] {
		case 0:
			lost = append(lost, w)
		case 1:
		default:
			twice = append(twice, w)
		}
		delete(count, w)
	}
	if len(lost) > 0 || len(twice) > 0 || len(count) > 0 || len(got) != len(want) {
		t.Errorf("%d emails accepted for %d recipients: lost %v, sent more than once %v, unexpected %v", len(got), len(want), lost, twice, count)
	}
	return got
}

// TestThrottleBurstIsRetriedNotDuplicated: SES throttles a run of
// sends; the pacer alone retries them (the SDK does not also retry),
// and every email is accepted exactly once.
func TestThrottleBurstIsRetriedNotDuplicated(t *testing.T) {
	t.Parallel()
	sesURL := emulator.StartSESLocal(t, "")
	proxy := newThrottleProxy(t, sesURL, 0, time.Second)
	client := sesClient(proxy.URL)
	p := &Paced{Mailer: &SES{Client: client}, Account: client, MaxAttempts: 2, BackoffBase: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	ctx := context.Background()
	mk := func(to string) worker.Email {
		return worker.Email{From: "reports@example.com", To: []string{to}, Subject: "s", Text: "t", HTML: "<p>t</p>"}
	}

	// Three 429s in a row: the first email's two attempts, then one of
	// the second's. If the SDK retried throttles too, the first email
	// would use all three, or more, in its first attempt.
	proxy.throttleNext(3)
	_, err := p.Send(ctx, mk("a@acme.example"))
	var tm *types.TooManyRequestsException
	if err == nil || !errors.As(err, &tm) || worker.IsHalt(err) || worker.IsPermanent(err) || worker.IsAmbiguous(err) {
		t.Fatalf("first email: err = %v; want a transient TooManyRequestsException after 2 attempts", err)
	}
	if _, throttled, _ := proxy.stats(); throttled != 2 {
		t.Fatalf("%d requests throttled by the first email, want 2: only the pacer may retry", throttled)
	}
	if _, err := p.Send(ctx, mk("b@acme.example")); err != nil {
		t.Fatalf("second email: %v", err)
	}
	// The worker retries the first email's message later.
	if _, err := p.Send(ctx, mk("a@acme.example")); err != nil {
		t.Fatalf("first email, again: %v", err)
	}
	sends, throttled, _ := proxy.stats()
	if sends != 2 || throttled != 3 {
		t.Errorf("forwarded %d, throttled %d; want 2 and 3", sends, throttled)
	}
	exactlyOnce(t, sesURL, []string{"a@acme.example", "b@acme.example"})
}

// TestSandboxQuotaHalt: a sandbox account with 2 of its 200 daily
// emails left. The pacer warns, sends 2, then halts the run before
// the third, which SES never sees.
func TestSandboxQuotaHalt(t *testing.T) {
	t.Parallel()
	sesURL := emulator.StartSESLocal(t, sesAccount(t, 1, 200, 198, false))
	proxy := newThrottleProxy(t, sesURL, 1, time.Second)
	client := sesClient(proxy.URL)
	logs := newSyncBuffer()
	p := &Paced{Mailer: &SES{Client: client}, Account: client, Logger: slog.New(slog.NewTextHandler(logs, nil))}
	ctx := context.Background()
	for i, to := range []string{"a@acme.example", "b@acme.example", "c@acme.example"} {
		_, err := p.Send(ctx, worker.Email{From: "reports@example.com", To: []string{to}, Subject: "s", Text: "t", HTML: "<p>t</p>"})
		switch {
		case i < 2 && err != nil:
			t.Fatalf("email %d: %v", i, err)
		case i == 2 && !worker.IsHalt(err):
			t.Fatalf("email %d: err = %v, want a halt: the 24-hour quota is spent", i, err)
		}
	}
	if !strings.Contains(logs.String(), `level=WARN msg="ses account is in the sandbox`) {
		t.Errorf("no sandbox warning:\n%s", logs)
	}
	if sends, throttled, _ := proxy.stats(); sends != 2 || throttled != 0 {
		t.Errorf("forwarded %d, throttled %d; want 2 sends paced under 1/s", sends, throttled)
	}
	exactlyOnce(t, sesURL, []string{"a@acme.example", "b@acme.example"})
}

// TestHeadersReachSES sends one email with hostile event data through
// the real client and reads back what SES kept.
func TestHeadersReachSES(t *testing.T) {
	t.Parallel()
	sesURL := emulator.StartSESLocal(t, "")
	s := &SES{Client: sesClient(sesURL), ListID: "reportmailer.example.com", UnsubscribeURL: unsubTemplate}
	e := hostile()
	id, err := s.Send(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	got := exactlyOnce(t, sesURL, []string{"cfo@example.com"})
	if len(got) != 1 {
		return
	}
	m := got[0]
	if m.MessageID != id {
		t.Errorf("message id %q, Send returned %q", m.MessageID, id)
	}
	if m.Subject != "Zoë's 📊 reports  Bcc: evil@example.com" {
		t.Errorf("subject = %q", m.Subject)
	}
	if strings.Join(m.ReplyTo, " | ") != "=?utf-8?q?Help_D=C3=A9sk?= <help@example.com> | ops@example.com" {
		t.Errorf("reply-to = %q", m.ReplyTo)
	}
	if len(m.Destination.Cc) != 0 || len(m.Destination.Bcc) != 0 {
		t.Errorf("cc %v bcc %v: the injected Bcc got through", m.Destination.Cc, m.Destination.Bcc)
	}
	thread := ThreadID(e)
	want := map[string]string{
		"List-Unsubscribe":      "<https://app.example.com/unsubscribe?user=u%201%2F%C3%A4%0D%0ABcc%3A%20x%40evil.example&email=cfo%40example.com&owner=ana%40example.com&list=daily.eu>",
		"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
		"List-Id":               "<daily-eu.reportmailer.example.com>",
		"References":            "<" + thread + "@example.com>",
		"X-Entity-Ref-ID":       thread,
		"Auto-Submitted":        "auto-generated",
	}
	for k, v := range want {
		if m.Headers[k] != v {
			t.Errorf("stored header %s = %q, want %q", k, m.Headers[k], v)
		}
	}
	for k, v := range m.Headers {
		if strings.ContainsAny(k+v, "\r\n") || strings.EqualFold(k, "bcc") {
			t.Errorf("header %s: %q", k, v)
		}
	}
	if len(m.Headers) != len(want) {
		t.Errorf("stored headers %v, want %d", m.Headers, len(want))
	}
}
