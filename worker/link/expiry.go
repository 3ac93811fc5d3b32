package link

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// ExpiryLog durably records, for each CloudFront key ID, the latest
// expiry ever signed into a URL with that key. After that moment no
// link signed with the key works any more, so its public key can be
// removed from CloudFront without breaking a link that was sent:
// the question key rotation leaves to operators.
//
// Implementations must be safe for concurrent use across processes:
// Extend must never lower a record, whoever else writes it.
type ExpiryLog interface {
	// Extend raises keyID's record to until, if it is earlier; a later
	// record is left alone.
	Extend(ctx context.Context, keyID string, until time.Time) error
	// Latest returns keyID's record, or the zero time if the key has
	// never signed a link.
	Latest(ctx context.Context, keyID string) (time.Time, error)
}

// RecordAhead is how far past a link's expiry a signer raises its key's
// record in the [ExpiryLog]. One write then covers every link signed
// with the same TTL for the next RecordAhead, rather than one write per
// link. The record, and so the safe-removal date, is at most this much
// later than the last link's true expiry.
const RecordAhead = time.Hour

// recorder keeps a signer's knowledge of what its ExpiryLog holds.
type recorder struct {
	mu   sync.Mutex
	mark map[string]time.Time // key id → the record this process wrote
}

// ensure makes sure log's record for keyID covers expires before it
// returns, writing expires+RecordAhead when this process has not
// already written a record that covers it. Because marks only rise and
// Extend never lowers the stored record, a mark this process wrote
// is a lower bound of what is stored.
func (r *recorder) ensure(ctx context.Context, log ExpiryLog, keyID string, expires time.Time) error {
	if log == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !expires.After(r.mark[keyID]) {
		return nil
	}
	mark := expires.Add(RecordAhead)
	if err := log.Extend(ctx, keyID, mark); err != nil {
		return fmt.Errorf("record expiry of key %s: %w", keyID, err)
	}
	if r.mark == nil {
		r.mark = map[string]time.Time{}
	}
	r.mark[keyID] = mark
	return nil
}
