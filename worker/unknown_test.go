package worker_test

import (
	"context"
	"strings"
	"testing"

	"github.com/reportmailer/reportmailer/worker"
)

// TestDrainWarnsAboutUnknownEventFields: a misspelt field is ignored,
// so the email still goes out, and one warning per message names the
// fields by JSON path. S3 notifications never warn.
func TestDrainWarnsAboutUnknownEventFields(t *testing.T) {
	misspelt := strings.Replace(native("e1", "ana", []string{"cfo@example.com"}, "a.pdf"), `"time_zone"`, `"timezone"`, 1)
	misspelt = strings.Replace(misspelt, `"recipients"`, `"recipient"`, 1)
	w, b := setup(t, worker.ModeEach, fakeObjects{
		"reports/a.pdf": {Size: 1}, "reports/c.pdf": {Size: 1},
		"reports/b.pdf": {Size: 1, Metadata: map[string]string{"user-email": "carol@example.com"}}},
		misspelt,
		native("e2", "bob", nil, "c.pdf"),
		s3Notification("b.pdf"))
	sum, err := w.Drain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sent != 3 || !sum.OK() {
		t.Errorf("summary %+v: the misspelt event should still be sent", sum)
	}
	logs := b.logs.String()
	if n := strings.Count(logs, "schema does not know"); n != 1 {
		t.Fatalf("%d warnings about unknown fields, want 1 (for m0 only):\n%s", n, logs)
	}
	if !strings.Contains(logs, `message_id=m0 fields="[recipient user.timezone]"`) {
		t.Errorf("the warning does not name the message and the fields:\n%s", logs)
	}
}
