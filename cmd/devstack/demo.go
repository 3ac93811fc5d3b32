package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/reportmailer/reportmailer/internal/devstack"
	"github.com/reportmailer/reportmailer/templates/eml"
)

// sample is a report file the demo uploads.
type sample struct {
	key, contentType string
	meta             map[string]string // user metadata, for S3-notified files
}

var samples = []sample{
	{key: "2026/11/Q3 results+notes.pdf", contentType: "application/pdf"},
	{key: "2026/11/Ventes décembre (final).csv", contentType: "text/csv"},
	{key: "inbox/bo/Monthly usage 100%+?.csv", contentType: "text/csv", meta: map[string]string{
		"user-id": "u-bo", "user-email": "bo@acme.example", "user-name": "Bo Berg",
		"user-timezone": "America/New_York", "title": "Monthly usage"}},
	{key: "inbox/chen/年度报告 #1.pdf", contentType: "application/pdf", meta: map[string]string{
		"user-id": "u-chen", "user-email": "chen@acme.example", "user-name": mime.BEncoding.Encode("utf-8", "陈静"),
		"user-timezone": "Asia/Shanghai", "recipients": "audit@eu.acme.example", "title": mime.BEncoding.Encode("utf-8", "年度报告")}},
}

func content(key string) []byte {
	return []byte(fmt.Sprintf("This is the report stored at key %q.\n", key))
}

func nativeEvent() string {
	ev := map[string]any{
		"version": 1, "type": "report.ready", "id": "evt-demo-0001",
		"user":       map[string]string{"id": "u-ana", "email": "ana@acme.example", "name": "Ana Lima", "locale": "en-GB", "time_zone": "Europe/London"},
		"recipients": []string{"cfo@acme.example", "mallory@evil.example"},
		"reports": []map[string]any{
			{"bucket": bucket, "key": samples[0].key, "title": "Q3 results", "type": "finance", "size": len(content(samples[0].key)), "content_type": samples[0].contentType},
			{"bucket": bucket, "key": samples[1].key, "title": "Ventes — décembre", "type": "sales", "size": len(content(samples[1].key)), "content_type": samples[1].contentType},
		},
	}
	b, _ := json.Marshal(ev)
	return string(b)
}

// s3Notification is what S3 puts on the queue: the key URL-encoded with
// '+' for space.
func s3Notification(key string) string {
	enc := strings.ReplaceAll(url.QueryEscape(key), "%2F", "/")
	b, _ := json.Marshal(map[string]any{"Records": []any{map[string]any{
		"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
		"eventTime": time.Now().UTC().Format(time.RFC3339Nano), "eventName": "ObjectCreated:Put",
		"s3": map[string]any{
			"bucket": map[string]any{"name": bucket, "arn": "arn:aws:s3:::" + bucket},
			"object": map[string]any{"key": enc, "size": len(content(key)), "eTag": fmt.Sprintf("%x", sha256.Sum256([]byte(key)))[:32], "sequencer": "0066A1B2C3D4E5F601"},
		},
	}}})
	return string(b)
}

func snsWrap(msg string) string {
	b, _ := json.Marshal(map[string]string{
		"Type": "Notification", "MessageId": "5f0e8a2c-0000-4000-8000-000000000001",
		"TopicArn": "arn:aws:sns:us-east-1:100010001000:report-uploads", "Subject": "Amazon S3 Notification",
		"Message": msg, "Timestamp": time.Now().UTC().Format(time.RFC3339), "SignatureVersion": "1",
	})
	return string(b)
}

const s3TestEvent = `{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-26T07:00:00.000Z","Bucket":"acme-reports","RequestId":"DEMO","HostId":"DEMO"}`

const poison = `{"version":1,"type":"report.ready","id":"evt-demo-bad","user":{"id":"u-x","email":"not-an-address"},"reports":[{"bucket":"acme-reports","key":"x.pdf"}]}`

func demo(ctx context.Context, bin, out string, w io.Writer, keepServing bool) error {
	logger := slog.New(slog.DiscardHandler)
	e, err := up(ctx, bin, out, logger)
	if err != nil {
		return err
	}
	defer e.close()
	fmt.Fprintf(w, "== reportmailer demo ==\nLocal stack (all on 127.0.0.1, in this process):\n  SQS %s   S3 %s   SES v2 %s   CloudFront-style edge %s\n",
		e.stack.SQSURL, e.stack.S3URL, e.stack.SESURL, e.edge.URL)
	fmt.Fprintf(w, "reportmailer reaches SQS, S3 and SES through a proxy that enforces, as IAM would,\nthe least-privilege policy `reportmailer iam` declares for the config (%s).\n\n",
		filepath.Join(out, "iam-policy.json"))

	fmt.Fprintf(w, "Uploaded %d reports to the private bucket s3://%s:\n", len(samples), bucket)
	for _, s := range samples {
		in := &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(s.key), Body: bytes.NewReader(content(s.key)), ContentType: aws.String(s.contentType), Metadata: s.meta}
		if _, err := e.s3.PutObject(ctx, in); err != nil {
			return fmt.Errorf("upload %q: %w", s.key, err)
		}
		fmt.Fprintf(w, "  %s\n", s.key)
	}

	msgs := []struct{ what, body string }{
		{"native event evt-demo-0001 for ana@acme.example, sharing with cfo@acme.example and mallory@evil.example", nativeEvent()},
		{"S3 ObjectCreated notification for " + samples[2].key, s3Notification(samples[2].key)},
		{"the same kind, wrapped in an SNS envelope, for " + samples[3].key, snsWrap(s3Notification(samples[3].key))},
		{"the s3:TestEvent S3 sends when a notification is configured", s3TestEvent},
		{"a poison message (the user's email is not an address)", poison},
	}
	fmt.Fprintf(w, "\nEnqueued %d messages on reports-ready:\n", len(msgs))
	for i, m := range msgs {
		if err := e.send(ctx, m.body); err != nil {
			return err
		}
		fmt.Fprintf(w, "  %d. %s\n", i+1, m.what)
	}

	fmt.Fprintf(w, "\nRunning the production binary, as a cron job would:\n  %s drain -config %s -schedule on-demand\n", bin, e.config)
	code, summary, err := e.reportmailer(ctx, w, filepath.Join(out, "drain.log"), "drain", "-config", e.config, "-schedule", "on-demand")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  exit %d (3 means some messages went to the dead-letter queue): %s\n", code, strings.TrimSpace(summary))

	var problems []string
	sent := e.stack.Sent()
	fmt.Fprintf(w, "\nEmails accepted by SES (%d), written to %s:\n", len(sent), filepath.Join(out, "emails"))
	var links []string
	for i, m := range sent {
		base := filepath.Join(out, "emails", fmt.Sprintf("%02d-%s", i+1, strings.Join(m.To, ",")))
		os.WriteFile(base+".html", []byte(m.HTML), 0o644)
		if b, err := emlFile(m); err != nil {
			problems = append(problems, fmt.Sprintf("email %d as .eml: %v", i+1, err))
		} else {
			os.WriteFile(base+".eml", b, 0o644)
		}
		fmt.Fprintf(w, "  %d. to %s: %q\n", i+1, strings.Join(m.To, ", "), m.Subject)
		for _, l := range linkRE.FindAllString(m.Text, -1) {
			links = append(links, l)
			fmt.Fprintf(w, "       %s\n", redact(l))
		}
		for _, line := range strings.Split(m.Text, "\n") {
			if strings.Contains(line, "Link expires") {
				fmt.Fprintf(w, "       %s\n", strings.TrimSpace(line))
				break
			}
		}
	}
	if len(sent) != 5 {
		problems = append(problems, fmt.Sprintf("expected 5 emails (ana, cfo, bo, chen, audit), got %d", len(sent)))
	}
	for _, m := range sent {
		for _, to := range m.To {
			if strings.HasSuffix(to, "@evil.example") {
				problems = append(problems, "a refused recipient was emailed: "+to)
			}
		}
	}

	dead, err := e.receiveAll(ctx, e.dlq)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nDead-letter queue (%d):\n", len(dead))
	var codes []string
	for _, m := range dead {
		code := aws.ToString(m.MessageAttributes["reportmailer-code"].StringValue)
		codes = append(codes, code)
		fmt.Fprintf(w, "  %s: reason: %s\n", code, aws.ToString(m.MessageAttributes["reportmailer-reason"].StringValue))
	}
	// The poison message, and the native event whose extra recipient's
	// domain is refused: sent to the others, then kept for a redrive
	// should the domain be allowed.
	slices.Sort(codes)
	if !slices.Equal(codes, []string{"invalid_event", "recipient_refused"}) {
		problems = append(problems, fmt.Sprintf("expected the poison message and the refused recipient's in the DLQ, found %v", codes))
	}

	fmt.Fprintf(w, "\nFollowing every link through the edge (it checks the signature with the public key):\n")
	ok := 0
	for _, l := range links {
		status, body, err := get(ctx, l)
		if err != nil {
			return err
		}
		key := objectKey(l)
		right := bytes.Equal(body, content(key))
		if status == 200 && right {
			ok++
		} else {
			problems = append(problems, fmt.Sprintf("link for %q: status %d, right content %v", key, status, right))
		}
		fmt.Fprintf(w, "  %d %-40q %d bytes, same as uploaded: %v\n", status, key, len(body), right)
	}
	// Emails go out concurrently, in no set order: tamper with the
	// first link to the Q3 report, wherever it is.
	if i := slices.IndexFunc(links, func(l string) bool { return strings.Contains(l, "Q3") }); i >= 0 {
		tampered := strings.Replace(links[i], "Q3", "Q4", 1)
		status, _, _ := get(ctx, tampered)
		fmt.Fprintf(w, "  %d for the first link to Q3 with Q3 changed to Q4 (as CloudFront would answer)\n", status)
		if status != 403 {
			problems = append(problems, fmt.Sprintf("a tampered link got %d, want 403", status))
		}
	}
	fmt.Fprintf(w, "  %d of %d links answered 200 with the right file\n", ok, len(links))

	// SQS delivers at least once: the same event again must not email again.
	if err := e.send(ctx, nativeEvent()); err != nil {
		return err
	}
	before := len(e.stack.Sent())
	fmt.Fprintf(w, "\nRedelivering evt-demo-0001 and draining again:\n")
	_, summary, err = e.reportmailer(ctx, nil, filepath.Join(out, "drain-again.log"), "drain", "-config", e.config, "-schedule", "on-demand")
	if err != nil {
		return err
	}
	extra := len(e.stack.Sent()) - before
	fmt.Fprintf(w, "  %s\n  new emails: %d (the ledger in s3://%s/reportmailer/ledger/ had them)\n", strings.TrimSpace(summary), extra, bucket)
	if extra != 0 {
		problems = append(problems, fmt.Sprintf("redelivery sent %d more emails", extra))
	}

	calls, denied, refusals := e.iamSummary()
	if denied == 0 {
		fmt.Fprintf(w, "\nIAM: every call allowed by the declared least-privilege policy (%d calls, 0 denied)\n", calls)
	} else {
		fmt.Fprintf(w, "\nIAM: %d of %d calls denied by the declared least-privilege policy:\n", denied, calls)
		for _, r := range refusals {
			fmt.Fprintf(w, "  %s\n", r)
		}
		problems = append(problems, fmt.Sprintf("the declared policy denied %d calls", denied))
	}
	if calls == 0 {
		problems = append(problems, "no call went through the permission proxies")
	}

	fmt.Fprintf(w, "\nFiles: %s (config, keys, iam-policy.json, drain.log, emails/*.html and *.eml)\n", out)
	if len(problems) > 0 {
		return fmt.Errorf("demo found problems:\n  %s", strings.Join(problems, "\n  "))
	}
	fmt.Fprintln(w, "Demo OK.")
	if keepServing {
		return serveInbox(ctx, e, w)
	}
	return nil
}

var linkRE = regexp.MustCompile(`https?://\S+`)

// redact shortens a link's signature: signatures stay out of output
// that people paste into tickets.
func redact(link string) string {
	return regexp.MustCompile(`(Signature=)([^&]{8})[^&]*`).ReplaceAllString(link, "${1}${2}…")
}

func objectKey(link string) string {
	u, err := url.Parse(link)
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Path, "/")
}

func get(ctx context.Context, link string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", link, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (e *env) send(ctx context.Context, body string) error {
	_, err := e.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(e.queueURL), MessageBody: aws.String(body)})
	if err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	return nil
}

// receiveAll empties a queue, returning its messages.
func (e *env) receiveAll(ctx context.Context, queueURL string) ([]sqsMessage, error) {
	var all []sqsMessage
	for {
		out, err := e.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
		if err != nil {
			return nil, fmt.Errorf("receive: %w", err)
		}
		if len(out.Messages) == 0 {
			return all, nil
		}
		for _, m := range out.Messages {
			all = append(all, m)
			e.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(queueURL), ReceiptHandle: m.ReceiptHandle})
		}
	}
}

// emlFile renders an accepted email as a MIME message a mail client opens.
func emlFile(m devstack.SentEmail) ([]byte, error) {
	return eml.Encode(eml.Message{
		From: m.From, To: m.To, ReplyTo: m.ReplyTo, Subject: m.Subject,
		Date: m.At, MessageID: m.MessageID + "@devstack.local",
		Text: m.Text, HTML: m.HTML,
	})
}
