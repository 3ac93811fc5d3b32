package mail

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/reportmailer/reportmailer/worker"
)

// sesRefusing starts a server on 127.0.0.1 that answers every SendEmail
// as SES v2 answers one it refuses: the status, the error type in
// X-Amzn-ErrorType and {"message": ...} as the JSON body. It returns
// the server's URL and a count of the requests it answered.
func sesRefusing(t *testing.T, status int, errorType, message string) (string, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	body, _ := json.Marshal(map[string]string{"message": message})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("X-Amzn-ErrorType", errorType)
		h.Set("X-Amzn-RequestId", "5e1a7c1c-0000-4000-8000-000000000000")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &n
}

// sesErr is the error SES.Send returns, through the real client, when
// SES answers with status, errorType and message: what Paced reads from
// its Mailer.
func sesErr(t *testing.T, status int, errorType, message string) error {
	t.Helper()
	url, _ := sesRefusing(t, status, errorType, message)
	_, err := (&SES{Client: sesClient(url)}).Send(context.Background(), hostile())
	if err == nil {
		t.Fatalf("SES answered %d %s, and Send returned no error", status, errorType)
	}
	return err
}

// TestSESRefusals: SES refusals as they arrive on the wire, through the
// real client. One that every email would meet (the sender's identity
// or MAIL FROM domain not verified, sending paused, the account
// suspended) halts the run and leaves the messages queued; one of this
// email (its content, or a sandbox recipient that is not verified) is
// permanent for it alone. Before, the sender's refusals were permanent:
// one unverified From address dead-lettered the whole queue, one
// message at a time.
func TestSESRefusals(t *testing.T) {
	t.Parallel()
	const notVerified = "Email address is not verified. The following identities failed the check in region US-EAST-1: "
	type class int
	const (
		permanent class = iota
		halt
	)
	tests := []struct {
		name      string
		status    int
		errorType string
		message   string
		want      class
		names     string // in the error
	}{
		{"sender address not verified", 400, "MessageRejected", notVerified + "reports@example.com", halt, "reports@example.com"},
		{"sender with its display name", 400, "MessageRejected", notVerified + "Societe Reports <reports@example.com>, reports@example.com", halt, "reports@example.com"},
		{"sender domain not verified", 400, "MessageRejected", notVerified + "example.com", halt, "example.com"},
		{"sender and recipient not verified", 400, "MessageRejected", notVerified + "cfo@example.com, reports@example.com", halt, "reports@example.com"},
		{"list cut short", 400, "MessageRejected", notVerified + "cfo@example.com...", halt, "did not list them all"},
		{"error type with a namespace", 400, "MessageRejected:http://internal.amazon.com/coral/com.amazonaws.sesv2/", notVerified + "reports@example.com", halt, "reports@example.com"},
		{"sandbox recipient not verified", 400, "MessageRejected", notVerified + "cfo@example.com", permanent, "ses sandbox: recipient cfo@example.com is not verified"},
		{"sandbox recipient, case as SES gives it", 400, "MessageRejected", notVerified + "CFO@Example.com", permanent, "cfo@example.com"},
		{"content rejected", 400, "MessageRejected", "Illegal address", permanent, "Illegal address"},
		{"bad request", 400, "BadRequestException", "Invalid header value", permanent, "Invalid header value"},
		{"MAIL FROM domain not verified", 400, "MailFromDomainNotVerifiedException", "The MAIL FROM domain is not verified", halt, "MAIL FROM"},
		{"sending paused", 400, "SendingPausedException", "Sending is paused for this account.", halt, "paused"},
		{"account suspended", 400, "AccountSuspendedException", "Your account has been suspended.", halt, "suspended"},
		{"configuration set missing", 404, "NotFoundException", "Configuration set <daily> does not exist.", halt, "daily"},
		{"no permission", 403, "AccessDeniedException", "User is not authorized to perform ses:SendEmail", halt, "ses:SendEmail"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url, n := sesRefusing(t, tt.status, tt.errorType, tt.message)
			_, err := (&SES{Client: sesClient(url)}).Send(context.Background(), hostile())
			switch {
			case err == nil:
				t.Fatal("sent")
			case tt.want == halt && (!worker.IsHalt(err) || worker.IsPermanent(err)):
				t.Errorf("%v\nhalt %v, permanent %v; want a halt: every email would be refused alike", err, worker.IsHalt(err), worker.IsPermanent(err))
			case tt.want == permanent && (!worker.IsPermanent(err) || worker.IsHalt(err)):
				t.Errorf("%v\nhalt %v, permanent %v; want permanent for this email alone", err, worker.IsHalt(err), worker.IsPermanent(err))
			}
			if worker.IsAmbiguous(err) {
				t.Errorf("%v: ambiguous, but SES answered", err)
			}
			if !strings.Contains(err.Error(), tt.names) {
				t.Errorf("err = %v; want it to name %q", err, tt.names)
			}
			if n.Load() != 1 {
				t.Errorf("%d requests; a refusal is not retried", n.Load())
			}
		})
	}
}

func TestUnverifiedIdentities(t *testing.T) {
	tests := []struct {
		msg       string
		ids       string
		truncated bool
		ok        bool
	}{
		{"Email address is not verified. The following identities failed the check in region EU-WEST-1: a@x.test, b@y.test", "a@x.test|b@y.test", false, true},
		{`Email address is not verified. The following identities failed the check in region US-WEST-2: "Lima, Ana" <Ana@X.test>, x.test`, "ana@x.test|x.test", false, true},
		{"Email address is not verified. The following identities failed the check in region US-EAST-1: a@x.test, b@y...", "a@x.test|b@y", true, true},
		{"Email address is not verified.", "", false, false},
		{"Illegal address", "", false, false},
		{"The following identities failed the check in region: a@x.test", "", false, false},
	}
	for _, tt := range tests {
		ids, truncated, ok := unverifiedIdentities(tt.msg)
		if got := strings.Join(ids, "|"); got != tt.ids || truncated != tt.truncated || ok != tt.ok {
			t.Errorf("unverifiedIdentities(%q) = %q, %v, %v; want %q, %v, %v", tt.msg, got, truncated, ok, tt.ids, tt.truncated, tt.ok)
		}
	}
}
