package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Leases hands out each schedule slot (a schedule name and a planned
// time) to exactly one taker, across every replica, by creating one
// object per slot with If-None-Match: *.
type Leases struct {
	Client API
	Bucket string
	// Prefix is prepended to each slot's key, e.g. "reportmailer/slots/".
	Prefix string
}

// Acquire reports whether the caller won the slot.
func (l *Leases) Acquire(ctx context.Context, schedule string, planned time.Time) (bool, error) {
	host, _ := os.Hostname()
	key := l.Prefix + schedule + "/" + planned.UTC().Format(time.RFC3339)
	body := fmt.Sprintf(`{"holder":%q,"taken_at":%q}`, host, time.Now().UTC().Format(time.RFC3339Nano))
	_, err := l.Client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &l.Bucket, Key: aws.String(key), Body: bytes.NewReader([]byte(body)),
		IfNoneMatch: aws.String("*"), ContentType: aws.String("application/json"),
	})
	if err == nil {
		return true, nil
	}
	if isPreconditionFailed(err) {
		return false, nil
	}
	return false, fmt.Errorf("lease %s: %w", key, err)
}
