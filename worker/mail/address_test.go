package mail

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/internal/emulator"
	"github.com/reportmailer/reportmailer/worker"
)

// TestAddressesReachSESInASCII sends through the real client to
// aws-ses-v2-local and reads back the addresses it was given. SES needs
// them in ASCII: an internationalized domain in Punycode, a non-ASCII
// display name RFC 2047-encoded. The emulator accepts Unicode too, so
// only what it stored shows whether the worker encoded them.
func TestAddressesReachSESInASCII(t *testing.T) {
	t.Parallel()
	sesURL := emulator.StartSESLocal(t, "")
	s := &SES{Client: sesClient(sesURL)}
	tests := []struct {
		to, want string
	}{
		{"cfo@example.com", "cfo@example.com"},
		{"user@bücher.example", "user@xn--bcher-kva.example"},
		{"User@BÜCHER.Example", "User@xn--bcher-kva.example"},
		{"x@mañana.test", "x@xn--maana-pta.test"},
		{"y@xn--bcher-kva.example", "y@xn--bcher-kva.example"},
	}
	e := hostile()
	e.From = "Zoë Reports <reports@Bücher.example>"
	e.ReplyTo = []string{"Help <help@mañana.test>", "ops@example.com"}
	for _, tt := range tests {
		e.To = []string{tt.to}
		if _, err := s.Send(context.Background(), e); err != nil {
			t.Fatalf("send to %s: %v", tt.to, err)
		}
	}
	got, err := emulator.SESLocalEmails(context.Background(), sesURL, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(tests) {
		t.Fatalf("SES accepted %d emails, want %d", len(got), len(tests))
	}
	for i, m := range got {
		if to := strings.Join(m.To(), ","); to != tests[i].want {
			t.Errorf("email to %s: SES got To %q, want %q", tests[i].to, to, tests[i].want)
		}
		if m.From != "=?utf-8?q?Zo=C3=AB_Reports?= <reports@xn--bcher-kva.example>" {
			t.Errorf("From = %q", m.From)
		}
		if r := strings.Join(m.ReplyTo, " | "); r != `"Help" <help@xn--maana-pta.test> | ops@example.com` {
			t.Errorf("Reply-To = %q", r)
		}
		if ref := m.Headers["References"]; !strings.HasSuffix(ref, "@xn--bcher-kva.example>") {
			t.Errorf("References = %q, want the thread id at the From domain in ASCII", ref)
		}
	}
}

// TestAddressesSESCannotTake: an address SES cannot send to is refused
// before the call, with the address and the reason. A recipient's fails
// that email alone; the sender's fails every email, so it halts the run.
func TestAddressesSESCannotTake(t *testing.T) {
	tests := []struct {
		name string
		edit func(*worker.Email)
		halt bool   // else permanent
		why  string // in the error
	}{
		{"non-ASCII local part", func(e *worker.Email) { e.To = []string{"zoë@example.com"} }, false,
			`recipient address "zoë@example.com": local part "zoë" is not ASCII, and SES cannot send to it (it does not support SMTPUTF8)`},
		{"invalid internationalized domain", func(e *worker.Email) { e.To = []string{"ana@bücher-.example"} }, false,
			`recipient address "ana@bücher-.example": domain "bücher-.example" is not a valid internationalized domain name`},
		{"bad Punycode", func(e *worker.Email) { e.To = []string{"ana@xn--zz.example"} }, false, `domain "xn--zz.example"`},
		{"sender with a non-ASCII local part", func(e *worker.Email) { e.From = "Zoë <zoë@example.com>" }, true,
			`from address "Zoë <zoë@example.com>": local part "zoë" is not ASCII`},
		{"sender that is not an address", func(e *worker.Email) { e.From = "reports" }, true, `from address "reports"`},
		{"reply-to with an invalid domain", func(e *worker.Email) { e.ReplyTo = []string{"help@bücher-.example"} }, true,
			`reply-to address "help@bücher-.example": domain`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := &fakeSES{}
			e := hostile()
			tt.edit(&e)
			_, err := (&SES{Client: api}).Send(context.Background(), e)
			if len(api.in) != 0 {
				t.Errorf("SendEmail called with %v", api.in[0].Destination.ToAddresses)
			}
			switch {
			case err == nil:
				t.Fatal("sent; want a refusal")
			case tt.halt && (!worker.IsHalt(err) || worker.IsPermanent(err)):
				t.Errorf("err = %v; want a halt, not a dead letter: every email has this sender", err)
			case !tt.halt && (!worker.IsPermanent(err) || worker.IsHalt(err)):
				t.Errorf("err = %v; want a permanent error for this email alone", err)
			}
			if !strings.Contains(err.Error(), tt.why) {
				t.Errorf("err = %v; want it to say %q", err, tt.why)
			}
		})
	}
}
