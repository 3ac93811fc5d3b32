package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/worker"
)

// ReleaseEmail frees the deliveries of the email emailID, which SES
// says it never sent (a Reject or Rendering Failure event): each one the
// email's index lists whose record is still "sending" with that email
// id is marked "released", conditional on its ETag, and the next claim
// takes it over and sends it again. It returns how many it released.
// Records already settled, or that moved on to another email, are left
// as they are, so it may be called again with the same event. An email
// without an index settles nothing, as with SettleEmail.
func (l *Ledger) ReleaseEmail(ctx context.Context, emailID string) (int, error) {
	keys, err := l.emailKeys(ctx, emailID)
	if err != nil {
		return 0, err
	}
	released := 0
	var errs []error
	for _, key := range keys {
		ok, err := l.settle(ctx, key, func(s stored) (record, bool) {
			if s.EmailID != emailID || s.State != stateSending {
				return record{}, false
			}
			r := s.record
			r.State, r.SettledBy = stateReleased, "ses-event"
			return r, true
		})
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			released++
		}
	}
	return released, errors.Join(errs...)
}

// emailKeys returns the delivery keys of the email emailID: the one
// its id names (worker.NewEmailID), or those its index lists: none when
// there is no index (404), an error for a 403, since without
// s3:ListBucket S3 cannot tell a missing index from a denied one.
func (l *Ledger) emailKeys(ctx context.Context, emailID string) ([]string, error) {
	if key, ok := worker.EmailDelivery(emailID); ok {
		return []string{key}, nil
	}
	name := l.emailKey(emailID)
	out, err := l.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &l.Bucket, Key: aws.String(name)})
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("ledger email index %s: %w", name, err)
	}
	b, err := io.ReadAll(io.LimitReader(out.Body, 1<<20))
	out.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("ledger email index %s: %w", name, err)
	}
	var idx emailIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, worker.PermanentCode(worker.CodeLedgerUnreadable, fmt.Errorf("ledger email index %s: %w", name, err))
	}
	return idx.Keys, nil
}
