// Package store implements the worker's object lookups and its delivery
// ledger on Amazon S3.
package store

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/reportmailer/reportmailer/worker"
)

// API is the part of *s3.Client the store uses.
type API interface {
	HeadObject(context.Context, *s3.HeadObjectInput, ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	GetObject(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(context.Context, *s3.PutObjectInput, ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	DeleteObject(context.Context, *s3.DeleteObjectInput, ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

// Objects is a worker.ObjectStore on S3.
type Objects struct {
	Client API
	// HaltFor is how long a run halted by a report it may not read
	// keeps its messages hidden, and other runs keep off the queue (see
	// worker.HaltRecord): someone must mend a permission first.
	// Default HaltForDefault.
	HaltFor time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// HaltForDefault is the default of Objects.HaltFor.
const HaltForDefault = 5 * time.Minute

var _ worker.ObjectStore = (*Objects)(nil)

// Head returns an object's size, content type and user metadata. A
// missing object (404) is a permanent error, [worker.CodeObjectMissing]:
// the event outlived it. A 403 halts the run, for HaltFor, with
// [worker.CodeObjectAccessDenied]: the declared policy (worker/iam)
// grants s3:ListBucket on the reports' prefix, so S3 answers 404 for a
// missing key, and a 403 means the read is denied (s3:GetObject lost, a
// bucket policy's Deny, a KMS key the role may not use), which every
// other report would most likely meet too: dead-lettering each message
// would empty the queue. A role without s3:ListBucket also gets 403 for
// a missing key; the reason says so, and `reportmailer check -aws`
// tells the two apart.
func (o *Objects) Head(ctx context.Context, bucket, key string) (worker.ObjectInfo, error) {
	out, err := o.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		switch {
		case isNotFound(err):
			return worker.ObjectInfo{}, worker.PermanentCode(worker.CodeObjectMissing, fmt.Errorf("object does not exist: %w", err))
		case isForbidden(err):
			now := time.Now
			if o.Now != nil {
				now = o.Now
			}
			err = worker.Fail(worker.CodeObjectAccessDenied, worker.ClassHalt, fmt.Errorf("access denied to s3://%s/%s: "+
				"the worker's role lacks s3:GetObject there, or a bucket policy or KMS key refuses it; "+
				"without s3:ListBucket S3 also answers 403 for a missing key — run `reportmailer check -aws`: %w", bucket, key, err))
			return worker.ObjectInfo{}, worker.HaltUntil(err, now().Add(cmp.Or(o.HaltFor, HaltForDefault)))
		}
		return worker.ObjectInfo{}, err
	}
	meta := make(map[string]string, len(out.Metadata))
	for k, v := range out.Metadata {
		meta[strings.ToLower(k)] = v
	}
	return worker.ObjectInfo{
		Size:        aws.ToInt64(out.ContentLength),
		ContentType: aws.ToString(out.ContentType),
		Metadata:    meta,
	}, nil
}

// Ledger is a worker.Ledger that keeps one small JSON object per
// delivery under Prefix in Bucket. Claims are atomic because they are
// conditional writes (If-None-Match: *), which S3 guarantees across
// every writer; so the ledger holds across restarts and replicas.
type Ledger struct {
	Client API
	Bucket string
	// Prefix is prepended to each delivery key, e.g. "reportmailer/ledger/".
	Prefix string
}

var _ worker.Ledger = (*Ledger)(nil)

// record is the stored state of one delivery.
type record struct {
	State     string    `json:"state"` // "sending" or "sent"
	ClaimedAt time.Time `json:"claimed_at"`
	SentAt    time.Time `json:"sent_at,omitzero"`
	MessageID string    `json:"message_id,omitempty"`
}

func (l *Ledger) key(k string) string { return l.Prefix + k }

// maxClaimAttempts bounds how often Claim tries again when the record
// it lost to is gone by the time it reads it.
const maxClaimAttempts = 4

// Claim creates the delivery's record if it does not exist, and
// otherwise reads it. A record can be released (deleted) between the
// failed create and the read; the read then answers 404, or 403
// without s3:ListBucket, and Claim tries to create it again, a few
// times, since the delivery is free.
func (l *Ledger) Claim(ctx context.Context, key string, now time.Time) (worker.Claim, error) {
	name := l.key(key)
	body, _ := json.Marshal(record{State: "sending", ClaimedAt: now.UTC()})
	for attempt := 1; ; attempt++ {
		_, err := l.Client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &l.Bucket, Key: aws.String(name),
			Body: bytes.NewReader(body), IfNoneMatch: aws.String("*"),
			ContentType: aws.String("application/json"),
		})
		if err == nil {
			return worker.Claim{State: worker.Claimed}, nil
		}
		if !isPreconditionFailed(err) && !isConditionalConflict(err) {
			return worker.Claim{}, fmt.Errorf("ledger claim %s: %w", name, err)
		}
		c, err := l.read(ctx, name)
		if err == nil {
			return c, nil
		}
		if !(isNotFound(err) || isForbidden(err)) || attempt >= maxClaimAttempts {
			return worker.Claim{}, err
		}
	}
}

// read returns what the record at name says.
func (l *Ledger) read(ctx context.Context, name string) (worker.Claim, error) {
	out, err := l.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &l.Bucket, Key: aws.String(name)})
	if err != nil {
		return worker.Claim{}, fmt.Errorf("ledger read %s: %w", name, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, 1<<16))
	if err != nil {
		return worker.Claim{}, fmt.Errorf("ledger read %s: %w", name, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return worker.Claim{}, worker.PermanentCode(worker.CodeLedgerUnreadable, fmt.Errorf("ledger record %s: %w", name, err))
	}
	if r.State == "sent" {
		return worker.Claim{State: worker.AlreadySent, Since: r.SentAt}, nil
	}
	return worker.Claim{State: worker.InProgress, Since: r.ClaimedAt}, nil
}

// Complete marks the delivery sent.
func (l *Ledger) Complete(ctx context.Context, key, messageID string, now time.Time) error {
	body, _ := json.Marshal(record{State: "sent", ClaimedAt: now.UTC(), SentAt: now.UTC(), MessageID: messageID})
	_, err := l.Client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &l.Bucket, Key: aws.String(l.key(key)),
		Body: bytes.NewReader(body), ContentType: aws.String("application/json"),
	})
	if err != nil {
		return fmt.Errorf("ledger complete: %w", err)
	}
	return nil
}

// Release deletes the delivery's record.
func (l *Ledger) Release(ctx context.Context, key string) error {
	if _, err := l.Client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &l.Bucket, Key: aws.String(l.key(key))}); err != nil {
		return fmt.Errorf("ledger release: %w", err)
	}
	return nil
}

func isNotFound(err error) bool {
	var nf *types.NotFound
	var nk *types.NoSuchKey
	if errors.As(err, &nf) || errors.As(err, &nk) {
		return true
	}
	return httpStatus(err) == http.StatusNotFound
}

// isForbidden reports S3's 403, which is also its answer for a missing
// key when the caller lacks s3:ListBucket on the bucket.
func isForbidden(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && (ae.ErrorCode() == "AccessDenied" || ae.ErrorCode() == "Forbidden") {
		return true
	}
	return httpStatus(err) == http.StatusForbidden
}

func isPreconditionFailed(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "PreconditionFailed" {
		return true
	}
	return httpStatus(err) == http.StatusPreconditionFailed
}

func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}
