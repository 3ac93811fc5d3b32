package main

// End-to-end tests: the real command, with its real aws-sdk-go-v2
// clients, against AWS emulators that other people wrote and that speak
// the AWS wire protocols. SQS runs twice, on goaws (in-process) and on
// fauxqs (npm); S3 is gofakes3 (in-process) and SES v2 is
// aws-ses-v2-local (npm). The test set-up starts and stops them all.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/reportmailer/reportmailer/internal/devstack"
	"github.com/reportmailer/reportmailer/internal/edge"
	"github.com/reportmailer/reportmailer/internal/emulator"
	"github.com/reportmailer/reportmailer/worker/iam"
	"github.com/reportmailer/reportmailer/worker/link"
)

const (
	itBucket = "it-reports"
	itKeyID  = "KITEST00000001"
)

// itEnv is one emulator set-up shared by the cases of a test. The
// command reaches the emulators only through permission proxies that
// enforce the declared least-privilege policy (aws_test.go); the test's
// own clients (sqs, s3, the edge, emails) talk to them directly.
type itEnv struct {
	name       string
	sqsURL     string // the emulators' URLs, not the command's
	s3URL      string
	sesURL     string
	lp         lpState
	sqs        *sqs.Client
	s3         *s3.Client
	key        *rsa.PrivateKey
	keyFile    string
	edge       *edge.Server
	started    time.Time
	queueCount int
}

// sqsEmulators lists the SQS emulators every case runs against.
var sqsEmulators = []string{"goaws", "fauxqs"}

func newITEnv(t *testing.T, sqsEmulator string) *itEnv {
	t.Helper()
	ctx := context.Background()
	stack, err := devstack.Start(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stack.Close() })
	e := &itEnv{name: sqsEmulator, s3URL: stack.S3URL, started: time.Now()}
	switch sqsEmulator {
	case "goaws":
		e.sqsURL = stack.SQSURL
	case "fauxqs":
		e.sqsURL = emulator.StartFauxqs(t)
	}
	e.sesURL = emulator.StartSESLocal(t, "")
	creds := credentials.NewStaticCredentialsProvider("test", "test", "")
	e.sqs = sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(e.sqsURL), Credentials: creds})
	e.s3 = s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(e.s3URL), UsePathStyle: true, Credentials: creds})
	if _, err := e.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(itBucket)}); err != nil {
		t.Fatal(err)
	}
	if e.key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	e.keyFile = filepath.Join(t.TempDir(), "cf.pem")
	der, _ := x509.MarshalPKCS8PrivateKey(e.key)
	os.WriteFile(e.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	if e.edge, err = edge.Start(&edge.Edge{S3: e.s3, Bucket: itBucket, Keys: map[string]crypto.PublicKey{itKeyID: e.key.Public()}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.edge.Close() })

	// The command finds everything the way it does in production: the
	// SDK's default chain and its AWS_ENDPOINT_URL_<SERVICE> variables,
	// which startProxies points at the permission proxies.
	for k, v := range map[string]string{
		"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		"AWS_PROFILE": "", "AWS_SESSION_TOKEN": "",
	} {
		t.Setenv(k, v)
	}
	e.startProxies(t)
	return e
}

// queues creates a fresh queue and dead-letter queue; goaws keeps its
// state for the whole process, so names are unique.
func (e *itEnv) queues(t *testing.T) (string, string) {
	t.Helper()
	ctx := context.Background()
	e.queueCount++
	name := fmt.Sprintf("it-%s-%d-%d", e.name, time.Now().UnixNano()%1e9, e.queueCount)
	dlq, err := e.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := e.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	redrive, _ := json.Marshal(map[string]string{"deadLetterTargetArn": attrs.Attributes["QueueArn"], "maxReceiveCount": "3"})
	q, err := e.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{"RedrivePolicy": string(redrive)}})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(q.QueueUrl), aws.ToString(dlq.QueueUrl)
}

// config writes a config for one schedule on queueURL and dlqURL, and
// widens the policy the env enforces by what the code declares for it
// and cmds (by default every command a deployment runs).
func (e *itEnv) config(t *testing.T, queueURL, dlqURL string, cmds ...iam.Command) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "reportmailer.yaml")
	cfg := fmt.Sprintf(`sender: {from: "Reports <reports@acme.example>"}
links:
  ttl: 48h
  cloudfront: {domain: %q, key_id: %s, private_key_file: %q}
recipients: {allowed_domains: [acme.example]}
reports: {bucket: %s}
ledger: {bucket: %s}
s3: {use_path_style: true}
http: {addr: "127.0.0.1:0"}
schedules:
  - {name: it, mode: each, queue_url: %q, dead_letter_queue_url: %q, wait_time: 1s, budget: 1m}
`, e.edge.URL, itKeyID, e.keyFile, itBucket, itBucket, queueURL, dlqURL)
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	e.allow(t, p, cmds...)
	return p
}

func (e *itEnv) put(t *testing.T, key string, meta map[string]string) {
	t.Helper()
	_, err := e.s3.PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(itBucket), Key: aws.String(key), Body: strings.NewReader("contents of " + key),
		ContentType: aws.String("application/pdf"), Metadata: meta,
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (e *itEnv) send(t *testing.T, queueURL, body string) {
	t.Helper()
	if _, err := e.sqs.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String(body)}); err != nil {
		t.Fatal(err)
	}
}

// drain runs "reportmailer drain" in-process and returns its exit code,
// stdout and logs.
func drain(t *testing.T, cfg string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: os.Getenv, Environ: os.Environ}
	code := m.Run(context.Background(), []string{"drain", "-config", cfg, "-schedule", "it"})
	return code, stdout.String(), stderr.String()
}

// emails returns what aws-ses-v2-local accepted for the given addresses.
func (e *itEnv) emails(t *testing.T, to ...string) []emulator.SESLocalEmail {
	t.Helper()
	all, err := emulator.SESLocalEmails(context.Background(), e.sesURL, e.started.Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var out []emulator.SESLocalEmail
	for _, m := range all {
		for _, addr := range m.To() {
			if slices.Contains(to, addr) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// dead empties the dead-letter queue and returns each message's code
// and reason, as "CODE: REASON".
func (e *itEnv) dead(t *testing.T, dlqURL string) []string {
	t.Helper()
	var reasons []string
	for {
		out, err := e.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(dlqURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			return reasons
		}
		for _, m := range out.Messages {
			reasons = append(reasons, aws.ToString(m.MessageAttributes["reportmailer-code"].StringValue)+": "+aws.ToString(m.MessageAttributes["reportmailer-reason"].StringValue))
			e.sqs.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(dlqURL), ReceiptHandle: m.ReceiptHandle})
		}
	}
}

// queueEmpty reports whether nothing is left on the queue, visible or
// in flight: every message was acknowledged.
func (e *itEnv) queueEmpty(t *testing.T, queueURL string) bool {
	t.Helper()
	out, err := e.sqs.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(queueURL), AttributeNames: []sqstypes.QueueAttributeName{
		sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible}})
	if err != nil {
		t.Fatal(err)
	}
	return out.Attributes["ApproximateNumberOfMessages"] == "0" && out.Attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
}

var urlRE = regexp.MustCompile(`https?://[^\s"<>]+`)

// checkLinks verifies that every link in the email's text part is
// signed by the test key, names exactly one of keys, and opens that
// object through the edge.
func (e *itEnv) checkLinks(t *testing.T, m emulator.SESLocalEmail, keys ...string) {
	t.Helper()
	links := urlRE.FindAllString(m.Text, -1)
	if len(links) != len(keys) {
		t.Fatalf("email to %v has %d links, want %d:\n%s", m.To(), len(links), len(keys), m.Text)
	}
	for i, l := range links {
		v, err := link.Verify(l, func(id string) (crypto.PublicKey, bool) { return e.key.Public(), id == itKeyID }, time.Now())
		if err != nil {
			t.Errorf("link %d does not verify: %v", i, err)
			continue
		}
		if d := time.Until(v.Expires); d < 47*time.Hour || d > 48*time.Hour {
			t.Errorf("link %d expires in %s, want the configured 48h", i, d)
		}
		u, _ := url.Parse(l)
		if got := strings.TrimPrefix(u.Path, "/"); got != keys[i] {
			t.Errorf("link %d names object %q, want %q", i, got, keys[i])
		}
		resp, err := http.Get(l)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "contents of "+keys[i] {
			t.Errorf("link %d through the edge: %d %q, want 200 and the contents of %q", i, resp.StatusCode, body, keys[i])
		}
	}
}

func nativeBody(id, user string, recipients []string, keys ...string) string {
	var reps []map[string]any
	for _, k := range keys {
		reps = append(reps, map[string]any{"bucket": itBucket, "key": k, "title": "Title of " + path(k)})
	}
	b, _ := json.Marshal(map[string]any{"version": 1, "type": "report.ready", "id": id,
		"user":       map[string]string{"id": user, "email": user + "@acme.example", "name": "User " + user, "time_zone": "Europe/London"},
		"recipients": recipients, "reports": reps})
	return string(b)
}

func path(k string) string { return k[strings.LastIndexByte(k, '/')+1:] }

func s3Body(key string) string {
	enc := strings.ReplaceAll(url.QueryEscape(key), "%2F", "/")
	return fmt.Sprintf(`{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2026-11-26T07:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"s3SchemaVersion":"1.0","bucket":{"name":%q},"object":{"key":%q,"size":10,"eTag":"abc","sequencer":"00A1B2C3D4"}}}]}`, itBucket, enc)
}

func snsBody(inner string) string {
	b, _ := json.Marshal(map[string]string{"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": inner, "Timestamp": "2026-11-26T07:00:00.000Z"})
	return string(b)
}

func TestDrainEndToEnd(t *testing.T) {
	for _, emu := range sqsEmulators {
		t.Run(emu, func(t *testing.T) {
			e := newITEnv(t, emu)

			t.Run("native event", func(t *testing.T) {
				q, dlq := e.queues(t)
				key := "native/" + emu + "/Q3 results+notes 100%.pdf"
				e.put(t, key, nil)
				e.send(t, q, nativeBody("evt-native-"+emu, "ana-"+emu, []string{"cfo-" + emu + "@acme.example"}, key))
				code, out, logs := drain(t, e.config(t, q, dlq))
				if code != ExitOK {
					t.Fatalf("exit %d: %s\n%s", code, out, logs)
				}
				got := e.emails(t, "ana-"+emu+"@acme.example", "cfo-"+emu+"@acme.example")
				if len(got) != 2 {
					t.Fatalf("got %d emails, want one to the user and one to the allowed recipient\n%s", len(got), logs)
				}
				for _, m := range got {
					if m.Subject != "Your report is ready: Title of Q3 results+notes 100%.pdf" {
						t.Errorf("subject %q", m.Subject)
					}
					if m.From != "Reports <reports@acme.example>" {
						t.Errorf("from %q", m.From)
					}
					e.checkLinks(t, m, key)
				}
				if !e.queueEmpty(t, q) {
					t.Error("the message was not deleted")
				}
			})

			t.Run("redelivered event is not sent twice", func(t *testing.T) {
				q, dlq := e.queues(t)
				key := "again/" + emu + "/a.pdf"
				e.put(t, key, nil)
				body := nativeBody("evt-again-"+emu, "dup-"+emu, nil, key)
				cfg := e.config(t, q, dlq)
				e.send(t, q, body)
				if code, out, logs := drain(t, cfg); code != ExitOK {
					t.Fatalf("exit %d: %s\n%s", code, out, logs)
				}
				e.send(t, q, body)
				code, out, _ := drain(t, cfg)
				if code != ExitOK || !strings.Contains(out, "sent 0 emails") || !strings.Contains(out, "duplicates 1") {
					t.Errorf("second drain: exit %d, %s", code, out)
				}
				if got := e.emails(t, "dup-"+emu+"@acme.example"); len(got) != 1 {
					t.Errorf("the user got %d emails for one event delivered twice, want 1", len(got))
				}
			})

			t.Run("S3 notification with an encoded key", func(t *testing.T) {
				q, dlq := e.queues(t)
				key := "s3/" + emu + "/Relatório anual+2026 #1?.pdf"
				e.put(t, key, map[string]string{"user-email": "bo-" + emu + "@acme.example", "user-id": "bo", "title": "Annual report", "recipients": "audit-" + emu + "@acme.example"})
				e.send(t, q, s3Body(key))
				code, out, logs := drain(t, e.config(t, q, dlq))
				if code != ExitOK {
					t.Fatalf("exit %d: %s\n%s", code, out, logs)
				}
				got := e.emails(t, "bo-"+emu+"@acme.example", "audit-"+emu+"@acme.example")
				if len(got) != 2 {
					t.Fatalf("got %d emails, want 2\n%s", len(got), logs)
				}
				for _, m := range got {
					if m.Subject != "Your report is ready: Annual report" {
						t.Errorf("subject %q", m.Subject)
					}
					e.checkLinks(t, m, key)
				}
			})

			t.Run("SNS-wrapped notification", func(t *testing.T) {
				q, dlq := e.queues(t)
				key := "sns/" + emu + "/weekly summary.pdf"
				e.put(t, key, map[string]string{"user-email": "chen-" + emu + "@acme.example", "title": "Weekly summary"})
				e.send(t, q, snsBody(s3Body(key)))
				code, out, logs := drain(t, e.config(t, q, dlq))
				if code != ExitOK {
					t.Fatalf("exit %d: %s\n%s", code, out, logs)
				}
				got := e.emails(t, "chen-"+emu+"@acme.example")
				if len(got) != 1 || got[0].Subject != "Your report is ready: Weekly summary" {
					t.Fatalf("got %d emails (%v), want 1 with the title\n%s", len(got), got, logs)
				}
				e.checkLinks(t, got[0], key)
			})

			t.Run("S3 test event is deleted quietly", func(t *testing.T) {
				q, dlq := e.queues(t)
				e.send(t, q, `{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-26T07:00:00.000Z","Bucket":"it-reports","RequestId":"r","HostId":"h"}`)
				code, out, logs := drain(t, e.config(t, q, dlq))
				if code != ExitOK || !strings.Contains(out, "dropped 1") || !strings.Contains(out, "sent 0 emails") {
					t.Fatalf("exit %d: %s\n%s", code, out, logs)
				}
				if !e.queueEmpty(t, q) || len(e.dead(t, dlq)) != 0 {
					t.Error("the test event should be deleted, not kept or dead-lettered")
				}
			})

			t.Run("poison message goes to the DLQ with its reason and the batch goes on", func(t *testing.T) {
				q, dlq := e.queues(t)
				key := "poison/" + emu + "/ok.pdf"
				e.put(t, key, nil)
				e.send(t, q, `{"version":1,"type":"report.ready","id":"p","user":{"id":"u","email":"bob@@acme"},"reports":[{"bucket":"it-reports","key":"x"}]}`)
				e.send(t, q, `this is not JSON`)
				e.send(t, q, nativeBody("evt-after-poison-"+emu, "fine-"+emu, nil, key))
				code, out, logs := drain(t, e.config(t, q, dlq))
				if code != ExitPartial || !strings.Contains(out, "dead-lettered 2") {
					t.Fatalf("exit %d, want %d: %s\n%s", code, ExitPartial, out, logs)
				}
				reasons := e.dead(t, dlq)
				slices.Sort(reasons)
				if len(reasons) != 2 || !strings.Contains(strings.Join(reasons, "\n"), `user.email: "bob@@acme"`) {
					t.Errorf("DLQ reasons = %q, want both poison messages, one naming user.email and its value", reasons)
				}
				if got := e.emails(t, "fine-"+emu+"@acme.example"); len(got) != 1 {
					t.Errorf("the good message in the same batch got %d emails, want 1", len(got))
				}
				if !e.queueEmpty(t, q) {
					t.Error("source queue should be empty")
				}
			})

			t.Run("a missing report, or one in another bucket, is dead-lettered and nothing is sent", func(t *testing.T) {
				q, dlq := e.queues(t)
				// The same key exists in the served bucket: a link built
				// from the key alone would open it.
				elsewhere := "elsewhere/" + emu + "/payroll.pdf"
				e.put(t, elsewhere, nil)
				other := strings.Replace(nativeBody("evt-other-bucket-"+emu, "leak-"+emu, nil, elsewhere), `"bucket":"`+itBucket+`"`, `"bucket":"hr-private"`, 1)
				e.send(t, q, other)
				e.send(t, q, nativeBody("evt-missing-"+emu, "gone-"+emu, nil, "missing/"+emu+"/never-uploaded.pdf"))
				code, out, logs := drain(t, e.config(t, q, dlq))
				if code != ExitPartial || !strings.Contains(out, "dead-lettered 2") || !strings.Contains(out, "sent 0 emails") {
					t.Fatalf("exit %d, want %d: %s\n%s", code, ExitPartial, out, logs)
				}
				reasons := e.dead(t, dlq)
				slices.Sort(reasons)
				want := []string{
					`bucket_not_served: report s3://hr-private/` + elsewhere + `: bucket "hr-private" is not the bucket this worker serves, "` + itBucket + `"`,
					`object_missing: head s3://` + itBucket + `/missing/` + emu + `/never-uploaded.pdf: object does not exist`,
				}
				if len(reasons) != 2 || !strings.HasPrefix(reasons[0], want[0]) || !strings.HasPrefix(reasons[1], want[1]) {
					t.Errorf("DLQ codes and reasons:\n%s\nwant them to start with:\n%s", strings.Join(reasons, "\n"), strings.Join(want, "\n"))
				}
				if got := e.emails(t, "leak-"+emu+"@acme.example", "gone-"+emu+"@acme.example"); len(got) != 0 {
					t.Errorf("%d emails were sent for reports that cannot be linked", len(got))
				}
				if !e.queueEmpty(t, q) {
					t.Error("source queue should be empty")
				}
			})

			t.Run("refused recipient is never emailed", func(t *testing.T) {
				q, dlq := e.queues(t)
				key := "refused/" + emu + "/r.pdf"
				e.put(t, key, nil)
				evil := "mallory-" + emu + "@evil.example"
				e.send(t, q, nativeBody("evt-refused-"+emu, "dan-"+emu, []string{evil, "x\r\nBcc: y@acme.example"}, key))
				code, out, logs := drain(t, e.config(t, q, dlq))
				// The bad domain could be allowed by config: after the
				// user's email the message waits in the dead-letter queue.
				if code != ExitPartial || !strings.Contains(out, "refused 2") || !strings.Contains(out, "dead-lettered 1") {
					t.Fatalf("exit %d: %s\n%s", code, out, logs)
				}
				if reasons := e.dead(t, dlq); len(reasons) != 1 || !strings.HasPrefix(reasons[0], "recipient_refused: ") || !strings.Contains(reasons[0], evil) {
					t.Errorf("dead letters %q, want one recipient_refused naming %s", reasons, evil)
				}
				if got := e.emails(t, evil, "y@acme.example"); len(got) != 0 {
					t.Errorf("a refused recipient got %d emails", len(got))
				}
				if got := e.emails(t, "dan-"+emu+"@acme.example"); len(got) != 1 {
					t.Errorf("the user got %d emails, want 1", len(got))
				}
				if !strings.Contains(logs, "recipient refused") || !strings.Contains(logs, evil) || !strings.Contains(logs, "domain evil.example is not allowed") {
					t.Errorf("refusal not logged with its reason:\n%s", logs)
				}
			})
		})
	}
}

// TestDrainLogsNoSecrets: a run logged at debug level shows no signed
// URL (no Signature= or Policy= at all), no key material and no AWS
// secret.
func TestDrainLogsNoSecrets(t *testing.T) {
	e := newITEnv(t, "goaws")
	q, dlq := e.queues(t)
	key := "secret/a.pdf"
	e.put(t, key, nil)
	e.send(t, q, nativeBody("evt-secret", "sec", nil, key))
	cfg := e.config(t, q, dlq)
	// Debug logging is where secrets usually leak.
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(b, []byte("log: {level: debug}\n")...), 0o644)
	code, out, logs := drain(t, cfg)
	if code != ExitOK {
		t.Fatalf("exit %d: %s\n%s", code, out, logs)
	}
	got := e.emails(t, "sec@acme.example")
	if len(got) != 1 {
		t.Fatalf("got %d emails", len(got))
	}
	sig := regexp.MustCompile(`Signature=([^&\s]+)`).FindStringSubmatch(got[0].Text)
	pemKey, _ := os.ReadFile(e.keyFile)
	for what, secret := range map[string]string{
		"URL signature":     sig[1],
		"a signed URL":      "Signature=",
		"a signed policy":   "Policy=",
		"private key":       string(pemKey[40:80]),
		"a PEM block":       "-----BEGIN",
		"secret access key": "AWS_SECRET_ACCESS_KEY=test",
	} {
		if strings.Contains(logs+out, secret) {
			t.Errorf("the %s appears in the output", what)
		}
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(`sender: {from: a@acme.example}
reports: {bucket: acme-reports}
ledger: {bucket: b}
schedules: [{name: d, cron: "0 7 * * *", time_zone: Europe/London, queue_url: "https://sqs.eu-west-2.amazonaws.com/1/q", dead_letter_queue_url: "https://sqs.eu-west-2.amazonaws.com/1/d"}]
`), 0o644)
	// A domain the field check lets through but the signer refuses:
	// config check must refuse it too, as drain would.
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	keyFile := filepath.Join(dir, "cf.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	userinfo := filepath.Join(dir, "userinfo.yaml")
	os.WriteFile(userinfo, []byte(fmt.Sprintf(`sender: {from: a@acme.example}
reports: {bucket: acme-reports}
ledger: {bucket: b}
links: {cloudfront: {domain: "https://user@d111.cloudfront.net", key_id: K1, private_key_file: %q}}
`, keyFile)), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("sender: {from: a@acme.example}\nreports: {bucket: acme-reports}\nledger: {bucket: b}\nschedules: [{name: d, mode: weekly, queue_url: x, dead_letter_queue_url: y}]\n"), 0o644)
	tests := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"valid", []string{"config", "check", "-config", good}, ExitOK, "config OK"},
		{"invalid names the field and value", []string{"config", "check", "-config", bad}, ExitFailure, `schedules[0].mode: "weekly" is not each or digest`},
		{"missing flag", []string{"config", "check"}, ExitUsage, "-config is required"},
		{"what drain's signer refuses", []string{"config", "check", "-config", userinfo}, ExitFailure, "domain must not have user info"},
		{"help", []string{"drain", "-help"}, ExitOK, "Usage: reportmailer drain"},
		{"unknown command", []string{"frobnicate"}, ExitUsage, `unknown command "frobnicate"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("REPORTMAILER_CONFIG", "")
			var out bytes.Buffer
			m := &Main{Stdout: &out, Stderr: &out, Getenv: os.Getenv, Environ: os.Environ}
			if code := m.Run(context.Background(), tt.args); code != tt.code || !strings.Contains(out.String(), tt.out) {
				t.Errorf("exit %d, output:\n%s\nwant exit %d and %q", code, out.String(), tt.code, tt.out)
			}
		})
	}
}

func TestServeDeliversOnScheduleAndStopsGracefully(t *testing.T) {
	e := newITEnv(t, "goaws")
	q, dlq := e.queues(t)
	cfg := e.config(t, q, dlq)
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, bytes.Replace(b, []byte("{name: it, mode: each,"), []byte(`{name: it, cron: "@every 1s", mode: each,`), 1), 0o644)
	key := "serve/a.pdf"
	e.put(t, key, nil)
	e.send(t, q, nativeBody("evt-serve", "srv", nil, key))

	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		m := &Main{Stdout: io.Discard, Stderr: &stderr, Getenv: os.Getenv, Environ: os.Environ}
		done <- m.Run(ctx, []string{"serve", "-config", cfg})
	}()
	// Wait for the scheduled run to deliver; the bound only stops a
	// broken build from hanging the suite.
	deadline := time.Now().Add(30 * time.Second)
	for len(e.emails(t, "srv@acme.example")) == 0 {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no email from serve\n%s", stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel() // what the first SIGTERM does
	select {
	case code := <-done:
		if code != ExitOK {
			t.Errorf("serve exit %d after shutdown, want 0\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop after cancel\n%s", stderr.String())
	}
	logs := stderr.String()
	for _, want := range []string{`msg=scheduled schedule=it cron="@every 1s"`, "shutting down", "msg=stopped"} {
		if !strings.Contains(logs, want) {
			t.Errorf("serve logs lack %q:\n%s", want, logs)
		}
	}
	if n := len(e.emails(t, "srv@acme.example")); n != 1 {
		t.Errorf("%d emails for one event across several scheduled runs, want 1", n)
	}
	// Each slot that ran left a run record; the one that sent names
	// the delivery.
	code, out, errOut := run(t, "history", "-config", cfg, "-json")
	var runs []*runRecord
	if err := json.Unmarshal([]byte(out), &runs); code != ExitOK || err != nil || len(runs) == 0 {
		t.Fatalf("history: exit %d, %v: %s%s", code, err, out, errOut)
	}
	sent := 0
	for _, r := range runs {
		if r.Command != "serve" || r.PlannedAt.IsZero() || r.Schedule != "it" {
			t.Errorf("run %+v: want a serve slot of it with its planned time", r)
		}
		for _, d := range r.Deliveries {
			if d.EventID == "evt-serve" && d.Recipient == "srv@acme.example" && d.Outcome == "delivered" && d.MessageID != "" {
				sent++
			}
		}
	}
	if sent != 1 {
		t.Errorf("history shows the delivery sent %d times over %d runs, want once", sent, len(runs))
	}
}

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestBinaryLinksNoTestInfrastructure keeps out of the production
// binary what can never run in its image: anything under internal/ (the
// emulators, the local stack, the edge, the permission proxy), the
// emulator libraries, and the headless-browser client (chromedp, ~70
// packages) behind screenshots.
func TestBinaryLinksNoTestInfrastructure(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/reportmailer/reportmailer/templates") {
		t.Fatalf("go list -deps gave no templates package; is it listing this binary?\n%s", out)
	}
	for _, dep := range deps {
		if strings.HasPrefix(dep, "github.com/reportmailer/reportmailer/internal/") {
			t.Errorf("the production binary depends on %s", dep)
			continue
		}
		for _, banned := range []string{"goaws", "gofakes3", "chromedp", "templates/browser"} {
			if strings.Contains(dep, banned) {
				t.Errorf("the production binary depends on %s", dep)
			}
		}
	}
}
