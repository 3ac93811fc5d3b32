package mail

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sesv2"

	"github.com/reportmailer/reportmailer/worker"
)

// TestPacedAdmit: the worker asks before it receives; a spent quota
// halts the run there, saying when to look again, and reserves nothing.
func TestPacedAdmit(t *testing.T) {
	ctx := context.Background()
	b := setupPaced(account(10, 3, 1))
	b.p.Refresh = 2 * time.Minute
	for i := range 2 {
		if err := b.p.Admit(ctx); err != nil {
			t.Fatalf("Admit %d with room in the quota = %v", i+1, err)
		}
	}
	// Admit reserved nothing: two emails still fit.
	for range 2 {
		if _, err := b.p.Send(ctx, to("a@example.com")); err != nil {
			t.Fatal(err)
		}
	}
	err := b.p.Admit(ctx)
	until, ok := worker.RetryAfter(err)
	if !worker.IsHalt(err) || !ok || !until.Equal(b.clock.now().Add(2*time.Minute)) {
		t.Fatalf("Admit with the quota spent = %v, retry at %v (%v); want a halt until the next quota read", err, until, ok)
	}
	if len(b.mailer.at) != 2 {
		t.Errorf("sent %d", len(b.mailer.at))
	}

	// Later the 24-hour window has moved on.
	b.acct.set(func(o *sesv2.GetAccountOutput) { o.SendQuota.SentLast24Hours = 0 })
	b.clock.advance(2 * time.Minute)
	if err := b.p.Admit(ctx); err != nil {
		t.Errorf("Admit once the quota freed = %v", err)
	}
}

func TestPacedHaltsSayWhenToRetry(t *testing.T) {
	daily := sesErr(t, 400, "LimitExceededException", "Daily message quota exceeded.")
	disabled := account(10, 100, 0)
	disabled.out.SendingEnabled = false
	tests := []struct {
		name    string
		acct    *fakeAccount
		refresh time.Duration
		script  []error
		wait    time.Duration
	}{
		{"24-hour quota throttle", account(10, -1, 0), 0, []error{daily}, RefreshDefault},
		{"sending disabled", disabled, 0, nil, RefreshDefault},
		{"an account-wide refusal from SES", account(10, -1, 0), 0, []error{worker.Halt(errors.New("SendingPausedException"))}, RefreshDefault},
		{"at least a minute", account(10, -1, 0), 10 * time.Second, []error{daily}, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := setupPaced(tt.acct, tt.script...)
			b.p.Refresh = tt.refresh
			start := b.clock.now()
			_, err := b.p.Send(context.Background(), to("a@example.com"))
			until, ok := worker.RetryAfter(err)
			if !worker.IsHalt(err) || !ok || !until.Equal(start.Add(tt.wait)) {
				t.Fatalf("Send = %v, retry at %v (%v); want a halt until %v", err, until, ok, start.Add(tt.wait))
			}
		})
	}
	t.Run("other errors say nothing", func(t *testing.T) {
		b := setupPaced(account(10, -1, 0), worker.Permanent(errors.New("MessageRejected")))
		_, err := b.p.Send(context.Background(), to("a@example.com"))
		if _, ok := worker.RetryAfter(err); ok || worker.IsHalt(err) || !worker.IsPermanent(err) {
			t.Fatalf("Send = %v", err)
		}
	})
}
