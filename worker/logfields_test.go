package worker_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/reportmailer/reportmailer/worker"
)

// TestLogFieldsPerMessage: the lines about one message or email name
// what an operator searches by: the SQS message id and the event ids,
// and on the sent line SES's id as ses_message_id, never as message_id,
// which is SQS's.
func TestLogFieldsPerMessage(t *testing.T) {
	w, b := setup(t, worker.ModeEach, nil, native("e1", "ana", []string{"x@elsewhere.test"}, "a.pdf"))
	if _, err := w.Drain(worker.WithRunID(context.Background(), "run-1")); err != nil {
		t.Fatal(err)
	}
	logs := b.logs.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`msg="recipient refused" .*event=e1 message_id=m0 `),
		regexp.MustCompile(`msg=sent .*message_ids=\[m0\] .*ses_message_id=msg-1 events=\[e1\]`),
	} {
		if !want.MatchString(logs) {
			t.Errorf("no line matching %s in\n%s", want, logs)
		}
	}
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "msg=sent ") && strings.Contains(l, " message_id=") {
			t.Errorf("the sent line calls SES's id message_id: %s", l)
		}
	}
}
