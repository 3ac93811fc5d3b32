package link

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
)

const (
	testAccessKey = "AKIAIOSFODNN7EXAMPLE"
	testSecretKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	testToken     = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN"
)

// credsFunc returns credentials that expire at expires, or never when
// expires is zero.
func credsFunc(expires time.Time) aws.CredentialsProviderFunc {
	return func(context.Context) (aws.Credentials, error) {
		c := aws.Credentials{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey, Source: "test"}
		if !expires.IsZero() {
			c.SessionToken, c.CanExpire, c.Expires = testToken, true, expires
		}
		return c, nil
	}
}

// newPresignClient builds a client whose presigning makes no network
// call: the endpoint is never dialled.
func newPresignClient(creds aws.CredentialsProvider) *s3.PresignClient {
	return s3.NewPresignClient(s3.New(s3.Options{
		Region:       "eu-west-2",
		Credentials:  creds,
		BaseEndpoint: aws.String("http://127.0.0.1:1"),
		UsePathStyle: true,
	}))
}

func TestS3PresignerSign(t *testing.T) {
	const hour = time.Hour
	signedAt := time.Unix(testNow.Unix(), 0).UTC()
	tests := []struct {
		name         string
		ttl          time.Duration
		credsExpire  time.Time // zero: long-term keys
		nilProvider  bool      // leave S3Presigner.Credentials nil
		wantAmzTTL   string
		wantExpires  time.Time
		wantWarnings []string
	}{
		{"plain ttl", 72 * hour, time.Time{}, false, "259200", signedAt.Add(72 * hour), nil},
		// now+ttl is 13:30:01.25, so the link ends at 13:30:01.
		{"fractions dropped", 90*time.Minute + 500*time.Millisecond, time.Time{}, false, "5401", signedAt.Add(90*time.Minute + time.Second), nil},
		{"exactly 7 days", 7 * 24 * hour, time.Time{}, false, "604800", signedAt.Add(7 * 24 * hour), nil},
		{"over 7 days capped", 10 * 24 * hour, time.Time{}, false, "604800", signedAt.Add(7 * 24 * hour), []string{capReasonS3Max}},
		{"credentials expire in 1h", 72 * hour, testNow.Add(hour), false, "3600", signedAt.Add(hour), []string{capReasonCredentials}},
		{"credentials expire after ttl", hour, testNow.Add(2 * hour), false, "3600", signedAt.Add(hour), nil},
		{"credentials expire at odd time", 72 * hour, testNow.Add(hour + 10*time.Second + 100*time.Millisecond), false, "3610", signedAt.Add(hour + 10*time.Second), []string{capReasonCredentials}},
		{"both caps", 10 * 24 * hour, testNow.Add(hour), false, "3600", signedAt.Add(hour), []string{capReasonS3Max, capReasonCredentials}},
		{"no provider, client credentials expire", 72 * hour, testNow.Add(hour), true, "259200", testNow.Add(hour), []string{capReasonSigningCred}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			creds := credsFunc(tt.credsExpire)
			p := &S3Presigner{
				Client:      newPresignClient(creds),
				Credentials: creds,
				TTL:         tt.ttl,
				Logger:      slog.New(slog.NewTextHandler(&logs, nil)),
			}
			if tt.nilProvider {
				p.Credentials = nil
			}
			r := event.Report{Bucket: "private-reports", Key: "reports/Q1 2026/a+b.pdf"}
			var link worker.Link
			for range 3 { // warnings are logged once
				var err error
				link, err = p.Sign(context.Background(), r, testNow)
				if err != nil {
					t.Fatal(err)
				}
			}
			u, err := url.Parse(link.URL)
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			if got := q.Get("X-Amz-Expires"); got != tt.wantAmzTTL {
				t.Errorf("X-Amz-Expires = %s, want %s", got, tt.wantAmzTTL)
			}
			if got, want := q.Get("X-Amz-Date"), signedAt.Format("20060102T150405Z"); got != want {
				t.Errorf("X-Amz-Date = %s, want %s", got, want)
			}
			if !link.Expires.Equal(tt.wantExpires) {
				t.Errorf("Link.Expires = %v, want %v", link.Expires, tt.wantExpires)
			}
			if tt.nilProvider == false {
				// Without the provider, X-Amz-Expires overstates; otherwise
				// it is the truth.
				d, err := time.ParseDuration(tt.wantAmzTTL + "s")
				if err != nil {
					t.Fatal(err)
				}
				if got := signedAt.Add(d); !got.Equal(link.Expires) {
					t.Errorf("X-Amz-Date + X-Amz-Expires = %v, Link.Expires = %v", got, link.Expires)
				}
			}
			if got, want := u.EscapedPath(), "/private-reports/reports/Q1%202026/a%2Bb.pdf"; got != want {
				t.Errorf("path = %s, want %s", got, want)
			}
			if u.Host != "127.0.0.1:1" {
				t.Errorf("host = %s", u.Host)
			}

			out := logs.String()
			if n := strings.Count(out, "level=WARN"); n != len(tt.wantWarnings) {
				t.Errorf("%d warnings, want %d:\n%s", n, len(tt.wantWarnings), out)
			}
			for _, w := range tt.wantWarnings {
				if strings.Count(out, w) != 1 {
					t.Errorf("warning %q not logged once:\n%s", w, out)
				}
			}
			for _, secret := range []string{testSecretKey, testToken, testAccessKey, q.Get("X-Amz-Signature")} {
				if strings.Contains(out, secret) {
					t.Errorf("log leaks a secret:\n%s", out)
				}
			}
		})
	}
}

func TestS3PresignerNastyKeys(t *testing.T) {
	creds := credsFunc(time.Time{})
	p := &S3Presigner{Client: newPresignClient(creds), Credentials: creds, TTL: time.Hour}
	for _, key := range nastyKeys {
		t.Run(key, func(t *testing.T) {
			link, err := p.Sign(context.Background(), event.Report{Bucket: "b", Key: key}, testNow)
			if err != nil {
				t.Fatal(err)
			}
			raw, _, _ := strings.Cut(link.URL, "?")
			got, err := url.PathUnescape(strings.TrimPrefix(raw, "http://127.0.0.1:1/b"))
			if err != nil || got != "/"+key {
				t.Fatalf("path decodes to %q (%v), want %q", got, err, "/"+key)
			}
			for i, r := range link.URL {
				if r > 0x7e || r <= ' ' || r == '#' {
					t.Fatalf("URL has %q at %d: %s", r, i, link.URL)
				}
			}
		})
	}
}

func TestS3PresignerErrors(t *testing.T) {
	okCreds := credsFunc(time.Time{})
	tests := []struct {
		name          string
		p             *S3Presigner
		r             event.Report
		wantErr       string
		wantPermanent bool
	}{
		{"no client", &S3Presigner{TTL: time.Hour}, event.Report{Bucket: "b", Key: "k"}, "s3 presign: no client", false},
		{"no ttl", &S3Presigner{Client: newPresignClient(okCreds)}, event.Report{Bucket: "b", Key: "k"}, "ttl 0s is too short", false},
		{"no bucket", &S3Presigner{Client: newPresignClient(okCreds), TTL: time.Hour}, event.Report{Key: "k"}, "no bucket", true},
		{"dot-dot key", &S3Presigner{Client: newPresignClient(okCreds), TTL: time.Hour}, event.Report{Bucket: "b", Key: "a/../k"}, `".." segment`, true},
		{"credentials expired", &S3Presigner{Client: newPresignClient(okCreds), Credentials: credsFunc(testNow.Add(-time.Minute)), TTL: time.Hour},
			event.Report{Bucket: "b", Key: "k"}, "too soon to sign", false},
		{"credentials error", &S3Presigner{Client: newPresignClient(okCreds), TTL: time.Hour,
			Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
				return aws.Credentials{}, errors.New("imds unreachable")
			})},
			event.Report{Bucket: "b", Key: "k"}, "s3 presign: credentials: imds unreachable", false},
		{"client credentials expired", &S3Presigner{Client: newPresignClient(credsFunc(testNow.Add(-time.Minute))), TTL: time.Hour},
			event.Report{Bucket: "b", Key: "k"}, "expired", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.p.Logger = slog.New(slog.DiscardHandler)
			_, err := tt.p.Sign(context.Background(), tt.r, testNow)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
			if got := worker.IsPermanent(err); got != tt.wantPermanent {
				t.Fatalf("IsPermanent = %v, want %v", got, tt.wantPermanent)
			}
			if strings.Contains(err.Error(), testSecretKey) {
				t.Fatalf("error leaks the secret key: %v", err)
			}
		})
	}
}

func TestS3PresignerTTLByType(t *testing.T) {
	var logs bytes.Buffer
	creds := credsFunc(testNow.Add(10 * time.Hour))
	p := &S3Presigner{
		Client: newPresignClient(creds), Credentials: creds,
		TTL:       time.Hour,
		TTLByType: map[string]time.Duration{"invoice": 3 * time.Hour, "archive": 48 * time.Hour, "audit": 200 * time.Hour},
		MaxTTL:    24 * time.Hour,
		Logger:    slog.New(slog.NewTextHandler(&logs, nil)),
	}
	signedAt := time.Unix(testNow.Unix(), 0).UTC()
	tests := []struct {
		typ         string
		wantExpires time.Time
	}{
		{"", signedAt.Add(time.Hour)},
		{"invoice", signedAt.Add(3 * time.Hour)},
		{"archive", signedAt.Add(10 * time.Hour)}, // max ttl 24h, then the credentials at 10h (whole seconds)
		{"audit", signedAt.Add(10 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run("type "+tt.typ, func(t *testing.T) {
			for range 2 {
				l, err := p.Sign(context.Background(), event.Report{Bucket: "b", Key: "k", Type: tt.typ}, testNow)
				if err != nil {
					t.Fatal(err)
				}
				if !l.Expires.Equal(tt.wantExpires) {
					t.Fatalf("Expires = %v, want %v", l.Expires, tt.wantExpires)
				}
			}
		})
	}
	out := logs.String()
	// The max-ttl cap is logged once per type; the credentials cap once.
	for want, n := range map[string]int{
		"level=WARN":              3,
		capReasonMaxTTL:           2,
		"report_type=archive":     2,
		"report_type=audit":       1,
		capReasonCredentials:      1,
		"credentials_source=test": 1,
		"report_type=invoice":     0,
		capReasonS3Max:            0,
	} {
		if got := strings.Count(out, want); got != n {
			t.Errorf("%q logged %d times, want %d:\n%s", want, got, n, out)
		}
	}
}
