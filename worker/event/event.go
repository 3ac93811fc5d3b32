// Package event defines what a "report ready" event is and decodes the
// message bodies that carry one: the native JSON event (schema version
// 1) and the S3 ObjectCreated notification, direct or wrapped by SNS.
package event

// User is the person a report belongs to.
type User struct {
	ID       string
	Email    string
	Name     string
	Locale   string // BCP 47 tag, e.g. "en-GB"; empty means "en"
	TimeZone string // IANA name, e.g. "Europe/London"; empty means UTC
}

// Report is one file in the private bucket.
type Report struct {
	Bucket      string
	Key         string // raw S3 key, not URL-encoded
	Title       string // never empty: defaults to the key's base name
	Type        string // report type, e.g. "invoice"; optional
	Size        int64  // bytes; 0 when unknown
	ContentType string // optional
	// Token is set by the worker, never decoded from an event: the
	// per-recipient token of a traced link (links.trace), which the
	// signer puts in the URL before signing it (linktoken.Param).
	Token string
}

// Event is one validated "report ready" event: a user, the extra
// recipients that user allowed, and the reports to link.
//
// ID is the producer's id for a native event, and
// "s3:<bucket>/<key>@<sequencer or eTag>" for one built by [FromObject];
// see docs/events.md. Recipients are kept as received, including ones
// that fail [ValidAddress]: the recipient policy step refuses those.
type Event struct {
	ID         string // stable across redeliveries; used for de-duplication
	User       User
	Recipients []string // extra recipients the user allowed, before policy
	Reports    []Report // 1 to 100
}
