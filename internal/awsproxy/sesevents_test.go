package awsproxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	sestypes "github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/internal/emulator"
	"github.com/reportmailer/reportmailer/worker/sesevents"
)

// published collects the event bodies a proxy publishes.
type published struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (p *published) publish(_ context.Context, b []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bodies = append(p.bodies, b)
	return nil
}

func (p *published) take() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.bodies
	p.bodies = nil
	return out
}

// sendTagged sends one email through c, tagged as the worker tags its
// emails, in configuration set set ("" for none).
func sendTagged(ctx context.Context, c *sesv2.Client, to, emailID, set string) (*sesv2.SendEmailOutput, error) {
	in := &sesv2.SendEmailInput{
		FromEmailAddress: aws.String("Reports <reports@example.com>"),
		Destination:      &sestypes.Destination{ToAddresses: []string{to}},
		Content:          &sestypes.EmailContent{Simple: &sestypes.Message{Subject: &sestypes.Content{Data: aws.String("report " + emailID)}, Body: &sestypes.Body{Text: &sestypes.Content{Data: aws.String("hi")}}}},
		EmailTags:        []sestypes.MessageTag{{Name: aws.String(sesevents.Tag), Value: aws.String(emailID)}, {Name: aws.String("schedule"), Value: aws.String("daily")}},
	}
	if set != "" {
		in.ConfigurationSetName = aws.String(set)
	}
	return c.SendEmail(ctx, in)
}

// TestSESSendEvents: every SendEmail SES accepted publishes one Send
// event, as SES's EventBridge destination writes it, which the worker's
// own decoder reads back with the email's tag and SES's message id; even
// when the client never got the answer. A request refused or faulted
// before SES publishes nothing, nor does an email of another
// configuration set.
func TestSESSendEvents(t *testing.T) {
	ctx := context.Background()
	emuURL := emulator.StartSESLocal(t, "")
	var pub published
	p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.SES, Target: emuURL,
		SESEvents: &awsproxy.SESEvents{Publish: pub.publish}})
	c := sesv2.New(sesv2.Options{Region: "us-east-1", BaseEndpoint: aws.String(p.URL), Credentials: creds, RetryMaxAttempts: 1})

	cases := []struct {
		name   string
		fault  *awsproxy.Fault
		policy bool // deny everything
		set    string
		// accepted: SES accepted the email, so it has an event; ok: the
		// client got the answer.
		accepted, ok bool
	}{
		{name: "accepted", accepted: true, ok: true},
		{name: "accepted in the set named", set: awsproxy.ConfigurationSetDefault, accepted: true, ok: true},
		{name: "accepted, then the connection reset", fault: &awsproxy.Fault{After: true, Reset: true}, accepted: true},
		{name: "accepted, then a 500", fault: &awsproxy.Fault{After: true, Status: http.StatusInternalServerError}, accepted: true},
		{name: "a 500 before SES", fault: &awsproxy.Fault{Status: http.StatusInternalServerError}},
		{name: "a reset before SES", fault: &awsproxy.Fault{Reset: true}},
		{name: "a throttle before SES", fault: &awsproxy.Fault{Status: http.StatusTooManyRequests}},
		{name: "denied by the policy", policy: true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var rule *awsproxy.Rule
			if tc.fault != nil {
				f := *tc.fault
				f.Operation, f.Times = "SendEmail", 1
				rule = p.Inject(f)
			}
			if tc.policy {
				p.SetPolicy(allow("ses:GetAccount *"))
				defer p.SetPolicy(nil)
			}
			before := p.Counts("SendEmail").Published
			since := time.Now().Add(-time.Second)
			to := "ana@example.com"
			emailID := "0123456789abcdef0123456789abcde" + string(rune('0'+i))
			out, err := sendTagged(ctx, c, to, emailID, tc.set)
			if (err == nil) != tc.ok {
				t.Fatalf("SendEmail: %v; want ok %v", err, tc.ok)
			}
			if rule != nil && rule.Injected() != 1 {
				t.Fatalf("the fault fired %d times", rule.Injected())
			}
			bodies := pub.take()
			if !tc.accepted {
				if len(bodies) != 0 {
					t.Fatalf("%d events for an email SES never saw: %s", len(bodies), bodies[0])
				}
				return
			}
			if len(bodies) != 1 {
				t.Fatalf("%d events published, want 1 Send event", len(bodies))
			}
			if n := p.Counts("SendEmail").Published - before; n != 1 {
				t.Errorf("Counts.Published went up %d, want 1", n)
			}
			var wantID string
			if tc.ok {
				wantID = aws.ToString(out.MessageId)
			} else {
				sent, err := emulator.SESLocalEmails(ctx, emuURL, since)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range sent {
					if m.Subject == "report "+emailID {
						wantID = m.MessageID
					}
				}
			}
			if wantID == "" {
				t.Fatal("no message id for the accepted email")
			}
			ev, err := sesevents.Parse(bodies[0])
			if err != nil {
				t.Fatalf("sesevents.Parse: %v\n%s", err, bodies[0])
			}
			want := sesevents.Event{Type: sesevents.TypeSend, EmailID: emailID, MessageID: wantID, Envelope: sesevents.EnvelopeEventBridge}
			if ev != want || ev.Proves() != sesevents.Accepted {
				t.Errorf("event %+v, proving %s; want %+v, accepted", ev, ev.Proves(), want)
			}
			// The rest of the documented shape.
			var doc struct {
				DetailType string `json:"detail-type"`
				Source     string
				Account    string
				Detail     struct {
					Mail struct {
						Source, SendingAccountId string
						Destination              []string
						Tags                     map[string][]string
					}
				}
			}
			if err := json.Unmarshal(bodies[0], &doc); err != nil {
				t.Fatal(err)
			}
			m := doc.Detail.Mail
			if doc.DetailType != "Email Sent" || doc.Source != "aws.ses" || doc.Account != awsproxy.AccountDefault || m.SendingAccountId != awsproxy.AccountDefault ||
				m.Source != "reports@example.com" || len(m.Destination) != 1 || m.Destination[0] != to ||
				len(m.Tags["schedule"]) != 1 || m.Tags["schedule"][0] != "daily" || m.Tags["ses:configuration-set"][0] != awsproxy.ConfigurationSetDefault {
				t.Errorf("event does not read as SES writes one:\n%s", bodies[0])
			}
		})
	}

	t.Run("another configuration set", func(t *testing.T) {
		if _, err := sendTagged(ctx, c, "ana@example.com", "fedcba9876543210fedcba9876543210", "other-set"); err != nil {
			t.Fatal(err)
		}
		if bodies := pub.take(); len(bodies) != 0 {
			t.Errorf("%d events for an email of a configuration set without this destination", len(bodies))
		}
	})
}

// TestSESSendEventsToSQS: the event, published after the configured
// delay, lands on an SQS queue, as an EventBridge rule's target.
func TestSESSendEventsToSQS(t *testing.T) {
	ctx := context.Background()
	stack := startStack(t)
	q := createQueue(t, stack.SQSURL, "ses-events")
	emuURL := emulator.StartSESLocal(t, "")
	slept := make(chan time.Duration, 1)
	p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.SES, Target: emuURL,
		Sleep:     func(_ context.Context, d time.Duration) error { slept <- d; return nil },
		SESEvents: &awsproxy.SESEvents{Publish: awsproxy.PublishToSQS(sqsClient(stack.SQSURL), q), Delay: 2 * time.Second}})
	out, err := sendTagged(ctx, sesClient(p.URL), "ana@example.com", "00112233445566778899aabbccddeeff", "")
	if err != nil {
		t.Fatal(err)
	}
	if d := <-slept; d != 2*time.Second {
		t.Errorf("waited %s before publishing, want the 2s delay", d)
	}
	r, err := sqsClient(stack.SQSURL).ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &q, MaxNumberOfMessages: 10, WaitTimeSeconds: 5})
	if err != nil || len(r.Messages) != 1 {
		t.Fatalf("events queue: %d messages, %v; want the Send event", len(r.Messages), err)
	}
	ev, err := sesevents.Parse([]byte(aws.ToString(r.Messages[0].Body)))
	if err != nil || ev.MessageID != aws.ToString(out.MessageId) || ev.EmailID != "00112233445566778899aabbccddeeff" {
		t.Errorf("event %+v, %v; want the email's tag and message id %s", ev, err, aws.ToString(out.MessageId))
	}
}

// TestSESSendEventClientGone: a client that goes away once its SendEmail
// reached SES (a worker killed mid-call) does not stop SES: the email is
// accepted and its Send event published all the same.
func TestSESSendEventClientGone(t *testing.T) {
	emuURL := emulator.StartSESLocal(t, "")
	emu, err := url.Parse(emuURL)
	if err != nil {
		t.Fatal(err)
	}
	// In front of the emulator, holding each request until released:
	// the client leaves while SES has its request.
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	fwd := httputil.NewSingleHostReverseProxy(emu)
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(arrived) })
		<-release
		fwd.ServeHTTP(w, r.WithContext(context.WithoutCancel(r.Context())))
	}))
	t.Cleanup(gate.Close)
	events := make(chan []byte, 1)
	p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.SES, Target: gate.URL,
		SESEvents: &awsproxy.SESEvents{Publish: func(_ context.Context, b []byte) error { events <- b; return nil }}})
	c := sesv2.New(sesv2.Options{Region: "us-east-1", BaseEndpoint: aws.String(p.URL), Credentials: creds, RetryMaxAttempts: 1})

	ctx, cancel := context.WithCancel(context.Background())
	sent := make(chan error, 1)
	go func() {
		_, err := sendTagged(ctx, c, "ana@example.com", "aaaabbbbccccddddeeeeffff00001111", "")
		sent <- err
	}()
	<-arrived
	cancel()
	if err := <-sent; err == nil {
		t.Fatal("SendEmail succeeded though its client left")
	}
	close(release)
	var body []byte
	select {
	case body = <-events:
	case <-time.After(30 * time.Second): // a guard against hanging, not a measure
		t.Fatal("no Send event for the email SES accepted after its client left")
	}
	ev, err := sesevents.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	all, err := emulator.SESLocalEmails(context.Background(), emuURL, time.Time{})
	if err != nil || len(all) != 1 {
		t.Fatalf("emulator has %d emails, %v; want the one whose client left", len(all), err)
	}
	if ev.EmailID != "aaaabbbbccccddddeeeeffff00001111" || ev.MessageID != all[0].MessageID {
		t.Errorf("event %+v; want the email's tag and message id %s", ev, all[0].MessageID)
	}
	if got := p.Counts("SendEmail"); got.Forwarded != 1 || got.Published != 1 {
		t.Errorf("counts %+v; want 1 forwarded, 1 published", got)
	}
}
