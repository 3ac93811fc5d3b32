package event

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkEvent checks the invariants every event from Decode or FromObject
// must keep, independently of how the decoders enforce them.
func checkEvent(e Event) error {
	switch {
	case e.ID == "" || !utf8.ValidString(e.ID) || hasControl(e.ID):
		return fmt.Errorf("id %q", e.ID)
	case !strings.HasPrefix(e.ID, reservedIDPrefix) && checkID("id", e.ID) != nil:
		return fmt.Errorf("native id %q", e.ID)
	case checkID("user.id", e.User.ID) != nil:
		return fmt.Errorf("user id %q", e.User.ID)
	case !ValidAddress(e.User.Email):
		return fmt.Errorf("user email %q", e.User.Email)
	case func() bool { _, err := ASCIIAddress(e.User.Email); return err != nil }():
		return fmt.Errorf("user email %q cannot go to SES", e.User.Email)
	case checkText("user.name", e.User.Name) != nil:
		return fmt.Errorf("user name %q", e.User.Name)
	case e.User.Locale != "" && !validLocale(e.User.Locale):
		return fmt.Errorf("locale %q", e.User.Locale)
	case e.User.TimeZone != "" && !validTimeZone(e.User.TimeZone):
		return fmt.Errorf("time zone %q", e.User.TimeZone)
	case len(e.Reports) < 1 || len(e.Reports) > maxReports:
		return fmt.Errorf("%d reports", len(e.Reports))
	}
	for i, r := range e.Reports {
		switch {
		case !validBucket(r.Bucket):
			return fmt.Errorf("reports[%d]: bucket %q", i, r.Bucket)
		case keyProblem(r.Key) != "":
			return fmt.Errorf("reports[%d]: key %q %s", i, r.Key, keyProblem(r.Key))
		case r.Title == "" || checkText("title", r.Title) != nil:
			return fmt.Errorf("reports[%d]: title %q", i, r.Title)
		case checkText("type", r.Type) != nil:
			return fmt.Errorf("reports[%d]: type %q", i, r.Type)
		case checkText("content_type", r.ContentType) != nil:
			return fmt.Errorf("reports[%d]: content type %q", i, r.ContentType)
		case r.Size < 0:
			return fmt.Errorf("reports[%d]: size %d", i, r.Size)
		}
	}
	return nil
}

// checkRef checks the invariants of an ObjectRef from Decode.
func checkRef(ref ObjectRef) error {
	switch {
	case !validBucket(ref.Bucket):
		return fmt.Errorf("bucket %q", ref.Bucket)
	case keyProblem(ref.Key) != "":
		return fmt.Errorf("key %q %s", ref.Key, keyProblem(ref.Key))
	case ref.Size < 0:
		return fmt.Errorf("size %d", ref.Size)
	case !strings.HasPrefix(ref.EventName, s3CreatedPrefix):
		return fmt.Errorf("event name %q", ref.EventName)
	case ref.Sequencer == "" && ref.ETag == "":
		return errors.New("no sequencer or eTag")
	}
	return nil
}

func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		nativeBody,
		s3Body,
		testEventBody,
		sns(nativeBody),
		sns(s3Body),
		sns(testEventBody),
		sns(sns(s3Body)),
		`{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"abc"},"object":{"key":"a+b%2Bc%E6%97%A5%25","eTag":"1"}}}]}`,
		`{"Records":[{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"abc"},"object":{"key":"k","eTag":"1"}}}]}`,
		`{"version":1,"type":"report.ready","id":"e","user":{"id":"u","email":"u@x.io","time_zone":"Europe/London","locale":"en-GB"},"recipients":["bob@@x"],"reports":[{"bucket":"abc","key":"k"}]}`,
		`{"version":2}`,
		`{"Type":"Notification","Message":"{\"Service\":\"Amazon S3\",\"Event\":\"s3:TestEvent\"}"}`,
		``, `[]`, `{}`, `null`, `"x"`, `{"a":`, "\xff",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := Decode(body)
		if err != nil {
			var fe *FieldError
			if !errors.Is(err, ErrTestEvent) && !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is neither ErrTestEvent nor a *FieldError", err, err)
			}
			if len(d.Events) != 0 || len(d.Objects) != 0 {
				t.Fatalf("Decode returned %+v with error %v", d, err)
			}
			if fe != nil && (fe.Field == "" || fe.Reason == "" || len(fe.Error()) > 1000) {
				t.Fatalf("poor error: %q", fe.Error())
			}
			return
		}
		if (len(d.Events) == 0) == (len(d.Objects) == 0) {
			t.Fatalf("Decode returned %d events and %d objects", len(d.Events), len(d.Objects))
		}
		for _, e := range d.Events {
			if err := checkEvent(e); err != nil {
				t.Fatalf("event %+v: %v", e, err)
			}
		}
		for _, ref := range d.Objects {
			if err := checkRef(ref); err != nil {
				t.Fatalf("object %+v: %v", ref, err)
			}
			e, err := FromObject(ref, ref.Size, "", map[string]string{"user-email": "u@example.com"})
			if err != nil {
				t.Fatalf("FromObject(%+v): %v", ref, err)
			}
			if err := checkEvent(e); err != nil {
				t.Fatalf("event from %+v: %v", ref, err)
			}
			if _, err := FromObject(ref, ref.Size, "", nil); err == nil {
				t.Fatalf("FromObject(%+v) without metadata succeeded", ref)
			}
		}
	})
}
