// Package store implements the worker's object lookups and its delivery
// ledger on Amazon S3.
package store

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
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
// delivery under Prefix in Bucket, one per email of several deliveries
// under Prefix+"emails/", and an empty one per delivery under its
// event's prefix in Prefix+"events/". Every change of a record is a conditional write (a
// new record with If-None-Match: *, any other with If-Match on the ETag
// this claim last saw), which S3 makes atomic across every writer; so
// the ledger holds across restarts and replicas. Each record names its
// owner (run id and a random token), so a conditional write that S3
// applied, whose answer was lost and which the SDK retried into a 412,
// is recognised as ours. The age of a record is S3's: its LastModified
// against the Date of S3's answer, never this host's clock.
type Ledger struct {
	Client API
	Bucket string
	// Prefix is prepended to each delivery key, e.g. "reportmailer/ledger/".
	Prefix string
	// Attempts bounds the tries of each write of Sending, Complete and
	// Release, each try with the SDK's own retries inside. Default 4.
	Attempts int
	// Backoff is the wait before the second try, doubled for each one
	// after. Default 200ms.
	Backoff time.Duration
	// Sleep waits d or until ctx ends. Default a timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

var _ worker.Ledger = (*Ledger)(nil)

// Defaults for Ledger.
const (
	LedgerAttemptsDefault = 4
	LedgerBackoffDefault  = 200 * time.Millisecond
)

// The states of a record.
const (
	stateClaimed  = "claimed"
	stateSending  = "sending"
	stateSent     = "sent"
	stateReleased = "released"
)

// record is the stored state of one delivery.
type record struct {
	State string       `json:"state"`
	Owner worker.Owner `json:"owner,omitzero"`
	worker.Delivery
	EmailID   string    `json:"email_id,omitempty"`
	MessageID string    `json:"message_id,omitempty"`
	ClaimedAt time.Time `json:"claimed_at,omitzero"`
	SendingAt time.Time `json:"sending_at,omitzero"`
	SentAt    time.Time `json:"sent_at,omitzero"`
	// Attempts is how many sends were tried.
	Attempts int `json:"attempts"`
	// SettledBy says who recorded the result when it was not the run
	// that sent: "ses-event" or "operator".
	SettledBy string `json:"settled_by,omitempty"`
	// Resends are the operator's resends of the delivery, oldest
	// first (reportmailer resend).
	Resends []Resend `json:"resends,omitempty"`
	// Covered is set on a digest's event that needed no email of its
	// own: newer events' emails, CoveredBy (those whose ids were
	// known), showed all its reports.
	Covered   bool     `json:"covered,omitempty"`
	CoveredBy []string `json:"covered_by,omitempty"`
}

// Resend is one resend of a delivery an operator asked for.
type Resend struct {
	// By is who asked ($USER, or resend's -by), At when the email was
	// accepted, MessageID SES's id for it.
	By        string    `json:"by"`
	At        time.Time `json:"at"`
	MessageID string    `json:"message_id,omitempty"`
	EmailID   string    `json:"email_id,omitempty"`
	// Forced is set when the ledger said the delivery was sent, or maybe
	// sent, and the operator sent it again all the same; Was is what it
	// said.
	Forced bool   `json:"forced,omitempty"`
	Was    string `json:"was,omitempty"`
	// Previous is what a forced resend replaced: the record's send
	// before it (its SES message id, times, attempts and run), which
	// the resend's new claim overwrote.
	Previous *PreviousSend `json:"previous,omitempty"`
}

// PreviousSend is the send a forced resend replaced on a delivery's
// record.
type PreviousSend struct {
	RunID     string    `json:"run_id,omitempty"`
	EmailID   string    `json:"email_id,omitempty"`
	MessageID string    `json:"message_id,omitempty"`
	SendingAt time.Time `json:"sending_at,omitzero"`
	SentAt    time.Time `json:"sent_at,omitzero"`
	Attempts  int       `json:"attempts"`
	SettledBy string    `json:"settled_by,omitempty"`
}

// Record is a delivery's ledger record as the operator's commands show
// it.
type Record struct {
	// URI names the record, e.g. s3://bucket/prefix/KEY.
	URI string `json:"record"`
	// State is "claimed", "sending", "sent" or "released".
	State string `json:"state"`
	worker.Delivery
	RunID     string    `json:"run_id,omitempty"`
	EmailID   string    `json:"email_id,omitempty"`
	MessageID string    `json:"message_id,omitempty"`
	ClaimedAt time.Time `json:"claimed_at,omitzero"`
	SendingAt time.Time `json:"sending_at,omitzero"`
	SentAt    time.Time `json:"sent_at,omitzero"`
	Attempts  int       `json:"attempts"`
	SettledBy string    `json:"settled_by,omitempty"`
	Resends   []Resend  `json:"resends,omitempty"`
	// Covered is set when the delivery needed no email of its own: the
	// emails CoveredBy showed all its reports (a digest's older event).
	Covered   bool     `json:"covered,omitempty"`
	CoveredBy []string `json:"covered_by,omitempty"`
	// Modified is when the record was last written, by S3's clock.
	Modified time.Time `json:"modified,omitzero"`
}

// eventPrefix is where the index of an event's deliveries lives: one
// empty object per delivery, named by its key, so that one
// ListObjectsV2 lists every delivery of the event.
func (l *Ledger) eventPrefix(eventID string) string {
	h := sha256.Sum256([]byte(eventID))
	return l.Prefix + "events/" + hex.EncodeToString(h[:]) + "/"
}

// indexEvent adds delivery key to eventID's index, in a goroutine of
// its own, and returns a function that waits for it. Claim writes it
// beside its first write of the record rather than after, so that it
// adds no round trip to a delivery: the entry names the delivery, not
// who holds it, so it is right whoever wins the claim (a claim that
// fails leaves an entry that names no record, which EventDeliveries
// skips). It is created once (If-None-Match), so that its LastModified
// stays the delivery's first claim, which keys retire counts by, when a
// redelivered copy claims again. It is only for the ledger's tools: a
// claim whose entry is lost (a crash, an error) is still the claim, so
// errors, a lost race among them, are ignored.
func (l *Ledger) indexEvent(ctx context.Context, eventID, key string) (wait func()) {
	if eventID == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = l.Client.PutObject(ctx, &s3.PutObjectInput{Bucket: &l.Bucket, Key: aws.String(l.eventPrefix(eventID) + key),
			Body: bytes.NewReader(nil), IfNoneMatch: aws.String("*")})
	}()
	return func() { <-done }
}

// ListAPI is the listing EventDeliveries needs; *s3.Client has it.
type ListAPI interface {
	ListObjectsV2(context.Context, *s3.ListObjectsV2Input, ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

// EventDeliveries returns the records of every delivery of eventID,
// found with one ListObjectsV2 of the event's index (and more pages
// past a thousand recipients). Deliveries claimed before the index
// existed are not listed; a resend finds those by their keys.
func (l *Ledger) EventDeliveries(ctx context.Context, eventID string) ([]Record, error) {
	lister, ok := l.Client.(ListAPI)
	if !ok {
		return nil, errors.New("ledger: the S3 client cannot list objects")
	}
	prefix := l.eventPrefix(eventID)
	var recs []Record
	p := s3.NewListObjectsV2Paginator(lister, &s3.ListObjectsV2Input{Bucket: &l.Bucket, Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("ledger event index %s: %w", l.uri(prefix), err)
		}
		for _, o := range out.Contents {
			rec, ok, err := l.Lookup(ctx, strings.TrimPrefix(aws.ToString(o.Key), prefix))
			if err != nil {
				return nil, err
			}
			if ok {
				recs = append(recs, rec)
			}
		}
	}
	return recs, nil
}

// Lookup returns the record of delivery key, and false when there is
// none (a 404).
func (l *Ledger) Lookup(ctx context.Context, key string) (Record, bool, error) {
	name := l.key(key)
	s, err := l.read(ctx, name)
	if err != nil {
		if isNotFound(err) {
			return Record{}, false, nil
		}
		return Record{}, false, err
	}
	return Record{URI: l.uri(name), State: s.State, Delivery: s.Delivery, RunID: s.Owner.RunID, EmailID: s.EmailID,
		MessageID: s.MessageID, ClaimedAt: s.ClaimedAt, SendingAt: s.SendingAt, SentAt: s.SentAt, Attempts: s.Attempts,
		SettledBy: s.SettledBy, Resends: s.Resends, Covered: s.Covered, CoveredBy: s.CoveredBy, Modified: s.modified}, true, nil
}

// AddResends appends notes to the resends of delivery key's record,
// which must say "sent", conditional on the ETag read. It returns the
// record as written.
func (l *Ledger) AddResends(ctx context.Context, key string, notes []Resend) (Record, error) {
	ok, err := l.settle(ctx, key, func(s stored) (record, bool) {
		if s.State != stateSent {
			return record{}, false
		}
		r := s.record
		r.Resends = append(r.Resends, notes...)
		return r, true
	})
	if err != nil {
		return Record{}, err
	}
	if !ok {
		return Record{}, fmt.Errorf("ledger record %s: not sent, so no resend is recorded", l.RecordURI(key))
	}
	rec, _, err := l.Lookup(ctx, key)
	return rec, err
}

// stored is a record as read, with what S3 said of it.
type stored struct {
	record
	etag     string
	modified time.Time
	age      time.Duration // by S3's clock
}

// emailIndex is the object that lists the deliveries of one email.
type emailIndex struct {
	EmailID   string    `json:"email_id"`
	Keys      []string  `json:"keys"`
	CreatedAt time.Time `json:"created_at"`
}

func (l *Ledger) key(k string) string { return l.Prefix + k }

func (l *Ledger) emailKey(emailID string) string { return l.Prefix + "emails/" + emailID + ".json" }

// uri names an object for people.
func (l *Ledger) uri(name string) string { return "s3://" + l.Bucket + "/" + name }

// RecordURI names the record of a delivery key for people, as the
// worker's dead-letter reasons do.
func (l *Ledger) RecordURI(key string) string { return l.uri(l.key(key)) }

// maxClaimAttempts bounds how often Claim tries again when the record
// it lost to is gone by the time it reads it, or changes before it can
// take it over.
const maxClaimAttempts = 4

// Claim creates the delivery's record as "claimed" if it does not
// exist. Otherwise it reads it: a record that is ours (our own write,
// applied and retried) is our claim; a "released" one, a "claimed" one
// older than req.Timeout, and, with req.ResendAfter, a "sending" one
// that old, it takes over with a write conditional on the ETag it read.
// A record can be released (deleted) between the failed create and the
// read; the read then answers 404, or 403 without s3:ListBucket, and
// Claim tries to create it again, a few times, since the delivery is
// free.
func (l *Ledger) Claim(ctx context.Context, req worker.ClaimRequest) (worker.Claim, error) {
	name := l.key(req.Key)
	me := worker.Owner{RunID: req.RunID, Token: worker.NewID()}
	now := time.Now().UTC()
	fresh := record{State: stateClaimed, Owner: me, Delivery: req.Delivery, ClaimedAt: now}
	c := worker.Claim{Key: req.Key, Record: l.uri(name), Delivery: req.Delivery, ClaimedAt: now, Owner: me}
	ifMatch := "" // "": create; else take over the record with this ETag
	defer l.indexEvent(ctx, req.EventID, req.Key)()
	for attempt := 1; ; attempt++ {
		etag, err := l.put(ctx, name, fresh, ifMatch)
		if err == nil {
			c.State, c.Version = worker.Claimed, etag
			return c, nil
		}
		if !lostRace(err) {
			return worker.Claim{}, fmt.Errorf("ledger claim %s: %w", name, err)
		}
		s, err := l.read(ctx, name)
		if err != nil {
			if (isNotFound(err) || isForbidden(err)) && attempt < maxClaimAttempts {
				ifMatch, c.TookOver, fresh.Attempts = "", "", 0
				continue
			}
			return worker.Claim{}, err
		}
		if s.Owner == me {
			c.State, c.Version = worker.Claimed, s.etag
			return c, nil
		}
		c.Since, c.Age, c.EmailID, c.Attempts, c.TookOver = s.modified, s.age, s.EmailID, s.Attempts, ""
		switch s.State {
		case stateSent:
			c.State = worker.AlreadySent
			return c, nil
		case stateReleased:
		case stateClaimed:
			if req.Timeout <= 0 || s.age < req.Timeout {
				c.State = worker.InProgress
				return c, nil
			}
		case stateSending:
			if req.ResendAfter <= 0 || s.age < req.ResendAfter {
				c.State = worker.Unsettled
				return c, nil
			}
		default:
			return worker.Claim{}, worker.PermanentCode(worker.CodeLedgerUnreadable, fmt.Errorf("ledger record %s: unknown state %q", name, s.State))
		}
		if attempt >= maxClaimAttempts {
			return worker.Claim{}, fmt.Errorf("ledger claim %s: the record changed under each of %d tries", name, attempt)
		}
		c.TookOver, c.EmailID = s.State, ""
		fresh.Attempts = s.Attempts
		ifMatch = s.etag
	}
}

// Sending writes the email's index, unless emailID names the email's
// one delivery (worker.NewEmailID), then moves each claim's record to
// "sending" with emailID, conditional on the claim's ETag.
func (l *Ledger) Sending(ctx context.Context, emailID string, claims []*worker.Claim) error {
	if key, ok := worker.EmailDelivery(emailID); !ok || len(claims) != 1 || claims[0].Key != key {
		if err := l.indexEmail(ctx, emailID, claims); err != nil {
			return err
		}
	}
	for _, c := range claims {
		r := claimRecord(c, stateSending)
		r.EmailID, r.SendingAt, r.Attempts = emailID, time.Now().UTC(), c.Attempts+1
		mine := func(s stored) bool { return s.State == stateSending && s.EmailID == emailID }
		if err := l.change(ctx, c, r, mine); err != nil {
			return fmt.Errorf("ledger sending %s: %w", c.Record, err)
		}
		c.EmailID, c.Attempts = emailID, r.Attempts
	}
	return nil
}

// indexEmail writes the index of the email emailID: its claims' keys.
func (l *Ledger) indexEmail(ctx context.Context, emailID string, claims []*worker.Claim) error {
	idx := emailIndex{EmailID: emailID, CreatedAt: time.Now().UTC()}
	for _, c := range claims {
		idx.Keys = append(idx.Keys, c.Key)
	}
	body, _ := json.Marshal(idx)
	name := l.emailKey(emailID)
	err := l.retry(ctx, func() error {
		_, err := l.Client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &l.Bucket, Key: aws.String(name), Body: bytes.NewReader(body),
			ContentType: aws.String("application/json"),
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("ledger email index %s: %w", name, err)
	}
	return nil
}

// Complete moves the claim's record to "sent", conditional on its ETag.
// A record already marked sent for the claim's email (by SES's event)
// is done.
func (l *Ledger) Complete(ctx context.Context, c *worker.Claim, messageID string) error {
	r := claimRecord(c, stateSent)
	r.EmailID, r.MessageID, r.Attempts = c.EmailID, messageID, c.Attempts
	r.SentAt = time.Now().UTC()
	done := func(s stored) bool { return s.State == stateSent && s.EmailID == c.EmailID }
	if err := l.change(ctx, c, r, done); err != nil {
		return fmt.Errorf("ledger complete %s: %w", c.Record, err)
	}
	return nil
}

// Cover moves the claim's record to "sent", covered by emailIDs,
// conditional on its ETag: no email of its own went out, and none is
// indexed.
func (l *Ledger) Cover(ctx context.Context, c *worker.Claim, emailIDs []string) error {
	r := claimRecord(c, stateSent)
	r.Attempts, r.SentAt = c.Attempts, time.Now().UTC()
	r.Covered, r.CoveredBy = true, emailIDs
	done := func(s stored) bool { return s.State == stateSent && s.Covered }
	if err := l.change(ctx, c, r, done); err != nil {
		return fmt.Errorf("ledger cover %s: %w", c.Record, err)
	}
	return nil
}

// Release deletes the claim's record, conditional on its ETag (S3
// If-Match on DeleteObject), trying a few times; if it cannot, it marks
// the record "released", which any claim takes over. A record another
// run has taken over is left alone.
func (l *Ledger) Release(ctx context.Context, c *worker.Claim) error {
	name := l.key(c.Key)
	delErr := l.retry(ctx, func() error {
		_, err := l.Client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &l.Bucket, Key: aws.String(name), IfMatch: aws.String(c.Version)})
		if err == nil || isNotFound(err) {
			return nil
		}
		if !lostRace(err) {
			return err
		}
		s, rerr := l.read(ctx, name)
		switch {
		case rerr != nil && (isNotFound(rerr) || isForbidden(rerr)):
			return nil // gone: our own delete, applied and retried
		case rerr != nil:
			return rerr
		case s.Owner != c.Owner:
			return nil // another run's now
		}
		c.Version = s.etag
		return errRetry
	})
	if delErr == nil {
		return nil
	}
	r := claimRecord(c, stateReleased)
	r.EmailID, r.Attempts = c.EmailID, c.Attempts
	mine := func(s stored) bool { return s.State == stateReleased }
	if err := l.change(ctx, c, r, mine); err != nil {
		return fmt.Errorf("ledger release %s: delete: %v; mark released: %w", c.Record, delErr, err)
	}
	return nil
}

// claimRecord returns the record c would write in state.
func claimRecord(c *worker.Claim, state string) record {
	return record{State: state, Owner: c.Owner, Delivery: c.Delivery, ClaimedAt: c.ClaimedAt}
}

// errRetry asks retry for another try.
var errRetry = errors.New("try again")

// errTakenOver is a claim's conditional write refused because the
// record is another run's now.
var errTakenOver = errors.New("the record was taken over by another run")

// change writes r over the claim's record, conditional on its ETag,
// and updates the claim's Version. A refused write is re-read: when
// the record is still the claim's, the write is tried again on the new
// ETag, unless done says the record already is what r would make it (a
// write of ours applied and retried, or SES's event ahead of us);
// otherwise the record is another run's, and change fails (transient,
// claimed_elsewhere) without writing.
func (l *Ledger) change(ctx context.Context, c *worker.Claim, r record, done func(stored) bool) error {
	name := l.key(c.Key)
	return l.retry(ctx, func() error {
		etag, err := l.put(ctx, name, r, c.Version)
		if err == nil {
			c.Version = etag
			return nil
		}
		if !lostRace(err) {
			return err
		}
		s, err := l.read(ctx, name)
		switch {
		case err != nil && (isNotFound(err) || isForbidden(err)):
			return worker.Fail(worker.CodeClaimedElsewhere, worker.ClassTransient, fmt.Errorf("%w: it is gone", errTakenOver))
		case err != nil:
			return err
		case s.Owner != c.Owner:
			return worker.Fail(worker.CodeClaimedElsewhere, worker.ClassTransient, fmt.Errorf("%w (%s, run %s)", errTakenOver, s.State, s.Owner.RunID))
		}
		c.Version = s.etag
		if done(s) {
			return nil
		}
		return errRetry
	})
}

// retry calls f until it succeeds, up to Attempts times, waiting
// Backoff, doubled each time, between tries. It does not try again
// after an error that another try cannot mend: a permanent one, a 403,
// or a claim lost to another run. errRetry tries again at once.
func (l *Ledger) retry(ctx context.Context, f func() error) error {
	attempts := cmp.Or(l.Attempts, LedgerAttemptsDefault)
	wait := cmp.Or(l.Backoff, LedgerBackoffDefault)
	sleep := l.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	var err error
	for i := 1; ; i++ {
		err = f()
		switch {
		case err == nil:
			return nil
		case i >= attempts || worker.IsPermanent(err) || errors.Is(err, errTakenOver) || isForbidden(err):
			if errors.Is(err, errRetry) {
				return errors.New("the record kept changing")
			}
			return err
		case errors.Is(err, errRetry):
			continue
		}
		if serr := sleep(ctx, wait); serr != nil {
			return err
		}
		wait *= 2
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// put writes r at name: a new object when ifMatch is "", otherwise over
// the object with that ETag. It returns the new ETag.
func (l *Ledger) put(ctx context.Context, name string, r record, ifMatch string) (string, error) {
	body, _ := json.Marshal(r)
	in := &s3.PutObjectInput{
		Bucket: &l.Bucket, Key: aws.String(name),
		Body: bytes.NewReader(body), ContentType: aws.String("application/json"),
	}
	if ifMatch == "" {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(ifMatch)
	}
	out, err := l.Client.PutObject(ctx, in)
	if err != nil {
		return "", err
	}
	return aws.ToString(out.ETag), nil
}

// read returns the record at name, with its ETag and its age by S3's
// clock (the Date of S3's answer against the object's LastModified;
// this host's clock only when S3 sent no Date).
func (l *Ledger) read(ctx context.Context, name string) (stored, error) {
	out, err := l.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &l.Bucket, Key: aws.String(name)})
	if err != nil {
		return stored{}, fmt.Errorf("ledger read %s: %w", name, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, 1<<16))
	if err != nil {
		return stored{}, fmt.Errorf("ledger read %s: %w", name, err)
	}
	s := stored{etag: aws.ToString(out.ETag), modified: aws.ToTime(out.LastModified)}
	if err := json.Unmarshal(b, &s.record); err != nil {
		return stored{}, worker.PermanentCode(worker.CodeLedgerUnreadable, fmt.Errorf("ledger record %s: %w", name, err))
	}
	now, ok := awsmiddleware.GetServerTime(out.ResultMetadata)
	if !ok {
		now = time.Now()
	}
	if !s.modified.IsZero() {
		s.age = max(now.Sub(s.modified), 0)
	}
	return s, nil
}

// SettleEmail records that SES accepted the email emailID as messageID,
// from SES's own record of it (its sending events): each delivery of
// the email (the one its id names, or those its index lists) whose
// record is still "sending" (or "released") with that email id is
// marked sent, conditional on its ETag. It returns how many it marked;
// records already sent, or that moved on to another email, are left as
// they are, so it may be called again with the same event. An email
// without an index (404: not this ledger's, or expired) settles
// nothing; a 403 is an error, since without s3:ListBucket S3 cannot
// tell a missing index from a denied one.
func (l *Ledger) SettleEmail(ctx context.Context, emailID, messageID string) (int, error) {
	keys, err := l.emailKeys(ctx, emailID)
	if err != nil {
		return 0, err
	}
	settled := 0
	var errs []error
	for _, key := range keys {
		ok, err := l.settle(ctx, key, func(s stored) (record, bool) {
			if s.EmailID != emailID || (s.State != stateSending && s.State != stateReleased) {
				return record{}, false
			}
			r := s.record
			r.State, r.MessageID, r.SentAt, r.SettledBy = stateSent, messageID, time.Now().UTC(), "ses-event"
			return r, true
		})
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			settled++
		}
	}
	return settled, errors.Join(errs...)
}

// settle reads the record of key and, when f says so, writes what f
// gives, conditional on the ETag read, reading again if it changed. It
// reports whether it wrote.
func (l *Ledger) settle(ctx context.Context, key string, f func(stored) (record, bool)) (bool, error) {
	name := l.key(key)
	wrote := false
	err := l.retry(ctx, func() error {
		s, err := l.read(ctx, name)
		if err != nil {
			if isNotFound(err) {
				return nil
			}
			return err
		}
		r, ok := f(s)
		if !ok {
			return nil
		}
		if _, err := l.put(ctx, name, r, s.etag); err != nil {
			if lostRace(err) {
				return errRetry
			}
			return err
		}
		wrote = true
		return nil
	})
	if err != nil {
		return wrote, fmt.Errorf("ledger settle %s: %w", l.uri(name), err)
	}
	return wrote, nil
}

// Settlement is what SettleRecord did.
type Settlement struct {
	// Record names the record.
	Record string
	// Was is the record's state before: "claimed", "sending", "sent" or
	// "released"; "" when there was none.
	Was string
	// EmailID is the email the record was sending, if any.
	EmailID string
	// SettledBy is who had settled the record before, if anyone:
	// "ses-event" or "operator".
	SettledBy string
}

// SettleRecord settles one delivery by hand, as an operator who knows
// whether its email arrived: sent true marks the record "sent" (a
// redrive then skips the delivery); false deletes it (a redrive sends
// it). key is the delivery key; its record is Prefix+key. Both are
// conditional on the ETag read. Only a "sending" record is in doubt:
// any other is refused with ErrNotInDoubt unless force, except that
// marking a sent record sent, or a missing one unsent, does nothing.
func (l *Ledger) SettleRecord(ctx context.Context, key string, sent, force bool) (Settlement, error) {
	name := l.key(key)
	st := Settlement{Record: l.uri(name)}
	err := l.retry(ctx, func() error {
		s, err := l.read(ctx, name)
		switch {
		case err != nil && isNotFound(err):
			st.Was, st.EmailID, st.SettledBy = "", "", ""
			if !sent {
				return nil
			}
			return fmt.Errorf("there is no such record to mark sent")
		case err != nil:
			return err
		}
		st.Was, st.EmailID, st.SettledBy = s.State, s.EmailID, s.SettledBy
		if sent && s.State == stateSent {
			return nil
		}
		if s.State != stateSending && !force {
			// Only "sending" is in doubt. A sent record marked unsent
			// is sent again by a redrive; a claimed or released one
			// marked sent is an email never sent, and never will be.
			return fmt.Errorf("%w: the record is %q, not \"sending\": its outcome is not in doubt (force to settle it anyway)", ErrNotInDoubt, s.State)
		}
		if sent {
			r := s.record
			r.State, r.SentAt, r.SettledBy = stateSent, time.Now().UTC(), "operator"
			_, err = l.put(ctx, name, r, s.etag)
		} else {
			_, err = l.Client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &l.Bucket, Key: aws.String(name), IfMatch: aws.String(s.etag)})
		}
		if lostRace(err) {
			return errRetry
		}
		return err
	})
	if err != nil {
		return st, fmt.Errorf("ledger settle %s: %w", st.Record, err)
	}
	return st, nil
}

// ErrNotInDoubt is SettleRecord's error for a record that is not
// "sending", unless forced.
var ErrNotInDoubt = errors.New("not in doubt")

// lostRace reports a conditional write refused: 412 PreconditionFailed
// (the object exists, or its ETag changed), or 409
// ConditionalRequestConflict (another conditional write to the key
// was in flight).
func lostRace(err error) bool { return isPreconditionFailed(err) || isConditionalConflict(err) }

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
