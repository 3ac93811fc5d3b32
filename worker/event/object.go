package event

import (
	"cmp"
	"maps"
	"mime"
	"slices"
	"strings"
)

// The S3 user metadata names that FromObject reads. S3 sends each as an
// "x-amz-meta-" header, and the SDK hands them over lower-case without
// that prefix.
const (
	metaUserID     = "user-id"
	metaUserEmail  = "user-email" // required
	metaUserName   = "user-name"
	metaLocale     = "user-locale"
	metaTimeZone   = "user-timezone"
	metaRecipients = "recipients" // comma-separated
	metaTitle      = "title"
	metaReportType = "report-type"
)

// FromObject builds the event for an object named by an S3 notification,
// from what HeadObject returned for it: its size, content type and user
// metadata (meta, keys lower-case without "x-amz-meta-"; other spellings
// are folded to that form). The metadata names are listed in
// docs/events.md; only user-email is required, and user-id defaults to
// it.
//
// S3 metadata travels as HTTP headers, so it is ASCII. Producers encode
// other text as RFC 2047 encoded words ("=?UTF-8?B?...?="), and S3
// itself returns non-ASCII values that way; user-name, title and
// report-type are decoded here.
//
// The event id is "s3:" + bucket + "/" + key + "@" + the notification's
// sequencer (its eTag when there is none): redeliveries of one
// notification share it, and a new upload of the same key gets a new one.
//
// Errors are *[FieldError] values naming the metadata field, such as
// "metadata user-email", or "object ..." for a bad ref.
func FromObject(ref ObjectRef, size int64, contentType string, meta map[string]string) (Event, error) {
	// ref normally comes from Decode, which has checked all of this; it is
	// checked again so a hand-made ref cannot produce an invalid event.
	if err := checkBucket("object bucket", ref.Bucket); err != nil {
		return Event{}, err
	}
	if err := checkKey("object key", ref.Key); err != nil {
		return Event{}, err
	}
	if err := checkVersionTag("object eTag", "object sequencer", ref.ETag, ref.Sequencer); err != nil {
		return Event{}, err
	}
	if size < 0 {
		return Event{}, invalid("object size", "", "is negative")
	}

	m := normalizeMetadata(meta)
	u := User{
		Email:    m[metaUserEmail],
		Locale:   m[metaLocale],
		TimeZone: m[metaTimeZone],
	}
	if err := checkEmail(metaField(metaUserEmail), u.Email); err != nil {
		return Event{}, err
	}
	u.ID = cmp.Or(m[metaUserID], u.Email)
	if err := checkID(metaField(metaUserID), u.ID); err != nil {
		return Event{}, err
	}
	var err error
	if u.Name, err = metaText(m, metaUserName); err != nil {
		return Event{}, err
	}
	if err := checkLocale(metaField(metaLocale), u.Locale); err != nil {
		return Event{}, err
	}
	if err := checkTimeZone(metaField(metaTimeZone), u.TimeZone); err != nil {
		return Event{}, err
	}

	r := Report{
		Bucket:      ref.Bucket,
		Key:         ref.Key,
		Size:        size,
		ContentType: contentType,
	}
	if r.Title, err = metaText(m, metaTitle); err != nil {
		return Event{}, err
	}
	if r.Title == "" {
		r.Title = defaultTitle(r.Key)
	}
	if r.Type, err = metaText(m, metaReportType); err != nil {
		return Event{}, err
	}
	if err := checkText("object content type", r.ContentType); err != nil {
		return Event{}, err
	}

	var recipients []string
	for _, addr := range strings.Split(m[metaRecipients], ",") {
		// Kept even if invalid, as in Decode: the policy step refuses it.
		if addr = strings.TrimSpace(addr); addr != "" {
			recipients = append(recipients, addr)
		}
	}

	return Event{
		ID:         reservedIDPrefix + ref.Bucket + "/" + ref.Key + "@" + cmp.Or(ref.Sequencer, ref.ETag),
		User:       u,
		Recipients: recipients,
		Reports:    []Report{r},
	}, nil
}

// metaField names a metadata field in errors.
func metaField(name string) string {
	return "metadata " + name
}

// metaText returns a free-text metadata value with RFC 2047 encoded words
// decoded, and checks the result: decoding can produce the control
// characters that the header form could not carry.
func metaText(m map[string]string, name string) (string, error) {
	raw := m[name]
	if raw == "" {
		return "", nil
	}
	s, err := new(mime.WordDecoder).DecodeHeader(raw)
	if err != nil {
		return "", invalid(metaField(name), raw, "is not valid RFC 2047 text")
	}
	if err := checkText(metaField(name), s); err != nil {
		return "", err
	}
	return s, nil
}

// normalizeMetadata returns meta with keys lower-cased, any "x-amz-meta-"
// prefix removed and values trimmed of spaces, as HTTP does. When two keys
// fold to one name, the one already in canonical form wins, and otherwise
// the first in sorted order, so the result does not depend on map order.
func normalizeMetadata(meta map[string]string) map[string]string {
	m := make(map[string]string, len(meta))
	for _, k := range slices.Sorted(maps.Keys(meta)) {
		name := strings.TrimPrefix(strings.ToLower(k), "x-amz-meta-")
		if _, dup := m[name]; dup && k != name {
			continue
		}
		m[name] = strings.TrimSpace(meta[k])
	}
	return m
}
