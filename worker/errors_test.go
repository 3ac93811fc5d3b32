package worker_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/worker"
)

func TestFailureClassAndCode(t *testing.T) {
	base := errors.New("boom")
	t0 := time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		err   error
		class worker.Class
		code  worker.Code
		until time.Time
	}{
		{"plain", base, worker.ClassTransient, "", time.Time{}},
		{"permanent", worker.Permanent(base), worker.ClassPermanent, "", time.Time{}},
		{"permanent with a code, wrapped", fmt.Errorf("head: %w", worker.PermanentCode(worker.CodeObjectMissing, base)), worker.ClassPermanent, worker.CodeObjectMissing, time.Time{}},
		{"the outer code wins", worker.Fail(worker.CodeLinkFailed, worker.ClassPermanent, worker.PermanentCode(worker.CodeBucketNotServed, base)), worker.ClassPermanent, worker.CodeLinkFailed, time.Time{}},
		{"an empty outer code does not hide an inner one", worker.Permanent(worker.Fail(worker.CodeHeadFailed, "", base)), worker.ClassPermanent, worker.CodeHeadFailed, time.Time{}},
		{"ambiguous beats permanent", worker.Permanent(worker.Ambiguous(base)), worker.ClassAmbiguous, "", time.Time{}},
		{"permanent beats halt", worker.Halt(worker.Permanent(base)), worker.ClassPermanent, "", time.Time{}},
		{"halt", worker.Halt(base), worker.ClassHalt, "", time.Time{}},
		{"halt until", fmt.Errorf("ses: %w", worker.HaltUntil(base, t0)), worker.ClassHalt, "", t0},
		{"in a join", errors.Join(base, worker.PermanentCode(worker.CodeInvalidEvent, base)), worker.ClassPermanent, worker.CodeInvalidEvent, time.Time{}},
		{"transient with a code", worker.Fail(worker.CodeSendFailed, worker.ClassTransient, base), worker.ClassTransient, worker.CodeSendFailed, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := worker.ClassOf(tt.err); got != tt.class {
				t.Errorf("ClassOf = %q, want %q", got, tt.class)
			}
			if got := worker.CodeOf(tt.err); got != tt.code {
				t.Errorf("CodeOf = %q, want %q", got, tt.code)
			}
			until, ok := worker.RetryAfter(tt.err)
			if ok != !tt.until.IsZero() || !until.Equal(tt.until) {
				t.Errorf("RetryAfter = %v, %v; want %v", until, ok, tt.until)
			}
			if !errors.Is(tt.err, base) || tt.err.Error() == "" {
				t.Errorf("%v does not wrap the cause", tt.err)
			}
		})
	}
	for _, f := range []func(error) error{worker.Permanent, worker.Ambiguous, worker.Halt, func(err error) error { return worker.HaltUntil(err, t0) }} {
		if f(nil) != nil {
			t.Error("marking a nil error must give nil")
		}
	}
	if worker.ClassOf(nil) != "" {
		t.Error("ClassOf(nil) should be empty")
	}
}

// TestCodeOutcome: a code alone gives the outcome its failure has, so
// an old dead letter with no class still shows maybe_sent as ambiguous
// (which redrive skips).
func TestCodeOutcome(t *testing.T) {
	for _, tt := range []struct {
		code worker.Code
		want worker.Outcome
	}{
		{worker.CodeMaybeSent, worker.OutcomeAmbiguous},
		{worker.CodeRecipientRefused, worker.OutcomePermanent},
		{worker.CodeObjectMissing, worker.OutcomePermanent},
		{worker.CodeSendFailed, worker.OutcomeRetry},
		{worker.CodeObjectAccessDenied, worker.OutcomeHalted},
		{"no_such_code", ""},
	} {
		if got := worker.CodeOutcome(tt.code); got != tt.want {
			t.Errorf("CodeOutcome(%s) = %q, want %q", tt.code, got, tt.want)
		}
	}
}
