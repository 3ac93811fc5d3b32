package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Decoded is what one message body holds: either native events, which
// are complete, or references to objects named by an S3 notification,
// each of which becomes an event once the caller has read the object's
// metadata (HeadObject) and passed it to [FromObject]. A successful
// [Decode] fills exactly one of the two, with at least one entry.
type Decoded struct {
	Events  []Event     // native events, validated
	Objects []ObjectRef // objects from an S3 notification, one per record
	// Unknown lists, sorted, the JSON paths of the fields a native
	// event has that its schema does not know ("user.timezone",
	// "reports[0].sise"): most often a misspelt field, whose value is
	// then ignored. They do not make the event invalid, since producers
	// may add fields; the caller should warn. Fields S3 and SNS add to
	// their own documents are never listed.
	Unknown []string
}

// ObjectRef is one object named by an S3 ObjectCreated notification
// record. Its bucket name and key have been validated, and one of
// Sequencer and ETag is set.
type ObjectRef struct {
	Bucket    string
	Key       string    // decoded: the raw S3 key, "a+b.pdf" in the notification is "a b.pdf" here
	Size      int64     // bytes, as the notification gave it; 0 if absent
	ETag      string    // as the notification gave it, without quotes
	Sequencer string    // orders events for one key; part of the event id
	EventName string    // e.g. "ObjectCreated:Put"
	EventTime time.Time // zero if absent
}

// The values that mark the known message forms.
const (
	nativeVersion    = 1
	nativeType       = "report.ready"
	s3EventSource    = "aws:s3"
	s3CreatedPrefix  = "ObjectCreated:"
	s3TestEventName  = "s3:TestEvent"
	s3TestService    = "Amazon S3"
	snsNotification  = "Notification"
	reservedIDPrefix = "s3:" // ids made by FromObject
)

// Decode reads one SQS message body. It accepts a native report.ready
// event (schema version 1), an S3 event notification with ObjectCreated
// records, and either of those inside an SNS envelope; see docs/events.md.
//
// It returns [ErrTestEvent] for the S3 test event, and a *[FieldError] for
// anything else it cannot use: a body that is not JSON or not a known
// form, and a field that fails validation. Both are final: retrying the
// same body gives the same answer.
func Decode(body []byte) (Decoded, error) {
	return decode("body", body, 0)
}

// decode reads the document body, which field names in errors ("body",
// or "Message" for the payload of an SNS envelope). depth counts the SNS
// envelopes around it.
func decode(field string, body []byte, depth int) (Decoded, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return Decoded{}, invalid(field, string(body), "is empty")
	}
	if !utf8.Valid(body) {
		// encoding/json would quietly turn bad bytes into U+FFFD, which
		// in a key would name a different object.
		return Decoded{}, invalid(field, string(body), "is not valid UTF-8")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return Decoded{}, invalid(field, string(body), reasonNotJSON+": "+syn.Error())
		}
		return Decoded{}, invalid(field, string(body), "is not a JSON object")
	}
	if fields == nil { // the JSON null
		return Decoded{}, invalid(field, string(body), "is not a JSON object")
	}
	o := object{fields: fields}

	// Each form has a key no other form uses; keys match case-sensitively,
	// so the native "type" and the SNS "Type" do not collide.
	native := o.has("version") || o.has("type")
	s3 := o.has("Records")
	test := o.has("Event")
	sns := o.has("Type")
	switch n := count(native, s3, test, sns); {
	case n == 0:
		return Decoded{}, invalid(field, string(body), "is not a known message form")
	case n > 1:
		return Decoded{}, invalid(field, string(body), "mixes the keys of several message forms")
	}

	switch {
	case native:
		e, unknown, err := decodeNative(o)
		if err != nil {
			return Decoded{}, err
		}
		return Decoded{Events: []Event{e}, Unknown: unknown}, nil
	case s3:
		refs, err := decodeNotification(o)
		if err != nil {
			return Decoded{}, err
		}
		return Decoded{Objects: refs}, nil
	case test:
		return Decoded{}, decodeTestEvent(o)
	default:
		if depth > 0 {
			return Decoded{}, invalid(field, string(body), "is an SNS envelope inside another")
		}
		msg, err := decodeSNS(o)
		if err != nil {
			return Decoded{}, err
		}
		return decode("Message", []byte(msg), depth+1)
	}
}

// count returns how many of bs are true.
func count(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// The fields of the native schema, per object.
var (
	nativeFields = []string{"version", "type", "id", "user", "recipients", "reports"}
	userFields   = []string{"id", "email", "name", "locale", "time_zone"}
	reportFields = []string{"bucket", "key", "title", "type", "content_type", "size"}
)

// decodeNative reads and validates a native event, and returns the
// paths of the fields its schema does not know.
func decodeNative(o object) (Event, []string, error) {
	e, err := decodeNativeEvent(o)
	if err != nil {
		return Event{}, nil, err
	}
	unknown := o.unknown(nativeFields...)
	if u, err := o.child("user"); err == nil {
		unknown = append(unknown, u.unknown(userFields...)...)
	}
	reports, _ := o.array("reports")
	for i, r := range reports {
		if ro, err := parseObject(index("reports", i), r); err == nil {
			unknown = append(unknown, ro.unknown(reportFields...)...)
		}
	}
	slices.Sort(unknown)
	return e, unknown, nil
}

// decodeNativeEvent reads and validates a native event.
func decodeNativeEvent(o object) (Event, error) {
	if r := o.raw("version"); r == nil {
		return Event{}, missing("version")
	} else if v, _, err := o.integer("version"); err != nil || v != nativeVersion {
		return Event{}, invalid("version", string(r), "is not a supported version (want 1)")
	}

	typ, err := o.str("type")
	if err != nil {
		return Event{}, err
	}
	if typ == "" {
		return Event{}, missing("type")
	}
	if typ != nativeType {
		return Event{}, invalid("type", typ, `is not a supported type (want "report.ready")`)
	}

	var e Event
	if e.ID, err = o.str("id"); err != nil {
		return Event{}, err
	}
	if err := checkID("id", e.ID); err != nil {
		return Event{}, err
	}
	if strings.HasPrefix(e.ID, reservedIDPrefix) {
		return Event{}, invalid("id", e.ID, `starts with "s3:", which is reserved for S3 notifications`)
	}

	u, err := o.child("user")
	if err != nil {
		return Event{}, err
	}
	if e.User, err = decodeUser(u); err != nil {
		return Event{}, err
	}

	recipients, err := o.array("recipients")
	if err != nil {
		return Event{}, err
	}
	for i, r := range recipients {
		var addr string
		if isNull(r) || json.Unmarshal(r, &addr) != nil {
			return Event{}, invalid(index("recipients", i), string(r), "is not a string")
		}
		// Kept even if invalid: the policy step refuses and logs it, so
		// one mistyped extra address does not stop the user's own email.
		e.Recipients = append(e.Recipients, addr)
	}

	reports, err := o.array("reports")
	if err != nil {
		return Event{}, err
	}
	if len(reports) == 0 || len(reports) > maxReports {
		return Event{}, invalid("reports", "", fmt.Sprintf("has %d entries (want 1 to %d)", len(reports), maxReports))
	}
	e.Reports = make([]Report, len(reports))
	for i, r := range reports {
		ro, err := parseObject(index("reports", i), r)
		if err != nil {
			return Event{}, err
		}
		if e.Reports[i], err = decodeReport(ro); err != nil {
			return Event{}, err
		}
	}
	return e, nil
}

// decodeUser reads and validates the native event's user.
func decodeUser(o object) (User, error) {
	var u User
	var err error
	for _, f := range []struct {
		key string
		dst *string
	}{
		{"id", &u.ID},
		{"email", &u.Email},
		{"name", &u.Name},
		{"locale", &u.Locale},
		{"time_zone", &u.TimeZone},
	} {
		if *f.dst, err = o.str(f.key); err != nil {
			return User{}, err
		}
	}
	if err := checkID(o.name("id"), u.ID); err != nil {
		return User{}, err
	}
	if err := checkEmail(o.name("email"), u.Email); err != nil {
		return User{}, err
	}
	if err := checkText(o.name("name"), u.Name); err != nil {
		return User{}, err
	}
	if err := checkLocale(o.name("locale"), u.Locale); err != nil {
		return User{}, err
	}
	if err := checkTimeZone(o.name("time_zone"), u.TimeZone); err != nil {
		return User{}, err
	}
	return u, nil
}

// decodeReport reads and validates one entry of the native reports array.
func decodeReport(o object) (Report, error) {
	var r Report
	var err error
	for _, f := range []struct {
		key string
		dst *string
	}{
		{"bucket", &r.Bucket},
		{"key", &r.Key},
		{"title", &r.Title},
		{"type", &r.Type},
		{"content_type", &r.ContentType},
	} {
		if *f.dst, err = o.str(f.key); err != nil {
			return Report{}, err
		}
	}
	size, _, err := o.integer("size")
	if err != nil {
		return Report{}, err
	}
	r.Size = size

	if err := checkBucket(o.name("bucket"), r.Bucket); err != nil {
		return Report{}, err
	}
	if err := checkKey(o.name("key"), r.Key); err != nil {
		return Report{}, err
	}
	if r.Title == "" {
		r.Title = defaultTitle(r.Key)
	}
	if err := checkText(o.name("title"), r.Title); err != nil {
		return Report{}, err
	}
	if err := checkText(o.name("type"), r.Type); err != nil {
		return Report{}, err
	}
	if err := checkText(o.name("content_type"), r.ContentType); err != nil {
		return Report{}, err
	}
	if r.Size < 0 {
		return Report{}, invalid(o.name("size"), string(o.raw("size")), "is negative")
	}
	return r, nil
}

// decodeNotification reads an S3 event notification.
func decodeNotification(o object) ([]ObjectRef, error) {
	records, err := o.array("Records")
	if err != nil {
		return nil, err
	}
	if len(records) == 0 {
		return nil, invalid("Records", "", "has no entries")
	}
	refs := make([]ObjectRef, len(records))
	for i, r := range records {
		ro, err := parseObject(index("Records", i), r)
		if err != nil {
			return nil, err
		}
		if refs[i], err = decodeRecord(ro); err != nil {
			return nil, err
		}
	}
	return refs, nil
}

// decodeRecord reads one record of an S3 event notification. Only
// ObjectCreated records are accepted: the worker mails new reports, and
// any other event on the bucket means the notification is misconfigured.
func decodeRecord(o object) (ObjectRef, error) {
	var ref ObjectRef
	source, err := o.str("eventSource")
	if err != nil {
		return ObjectRef{}, err
	}
	if source != "" && source != s3EventSource {
		return ObjectRef{}, invalid(o.name("eventSource"), source, `is not "aws:s3"`)
	}
	version, err := o.str("eventVersion")
	if err != nil {
		return ObjectRef{}, err
	}
	if major, _, _ := strings.Cut(version, "."); version != "" && major != "2" {
		return ObjectRef{}, invalid(o.name("eventVersion"), version, "is not a supported version (want 2.x)")
	}

	if ref.EventName, err = o.str("eventName"); err != nil {
		return ObjectRef{}, err
	}
	if ref.EventName == "" {
		return ObjectRef{}, missing(o.name("eventName"))
	}
	if !strings.HasPrefix(ref.EventName, s3CreatedPrefix) {
		return ObjectRef{}, invalid(o.name("eventName"), ref.EventName, "is not an ObjectCreated event")
	}

	eventTime, err := o.str("eventTime")
	if err != nil {
		return ObjectRef{}, err
	}
	if eventTime != "" {
		if ref.EventTime, err = time.Parse(time.RFC3339Nano, eventTime); err != nil {
			return ObjectRef{}, invalid(o.name("eventTime"), eventTime, "is not an RFC 3339 time")
		}
	}

	s3, err := o.child("s3")
	if err != nil {
		return ObjectRef{}, err
	}
	bucket, err := s3.child("bucket")
	if err != nil {
		return ObjectRef{}, err
	}
	if ref.Bucket, err = bucket.str("name"); err != nil {
		return ObjectRef{}, err
	}
	if err := checkBucket(bucket.name("name"), ref.Bucket); err != nil {
		return ObjectRef{}, err
	}

	obj, err := s3.child("object")
	if err != nil {
		return ObjectRef{}, err
	}
	encoded, err := obj.str("key")
	if err != nil {
		return ObjectRef{}, err
	}
	if encoded == "" {
		return ObjectRef{}, missing(obj.name("key"))
	}
	// S3 form-encodes the key: "+" is a space and "%2B" a plus.
	if ref.Key, err = url.QueryUnescape(encoded); err != nil {
		return ObjectRef{}, invalid(obj.name("key"), encoded, "is not URL-encoded")
	}
	if p := keyProblem(ref.Key); p != "" {
		return ObjectRef{}, invalid(obj.name("key"), encoded, "decodes to a key that "+p)
	}
	if ref.Size, _, err = obj.integer("size"); err != nil {
		return ObjectRef{}, err
	}
	if ref.Size < 0 {
		return ObjectRef{}, invalid(obj.name("size"), string(obj.raw("size")), "is negative")
	}
	if ref.ETag, err = obj.str("eTag"); err != nil {
		return ObjectRef{}, err
	}
	if ref.Sequencer, err = obj.str("sequencer"); err != nil {
		return ObjectRef{}, err
	}
	if err := checkVersionTag(obj.name("eTag"), obj.name("sequencer"), ref.ETag, ref.Sequencer); err != nil {
		return ObjectRef{}, err
	}
	return ref, nil
}

// checkVersionTag validates the eTag and sequencer, which tell one upload
// of a key from the next and so go into the event id: at least one must
// be set, and both must be valid ids.
func checkVersionTag(etagField, seqField, etag, seq string) error {
	if etag == "" && seq == "" {
		return invalid(seqField, "", "is required when there is no eTag")
	}
	if etag != "" {
		if err := checkID(etagField, etag); err != nil {
			return err
		}
	}
	if seq != "" {
		if err := checkID(seqField, seq); err != nil {
			return err
		}
	}
	return nil
}

// decodeTestEvent checks the S3 test event and returns ErrTestEvent.
func decodeTestEvent(o object) error {
	name, err := o.str("Event")
	if err != nil {
		return err
	}
	if name == "" {
		return missing("Event")
	}
	if name != s3TestEventName {
		return invalid("Event", name, `is not a known S3 event (want "s3:TestEvent")`)
	}
	service, err := o.str("Service")
	if err != nil {
		return err
	}
	if service == "" {
		return missing("Service")
	}
	if service != s3TestService {
		return invalid("Service", service, `is not "Amazon S3"`)
	}
	return ErrTestEvent
}

// decodeSNS checks an SNS envelope and returns the message it carries.
// The envelope's signature is not checked: the queue's access policy
// decides which topics may send to it.
func decodeSNS(o object) (string, error) {
	typ, err := o.str("Type")
	if err != nil {
		return "", err
	}
	if typ == "" {
		return "", missing("Type")
	}
	if typ != snsNotification {
		return "", invalid("Type", typ, `is not an SNS notification (want "Notification")`)
	}
	msg, err := o.str("Message")
	if err != nil {
		return "", err
	}
	if msg == "" {
		return "", missing("Message")
	}
	return msg, nil
}
