package mail

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
)

// fakeSES is a mail.API that records what it was asked to send.
type fakeSES struct {
	mu  sync.Mutex
	in  []*sesv2.SendEmailInput
	err error
}

func (f *fakeSES) SendEmail(_ context.Context, in *sesv2.SendEmailInput, _ ...func(*sesv2.Options)) (*sesv2.SendEmailOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.in = append(f.in, in)
	if f.err != nil {
		return nil, f.err
	}
	return &sesv2.SendEmailOutput{MessageId: aws.String(fmt.Sprintf("m-%d", len(f.in)))}, nil
}

const unsubTemplate = "https://app.example.com/unsubscribe?user={{.UserID}}&email={{.Email}}&owner={{.UserEmail}}&list={{.Schedule}}"

// hostile is an email whose event-supplied fields try to inject headers.
func hostile() worker.Email {
	return worker.Email{
		User:     event.User{ID: "u 1/ä\r\nBcc: x@evil.example", Email: "ana@example.com", Name: "Zoë\r\nBcc: evil@example.com"},
		Schedule: "daily.eu",
		Digest:   true,
		EventIDs: []string{"e-2", "e-1"},
		From:     "Société Reports <reports@example.com>",
		ReplyTo:  []string{"Help Désk <help@example.com>", "ops@example.com"},
		To:       []string{"cfo@example.com"},
		Subject:  "Zoë's 📊 reports\r\nBcc: evil@example.com",
		HTML:     "<p>hi</p>",
		Text:     "hi",
		Tags:     map[string]string{"schedule": "daily.eu", "report_type": "invoice", "empty": ""},
	}
}

func headerMap(t *testing.T, hs []types.MessageHeader) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, h := range hs {
		if _, dup := m[*h.Name]; dup {
			t.Errorf("header %s set twice", *h.Name)
		}
		m[*h.Name] = *h.Value
	}
	return m
}

// sesValue is the pattern SES's API puts on a custom header value.
var sesValue = regexp.MustCompile(`^[ -~]{1,870}$`)

func TestSendInput(t *testing.T) {
	api := &fakeSES{}
	s := &SES{Client: api, ConfigurationSet: "reports-events", ListID: "reportmailer.example.com", UnsubscribeURL: unsubTemplate}
	id, err := s.Send(context.Background(), hostile())
	if err != nil || id != "m-1" {
		t.Fatalf("Send = %q, %v", id, err)
	}
	in := api.in[0]

	if got := aws.ToString(in.ConfigurationSetName); got != "reports-events" {
		t.Errorf("configuration set = %q", got)
	}
	var tags []string
	for _, tg := range in.EmailTags {
		tags = append(tags, *tg.Name+"="+*tg.Value)
	}
	if got := strings.Join(tags, ","); got != "report_type=invoice,schedule=daily_eu" {
		t.Errorf("tags = %s, want SES-safe report_type and schedule, and no empty tag", got)
	}
	if got := aws.ToString(in.FromEmailAddress); got != "=?utf-8?q?Soci=C3=A9t=C3=A9_Reports?= <reports@example.com>" {
		t.Errorf("from = %q, want the display name RFC 2047-encoded", got)
	}
	if got := strings.Join(in.ReplyToAddresses, " | "); got != "=?utf-8?q?Help_D=C3=A9sk?= <help@example.com> | ops@example.com" {
		t.Errorf("reply-to = %q", got)
	}
	if got := strings.Join(in.Destination.ToAddresses, ","); got != "cfo@example.com" || in.Destination.CcAddresses != nil || in.Destination.BccAddresses != nil {
		t.Errorf("destination = %+v", in.Destination)
	}

	msg := in.Content.Simple
	if in.Content.Raw != nil || msg == nil {
		t.Fatal("want Simple content only")
	}
	if got := aws.ToString(msg.Subject.Data); got != "Zoë's 📊 reports  Bcc: evil@example.com" {
		t.Errorf("subject = %q, want one line with the emoji kept", got)
	}
	for name, c := range map[string]*types.Content{"subject": msg.Subject, "html": msg.Body.Html, "text": msg.Body.Text} {
		if aws.ToString(c.Charset) != "UTF-8" {
			t.Errorf("%s charset = %q, want UTF-8 (SES then encodes the subject per RFC 2047)", name, aws.ToString(c.Charset))
		}
	}

	h := headerMap(t, msg.Headers)
	thread := ThreadID(hostile())
	want := map[string]string{
		"List-Unsubscribe":      "<https://app.example.com/unsubscribe?user=u%201%2F%C3%A4%0D%0ABcc%3A%20x%40evil.example&email=cfo%40example.com&owner=ana%40example.com&list=daily.eu>",
		"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
		"List-Id":               "<daily-eu.reportmailer.example.com>",
		"References":            "<" + thread + "@example.com>",
		"X-Entity-Ref-ID":       thread,
		"Auto-Submitted":        "auto-generated",
	}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("header %s = %q, want %q", k, h[k], v)
		}
	}
	if len(h) != len(want) {
		t.Errorf("headers = %v, want exactly %v", h, want)
	}
	for k, v := range h {
		if !sesValue.MatchString(v) {
			t.Errorf("header %s = %q: not what SES accepts (printable ASCII, no CR/LF)", k, v)
		}
	}
}

func TestSendWithoutListSettings(t *testing.T) {
	api := &fakeSES{}
	e := hostile()
	e.From = "reports@localhost" // no domain name with a dot: no thread headers
	if _, err := (&SES{Client: api}).Send(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	h := headerMap(t, api.in[0].Content.Simple.Headers)
	if len(h) != 1 || h["Auto-Submitted"] == "" {
		t.Errorf("headers = %v, want only Auto-Submitted", h)
	}
	if api.in[0].ConfigurationSetName != nil {
		t.Error("configuration set sent though none is configured")
	}
}

func TestThreadID(t *testing.T) {
	base := hostile()
	same := hostile()
	same.EventIDs = []string{"e-1", "e-2"} // order does not matter
	same.Subject = "another subject"
	if ThreadID(base) != ThreadID(same) {
		t.Error("a resend of the same email must stay in its thread")
	}
	for name, change := range map[string]func(*worker.Email){
		"next digest":     func(e *worker.Email) { e.EventIDs = []string{"e-3"} },
		"more events":     func(e *worker.Email) { e.EventIDs = append(e.EventIDs, "e-3") },
		"other recipient": func(e *worker.Email) { e.To = []string{"ana@example.com"} },
		"other schedule":  func(e *worker.Email) { e.Schedule = "weekly" },
		"other user":      func(e *worker.Email) { e.User.ID = "u-2" },
		"field boundary":  func(e *worker.Email) { e.EventIDs = []string{"e-2e-1"} },
	} {
		e := hostile()
		change(&e)
		if ThreadID(e) == ThreadID(base) {
			t.Errorf("%s: same thread id; each email must be its own thread", name)
		}
	}
	if id := ThreadID(base); !regexp.MustCompile(`^rm\.[0-9a-f]{32}$`).MatchString(id) {
		t.Errorf("thread id %q", id)
	}
}

func TestCustomHeaders(t *testing.T) {
	tests := []struct {
		name    string
		headers map[string]string
		want    map[string]string // checked values
		refused string            // error substring; "" means sent
	}{
		{"CR/LF cannot inject", map[string]string{"X-Owner": "Zoë\r\nBcc: evil@example.com"},
			map[string]string{"X-Owner": "=?UTF-8?q?Zo=C3=AB=0D=0ABcc:_evil@example.com?="}, ""},
		{"plain ASCII kept", map[string]string{"X-Report": "r-1"}, map[string]string{"X-Report": "r-1"}, ""},
		{"worker overrides ours", map[string]string{"auto-submitted": "auto-replied"}, map[string]string{"auto-submitted": "auto-replied"}, ""},
		{"SES's own header", map[string]string{"Message-ID": "<x@example.com>"}, nil, "SES sets it itself"},
		{"Bcc smuggled as a header", map[string]string{"bcc": "evil@example.com"}, nil, "SES sets it itself"},
		{"colon in name", map[string]string{"X-A:B": "v"}, nil, "header name"},
		{"space in name", map[string]string{"X A": "v"}, nil, "header name"},
		{"too long", map[string]string{"X-Long": strings.Repeat("a", 871)}, nil, "at most 870"},
		{"too many", func() map[string]string {
			m := map[string]string{}
			for i := range 15 {
				m[fmt.Sprintf("X-H%d", i)] = "v"
			}
			return m
		}(), nil, "at most 15"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := &fakeSES{}
			e := hostile()
			e.Headers = tt.headers
			_, err := (&SES{Client: api}).Send(context.Background(), e)
			if tt.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tt.refused) || !worker.IsPermanent(err) {
					t.Fatalf("err = %v, want a permanent error containing %q", err, tt.refused)
				}
				if len(api.in) != 0 {
					t.Error("SES was called with a header it refuses")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			h := headerMap(t, api.in[0].Content.Simple.Headers)
			for k, v := range tt.want {
				if h[k] != v {
					t.Errorf("%s = %q, want %q", k, h[k], v)
				}
			}
			for k, v := range h {
				if !sesValue.MatchString(v) {
					t.Errorf("%s = %q is not printable ASCII", k, v)
				}
			}
		})
	}
}

func TestParseUnsubscribeURL(t *testing.T) {
	tests := []struct {
		text, err string
	}{
		{unsubTemplate, ""},
		{"https://app.example.com/u/{{.UserID}}/{{.Schedule}}", ""},
		{"http://127.0.0.1:8080/unsubscribe?u={{.UserID}}", ""},
		{"http://app.example.com/unsubscribe?u={{.UserID}}", "needs https"},
		{"mailto:unsubscribe@example.com", "needs https"},
		{"https://app.example.com/unsubscribe?u={{.User}}", "User"},
		{"https://app.example.com/unsubscribe?u={{.UserID}", "bad character"},
		{"https:///unsubscribe", "no host"},
		{"https://app.example.com/un subscribe", "percent-encoded"},
		{"https://app.example.com/désinscription", "percent-encoded"},
		{"https://app.example.com/a,b", "percent-encoded"},
		{"/unsubscribe?u={{.UserID}}", "not an absolute URL"},
		{"https://app.example.com/" + strings.Repeat("a", 870), "at most 870"},
	}
	for _, tt := range tests {
		_, err := ParseUnsubscribeURL(tt.text)
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("ParseUnsubscribeURL(%q) = %v, want %q", tt.text, err, tt.err)
		}
	}
}

func TestUnsubscribeErrors(t *testing.T) {
	t.Run("bad template halts the run", func(t *testing.T) {
		api := &fakeSES{}
		_, err := (&SES{Client: api, UnsubscribeURL: "http://app.example.com/{{.UserID}}"}).Send(context.Background(), hostile())
		if !worker.IsHalt(err) || len(api.in) != 0 {
			t.Errorf("err = %v (halt %v), calls %d; want a halt and nothing sent", err, worker.IsHalt(err), len(api.in))
		}
	})
	t.Run("a user whose URL is too long fails alone", func(t *testing.T) {
		api := &fakeSES{}
		e := hostile()
		e.User.ID = strings.Repeat("ü", 200) // 1,200 bytes once encoded
		_, err := (&SES{Client: api, UnsubscribeURL: unsubTemplate}).Send(context.Background(), e)
		if !worker.IsPermanent(err) || len(api.in) != 0 {
			t.Errorf("err = %v, want a permanent error and nothing sent", err)
		}
	})
}

func TestClassifyHaltsWhenTheAccountCannotSend(t *testing.T) {
	for _, err := range []error{
		responseErr(400, &types.SendingPausedException{Message: aws.String("sending paused")}),
		responseErr(400, &types.AccountSuspendedException{Message: aws.String("suspended")}),
	} {
		got := Classify(err)
		if !worker.IsHalt(got) || worker.IsPermanent(got) {
			t.Errorf("Classify(%v): halt %v permanent %v; want a halt, not a dead letter", err, worker.IsHalt(got), worker.IsPermanent(got))
		}
	}
	// SES v2 SendEmail errors pass through Send's wrapping.
	api := &fakeSES{err: responseErr(400, &types.SendingPausedException{Message: aws.String("paused")})}
	if _, err := (&SES{Client: api}).Send(context.Background(), hostile()); !worker.IsHalt(err) {
		t.Errorf("Send: %v, want a halt", err)
	}
	if _, err := (&SES{Client: &fakeSES{err: errors.New("x")}}).Send(context.Background(), hostile()); worker.IsHalt(err) {
		t.Error("an unknown error must not halt")
	}
}

// A throttle code on a 400 is a throttle, not a bad email: Paced
// retries it, and in the end it is left for retry, not dead-lettered.
func TestThrottleCodesAreNotPermanent(t *testing.T) {
	err := Classify(responseErr(400, &types.LimitExceededException{Message: aws.String("slow down")}))
	if worker.IsPermanent(err) || !throttled(err) {
		t.Errorf("LimitExceededException: permanent %v, throttled %v", worker.IsPermanent(err), throttled(err))
	}
	if throttled(responseErr(400, &types.MessageRejected{})) {
		t.Error("a rejected message is not a throttle")
	}
}
