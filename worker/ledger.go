package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// ClaimState is what the ledger knew about a delivery before a claim.
type ClaimState int

const (
	// Claimed means the caller now owns the delivery and may send it.
	Claimed ClaimState = iota
	// AlreadySent means the delivery was completed earlier; skip it.
	AlreadySent
	// InProgress means someone claimed the delivery and has not
	// completed or released it: a send is under way elsewhere, or one
	// ended without knowing whether the email was accepted.
	InProgress
)

// Claim is the answer to Ledger.Claim.
type Claim struct {
	State ClaimState
	// Since is when the existing claim was taken (InProgress), or when
	// the delivery completed (AlreadySent).
	Since time.Time
}

// Ledger records which deliveries happened, so that a redelivered or
// re-run event does not send the same email twice. A delivery is one
// event to one recipient, named by [DeliveryKey]. Implementations must be
// safe for concurrent use across processes: Claim must be atomic.
type Ledger interface {
	// Claim takes the delivery if nobody has; otherwise it reports what
	// state the delivery is in and changes nothing.
	Claim(ctx context.Context, key string, now time.Time) (Claim, error)
	// Complete records that the delivery's email was accepted.
	Complete(ctx context.Context, key, messageID string, now time.Time) error
	// Release drops a claim whose email was certainly not accepted, so a
	// later try may send it.
	Release(ctx context.Context, key string) error
}

// DeliveryKey names the delivery of one event to one recipient. It is
// a hash so that it is safe in any store's key syntax and does not
// spread email addresses into key listings.
func DeliveryKey(eventID, recipient string) string {
	h := sha256.Sum256([]byte(eventID + "\x00" + strings.ToLower(recipient)))
	return hex.EncodeToString(h[:])
}
