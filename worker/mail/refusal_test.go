package mail

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/internal/emulator"
	"github.com/reportmailer/reportmailer/worker"
)

// refusingSES puts awsproxy in front of the aws-ses-v2-local at emuURL
// and has it refuse every SendEmail as SES v2 refuses one: status, the
// error type in x-amzn-ErrorType (exactly as given, namespace and all)
// and {"message": ...} as the body. The refusal comes from the fault
// layer; anything else the client asks goes to the emulator.
func refusingSES(t *testing.T, emuURL string, status int, errorType, message string) *awsproxy.Proxy {
	t.Helper()
	p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.SES, Target: emuURL})
	code, _, _ := strings.Cut(errorType, ":")
	p.Inject(awsproxy.Fault{Operation: "SendEmail", Status: status, Code: code, ErrorType: errorType, Message: message})
	return p
}

// sesErr is the error SES.Send returns, through the real client, when
// SES answers with status, errorType and message: what Paced reads from
// its Mailer.
func sesErr(t *testing.T, status int, errorType, message string) error {
	t.Helper()
	p := refusingSES(t, emulator.StartSESLocal(t, ""), status, errorType, message)
	_, err := (&SES{Client: sesClient(p.URL)}).Send(context.Background(), hostile())
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
	emuURL := emulator.StartSESLocal(t, "")
	t.Cleanup(func() {
		if sent, err := emulator.SESLocalEmails(context.Background(), emuURL, time.Time{}); err != nil || len(sent) != 0 {
			t.Errorf("the emulator accepted %d emails (%v); every send was refused", len(sent), err)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := refusingSES(t, emuURL, tt.status, tt.errorType, tt.message)
			_, err := (&SES{Client: sesClient(p.URL)}).Send(context.Background(), hostile())
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
			if c := p.Counts("SendEmail"); c.Seen != 1 || c.Injected != 1 {
				t.Errorf("SendEmail %+v; want one request, refused: a refusal is not retried", c)
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
