// Package store implements the worker's object lookups and its delivery
// ledger on Amazon S3.
package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
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
}

var _ worker.ObjectStore = (*Objects)(nil)

// Head returns an object's size, content type and user metadata. A
// missing object is a permanent error, [worker.CodeObjectMissing]: the
// event outlived it. So is a 403, [worker.CodeObjectAccessDenied]:
// without s3:ListBucket on the bucket, which the worker does not need,
// S3 answers 403 rather than 404 for a key that does not exist, so a
// 403 cannot be told from a missing object.
func (o *Objects) Head(ctx context.Context, bucket, key string) (worker.ObjectInfo, error) {
	out, err := o.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		switch {
		case isNotFound(err):
			return worker.ObjectInfo{}, worker.PermanentCode(worker.CodeObjectMissing, fmt.Errorf("object does not exist: %w", err))
		case isForbidden(err):
			return worker.ObjectInfo{}, worker.PermanentCode(worker.CodeObjectAccessDenied,
				fmt.Errorf("object missing, or access denied (S3 answers 403 for a missing key without s3:ListBucket on the bucket): %w", err))
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
	// RunID is written into each claim with a random token, for people
	// reading the ledger. Optional.
	RunID string
}

var _ worker.Ledger = (*Ledger)(nil)

// record is the stored state of one delivery.
type record struct {
	State     string    `json:"state"` // "sending" or "sent"
	Owner     owner     `json:"owner,omitzero"`
	ClaimedAt time.Time `json:"claimed_at"`
	SentAt    time.Time `json:"sent_at,omitzero"`
	MessageID string    `json:"message_id,omitempty"`
}

// owner is who wrote a claim. The token is random per claim, so a
// claim's own record is told from another's: the SDK retries a
// conditional PutObject whose answer was lost after S3 applied it, and
// the retry's 412 is then against our own claim.
type owner struct {
	RunID string `json:"run_id,omitempty"`
	Token string `json:"token,omitempty"`
}

// newToken returns a random 128-bit hex token.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
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
	me := owner{RunID: l.RunID, Token: newToken()}
	body, _ := json.Marshal(record{State: "sending", Owner: me, ClaimedAt: now.UTC()})
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
		r, err := l.read(ctx, name)
		if err == nil {
			if r.Owner == me && r.State == "sending" {
				return worker.Claim{State: worker.Claimed}, nil
			}
			return r.claim(), nil
		}
		if !(isNotFound(err) || isForbidden(err)) || attempt >= maxClaimAttempts {
			return worker.Claim{}, err
		}
	}
}

// claim says what r means to a claimant that does not own it.
func (r record) claim() worker.Claim {
	if r.State == "sent" {
		return worker.Claim{State: worker.AlreadySent, Since: r.SentAt}
	}
	return worker.Claim{State: worker.InProgress, Since: r.ClaimedAt}
}

// read returns the record at name.
func (l *Ledger) read(ctx context.Context, name string) (record, error) {
	out, err := l.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &l.Bucket, Key: aws.String(name)})
	if err != nil {
		return record{}, fmt.Errorf("ledger read %s: %w", name, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, 1<<16))
	if err != nil {
		return record{}, fmt.Errorf("ledger read %s: %w", name, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, worker.PermanentCode(worker.CodeLedgerUnreadable, fmt.Errorf("ledger record %s: %w", name, err))
	}
	return r, nil
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
