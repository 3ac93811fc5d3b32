package event_test

import (
	"errors"
	"fmt"

	"github.com/reportmailer/reportmailer/worker/event"
)

func ExampleDecode() {
	bodies := []string{
		`{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
		  "s3":{"bucket":{"name":"acme-reports"},"object":{"key":"2026/11/Q3+results%2Bnotes.pdf","size":48213,"sequencer":"0067A1B2C3D4E5F601"}}}]}`,
		`{"Service":"Amazon S3","Event":"s3:TestEvent"}`,
		`{"version":1,"type":"report.ready","id":"evt-1","user":{"id":"u-42","email":"bob@@x"},"reports":[{"bucket":"acme-reports","key":"a.pdf"}]}`,
	}
	for _, body := range bodies {
		d, err := event.Decode([]byte(body))
		var fe *event.FieldError
		switch {
		case errors.Is(err, event.ErrTestEvent):
			fmt.Println("delete: test event")
			continue
		case errors.As(err, &fe):
			fmt.Println("dead-letter:", err)
			continue
		}
		for _, ref := range d.Objects {
			// The caller reads these with HeadObject.
			meta := map[string]string{"user-email": "ana@example.com"}
			e, err := event.FromObject(ref, 48213, "application/pdf", meta)
			if err != nil {
				fmt.Println("dead-letter:", err)
				continue
			}
			fmt.Printf("send %s: %q to %s\n", e.ID, e.Reports[0].Title, e.User.Email)
		}
	}
	// Output:
	// send s3:acme-reports/2026/11/Q3 results+notes.pdf@0067A1B2C3D4E5F601: "Q3 results+notes.pdf" to ana@example.com
	// delete: test event
	// dead-letter: user.email: "bob@@x" is not a valid address
}
