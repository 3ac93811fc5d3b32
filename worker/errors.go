package worker

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/reportmailer/reportmailer/worker/event"
)

// The pipeline sorts every failure into a class, and each class says
// what happens to the message:
//
//   - transient (the default): the message is left on the queue and is
//     tried again after its visibility timeout; the queue's RedrivePolicy
//     decides when it has been tried often enough.
//   - permanent: trying again cannot help, so the message goes to the
//     dead-letter queue at once, with the reason recorded.
//   - ambiguous: an email may or may not have been accepted. The delivery
//     is left claimed in the ledger, so no later try sends it again
//     unless an operator asks for it.
//   - halt: nothing more can be sent in this run (the sending quota is
//     spent, the sender is not verified, the reports cannot be read).
//     The run stops receiving and sending, and hands back the messages
//     it holds, untouched, for a later run; see [HaltUntil] and
//     [HaltRecord].
//
// Adapters wrap the errors they return with [Permanent], [Ambiguous] or
// [Halt], or with [Fail] to give the failure a [Code] as well; anything
// unwrapped is transient.

// Class is what a failure does to the message it concerns.
type Class string

// The classes of failure.
const (
	ClassTransient Class = "transient"
	ClassPermanent Class = "permanent"
	ClassAmbiguous Class = "ambiguous"
	ClassHalt      Class = "halt"
)

// Code names a kind of failure for programs: the dead-letter queue's
// reportmailer-code attribute, logs, and tools that filter dead letters.
// Codes are stable; new ones may be added. docs/design.md lists them.
type Code string

// Failure codes. The class each one usually comes with is in brackets.
const (
	// CodeInvalidEvent: the body is not a valid event: a field has a
	// bad value, or the document is of no known form (permanent).
	CodeInvalidEvent Code = "invalid_event"
	// CodeInvalidJSON: the body is not JSON text, or not UTF-8
	// (permanent).
	CodeInvalidJSON Code = "invalid_json"
	// CodeMissingField: the body lacks a field an event requires
	// (permanent); the reason names it.
	CodeMissingField Code = "missing_field"
	// CodeInvalidMetadata: an S3 notification's object has metadata
	// that makes no valid event, such as no user-email (permanent).
	CodeInvalidMetadata Code = "invalid_metadata"
	// CodeObjectMissing: a report's object does not exist; S3 said 404
	// (permanent).
	CodeObjectMissing Code = "object_missing"
	// CodeObjectAccessDenied: S3 answered 403 to HeadObject on a report:
	// the worker may not read it, nor, most likely, any other report,
	// so the run halts (halt).
	CodeObjectAccessDenied Code = "object_access_denied"
	// CodeHeadFailed: HeadObject on a report failed otherwise, e.g. a
	// timeout or a 5xx (transient).
	CodeHeadFailed Code = "head_failed"
	// CodeBucketNotServed: a report is in a bucket, or outside the key
	// prefix or origin path, that this worker and its links do not
	// serve (permanent).
	CodeBucketNotServed Code = "bucket_not_served"
	// CodeLinkFailed: a report's link could not be signed (permanent
	// when the report makes it so, transient otherwise).
	CodeLinkFailed Code = "link_failed"
	// CodeComposeFailed: the email could not be rendered (permanent).
	CodeComposeFailed Code = "compose_failed"
	// CodeRecipientRefused: an extra recipient's domain is not in
	// recipients.allowed_domains. The message's other recipients got
	// their emails; the message is dead-lettered so that, once the
	// config allows the domain, a redrive sends the refused ones only
	// (permanent).
	CodeRecipientRefused Code = "recipient_refused"
	// CodeSESRejected: SES refused the email (permanent).
	CodeSESRejected Code = "ses_rejected"
	// CodeSendFailed: the send failed and the email was certainly not
	// accepted (transient).
	CodeSendFailed Code = "send_failed"
	// CodeMaybeSent: the email may have been accepted; the ledger keeps
	// it from being sent again (ambiguous).
	CodeMaybeSent Code = "maybe_sent"
	// CodeLedgerUnreadable: a ledger record exists but cannot be read
	// as one (permanent).
	CodeLedgerUnreadable Code = "ledger_unreadable"
	// CodeLedgerFailed: the ledger could not be reached (transient).
	CodeLedgerFailed Code = "ledger_failed"
	// CodeClaimedElsewhere: another run holds the delivery's claim and
	// may still be sending it (transient).
	CodeClaimedElsewhere Code = "claimed_elsewhere"
	// CodeCopyFailed: another copy of the same message in the batch was
	// not delivered, so this one is not acknowledged either (transient).
	CodeCopyFailed Code = "copy_failed"
	// CodeHalted: the run stopped sending (the quota is spent, or the
	// account cannot send), or an earlier run's halt still holds, and
	// the message was handed back or never received (halt).
	CodeHalted Code = "halted"
	// CodeShutdown: the process is shutting down and handed the message
	// back (halt).
	CodeShutdown Code = "shutdown"
	// CodeThrottled: a service every message needs (KMS, which signs
	// the links) throttles, so the run stopped sending for a short while
	// and handed the message back (halt). Unlike other halts, a repeat
	// does not double: throttling clears by itself.
	CodeThrottled Code = "throttled"
)

// failure is an error with a class, and optionally a code and, for a
// halt, when sending may work again.
type failure struct {
	class Class
	code  Code
	until time.Time
	err   error
}

func (e *failure) Error() string { return e.err.Error() }
func (e *failure) Unwrap() error { return e.err }

// Fail marks err with class and code. It returns nil for a nil err. An
// empty code leaves the code to whoever handles the error (see
// [CodeOf]); an empty class is [ClassTransient].
func Fail(code Code, class Class, err error) error {
	if err == nil {
		return nil
	}
	return &failure{class: cmp.Or(class, ClassTransient), code: code, err: err}
}

// Permanent marks err as one that retrying cannot fix. It returns nil
// for a nil err.
func Permanent(err error) error { return Fail("", ClassPermanent, err) }

// PermanentCode is [Permanent] with a code.
func PermanentCode(code Code, err error) error { return Fail(code, ClassPermanent, err) }

// Ambiguous marks err as one after which the effect (an email accepted)
// may or may not have happened. It returns nil for a nil err.
func Ambiguous(err error) error { return Fail("", ClassAmbiguous, err) }

// Halt marks err as one that ends the run's sending: the email was
// certainly not sent, and no other email should be tried now. It
// returns nil for a nil err.
func Halt(err error) error { return Fail("", ClassHalt, err) }

// HaltUntil is [Halt] for a condition that cannot clear before t, such
// as a spent sending quota: the run hides the messages it hands back
// until about then (see [RetryAfter]) rather than making them visible
// at once, since each receive counts towards the queue's
// maxReceiveCount. It returns nil for a nil err.
func HaltUntil(err error, t time.Time) error {
	if err == nil {
		return nil
	}
	return &failure{class: ClassHalt, until: t, err: err}
}

// IsHalt reports whether err, or any error it wraps, was marked with
// [Halt] or [HaltUntil].
func IsHalt(err error) bool { return hasClass(err, ClassHalt) }

// IsPermanent reports whether err, or any error it wraps, was marked
// with [Permanent].
func IsPermanent(err error) bool { return hasClass(err, ClassPermanent) }

// IsAmbiguous reports whether err, or any error it wraps, was marked
// with [Ambiguous].
func IsAmbiguous(err error) bool { return hasClass(err, ClassAmbiguous) }

// ClassOf returns what err means for a message: ambiguous or permanent
// if it or any error it wraps was so marked (in that order), else halt
// if one was, else transient. It returns "" for a nil err.
func ClassOf(err error) Class {
	switch {
	case err == nil:
		return ""
	case IsAmbiguous(err):
		return ClassAmbiguous
	case IsPermanent(err):
		return ClassPermanent
	case IsHalt(err):
		return ClassHalt
	}
	return ClassTransient
}

// CodeOf returns the first code found in err's chain, outermost first,
// or "" if none was given.
func CodeOf(err error) Code {
	var code Code
	walk(err, func(f *failure) bool {
		code = f.code
		return code != ""
	})
	return code
}

// RetryAfter returns the time a halt error says sending may work again
// (see [HaltUntil]), and false if it says none.
func RetryAfter(err error) (time.Time, bool) {
	var t time.Time
	walk(err, func(f *failure) bool {
		if f.class == ClassHalt && !f.until.IsZero() {
			t = f.until
			return true
		}
		return false
	})
	return t, !t.IsZero()
}

func hasClass(err error, c Class) bool {
	return walk(err, func(f *failure) bool { return f.class == c })
}

// walk calls f on each *failure in err's tree, depth first as
// errors.As searches, until f returns true; it reports whether one did.
func walk(err error, f func(*failure) bool) bool {
	for err != nil {
		if e, ok := err.(*failure); ok && f(e) {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if walk(e, f) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}

// Failure is what became of a message that was not done: what happens
// to it (Class), a stable Code, and a Reason for people. EventIDs,
// User and Schedule say what the message was about, for the dead-letter
// queue's attributes; they may be empty (a body that is no event).
// Failure stays comparable, so EventIDs is one string.
type Failure struct {
	Class    Class
	Code     Code
	Reason   string
	EventIDs string // comma-separated, in the message's order
	User     string // the user id of the message's events, when they share one
	Schedule string
}

// Outcome is the fate of one message, as logs, run history and the
// operator's commands name it. docs/operations.md lists them with the
// codes.
type Outcome string

// The outcomes of a message.
const (
	OutcomeDelivered Outcome = "delivered" // every email went out; acknowledged
	OutcomeDuplicate Outcome = "duplicate" // the ledger had every delivery; acknowledged
	OutcomeDropped   Outcome = "dropped"   // nothing to do (an S3 test event); deleted
	OutcomePermanent Outcome = "permanent" // dead-lettered: trying again cannot help
	OutcomeAmbiguous Outcome = "ambiguous" // dead-lettered: an email may have been accepted
	OutcomeRetry     Outcome = "retry"     // left on the queue for another try
	OutcomeHalted    Outcome = "halted"    // handed back: the run stopped sending
)

// Outcome returns the outcome of a message that failed with f.
func (f Failure) Outcome() Outcome {
	switch f.Class {
	case ClassPermanent:
		return OutcomePermanent
	case ClassAmbiguous:
		return OutcomeAmbiguous
	case ClassHalt:
		return OutcomeHalted
	}
	return OutcomeRetry
}

// deadLetters reports whether the failure sends its message to the
// dead-letter queue.
func (f Failure) deadLetters() bool {
	return f.Class == ClassPermanent || f.Class == ClassAmbiguous
}

// String formats f for people: code, class and reason.
func (f Failure) String() string { return fmt.Sprintf("%s (%s): %s", f.Code, f.Class, f.Reason) }

// BatchError is the error of a call on many messages that failed for
// some of them only, such as SQS's DeleteMessageBatch. Failed holds the
// receipt handles of the messages it failed for; the call worked for
// the others.
type BatchError struct {
	Failed []string
	Err    error
}

// Error returns the error of the messages that failed.
func (e *BatchError) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *BatchError) Unwrap() error { return e.Err }

// ErrNoQueue is wrapped by a queue's errors when the queue, or its
// dead-letter queue, does not exist.
var ErrNoQueue = errors.New("queue does not exist")

// ErrTooLarge is wrapped by [Queue.DeadLetter]'s error when the
// message, with the attributes the dead letter carries, is larger than
// the dead-letter queue takes: sending it again cannot work. It is an
// [ErrUnsendable].
var ErrTooLarge = fmt.Errorf("message too large for the dead-letter queue: %w", ErrUnsendable)

// ErrUnsendable is wrapped by [Queue.DeadLetter]'s error when the body
// is not one the dead-letter queue takes at all: too large, empty, or
// with characters SQS refuses (a pending entry can hold any bytes).
var ErrUnsendable = errors.New("not a message body the dead-letter queue takes")

// eventIDs joins the ids of evs for [Failure.EventIDs].
func eventIDs(evs []event.Event) string {
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	return strings.Join(ids, ",")
}

// userOf returns the user id of evs when they share one, for
// [Failure.User].
func userOf(evs []event.Event) string {
	if len(evs) == 0 {
		return ""
	}
	u := evs[0].User.ID
	for _, ev := range evs[1:] {
		if ev.User.ID != u {
			return ""
		}
	}
	return u
}

// decodeCode is the code of a body that is no event: invalid_json,
// missing_field, or invalid_event for the rest.
func decodeCode(err error) Code {
	var fe *event.FieldError
	switch {
	case !errors.As(err, &fe):
	case fe.NotJSON():
		return CodeInvalidJSON
	case fe.Missing():
		return CodeMissingField
	}
	return CodeInvalidEvent
}
