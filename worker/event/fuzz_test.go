package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/reportmailer/reportmailer/internal/fuzzseed"
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

// schemaNames are the keys of every document Decode reads: a FieldError's
// path is made of these alone, never of a key the body chose.
var schemaNames = map[string]bool{
	// native
	"version": true, "type": true, "id": true, "user": true, "recipients": true, "reports": true,
	"email": true, "name": true, "locale": true, "time_zone": true,
	"bucket": true, "key": true, "title": true, "content_type": true, "size": true,
	// S3 notification
	"Records": true, "eventSource": true, "eventVersion": true, "eventName": true, "eventTime": true,
	"s3": true, "object": true, "eTag": true, "sequencer": true,
	// S3 test event and SNS envelope
	"Event": true, "Service": true, "Type": true, "Message": true,
}

var pathSegment = regexp.MustCompile(`^([A-Za-z0-9_]+)(\[[0-9]+\])?$`)

// checkPath fails unless path is a JSON path of schema names, such as
// "reports[2].key", or "body" for the whole document.
func checkPath(path string) error {
	if path == "body" {
		return nil
	}
	for seg := range strings.SplitSeq(path, ".") {
		m := pathSegment.FindStringSubmatch(seg)
		if m == nil || !schemaNames[m[1]] {
			return fmt.Errorf("path %q has segment %q, which is not a schema name", path, seg)
		}
	}
	return nil
}

// checkFieldError checks what every error from Decode or FromObject
// must be: ErrTestEvent, or a *FieldError naming a field, with a reason,
// whose message is short, valid UTF-8 and free of raw control
// characters (it goes into logs and DLQ reasons as it is).
func checkFieldError(err error, fieldOK func(string) error) error {
	if errors.Is(err, ErrTestEvent) {
		return nil
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		return fmt.Errorf("error %v (%T) is neither ErrTestEvent nor a *FieldError", err, err)
	}
	msg := fe.Error()
	switch {
	case fe.Reason == "":
		return fmt.Errorf("no reason: %q", msg)
	case len(msg) > 1000:
		return fmt.Errorf("message of %d bytes: %q", len(msg), msg)
	case !utf8.ValidString(msg):
		return fmt.Errorf("message is not UTF-8: %q", msg)
	case hasControl(msg):
		return fmt.Errorf("message holds a raw control character: %q", msg)
	case !strings.HasPrefix(msg, fe.Field+": "):
		return fmt.Errorf("message %q does not start with the field %q", msg, fe.Field)
	}
	return fieldOK(fe.Field)
}

// encodeNative writes e as a native event, the way a producer would.
func encodeNative(e Event) []byte {
	reports := make([]any, len(e.Reports))
	for i, r := range e.Reports {
		reports[i] = map[string]any{"bucket": r.Bucket, "key": r.Key, "title": r.Title, "type": r.Type,
			"content_type": r.ContentType, "size": r.Size}
	}
	b, err := json.Marshal(map[string]any{
		"version": nativeVersion, "type": nativeType, "id": e.ID,
		"user": map[string]any{"id": e.User.ID, "email": e.User.Email, "name": e.User.Name,
			"locale": e.User.Locale, "time_zone": e.User.TimeZone},
		"recipients": e.Recipients,
		"reports":    reports,
	})
	if err != nil {
		panic(err)
	}
	return b
}

// encodeNotification writes refs as an S3 notification, the way S3
// would: the key form-encoded.
func encodeNotification(refs []ObjectRef) []byte {
	records := make([]any, len(refs))
	for i, r := range refs {
		rec := map[string]any{"eventVersion": "2.1", "eventSource": s3EventSource, "eventName": r.EventName,
			"s3": map[string]any{
				"bucket": map[string]any{"name": r.Bucket},
				"object": map[string]any{"key": url.QueryEscape(r.Key), "size": r.Size, "eTag": r.ETag, "sequencer": r.Sequencer},
			}}
		if !r.EventTime.IsZero() {
			rec["eventTime"] = r.EventTime.Format(time.RFC3339Nano)
		}
		records[i] = rec
	}
	b, err := json.Marshal(map[string]any{"Records": records})
	if err != nil {
		panic(err)
	}
	return b
}

// sameRefs reports whether two ref lists are equal, comparing times as
// instants.
func sameRefs(a, b []ObjectRef) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if !x.EventTime.Equal(y.EventTime) {
			return false
		}
		x.EventTime, y.EventTime = time.Time{}, time.Time{}
		if x != y {
			return false
		}
	}
	return true
}

// docExamples returns the JSON examples in docs/events.md.
func docExamples(f *testing.F) []string {
	f.Helper()
	doc, err := os.ReadFile("../../docs/events.md")
	if err != nil {
		f.Fatal(err)
	}
	var out []string
	for _, b := range strings.Split(string(doc), "```json\n")[1:] {
		body, _, _ := strings.Cut(b, "```")
		out = append(out, body)
	}
	return out
}

// FuzzDecode feeds Decode any body. Beyond not panicking it checks that
// Decode is deterministic; that an error is ErrTestEvent or a
// *FieldError whose path is made of schema names and whose message is
// short and free of raw control characters; that a decoded event or
// object obeys every documented rule (checkEvent, checkRef), and comes
// back unchanged when written out again the way a producer or S3 would
// write it; and that wrapping the body in an SNS envelope changes
// nothing but the name of the whole document ("Message" for "body").
//
// Seeds: the examples in docs/events.md and the literals in this
// package's tests, as bodies and as field values. They run with every
// "go test"; docs/fuzzing.md says how to fuzz further.
func FuzzDecode(f *testing.F) {
	seeds := []string{
		nativeBody, s3Body, testEventBody,
		sns(nativeBody), sns(s3Body), sns(testEventBody), sns(sns(s3Body)),
		`{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"abc"},"object":{"key":"a+b%2Bc%E6%97%A5%25","eTag":"1"}}}]}`,
		`{"Records":[{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"abc"},"object":{"key":"k","eTag":"1"}}}]}`,
		`{"version":1,"type":"report.ready","id":"e","user":{"id":"u","email":"u@x.io","time_zone":"Europe/London","locale":"en-GB"},"recipients":["bob@@x"],"reports":[{"bucket":"abc","key":"k"}]}`,
		`{"version":2}`,
		`{"Type":"Notification","Message":"{\"Service\":\"Amazon S3\",\"Event\":\"s3:TestEvent\"}"}`,
		``, `[]`, `{}`, `null`, `"x"`, `{"a":`, "\xff",
	}
	seeds = append(seeds, docExamples(f)...)
	for _, s := range fuzzseed.Literals(f, "*_test.go", func(s string) bool { return len(s) <= 2000 }) {
		if strings.HasPrefix(strings.TrimSpace(s), "{") {
			seeds = append(seeds, s)
			continue
		}
		// A value: try it where the validators read values.
		for _, field := range []string{`"ana@example.com"`, `"evt-2026-11-26-0001"`, `"pt-BR"`, `"2026/11/Q3 results+notes.pdf"`} {
			v, _ := json.Marshal(s)
			seeds = append(seeds, strings.Replace(nativeBody, field, string(v), 1))
		}
		v, _ := json.Marshal(url.QueryEscape(s))
		seeds = append(seeds, strings.Replace(s3Body, `"2026/11/Q3+results%2Bnotes.pdf"`, string(v), 1))
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := Decode(body)
		d2, err2 := Decode(body)
		if fmt.Sprint(err) != fmt.Sprint(err2) || !reflect.DeepEqual(d, d2) {
			t.Fatalf("Decode is not deterministic: %+v, %v then %+v, %v", d, err, d2, err2)
		}
		checkSNS(t, body, d, err)
		if err != nil {
			if err := checkFieldError(err, checkPath); err != nil {
				t.Fatal(err)
			}
			if len(d.Events) != 0 || len(d.Objects) != 0 || len(d.Unknown) != 0 {
				t.Fatalf("Decode returned %+v with error %v", d, err)
			}
			return
		}
		if (len(d.Events) == 0) == (len(d.Objects) == 0) {
			t.Fatalf("Decode returned %d events and %d objects", len(d.Events), len(d.Objects))
		}
		if !slices.IsSorted(d.Unknown) || len(slices.Compact(slices.Clone(d.Unknown))) != len(d.Unknown) {
			t.Fatalf("Unknown %q is not sorted and unique", d.Unknown)
		}
		for _, e := range d.Events {
			if err := checkEvent(e); err != nil {
				t.Fatalf("event %+v: %v", e, err)
			}
			again, err := Decode(encodeNative(e))
			if err != nil || len(again.Events) != 1 || !reflect.DeepEqual(normalize(again.Events[0]), normalize(e)) || len(again.Unknown) != 0 {
				t.Fatalf("event %+v written out decodes to %+v, %v", e, again, err)
			}
		}
		if len(d.Objects) > 0 {
			again, err := Decode(encodeNotification(d.Objects))
			if err != nil || !sameRefs(again.Objects, d.Objects) {
				t.Fatalf("objects %+v written out decode to %+v, %v", d.Objects, again.Objects, err)
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

// normalize makes an empty recipient list nil, as absent and [] decode
// alike.
func normalize(e Event) Event {
	if len(e.Recipients) == 0 {
		e.Recipients = nil
	}
	return e
}

// checkSNS checks that body wrapped in an SNS envelope decodes as body
// did (d, err), but for the document's name in errors. Bodies that are
// themselves envelopes, and bytes JSON cannot carry in a string (invalid
// UTF-8), are skipped.
func checkSNS(t *testing.T, body []byte, d Decoded, err error) {
	t.Helper()
	if !utf8.Valid(body) {
		return
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) == nil {
		if _, envelope := top["Type"]; envelope {
			return
		}
	}
	wrapped := sns(string(body))
	wd, werr := Decode([]byte(wrapped))
	var fe, wfe *FieldError
	switch {
	case err == nil:
		if werr != nil || !reflect.DeepEqual(wd.Events, d.Events) || !sameRefs(wd.Objects, d.Objects) || !slices.Equal(wd.Unknown, d.Unknown) {
			t.Fatalf("in SNS: %+v, %v; direct: %+v", wd, werr, d)
		}
	case errors.Is(err, ErrTestEvent):
		if !errors.Is(werr, ErrTestEvent) {
			t.Fatalf("in SNS: %v; direct: the test event", werr)
		}
	case errors.As(err, &fe) && errors.As(werr, &wfe):
		want := *fe
		switch {
		case len(body) == 0:
			want = FieldError{Field: "Message", Reason: "is required"}
		case want.Field == "body":
			want.Field = "Message"
		}
		if *wfe != want {
			t.Fatalf("in SNS: %#v; direct: %#v", *wfe, *fe)
		}
	default:
		t.Fatalf("in SNS: %v; direct: %v", werr, err)
	}
}

// FuzzFromObject feeds FromObject any user metadata, content type and
// size for a valid object, with the metadata names in canonical form or
// as S3 might hand them over ("X-Amz-Meta-User-Email"). It checks that
// the spelling of the names changes nothing; that an error is a
// *FieldError naming the metadata or object field with a clean message;
// and that an event obeys every documented rule, with its recipients
// trimmed, non-empty and in the order given.
func FuzzFromObject(f *testing.F) {
	f.Add("ana@example.com", "u-42", "=?UTF-8?b?QW5hIEzDumNpYQ==?=", "pt-BR", "America/Sao_Paulo",
		"cfo@example.com, ceo@example.com,", "=?UTF-8?q?Relat=C3=B3rio_do_3=C2=BA_trimestre?=", "finance", "application/pdf", int64(48213), false)
	f.Add(" ana@example.com ", "", "Ana", "", "", "bob@@x,  ,cfo@example.com", "Plain title", "", "", int64(0), true)
	f.Add("zoë@example.com", "u\x01", "=?UTF-8?Q?Ana=0ABcc:_x?=", "pt_BR", "Europe/Atlantis", "", strings.Repeat("t", 1025), "=?UTF-8?Q?a=00?=", "text/plain\x00", int64(-1), false)
	f.Add("user@bücher.example", "", "=?x-klingon?Q?Ana?=", "x-klingon", "Local", "a@b\r\nBcc: c@d", "=?ISO-8859-1?Q?caf=E9?=", "", "", int64(7), true)
	for _, s := range fuzzseed.Literals(f, "object_test.go", func(s string) bool { return len(s) <= 2000 && !strings.HasPrefix(s, "{") }) {
		f.Add(s, s, s, s, s, s, s, s, s, int64(len(s)), len(s)%2 == 0)
	}
	ref := ObjectRef{Bucket: "acme-reports", Key: "2026/11/Q3 results+notes.pdf", Sequencer: "0067A1B2C3D4E5F601"}
	fields := []string{metaUserEmail, metaUserID, metaUserName, metaLocale, metaTimeZone, metaRecipients, metaTitle, metaReportType}
	fieldOK := func(field string) error {
		if slices.Contains([]string{"object content type", "object size"}, field) {
			return nil
		}
		for _, m := range fields {
			if field == metaField(m) {
				return nil
			}
		}
		return fmt.Errorf("field %q is not a metadata or object field", field)
	}

	f.Fuzz(func(t *testing.T, email, id, name, locale, tz, recipients, title, rtype, contentType string, size int64, headerNames bool) {
		values := []string{email, id, name, locale, tz, recipients, title, rtype}
		canonical, header := map[string]string{}, map[string]string{}
		for i, v := range values {
			canonical[fields[i]] = v
			h := "X-Amz-Meta-" + fields[i]
			if headerNames {
				h = strings.ToUpper(h)
			}
			header[h] = v
		}
		e, err := FromObject(ref, size, contentType, canonical)
		e2, err2 := FromObject(ref, size, contentType, header)
		if fmt.Sprint(err) != fmt.Sprint(err2) || !reflect.DeepEqual(e, e2) {
			t.Fatalf("metadata names change the result: %+v, %v; with header names %+v, %v", e, err, e2, err2)
		}
		if err != nil {
			if errors.Is(err, ErrTestEvent) {
				t.Fatal("FromObject returned ErrTestEvent")
			}
			if err := checkFieldError(err, fieldOK); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(e, Event{}) {
				t.Fatalf("FromObject returned %+v with error %v", e, err)
			}
			return
		}
		if err := checkEvent(e); err != nil {
			t.Fatalf("event %+v: %v", e, err)
		}
		if e.User.Email != strings.TrimSpace(email) || e.Reports[0].Size != size || e.Reports[0].ContentType != contentType {
			t.Fatalf("event %+v does not carry email %q, size %d, content type %q", e, email, size, contentType)
		}
		var want []string
		for r := range strings.SplitSeq(recipients, ",") {
			if r = strings.TrimSpace(r); r != "" {
				want = append(want, r)
			}
		}
		if !slices.Equal(e.Recipients, want) {
			t.Fatalf("recipients %q from %q, want %q", e.Recipients, recipients, want)
		}
	})
}
