package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/worker"
)

// PendingPrefix is where a schedule's pending digest events live,
// under the ledger prefix: ledgerPrefix + "pending/" + schedule + "/".
func PendingPrefix(ledgerPrefix, schedule string) string {
	return ledgerPrefix + "pending/" + schedule + "/"
}

// QuarantinePrefix is where a schedule's pending entries that are not
// events, and too large for the dead-letter queue, are kept aside:
// ledgerPrefix + "quarantine/" + schedule + "/", each at its key under
// [PendingPrefix] with that prefix in its place.
func QuarantinePrefix(ledgerPrefix, schedule string) string {
	return ledgerPrefix + "quarantine/" + schedule + "/"
}

// Pending is a digest schedule's [worker.Pending] store on S3: one
// object per (user, event), at Prefix + hash(user id) + "/" +
// hash(event id) + ".json", created with If-None-Match: *, so that a
// second copy of a message stores nothing new. Users are the common
// prefixes of a delimited listing, read a page (1,000) at a time.
type Pending struct {
	Client PendingAPI
	Bucket string
	// Prefix is the schedule's, see [PendingPrefix].
	Prefix string
	// QuarantinePrefix is where Quarantine keeps entries, see
	// [QuarantinePrefix]; without it Quarantine fails.
	QuarantinePrefix string
}

// PendingAPI is the part of *s3.Client the pending store uses.
type PendingAPI interface {
	API
	ListAPI
}

var _ worker.Pending = (*Pending)(nil)

// hashName is a fixed-length, key-safe name for an id a producer
// chose: user and event ids may hold '/', or be long.
func hashName(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:16])
}

func (p *Pending) uri(key string) string { return "s3://" + p.Bucket + "/" + key }

// Put stores e; an entry already there (412) is left as it is. A 409
// (a concurrent write) is tried again, and fails Put if it lasts.
func (p *Pending) Put(ctx context.Context, e worker.PendingEvent) error {
	key := p.Prefix + hashName(e.Event.User.ID) + "/" + hashName(e.Event.ID) + ".json"
	body, err := json.Marshal(e)
	if err != nil {
		return worker.Permanent(fmt.Errorf("pending %s: %w", p.uri(key), err))
	}
	err = retryConflict(ctx, func() error {
		_, err := p.Client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &p.Bucket, Key: aws.String(key), Body: bytes.NewReader(body),
			IfNoneMatch: aws.String("*"), ContentType: aws.String("application/json"),
		})
		return err
	})
	if err == nil || isPreconditionFailed(err) {
		return nil
	}
	return fmt.Errorf("pending %s: %w", p.uri(key), err)
}

// Users calls f with each user's prefix, a page of the listing at a
// time, each once: S3 lists in key order, and a prefix a store repeats
// across pages (gofakes3 counts keys towards a page, and names a user
// whose keys straddle two pages in both) is skipped, since two
// deliveries of one user's digest at once race for its claims.
func (p *Pending) Users(ctx context.Context, f func(user string) error) error {
	pg := s3.NewListObjectsV2Paginator(p.Client, &s3.ListObjectsV2Input{
		Bucket: &p.Bucket, Prefix: aws.String(p.Prefix), Delimiter: aws.String("/")})
	last := ""
	for pg.HasMorePages() {
		out, err := pg.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("pending %s: %w", p.uri(p.Prefix), err)
		}
		for _, cp := range out.CommonPrefixes {
			u := strings.TrimSuffix(strings.TrimPrefix(aws.ToString(cp.Prefix), p.Prefix), "/")
			if u <= last {
				continue
			}
			last = u
			if err := f(u); err != nil {
				return err
			}
		}
	}
	return nil
}

// List reads every pending entry of user; those that are not JSON of
// a [worker.PendingEvent] it returns apart, with their bodies.
func (p *Pending) List(ctx context.Context, user string) ([]worker.PendingEvent, []worker.UnreadableEntry, error) {
	prefix := p.Prefix + user + "/"
	var out []worker.PendingEvent
	var bad []worker.UnreadableEntry
	pg := s3.NewListObjectsV2Paginator(p.Client, &s3.ListObjectsV2Input{Bucket: &p.Bucket, Prefix: aws.String(prefix)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("pending %s: %w", p.uri(prefix), err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			b, ok, err := p.get(ctx, key)
			if err != nil {
				return nil, nil, err
			}
			if !ok {
				continue
			}
			var e worker.PendingEvent
			if err := json.Unmarshal(b, &e); err != nil {
				bad = append(bad, worker.UnreadableEntry{Key: key, Body: string(b), Err: fmt.Errorf("decode: %w", err)})
				continue
			}
			e.Key = key
			out = append(out, e)
		}
	}
	return out, bad, nil
}

// get reads one entry's body; one deleted since the listing (another
// replica delivered it) is not there.
func (p *Pending) get(ctx context.Context, key string) ([]byte, bool, error) {
	out, err := p.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &p.Bucket, Key: aws.String(key)})
	if err != nil {
		if isNotFound(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("pending %s: %w", p.uri(key), err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, false, fmt.Errorf("pending %s: %w", p.uri(key), err)
	}
	return b, true, nil
}

// Delete removes an entry List returned.
func (p *Pending) Delete(ctx context.Context, e worker.PendingEvent) error {
	if e.Key == "" {
		return errors.New("pending: delete of an entry with no key")
	}
	if _, err := p.Client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &p.Bucket, Key: aws.String(e.Key)}); err != nil {
		return fmt.Errorf("pending %s: %w", p.uri(e.Key), err)
	}
	return nil
}

// Quarantine puts the body of u, as List read it, under
// QuarantinePrefix, and returns its s3:// URI. A copy there already
// (an earlier slot quarantined it, then failed to dead-letter its
// note or delete it) is overwritten with the same body.
func (p *Pending) Quarantine(ctx context.Context, u worker.UnreadableEntry) (string, error) {
	rest, ok := strings.CutPrefix(u.Key, p.Prefix)
	if !ok || p.QuarantinePrefix == "" {
		return "", fmt.Errorf("quarantine %s: not an entry of %s, or no quarantine prefix", p.uri(u.Key), p.uri(p.Prefix))
	}
	key := p.QuarantinePrefix + rest
	if _, err := p.Client.PutObject(ctx, &s3.PutObjectInput{Bucket: &p.Bucket, Key: aws.String(key),
		Body: strings.NewReader(u.Body), ContentType: aws.String("application/octet-stream")}); err != nil {
		return "", fmt.Errorf("quarantine %s: %w", p.uri(key), err)
	}
	return p.uri(key), nil
}

// Count returns how many events are pending, with one listing request
// per thousand: for `status` and the run record.
func (p *Pending) Count(ctx context.Context) (int, error) {
	n := 0
	pg := s3.NewListObjectsV2Paginator(p.Client, &s3.ListObjectsV2Input{Bucket: &p.Bucket, Prefix: aws.String(p.Prefix)})
	for pg.HasMorePages() {
		out, err := pg.NextPage(ctx)
		if err != nil {
			return 0, fmt.Errorf("pending %s: %w", p.uri(p.Prefix), err)
		}
		n += len(out.Contents)
	}
	return n, nil
}
