package store

import (
	"context"
	"time"
)

// conflictAttempts is how many times a conditional write is tried
// while S3 answers 409 ConditionalRequestConflict.
const conflictAttempts = 5

// retryConflict calls put until S3 answers anything but 409
// ConditionalRequestConflict, at most conflictAttempts times. AWS
// documents that 409 as another conditional write to the key in
// flight, to be retried: unlike 412, it says nothing about whether the
// object exists or its ETag changed.
func retryConflict(ctx context.Context, put func() error) error {
	wait := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := put()
		if err == nil || !isConditionalConflict(err) || attempt == conflictAttempts {
			return err
		}
		if sleepCtx(ctx, wait) != nil {
			return err
		}
		wait *= 2
	}
}
