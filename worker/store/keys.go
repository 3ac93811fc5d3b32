package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/reportmailer/reportmailer/worker/link"
)

// KeysAPI is the part of *s3.Client that KeyExpiries uses.
type KeysAPI interface {
	GetObject(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(context.Context, *s3.PutObjectInput, ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	ListObjectsV2(context.Context, *s3.ListObjectsV2Input, ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

// KeyExpiries is a link.ExpiryLog on S3: for each CloudFront key ID, one
// small JSON object at Prefix + ID + ".json" holds the latest expiry
// any replica has signed with that key.
//
// A record is only ever raised, by a conditional write: created with
// If-None-Match: *, replaced with If-Match on the ETag that was read.
// A writer that loses a race (412, or 409 while another conditional
// write is in flight) reads the record again and retries, so
// concurrent replicas never lower it.
//
// Extend never depends on a 404. The declared policy (worker/iam)
// grants s3:ListBucket with an s3:prefix condition on this prefix, so a
// read of a record that does not exist answers 404; but a role without
// it (a policy written by hand, or an older one) gets 403 instead, the
// same as for a read it may not make. So Extend first tries to create a
// record, and reads it only once it knows it exists (the create
// answered 412); a record that is gone when read again is created
// again.
type KeyExpiries struct {
	Client KeysAPI
	Bucket string
	// Prefix is prepended to each record's key, e.g.
	// "reportmailer/ledger/keys/".
	Prefix string

	mu    sync.Mutex
	known map[string]bool // key ids whose record this process has read
}

var _ link.ExpiryLog = (*KeyExpiries)(nil)

// keyRecord is the stored record of one key.
type keyRecord struct {
	KeyID        string    `json:"key_id"`
	LatestExpiry time.Time `json:"latest_expiry"`
	UpdatedAt    time.Time `json:"updated_at"`
	// FirstUsedAt is when the key first signed a link; zero in a record
	// written before it was kept.
	FirstUsedAt   time.Time `json:"first_used_at,omitzero"`
	SchemaVersion int       `json:"version"`
}

// maxKeyConflicts bounds how many lost races Extend retries in a row.
// Each loser re-reads, and most find their expiry already covered.
const maxKeyConflicts = 16

func (k *KeyExpiries) key(keyID string) string { return k.Prefix + keyID + ".json" }

// Extend raises keyID's record to until, unless it is already as late.
func (k *KeyExpiries) Extend(ctx context.Context, keyID string, until time.Time) error {
	if err := link.CheckKeyID(keyID); err != nil {
		return fmt.Errorf("key expiry: %w", err)
	}
	until = until.UTC()
	name := k.key(keyID)
	create := !k.isKnown(keyID)
	exists := false // the last create answered 412
	denied := false // a read answered 403 just after such a 412
	for attempt := 1; ; attempt++ {
		var etag string
		first := time.Now().UTC()
		if !create {
			rec, tag, err := k.read(ctx, keyID)
			switch {
			case err == nil:
				k.setKnown(keyID)
				if !until.After(rec.LatestExpiry) {
					return nil
				}
				etag, first = tag, rec.FirstUsedAt
				denied = false
			case isForbidden(err) && exists && denied:
				// Twice the record was there and could not be read:
				// not a record deleted between the two calls, but a
				// read this role may not make.
				return fmt.Errorf("%w (the record exists, since creating it answered 412, but reading it is denied: grant s3:GetObject on it)", err)
			case isNotFound(err) || isForbidden(err):
				// Deleted since it was seen (a 403 without
				// s3:ListBucket), or never readable: try to create it;
				// a 412 says it is there after all.
				denied = denied || (exists && isForbidden(err))
				create = true
			default:
				return err
			}
		}
		exists = false
		body, _ := json.Marshal(keyRecord{KeyID: keyID, LatestExpiry: until, UpdatedAt: time.Now().UTC(), FirstUsedAt: first, SchemaVersion: 1})
		in := &s3.PutObjectInput{
			Bucket: &k.Bucket, Key: aws.String(name),
			Body: bytes.NewReader(body), ContentType: aws.String("application/json"),
		}
		if create {
			in.IfNoneMatch = aws.String("*")
		} else {
			in.IfMatch = aws.String(etag)
		}
		_, err := k.Client.PutObject(ctx, in)
		if err == nil {
			k.setKnown(keyID)
			return nil
		}
		if !isPreconditionFailed(err) && !isConditionalConflict(err) {
			return fmt.Errorf("key expiry %s: %w", name, err)
		}
		exists = create && isPreconditionFailed(err)
		if attempt >= maxKeyConflicts {
			return fmt.Errorf("key expiry %s: lost %d conditional writes in a row to other writers", name, attempt)
		}
		if create && attempt == 1 && isPreconditionFailed(err) {
			// The record exists: read it at once, as nobody raced.
			create = false
			continue
		}
		create = false
		// Another replica wrote first; spread the retries out a little.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(rand.Int64N(int64(attempt) * int64(5*time.Millisecond)))):
		}
	}
}

func (k *KeyExpiries) isKnown(keyID string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.known[keyID]
}

func (k *KeyExpiries) setKnown(keyID string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.known == nil {
		k.known = map[string]bool{}
	}
	k.known[keyID] = true
}

// Latest returns keyID's record, or the zero time if there is none.
// Without s3:ListBucket on the prefix, S3 answers 403 for a record that
// does not exist, and Latest returns that error: it cannot tell "never
// used" from "not allowed to read", and saying "never used" wrongly
// could get a key with live links removed.
func (k *KeyExpiries) Latest(ctx context.Context, keyID string) (time.Time, error) {
	if err := link.CheckKeyID(keyID); err != nil {
		return time.Time{}, fmt.Errorf("key expiry: %w", err)
	}
	rec, _, err := k.get(ctx, keyID)
	return rec.LatestExpiry, err
}

// FirstUsed returns when keyID first signed a link, or the zero time
// when it never did, or its record predates the field.
func (k *KeyExpiries) FirstUsed(ctx context.Context, keyID string) (time.Time, error) {
	if err := link.CheckKeyID(keyID); err != nil {
		return time.Time{}, fmt.Errorf("key expiry: %w", err)
	}
	rec, _, err := k.get(ctx, keyID)
	return rec.FirstUsedAt, err
}

// List returns every record under Prefix, by key ID, including keys
// that are no longer configured. It needs s3:ListBucket on the prefix.
func (k *KeyExpiries) List(ctx context.Context) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	p := s3.NewListObjectsV2Paginator(k.Client, &s3.ListObjectsV2Input{Bucket: &k.Bucket, Prefix: aws.String(k.Prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("key expiries: list %s: %w", k.Prefix, err)
		}
		for _, o := range page.Contents {
			id, ok := strings.CutSuffix(strings.TrimPrefix(aws.ToString(o.Key), k.Prefix), ".json")
			if !ok || link.CheckKeyID(id) != nil {
				continue // not one of ours
			}
			rec, _, err := k.get(ctx, id)
			if err != nil {
				return nil, err
			}
			if !rec.LatestExpiry.IsZero() {
				out[id] = rec.LatestExpiry
			}
		}
	}
	return out, nil
}

// get reads keyID's record and its ETag; both are zero if S3 says
// there is none (404).
func (k *KeyExpiries) get(ctx context.Context, keyID string) (keyRecord, string, error) {
	rec, etag, err := k.read(ctx, keyID)
	if err != nil && isNotFound(err) {
		return keyRecord{}, "", nil
	}
	return rec, etag, err
}

// read reads keyID's record and its ETag.
func (k *KeyExpiries) read(ctx context.Context, keyID string) (keyRecord, string, error) {
	name := k.key(keyID)
	out, err := k.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &k.Bucket, Key: &name}, quietChecksums)
	if err != nil {
		return keyRecord{}, "", fmt.Errorf("key expiry %s: %w", name, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, 1<<16))
	if err != nil {
		return keyRecord{}, "", fmt.Errorf("key expiry %s: %w", name, err)
	}
	var rec keyRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		// Not overwritten: whatever it held might be later than what
		// this writer knows, and lowering it could revoke live links.
		return keyRecord{}, "", fmt.Errorf("key expiry %s is not a record (%v); fix or delete it", name, err)
	}
	etag := aws.ToString(out.ETag)
	if etag == "" {
		return keyRecord{}, "", fmt.Errorf("key expiry %s: no ETag, so it cannot be updated safely", name)
	}
	return rec, etag, nil
}

// quietChecksums stops the SDK from logging, on every read, that an
// S3-compatible store sent no checksum: "reportmailer keys" prints to
// the operator's terminal.
func quietChecksums(o *s3.Options) { o.DisableLogOutputChecksumValidationSkipped = true }

// isConditionalConflict reports S3's 409 ConditionalRequestConflict:
// another conditional write to the same key was in flight.
func isConditionalConflict(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "ConditionalRequestConflict" {
		return true
	}
	return httpStatus(err) == http.StatusConflict
}
