package sesevents

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"unicode/utf8"

	"github.com/reportmailer/reportmailer/worker"
)

// Tag is the SES message tag every email the worker sends carries: its
// value is the email's id in the ledger, and SES copies it into the
// mail.tags of each event it publishes for that email.
const Tag = worker.EmailTag

// Proof is what an event says about whether SES accepted its email.
type Proof int

const (
	// Unknown: an event type this package does not know.
	Unknown Proof = iota
	// Accepted: SES accepted the email (it returned a message id).
	Accepted
	// NotSent: SES did not send the email and never will.
	NotSent
)

func (p Proof) String() string {
	switch p {
	case Accepted:
		return "accepted"
	case NotSent:
		return "not sent"
	}
	return "unknown"
}

// The SES event types (eventType), as SES names them in its event
// records: "Developer Guide, Contents of event data that Amazon SES
// publishes to Amazon SNS".
const (
	TypeSend             = "Send"
	TypeDelivery         = "Delivery"
	TypeBounce           = "Bounce"
	TypeComplaint        = "Complaint"
	TypeDeliveryDelay    = "DeliveryDelay"
	TypeOpen             = "Open"
	TypeClick            = "Click"
	TypeSubscription     = "Subscription"
	TypeReject           = "Reject"
	TypeRenderingFailure = "Rendering Failure"
)

// proofs maps each event type to what it proves. Every type but Reject
// and Rendering Failure is published only for an email SES accepted:
// it was sent, delivered, bounced (suppression-list bounces included),
// complained about, delayed, opened, clicked or unsubscribed from.
// Reject (a virus) and Rendering Failure (a template) mean SES stopped
// before sending. SES's Firehose and CloudWatch pages spell Rendering
// Failure without the space, so both spellings are read.
var proofs = map[string]Proof{
	TypeSend: Accepted, TypeDelivery: Accepted, TypeBounce: Accepted, TypeComplaint: Accepted,
	TypeDeliveryDelay: Accepted, TypeOpen: Accepted, TypeClick: Accepted, TypeSubscription: Accepted,
	TypeReject: NotSent, TypeRenderingFailure: NotSent, "RenderingFailure": NotSent,
}

// detailTypes maps the detail-type of SES's EventBridge events to the
// event type their detail holds ("Amazon EventBridge events reference,
// Amazon SES"). The other SES detail-types (Virtual Deliverability
// Manager advisor, sending status) are about no email.
var detailTypes = map[string]string{
	"Email Sent":               TypeSend,
	"Email Delivered":          TypeDelivery,
	"Email Bounced":            TypeBounce,
	"Email Complaint Received": TypeComplaint,
	"Email Delivery Delayed":   TypeDeliveryDelay,
	"Email Opened":             TypeOpen,
	"Email Clicked":            TypeClick,
	"Email Subscribed":         TypeSubscription,
	"Email Rejected":           TypeReject,
	"Email Rendering Failed":   TypeRenderingFailure,
}

// Envelopes an event can arrive in.
const (
	EnvelopeRaw         = "raw"         // the SES event record itself (SNS raw message delivery)
	EnvelopeSNS         = "sns"         // an SNS notification whose Message is the record
	EnvelopeEventBridge = "eventbridge" // an EventBridge event whose detail is the record
)

// Event is one SES sending event about an email the worker sent.
type Event struct {
	// Type is the SES event type, e.g. "Send".
	Type string
	// EmailID is the value of the email's reportmailer-email tag.
	EmailID string
	// MessageID is the id SES gave the email (mail.messageId): the one
	// SendEmail returned, or would have.
	MessageID string
	// Envelope is how the event came: EnvelopeRaw, EnvelopeSNS or
	// EnvelopeEventBridge, the last perhaps inside an SNS notification
	// ("sns/eventbridge").
	Envelope string
}

// Proves says what the event proves about its email.
func (e Event) Proves() Proof { return proofs[e.Type] }

// ErrUnrelated marks a message that is not an SES sending event about an
// email the worker sent: another service's event, an SES event without
// the reportmailer-email tag (another sender's email on the same
// configuration set), an SES identity notification, or JSON of no known
// shape. It is safe to delete.
var ErrUnrelated = errors.New("not an SES event about an email of ours")

// ErrSubscriptionConfirmation marks an SNS SubscriptionConfirmation or
// UnsubscribeConfirmation. It is not deleted: an operator may need its
// SubscribeURL, which the queue's dead-letter queue keeps.
var ErrSubscriptionConfirmation = errors.New("an SNS subscription message, not a notification")

// FieldError is a message that claims to be an SES event but cannot be
// read: a body that is not JSON, a broken envelope, or an event of ours
// (it has the tag) without what settling needs. It names the field as a
// JSON path and quotes the value, shortened.
type FieldError struct {
	Field  string // e.g. "detail.mail.messageId"
	Value  string // the bad value, raw; "" when absent
	Reason string
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("%s: %s %s", e.Field, short(e.Value), e.Reason)
}

// short quotes s, cut to about 100 bytes, with its length when cut.
func short(s string) string {
	const max = 100
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(s[:cut]), len(s))
}

func bad(field, value, reason string) error {
	return &FieldError{Field: field, Value: value, Reason: reason}
}

// emailIDRE is what SES allows in a message tag's value: ASCII letters,
// digits, '_' and '-', at most 256 characters. SES never publishes a
// value of our tag outside it, so anything else was not written by SES.
var emailIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`)

// maxMessageID bounds mail.messageId; SES's are about 60 characters.
const maxMessageID = 256

// Parse reads one SQS message body from the queue SES's events are
// published to, in any of the forms AWS delivers them: an EventBridge
// event (a rule on the default bus with an SQS target), an SNS
// notification (a topic with an SQS subscription), or, with SNS raw
// message delivery, the SES event record itself. An EventBridge event
// inside an SNS notification (a rule with an SNS target) is read too.
//
// It returns an error wrapping [ErrUnrelated] for what is not about an
// email of ours, [ErrSubscriptionConfirmation] for SNS's subscription
// messages, and a *[FieldError] for a body it cannot read. An event of
// ours needs its mail.messageId and exactly one value of [Tag].
func Parse(body []byte) (Event, error) {
	return parse("body", body, "")
}

// parse reads the document body found at field; outer is the envelope
// it came in, "" at the top.
func parse(field string, body []byte, outer string) (Event, error) {
	o, err := object(field, body)
	if err != nil {
		return Event{}, err
	}
	// Keys match exactly: SNS's "Type" is not EventBridge's "type", and
	// encoding/json's case-insensitive matching would blur them.
	switch {
	case o.has("Type") && o.has("MessageId"):
		if outer != "" {
			return Event{}, bad(field, string(body), "is an SNS notification inside another envelope")
		}
		return parseSNS(o)
	case o.has("detail-type") && o.has("source"):
		if outer == EnvelopeEventBridge {
			return Event{}, bad(field, string(body), "is an EventBridge event inside another")
		}
		return parseEventBridge(o, outer)
	case o.has("eventType"):
		env := EnvelopeRaw
		if outer != "" {
			env = outer
		}
		return parseRecord(o, "", "", env)
	case o.has("notificationType"):
		// An identity's feedback notification: SES publishes no tags in
		// those, so none is about an email of ours.
		return Event{}, fmt.Errorf("an SES %s notification, not event publishing: %w", o.text("notificationType"), ErrUnrelated)
	}
	return Event{}, fmt.Errorf("%s: JSON of no known SES event form: %w", field, ErrUnrelated)
}

// parseSNS reads an SNS message: a Notification's Message is the SES
// event record (or an EventBridge event) as a string.
func parseSNS(o obj) (Event, error) {
	typ, err := o.str("Type")
	if err != nil {
		return Event{}, err
	}
	switch typ {
	case "Notification":
	case "SubscriptionConfirmation", "UnsubscribeConfirmation":
		return Event{}, fmt.Errorf("SNS %s for topic %s: %w", typ, o.text("TopicArn"), ErrSubscriptionConfirmation)
	default:
		return Event{}, bad("Type", typ, `is not an SNS message type (want "Notification")`)
	}
	msg, err := o.str("Message")
	if err != nil {
		return Event{}, err
	}
	if msg == "" {
		return Event{}, bad("Message", "", "is required in an SNS notification")
	}
	return parse("Message", []byte(msg), EnvelopeSNS)
}

// parseEventBridge reads an EventBridge event. SES's email events carry
// the event record as their detail.
func parseEventBridge(o obj, outer string) (Event, error) {
	env := EnvelopeEventBridge
	if outer != "" {
		env = outer + "/" + EnvelopeEventBridge
	}
	source, err := o.str("source")
	if err != nil {
		return Event{}, err
	}
	dt, err := o.str("detail-type")
	if err != nil {
		return Event{}, err
	}
	if source != "aws.ses" {
		return Event{}, fmt.Errorf("an EventBridge event from %s: %w", strconv.Quote(source), ErrUnrelated)
	}
	typ, ok := detailTypes[dt]
	if !ok {
		return Event{}, fmt.Errorf("an SES EventBridge event %s, about no email: %w", strconv.Quote(dt), ErrUnrelated)
	}
	detail, err := o.object("detail")
	if err != nil {
		return Event{}, err
	}
	return parseRecord(detail, typ, "detail-type", env)
}

// parseRecord reads an SES event record. want, when set, is the type
// the envelope's field wantField says it is.
func parseRecord(o obj, want, wantField, env string) (Event, error) {
	typ := want
	if o.has("eventType") {
		t, err := o.str("eventType")
		if err != nil {
			return Event{}, err
		}
		if want != "" && !sameType(t, want) {
			return Event{}, bad(o.name("eventType"), t, fmt.Sprintf("disagrees with %s (%s)", wantField, want))
		}
		typ = t
	}
	if typ == "" {
		return Event{}, bad(o.name("eventType"), "", "is required")
	}
	mail, err := o.object("mail")
	if err != nil {
		return Event{}, err
	}
	id, err := emailID(mail)
	if err != nil {
		return Event{}, err
	}
	mid, err := mail.str("messageId")
	if err != nil {
		return Event{}, err
	}
	switch {
	case mid == "":
		return Event{}, bad(mail.name("messageId"), "", "is required")
	case len(mid) > maxMessageID || !printable(mid):
		return Event{}, bad(mail.name("messageId"), mid, "is not an SES message id")
	}
	return Event{Type: typ, EmailID: id, MessageID: mid, Envelope: env}, nil
}

// sameType compares event types, taking either spelling of Rendering
// Failure.
func sameType(a, b string) bool {
	norm := func(s string) string {
		if s == "RenderingFailure" {
			return TypeRenderingFailure
		}
		return s
	}
	return norm(a) == norm(b)
}

// emailID returns the value of our tag in mail.tags, where SES lists
// each tag's values: {"reportmailer-email": ["<id>"]}.
func emailID(mail obj) (string, error) {
	if !mail.has("tags") {
		return "", fmt.Errorf("%s: no tags: %w", mail.name("tags"), ErrUnrelated)
	}
	tags, err := mail.object("tags")
	if err != nil {
		return "", err
	}
	if !tags.has(Tag) {
		return "", fmt.Errorf("%s: no %s tag: %w", tags.path, Tag, ErrUnrelated)
	}
	field := tags.name(Tag)
	raw := tags.fields[Tag]
	var values []string
	if err := json.Unmarshal(raw, &values); err != nil || values == nil {
		return "", bad(field, string(raw), "is not a list of strings")
	}
	switch len(values) {
	case 0:
		return "", bad(field, string(raw), "is empty")
	case 1:
	default:
		return "", bad(field, string(raw), "holds more than one value; an email has one id")
	}
	if !emailIDRE.MatchString(values[0]) {
		return "", bad(field, values[0], "is not a tag value SES writes (ASCII letters, digits, '_' and '-')")
	}
	return values[0], nil
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x21 || r > 0x7e {
			return false
		}
	}
	return true
}

// obj is a JSON object read field by field, so that keys match exactly
// and errors name the path.
type obj struct {
	path   string
	fields map[string]json.RawMessage
}

// object reads body, found at field, as a JSON object.
func object(field string, body []byte) (obj, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return obj{}, bad(field, "", "is empty")
	}
	if !utf8.Valid(body) {
		return obj{}, bad(field, string(body), "is not valid UTF-8")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return obj{}, bad(field, string(body), "is not JSON: "+syn.Error())
		}
		return obj{}, bad(field, string(body), "is not a JSON object")
	}
	// A document named "body" or "Message" is the root of its paths.
	return obj{fields: fields}, nil
}

func (o obj) has(key string) bool {
	_, ok := o.fields[key]
	return ok
}

// name is the JSON path of the field key.
func (o obj) name(key string) string {
	if o.path == "" {
		return key
	}
	return o.path + "." + key
}

// str returns the string field key; absent or null is "".
func (o obj) str(key string) (string, error) {
	raw := o.fields[key]
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", bad(o.name(key), string(raw), "is not a string")
	}
	return s, nil
}

// text returns the string field key quoted, for a message; "" when it
// is not a string.
func (o obj) text(key string) string {
	s, _ := o.str(key)
	return strconv.Quote(s)
}

// object returns the object field key, which is required.
func (o obj) object(key string) (obj, error) {
	raw := o.fields[key]
	path := o.name(key)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return obj{}, bad(path, "", "is required")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return obj{}, bad(path, string(raw), "is not a JSON object")
	}
	return obj{path: path, fields: fields}, nil
}
