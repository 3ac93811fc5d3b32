package sesevents_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/reportmailer/reportmailer/worker/sesevents"
)

var tagValueRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`)

// FuzzParse: Parse never panics, every error is one of its three kinds
// (so the reader knows to delete, keep or leave the message), and an
// event it returns has what settling needs.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"Type":"Notification","MessageId":"1","Message":"{\"eventType\":\"Send\"}"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := sesevents.Parse(body)
		if err != nil {
			var fe *sesevents.FieldError
			kinds := 0
			for _, is := range []bool{errors.Is(err, sesevents.ErrUnrelated), errors.Is(err, sesevents.ErrSubscriptionConfirmation), errors.As(err, &fe)} {
				if is {
					kinds++
				}
			}
			if kinds != 1 {
				t.Fatalf("error %q is of %d kinds, want exactly one", err, kinds)
			}
			return
		}
		if ev.Type == "" || ev.MessageID == "" || !tagValueRE.MatchString(ev.EmailID) || ev.Envelope == "" {
			t.Fatalf("Parse returned an event settling cannot use: %+v", ev)
		}
	})
}
