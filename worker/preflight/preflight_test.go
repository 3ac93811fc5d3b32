package preflight

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/robfig/cron/v3"
)

func cronNext(t *testing.T, spec string) func(time.Time) time.Time {
	t.Helper()
	s, err := cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor).Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	return s.Next
}

func TestPeriod(t *testing.T) {
	from := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		spec string
		want time.Duration
	}{
		{"@every 1m", time.Minute},
		{"0 7 * * *", 24 * time.Hour},
		{"0 7 * * 1-5", 3 * 24 * time.Hour}, // Friday to Monday
		{"0 7 * * 1", 7 * 24 * time.Hour},
		{"0 7 1 * *", 31 * 24 * time.Hour},
		{"0 7 1 1,7 *", 184 * 24 * time.Hour}, // July to January
		{"0 7 30 2 *", Never},                 // February 30th never comes
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			if got := Period(cronNext(t, "CRON_TZ=UTC "+tt.spec), from); got != tt.want {
				t.Errorf("Period(%q) = %s, want %s", tt.spec, got, tt.want)
			}
		})
	}
}

func TestNeedRetention(t *testing.T) {
	tests := []struct {
		name     string
		period   time.Duration
		budget   time.Duration
		need     time.Duration
		possible bool
	}{
		{"daily", 24 * time.Hour, 10 * time.Minute, 48*time.Hour + 10*time.Minute, true},
		{"weekly fits 14 days", 7 * 24 * time.Hour, 10 * time.Minute, 8*24*time.Hour + 10*time.Minute, true},
		{"13 days with margin does not", 13 * 24 * time.Hour, 10 * time.Minute, 14*24*time.Hour + 10*time.Minute, false},
		{"monthly cannot", 31 * 24 * time.Hour, time.Minute, Never, false},
		{"never", Never, time.Minute, Never, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			need, ok := NeedRetention(tt.period, tt.budget)
			if need != tt.need || ok != tt.possible {
				t.Errorf("NeedRetention(%s, %s) = %s, %v; want %s, %v", tt.period, tt.budget, need, ok, tt.need, tt.possible)
			}
		})
	}
}

func secs(d time.Duration) string { return fmt.Sprint(int(d / time.Second)) }

func TestRetention(t *testing.T) {
	day := 24 * time.Hour
	from := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		spec   string // "" for no cron
		ingest time.Duration
		keep   time.Duration
		want   Status
		text   string
	}{
		{"monthly digest ingested every minute in 4 days", "0 7 1 * *", time.Minute, 4 * day, OK, "serve ingests this digest every 1m0s; with drain alone"},
		{"weekly digest in 14 days says nothing of drain", "0 7 * * 1", time.Minute, 14 * day, OK, "every 1m0s"},
		{"digest in half a day", "0 7 1 * *", time.Minute, 12 * time.Hour, Fail, "serve ingests this digest every 1m0s"},
		{"daily in 4 days", "0 7 * * *", 0, 4 * day, OK, "runs are at most 1 day apart"},
		{"weekly in 4 days", "0 7 * * 1", 0, 4 * day, Fail, "MessageRetentionPeriod=694800"}, // 8 days 10 min, rounded up to the hour
		{"weekly in 14 days", "0 7 * * 1", 0, 14 * day, OK, "at most 7 days apart"},
		{"monthly cannot fit", "0 7 1 * *", 0, 14 * day, Fail, "SQS keeps a message at most 14 days"},
		{"no cron", "", 0, 4 * day, OK, "no cron spec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Checker{Now: func() time.Time { return from }}
			s := Schedule{Name: "d", Field: "schedules[0]", QueueURL: "https://sqs.eu-west-2.amazonaws.com/1/q", Budget: 10 * time.Minute, IngestEvery: tt.ingest}
			if tt.spec != "" {
				s.Next = cronNext(t, "CRON_TZ=UTC "+tt.spec)
			}
			f := c.retention(s, map[string]string{"MessageRetentionPeriod": secs(tt.keep)}, "retention")
			if f.Status != tt.want || !strings.Contains(f.String(), tt.text) {
				t.Errorf("got %s\nwant %s containing %q", f, tt.want, tt.text)
			}
		})
	}
}

func TestDLQRetention(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		name     string
		src, dlq time.Duration
		want     Status
	}{
		{"longer", 4 * day, 14 * day, OK},
		{"both at the maximum", 14 * day, 14 * day, OK},
		{"equal", 4 * day, 4 * day, Warn},
		{"shorter", 4 * day, 2 * day, Fail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := dlqRetention(Schedule{DeadLetterURL: "u"}, map[string]string{"MessageRetentionPeriod": secs(tt.src)},
				map[string]string{"MessageRetentionPeriod": secs(tt.dlq)}, "dlq")
			if f.Status != tt.want {
				t.Errorf("got %s, want %s", f, tt.want)
			}
		})
	}
}

func TestVisibility(t *testing.T) {
	s := Schedule{QueueURL: "u", VisibilityTimeout: 5 * time.Minute}
	for attr, want := range map[string]Status{"300": OK, "900": OK, "30": Warn, "": Warn} {
		if f := visibility(s, map[string]string{"VisibilityTimeout": attr}, "v"); f.Status != want {
			t.Errorf("queue default %q: got %s, want %s (the worker sets its own on each receive, so never FAIL)", attr, f, want)
		}
	}
}

func TestRedrive(t *testing.T) {
	const dlqARN = "arn:aws:sqs:us-east-1:1:q-dlq"
	tests := []struct {
		name   string
		policy string
		dlqOK  bool
		want   Status
		text   string
	}{
		{"points at the DLQ, count as number", `{"deadLetterTargetArn":"` + dlqARN + `","maxReceiveCount":5}`, true, OK, "after 5 receives"},
		{"count as string", `{"deadLetterTargetArn":"` + dlqARN + `","maxReceiveCount":"3"}`, true, OK, "after 3 receives"},
		{"absent", "", true, Fail, "no RedrivePolicy"},
		{"elsewhere", `{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:other","maxReceiveCount":5}`, true, Fail, "not to the configured DLQ"},
		{"no count", `{"deadLetterTargetArn":"` + dlqARN + `"}`, true, Fail, "maxReceiveCount"},
		{"low count", `{"deadLetterTargetArn":"` + dlqARN + `","maxReceiveCount":1}`, true, Warn, "after 1 receive"},
		{"DLQ missing is reported once, not here", `{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:1:other","maxReceiveCount":5}`, false, Warn, "not compared"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Checker{}
			src := map[string]string{"RedrivePolicy": tt.policy}
			var dlq map[string]string
			if tt.dlqOK {
				dlq = map[string]string{"QueueArn": dlqARN}
			}
			f := c.redrive(Schedule{Field: "schedules[0]", QueueURL: "u"}, src, dlq, tt.dlqOK, "redrive")
			if f.Status != tt.want || !strings.Contains(f.Detail, tt.text) {
				t.Errorf("got %s\nwant %s containing %q", f, tt.want, tt.text)
			}
			if f.Status == Fail && !strings.Contains(f.Fix, "set-queue-attributes") {
				t.Errorf("fix %q does not say how to set the policy", f.Fix)
			}
		})
	}
}

func TestQueueRegion(t *testing.T) {
	for host, want := range map[string]string{
		"sqs.eu-west-2.amazonaws.com":     "eu-west-2",
		"eu-west-2.queue.amazonaws.com":   "eu-west-2",
		"sqs.cn-north-1.amazonaws.com.cn": "cn-north-1",
		"sqs.eu-west-2.api.aws":           "eu-west-2",
		"queue.amazonaws.com":             "us-east-1",
		"127.0.0.1:4100":                  "",
	} {
		if got := queueRegion(host); got != want {
			t.Errorf("queueRegion(%q) = %q, want %q", host, got, want)
		}
	}
}

func TestOriginBucket(t *testing.T) {
	tests := []struct {
		domain string
		bucket string
		ok     bool
	}{
		{"acme-reports.s3.amazonaws.com", "acme-reports", true},
		{"acme-reports.s3.eu-west-2.amazonaws.com", "acme-reports", true},
		{"acme-reports.s3-eu-west-2.amazonaws.com", "acme-reports", true},
		{"acme-reports.s3.dualstack.eu-west-2.amazonaws.com", "acme-reports", true},
		{"acme.reports.s3.us-east-1.amazonaws.com", "acme.reports", true},
		{"ACME-reports.S3.amazonaws.com.", "acme-reports", true},
		{"acme-reports.s3-website-eu-west-2.amazonaws.com", "", false},
		{"app.example.com", "", false},
		{"s3.amazonaws.com", "", false},
	}
	for _, tt := range tests {
		if b, ok := OriginBucket(tt.domain); b != tt.bucket || ok != tt.ok {
			t.Errorf("OriginBucket(%q) = %q, %v; want %q, %v", tt.domain, b, ok, tt.bucket, tt.ok)
		}
	}
}

func TestOriginFinding(t *testing.T) {
	origins := []Origin{
		{ID: "app", Domain: "app.example.com"},
		{ID: "reports", Domain: "acme-reports.s3.eu-west-2.amazonaws.com", Path: "/exports"},
	}
	tests := []struct {
		name   string
		bucket string
		path   string
		want   Status
		text   string
	}{
		{"bucket and path", "acme-reports", "/exports", OK, `origin reports serves bucket acme-reports`},
		{"path spelt without slashes", "acme-reports", "exports/", OK, "origin reports"},
		{"path differs", "acme-reports", "", Fail, `origin_path to "/exports"`},
		{"another bucket", "other-bucket", "", Fail, "has no origin for bucket other-bucket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := originFinding(&CloudFrontPlan{DistributionID: "E1", Bucket: tt.bucket, OriginPath: tt.path}, origins)
			if f.Status != tt.want || !strings.Contains(f.String(), tt.text) {
				t.Errorf("got %s\nwant %s containing %q", f, tt.want, tt.text)
			}
		})
	}
}

func TestDomainFinding(t *testing.T) {
	aliases := []string{"files.acme.example"}
	tests := []struct {
		domain  string
		checked bool
		want    Status
	}{
		{"https://files.acme.example/reports", true, OK},
		{"https://FILES.acme.example", true, OK},
		{"https://cdn.acme.example", true, Fail},
		{"https://d111111abcdef8.cloudfront.net", false, OK},
	}
	for _, tt := range tests {
		f, checked := domainFinding(&CloudFrontPlan{Domain: tt.domain}, aliases)
		if checked != tt.checked || (checked && f.Status != tt.want) {
			t.Errorf("%s: got %s (checked %v), want %s (checked %v)", tt.domain, f, checked, tt.want, tt.checked)
		}
	}
}

func pemPublic(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func TestPublicKeyMatches(t *testing.T) {
	rsa1, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa2, _ := rsa.GenerateKey(rand.Reader, 2048)
	ec1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tests := []struct {
		name    string
		encoded string
		pub     any
		want    bool
		err     bool
	}{
		{"RSA, same key", pemPublic(t, &rsa1.PublicKey), rsa1.Public(), true, false},
		{"RSA, with CloudFront's trailing newline and CRLF", strings.ReplaceAll(pemPublic(t, &rsa1.PublicKey), "\n", "\r\n") + "\n", rsa1.Public(), true, false},
		{"RSA, another key", pemPublic(t, &rsa2.PublicKey), rsa1.Public(), false, false},
		{"ECDSA, same key", pemPublic(t, &ec1.PublicKey), ec1.Public(), true, false},
		{"ECDSA against RSA", pemPublic(t, &ec1.PublicKey), rsa1.Public(), false, false},
		{"not PEM", "MIIBIjANBgkq", rsa1.Public(), false, true},
		{"empty", "", rsa1.Public(), false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PublicKeyMatches(tt.encoded, tt.pub)
			if got != tt.want || (err != nil) != tt.err {
				t.Errorf("PublicKeyMatches = %v, %v; want %v, error %v", got, err, tt.want, tt.err)
			}
		})
	}
}

// apiErr is an error as the SDK returns it: an API error inside a
// response error, with the HTTP status.
func apiErr(status int, code string) error {
	var inner error = &smithy.GenericAPIError{Code: code, Message: "m"}
	if code == "" {
		inner = errors.New("deserialization failed")
	}
	return &smithy.OperationError{ServiceID: "X", OperationName: "Op", Err: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: inner}}
}

func TestErrorClasses(t *testing.T) {
	tests := []struct {
		name          string
		err           error
		denied, unimp bool
	}{
		{"S3 AccessDenied", apiErr(403, "AccessDenied"), true, false},
		{"SES AccessDeniedException", apiErr(403, "AccessDeniedException"), true, false},
		{"HEAD 403 without a body", apiErr(403, ""), true, false},
		{"SES NotFoundException is an answer", apiErr(404, "NotFoundException"), false, false},
		{"CloudFront NoSuchPublicKey is an answer", apiErr(404, "NoSuchPublicKey"), false, false},
		{"an emulator's UnknownOperationException", apiErr(404, "UnknownOperationException"), false, true},
		{"an emulator's bare 404", apiErr(404, ""), false, true},
		{"throttling", apiErr(400, "ThrottlingException"), false, false},
		{"no response", &smithy.OperationError{Err: errors.New("dial tcp: connection refused")}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d, u := isDenied(tt.err), isUnimplemented(tt.err); d != tt.denied || u != tt.unimp {
				t.Errorf("denied %v, unimplemented %v; want %v, %v", d, u, tt.denied, tt.unimp)
			}
		})
	}
}

func TestFindingString(t *testing.T) {
	f := Finding{Area: "sqs", Name: "schedule d: queue", Status: Fail, Detail: "u does not exist", Fix: "create it"}
	if got, want := f.String(), "FAIL  sqs         schedule d: queue: u does not exist  (create it)"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	f = Finding{Area: "ses", Name: "account sending", Status: OK, Detail: "enabled"}
	if got, want := f.String(), "ok    ses         account sending: enabled"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestDays(t *testing.T) {
	for d, want := range map[time.Duration]string{
		7 * 24 * time.Hour:                    "7 days",
		24 * time.Hour:                        "1 day",
		8*24*time.Hour + time.Minute:          "8 days 1m",
		8*24*time.Hour + time.Hour:            "8 days 1h",
		13*24*time.Hour - time.Minute:         "12 days 23h59m",
		8*24*time.Hour + 10*time.Minute + 5e9: "8 days 10m",
		90 * time.Minute:                      "1h30m0s",
		Never:                                 "never",
	} {
		if got := days(d); got != want {
			t.Errorf("days(%s) = %q, want %q", d, got, want)
		}
	}
}
