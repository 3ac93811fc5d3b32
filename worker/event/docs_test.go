package event

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// TestDocsExamples decodes every JSON example in docs/events.md, so the
// documentation cannot drift from the code.
func TestDocsExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(doc), "```json\n")[1:]
	if len(blocks) < 5 {
		t.Fatalf("found %d JSON examples, want at least 5", len(blocks))
	}
	for i, b := range blocks {
		body, _, ok := strings.Cut(b, "```")
		if !ok {
			t.Fatalf("example %d is not closed", i)
		}
		d, err := Decode([]byte(body))
		switch {
		case errors.Is(err, ErrTestEvent):
		case err != nil:
			t.Errorf("example %d: %v\n%s", i, err, body)
		default:
			for _, ref := range d.Objects {
				e, err := FromObject(ref, ref.Size, "application/pdf", map[string]string{"user-email": "ana@example.com"})
				if err != nil {
					t.Errorf("example %d: FromObject: %v", i, err)
				} else if e.ID != "s3:acme-reports/2026/11/Q3 results+notes.pdf@0067A1B2C3D4E5F601" {
					t.Errorf("example %d: id %q is not the one documented", i, e.ID)
				}
			}
		}
	}
}
