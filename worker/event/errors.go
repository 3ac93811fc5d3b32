package event

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrTestEvent is returned by [Decode] for the s3:TestEvent that S3 sends
// once when a bucket notification is configured, directly or inside an
// SNS envelope. It carries no report: the caller deletes the message and
// does not retry it. Test for it with errors.Is.
var ErrTestEvent = errors.New("s3 test event")

// FieldError reports a message that cannot become an event: its body is
// not JSON, not one of the known forms, or a field fails validation.
// Retrying cannot fix it, so callers treat it as a poison message and
// dead-letter it. Test for it with errors.As.
type FieldError struct {
	// Field names what is wrong: a JSON path such as "reports[2].key"
	// or "Records[0].s3.object.key", "metadata user-email" for S3 user
	// metadata, or "body" (and "Message" inside an SNS envelope) when
	// the whole document is unusable.
	Field string
	// Value is the offending value as received, untruncated; for a value
	// of the wrong JSON type it is the raw JSON text. It is empty when
	// the field is missing.
	Value string
	// Reason says what is wrong with Value, e.g. "is not a valid address".
	Reason string
}

// maxErrorValue is how many bytes of Value an error message quotes.
const maxErrorValue = 100

// Error returns `field: "value" reason`, or `field: reason` when Value is
// empty. Value is quoted with %q, so control characters cannot reach a log
// line raw, and cut to about 100 bytes with the full length noted.
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.Field)
	b.WriteString(": ")
	if v := e.Value; v != "" {
		if len(v) > maxErrorValue {
			cut := maxErrorValue
			// Back up to a rune start so the quoted prefix stays readable;
			// at most UTFMax-1 steps, as invalid UTF-8 has no boundary.
			for i := 1; i < utf8.UTFMax && !utf8.RuneStart(v[cut]); i++ {
				cut--
			}
			fmt.Fprintf(&b, "%q... (%d bytes) ", v[:cut], len(v))
		} else {
			fmt.Fprintf(&b, "%q ", v)
		}
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Reasons that [FieldError.Missing] and [FieldError.NotJSON] tell apart.
const (
	reasonRequired = "is required"
	reasonNotJSON  = "is not JSON"
)

// Missing reports whether the field is absent, null or empty.
func (e *FieldError) Missing() bool { return e.Reason == reasonRequired }

// NotJSON reports whether the whole body (or an SNS envelope's
// Message) is not JSON text, or not valid UTF-8.
func (e *FieldError) NotJSON() bool {
	return strings.HasPrefix(e.Reason, reasonNotJSON+":") || e.Reason == "is not valid UTF-8"
}

// invalid returns a *FieldError as an error.
func invalid(field, value, reason string) error {
	return &FieldError{Field: field, Value: value, Reason: reason}
}

// missing returns the *FieldError for a required field that is absent,
// null or empty.
func missing(field string) error {
	return &FieldError{Field: field, Reason: reasonRequired}
}
