package main

import (
	"strings"
	"testing"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
)

// TestSendLimiter: like SES over its MaxSendRate, the limiter lets
// through at most rate recipients in a second, counting each address of
// a call, and reports what it let through.
func TestSendLimiter(t *testing.T) {
	l := &sendLimiter{rate: 3}
	call := func(rcpts ...string) awsproxy.Call { return awsproxy.Call{Operation: "SendEmail", Recipients: rcpts} }
	for i, tc := range []struct {
		call awsproxy.Call
		over bool
	}{
		{call("a@x"), false},
		{call("b@x", "c@x"), false},
		{call("d@x"), true},        // a fourth recipient in the same second
		{call(), true},             // a call with no recipient read counts as one
		{call("e@x", "f@x"), true}, // refused whole: SES sends all or nothing
	} {
		if got := l.over(tc.call); got != tc.over {
			t.Errorf("call %d (%v): over = %v, want %v", i, tc.call.Recipients, got, tc.over)
		}
	}
	var b strings.Builder
	l.report(&b, 3)
	if got := b.String(); !strings.Contains(got, "3 recipients in") || !strings.Contains(got, "429s 3") {
		t.Errorf("report = %q; want 3 recipients let through and 3 refusals", got)
	}
}
