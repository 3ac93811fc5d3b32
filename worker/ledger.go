package worker

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// A delivery's ledger record moves through these states:
//
//	(none) -> claimed -> sending -> sent
//	              |         |
//	              +---------+-> (deleted) or released
//
// "claimed" means a run holds the delivery and has sent nothing: it is
// signing, rendering or waiting for its turn to send. "sending" is
// written immediately before the email is handed to the mail service,
// with the email's id; from then on the email may have been accepted.
// "sent" is written once the mail service accepted it (or its own event
// stream says it did). A claim whose email was certainly not sent is
// released: its record is deleted, or, when it cannot be, marked
// "released", which anyone may take over.

// ClaimState is what the ledger knew about a delivery when asked to
// claim it.
type ClaimState int

const (
	// Claimed means the caller now owns the delivery and may send it.
	Claimed ClaimState = iota
	// AlreadySent means the delivery was completed earlier; skip it.
	AlreadySent
	// InProgress means another run claimed the delivery less than the
	// claim timeout ago and has not started sending: it may still send
	// it. Try again later.
	InProgress
	// Unsettled means a run started sending the delivery's email and
	// never recorded the result: the email may have been accepted.
	Unsettled
)

// String names the state for logs.
func (s ClaimState) String() string {
	switch s {
	case Claimed:
		return "claimed"
	case AlreadySent:
		return "already sent"
	case InProgress:
		return "in progress"
	case Unsettled:
		return "unsettled"
	}
	return "unknown"
}

// Owner is who holds a claim: the run that took it and a token random
// per claim. A ledger tells its own claim from another's by it, so that
// a conditional write that was applied, lost its answer and was retried
// (and so refused, against our own write) is still ours.
type Owner struct {
	RunID string `json:"run_id,omitempty"`
	Token string `json:"token,omitempty"`
}

// Delivery says what a ledger record is about, for people and tools
// that read the ledger.
type Delivery struct {
	EventID   string `json:"event_id,omitempty"`
	Recipient string `json:"recipient,omitempty"` // lower-case
	Schedule  string `json:"schedule,omitempty"`
}

// ClaimRequest asks the ledger for one delivery.
type ClaimRequest struct {
	// Key is the delivery's [DeliveryKey].
	Key string
	Delivery
	// RunID names the run that claims, for the record's owner.
	RunID string
	// Timeout is how old, by the store's clock, a "claimed" record
	// must be before this claim takes it over: its run sent nothing and
	// seems to have died. 0 never takes one over.
	Timeout time.Duration
	// ResendAfter, when positive, lets this claim take over a "sending"
	// record that old, whose email may have been accepted: the
	// [UnsettledResend] policy. 0 never does.
	ResendAfter time.Duration
}

// Claim is the answer to Ledger.Claim, and, once Claimed, the handle
// the caller passes back to move the delivery on.
type Claim struct {
	State ClaimState
	// Key is the delivery key.
	Key string
	// Record names the ledger record for people, e.g.
	// s3://bucket/prefix/KEY.
	Record string
	// Since is when the record was last written, by the store's clock,
	// and Age how long ago that was, also by the store's clock. For a
	// Claimed that took a record over, they are the old record's.
	Since time.Time
	Age   time.Duration
	// EmailID is, for Unsettled, the email the record was sending; for
	// a Claimed, once Sending recorded it, the email being sent.
	EmailID string
	// TookOver is, for Claimed, the state of the record this claim took
	// over ("claimed", "sending" or "released"), or "" for a new one.
	TookOver string
	// Attempts is how many sends were tried for the delivery before.
	Attempts int
	// The rest is the ledger's, for a Claimed: what was claimed and
	// when, who holds it, and the version (S3 ETag) of the record as
	// this claim last wrote it, which its next write is conditional on.
	Delivery  Delivery
	ClaimedAt time.Time
	Owner     Owner
	Version   string
}

// Ledger records which deliveries happened, so that a redelivered or
// re-run event does not send the same email twice. A delivery is one
// event to one recipient, named by [DeliveryKey]. Implementations must be
// safe for concurrent use across processes: Claim and every change of a
// claim must be atomic (conditional writes).
type Ledger interface {
	// Claim takes the delivery if nobody has, or takes over a record
	// nothing was sent under (released, or claimed longer ago than
	// req.Timeout), or, with req.ResendAfter, an unsettled one that old.
	// Otherwise it reports the delivery's state and changes nothing.
	Claim(ctx context.Context, req ClaimRequest) (Claim, error)
	// Sending records, immediately before the email is handed to the
	// mail service, that the claims' email is being sent as emailID:
	// first an index of emailID's delivery keys (none when emailID names
	// its one delivery: [NewEmailID]), then each record. It
	// updates each claim's Version. On an error the email must not be
	// sent, and every claim should be released.
	Sending(ctx context.Context, emailID string, claims []*Claim) error
	// Complete records that the claim's email was accepted as
	// messageID. It retries; an error means the record still says
	// "sending".
	Complete(ctx context.Context, c *Claim, messageID string) error
	// Cover records that the claim's event needs no email of its own:
	// every report of it reached the recipient in emailIDs, the emails
	// of newer events that show them, accepted before (ids it does not
	// know are left out). It moves the record to sent, naming them, so
	// that a later copy of the event is found sent. It retries; an
	// error means the record may still say claimed.
	Cover(ctx context.Context, c *Claim, emailIDs []string) error
	// Release gives up a claim whose email was certainly not accepted,
	// so a later try may send it. It retries; a record it cannot delete
	// is marked released. A claim another run has taken over is left
	// alone.
	Release(ctx context.Context, c *Claim) error
}

// DeliveryKey names the delivery of one event to one recipient. It is
// a hash so that it is safe in any store's key syntax and does not
// spread email addresses into key listings.
func DeliveryKey(eventID, recipient string) string {
	h := sha256.Sum256([]byte(eventID + "\x00" + strings.ToLower(recipient)))
	return hex.EncodeToString(h[:])
}

// EmailTag is the mail service tag every email carries with its email
// id (the SES message tag reportmailer-email), so that the service's
// own record of the email (SES sending events) can settle its
// deliveries.
const EmailTag = "reportmailer-email"

// NewEmailID returns the id of an email carrying the deliveries named
// by keys.
// An email of exactly one delivery (every email of mode each) gets the
// delivery key, a dash and a random id, so that SES's events for it,
// which carry the id in the [EmailTag] tag, name its record without an
// index to read, and the ledger writes none; any other gets a random
// id, and the ledger indexes its deliveries under it.
func NewEmailID(keys []string) string {
	if len(keys) == 1 && isHexKey(keys[0]) {
		return keys[0] + "-" + NewID()
	}
	return NewID()
}

// EmailDelivery returns the delivery key an email id made by
// [NewEmailID] for a single delivery carries, and false for any other
// id: those emails' deliveries are in the ledger's index.
func EmailDelivery(emailID string) (string, bool) {
	key, rest, ok := strings.Cut(emailID, "-")
	if !ok || !isHexKey(key) || len(rest) != 32 {
		return "", false
	}
	if _, err := hex.DecodeString(rest); err != nil {
		return "", false
	}
	return key, true
}

// isHexKey reports whether k has the form of a [DeliveryKey].
func isHexKey(k string) bool {
	if len(k) != 2*sha256.Size {
		return false
	}
	_, err := hex.DecodeString(k)
	return err == nil
}

// NewID returns a random 128-bit id in hex: an email id, a claim token
// or a run id.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail on supported platforms
	return hex.EncodeToString(b[:])
}
