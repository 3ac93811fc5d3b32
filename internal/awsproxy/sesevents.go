package awsproxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// SESEvents makes an SES proxy publish what a configuration set with an
// EventBridge event destination publishes, which aws-ses-v2-local does
// not: a Send event ("detail-type": "Email Sent") for every SendEmail
// the emulator accepted, in the shape of "Amazon SES event examples for
// EventBridge". It is published whatever the client then saw: an After
// fault replaces the answer, but SES had accepted the email. A request
// denied, or faulted before the emulator, publishes nothing.
type SESEvents struct {
	// Publish delivers one event's body, as the EventBridge rule's
	// target does (see PublishToSQS). Required.
	Publish func(ctx context.Context, body []byte) error
	// Delay is how long after the acceptance the event is published:
	// EventBridge delivers within seconds, not at once. With 0 it is
	// published before the proxy answers, so a test that sees the answer
	// (or its fault) finds the event on the queue.
	Delay time.Duration
	// ConfigurationSet is the name of the configuration set whose event
	// destination this is, and the sending identity's default one: an
	// email that names it or names none publishes events, an email that
	// names another does not. Default ConfigurationSetDefault.
	ConfigurationSet string
}

// ConfigurationSetDefault is SESEvents.ConfigurationSet's default.
const ConfigurationSetDefault = "reportmailer-events"

// PublishToSQS is an SESEvents.Publish that sends each event to the
// SQS queue at queueURL with c: give it a client of the emulator, not of
// a proxy, since it is AWS that delivers events, under no policy of the
// worker's.
func PublishToSQS(c *sqs.Client, queueURL string) func(context.Context, []byte) error {
	return func(ctx context.Context, body []byte) error {
		_, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String(string(body))})
		if err != nil {
			return fmt.Errorf("queue %s: %w", queueURL, err)
		}
		return nil
	}
}

// sendEmailRequest is the part of an SES v2 SendEmail request that
// SES copies into its events.
type sendEmailRequest struct {
	FromEmailAddress string
	Destination      struct {
		ToAddresses, CcAddresses, BccAddresses []string
	}
	Content struct {
		Simple *struct {
			Subject struct{ Data string }
			Headers []struct{ Name, Value string }
		}
	}
	EmailTags            []struct{ Name, Value string }
	ConfigurationSetName string
}

type header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// publishSend publishes the Send event of a SendEmail the emulator
// accepted with answer.
func (p *Proxy) publishSend(r *http.Request, request, answer []byte) {
	ev := p.opts.SESEvents
	set := ev.ConfigurationSet
	if set == "" {
		set = ConfigurationSetDefault
	}
	var req sendEmailRequest
	if err := json.Unmarshal(request, &req); err != nil {
		p.logf("SendEmail: no Send event: the request is not JSON: %v", err)
		return
	}
	if req.ConfigurationSetName != "" && req.ConfigurationSetName != set {
		return // another set's, with no event destination here
	}
	var res struct{ MessageId string }
	if err := json.Unmarshal(answer, &res); err != nil || res.MessageId == "" {
		p.logf("SendEmail: no Send event: the emulator's answer has no MessageId: %.200s", answer)
		return
	}
	body, err := p.sendEvent(r, req, set, res.MessageId, time.Now().UTC())
	if err != nil {
		p.logf("SendEmail: no Send event: %v", err)
		return
	}
	publish := func(ctx context.Context) {
		if err := ev.Publish(ctx, body); err != nil {
			p.logf("SendEmail: publishing the Send event of %s: %v", res.MessageId, err)
			return
		}
		p.count("SendEmail", func(c *Counts) { c.Published++ })
	}
	if ev.Delay <= 0 {
		publish(p.base)
		return
	}
	p.publishing.Go(func() {
		if p.opts.Sleep(p.base, ev.Delay) == nil {
			publish(p.base)
		}
	})
}

// sendEvent writes the EventBridge event SES publishes for an email it
// accepted as messageID at t.
func (p *Proxy) sendEvent(r *http.Request, req sendEmailRequest, set, messageID string, t time.Time) ([]byte, error) {
	source := req.FromEmailAddress
	if a, err := mail.ParseAddress(source); err == nil {
		source = a.Address
	}
	domain := source[strings.LastIndexByte(source, '@')+1:]
	d := req.Destination
	destination := append(append(append([]string{}, d.ToAddresses...), d.CcAddresses...), d.BccAddresses...)
	tags := map[string][]string{
		"ses:configuration-set": {set},
		"ses:source-ip":         {remoteIP(r)},
		"ses:from-domain":       {domain},
		"ses:caller-identity":   {"awsproxy"},
	}
	var tagHeader []string
	for _, tg := range req.EmailTags {
		tags[tg.Name] = []string{tg.Value}
		tagHeader = append(tagHeader, tg.Name+"="+tg.Value)
	}
	var subject string
	headers := []header{{"From", req.FromEmailAddress}, {"To", strings.Join(d.ToAddresses, ", ")}}
	if s := req.Content.Simple; s != nil {
		subject = s.Subject.Data
		headers = append(headers, header{"Subject", subject})
		for _, h := range s.Headers {
			headers = append(headers, header{h.Name, h.Value})
		}
	}
	headers = append(headers, header{"MIME-Version", "1.0"})
	if len(tagHeader) > 0 {
		headers = append(headers, header{"X-SES-MESSAGE-TAGS", strings.Join(tagHeader, ", ")})
	}
	common := map[string]any{"from": []string{req.FromEmailAddress}, "to": d.ToAddresses, "messageId": messageID, "subject": subject}
	if len(d.CcAddresses) > 0 {
		common["cc"] = d.CcAddresses
	}
	setARN := fmt.Sprintf("arn:aws:ses:%s:%s:configuration-set/%s", p.opts.Region, p.opts.Account, set)
	return json.Marshal(map[string]any{
		"version":     "0",
		"id":          newUUID(),
		"detail-type": "Email Sent",
		"source":      "aws.ses",
		"account":     p.opts.Account,
		"time":        t.Format(time.RFC3339),
		"region":      p.opts.Region,
		"resources":   []string{setARN},
		"detail": map[string]any{
			"eventType": "Send",
			"mail": map[string]any{
				"timestamp":        t.Format("2006-01-02T15:04:05.000Z"),
				"source":           source,
				"sourceArn":        fmt.Sprintf("arn:aws:ses:%s:%s:identity/%s", p.opts.Region, p.opts.Account, source),
				"sendingAccountId": p.opts.Account,
				"messageId":        messageID,
				"destination":      destination,
				"headersTruncated": false,
				"headers":          headers,
				"commonHeaders":    common,
				"tags":             tags,
			},
			"send": map[string]any{},
		},
	})
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// newUUID is a random version 4 UUID, as EventBridge event ids are.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
