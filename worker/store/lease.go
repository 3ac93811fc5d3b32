package store

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// SlotHeartbeatDefault is the default of Leases.Heartbeat.
const SlotHeartbeatDefault = 30 * time.Second

// slotStaleBeats is how many heartbeats a holder may miss before its
// slot is taken over: a slow S3 call or a GC pause is not a crash.
const slotStaleBeats = 4

// Leases hands out each schedule slot (a schedule name and a planned
// time) to one holder at a time, across every replica, with one object
// per slot: created with If-None-Match: *, then rewritten by its holder
// with If-Match on its ETag for each heartbeat and at completion. A slot
// whose holder stopped heartbeating (by S3's clock) is taken over, with
// If-Match on the ETag its reader saw, so two replicas never both take
// it over; a completed slot is never run again.
type Leases struct {
	Client API
	Bucket string
	// Prefix is prepended to each slot's key, e.g. "reportmailer/slots/".
	Prefix string
	// Heartbeat is how often a holder rewrites its lease; one not
	// rewritten for four of its holder's (which the lease records) is
	// taken over. Default
	// SlotHeartbeatDefault.
	Heartbeat time.Duration
}

// SlotRecord is what a slot's lease object says.
type SlotRecord struct {
	Schedule string    `json:"schedule"`
	Planned  time.Time `json:"planned"`
	Holder   string    `json:"holder"` // host and process id
	RunID    string    `json:"run_id,omitempty"`
	TakenAt  time.Time `json:"taken_at"`
	// Beat is the holder's last heartbeat, by its clock; the lease's age
	// is judged by S3's (the object's Last-Modified).
	Beat time.Time `json:"heartbeat"`
	// BeatEveryMS is the holder's heartbeat interval, in milliseconds:
	// a reader judges the lease stale by it, not by its own setting,
	// since replicas may be configured apart. 0 in a lease written
	// before it was recorded: the reader's own applies.
	BeatEveryMS int64 `json:"heartbeat_every_ms,omitempty"`
	// Late is set when the slot was started after it was due: caught up
	// at a start, or taken over from a holder that stopped.
	Late bool `json:"late,omitempty"`
	// TookOverFrom names the holder whose lease went stale.
	TookOverFrom string `json:"took_over_from,omitempty"`
	// DoneAt is when the slot's run finished, with Outcome; zero while
	// it runs.
	DoneAt  time.Time `json:"done_at,omitzero"`
	Outcome string    `json:"outcome,omitempty"`
}

// Lease is a slot held by this process.
type Lease struct {
	l   *Leases
	key string

	mu   sync.Mutex
	etag string
	rec  SlotRecord
	lost bool
}

// ErrLeaseLost says another replica took the slot over: this holder
// must stop starting new work for it.
var ErrLeaseLost = errors.New("slot lease lost: another replica took the slot over")

// Holder names this process in leases: host and process id.
func Holder() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d", host, os.Getpid())
}

func (l *Leases) heartbeat() time.Duration { return cmp.Or(l.Heartbeat, SlotHeartbeatDefault) }

func (l *Leases) key(schedule string, planned time.Time) string {
	return l.Prefix + schedule + "/" + planned.UTC().Format(time.RFC3339)
}

// Acquire takes the slot, or takes it over from a holder that stopped
// heartbeating. It returns nil, and why, when the slot is someone
// else's or done. late marks a slot run after it was due; a takeover is
// always late.
func (l *Leases) Acquire(ctx context.Context, schedule string, planned time.Time, runID string, late bool) (*Lease, string, error) {
	now := time.Now().UTC()
	rec := SlotRecord{Schedule: schedule, Planned: planned.UTC(), Holder: Holder(), RunID: runID, TakenAt: now, Beat: now, Late: late,
		BeatEveryMS: l.heartbeat().Milliseconds()}
	key := l.key(schedule, planned)
	etag, err := l.put(ctx, key, rec, "")
	if err == nil {
		return &Lease{l: l, key: key, etag: etag, rec: rec}, "", nil
	}
	if !isPreconditionFailed(err) {
		return nil, "", fmt.Errorf("lease %s: %w", key, err)
	}
	cur, curTag, age, err := l.read(ctx, key)
	if err != nil {
		return nil, "", err
	}
	switch {
	case !cur.DoneAt.IsZero():
		return nil, fmt.Sprintf("the slot is done (by %s at %s, %s)", cur.Holder, cur.DoneAt.Format(time.RFC3339), cur.Outcome), nil
	case age < slotStaleBeats*cur.beatEvery(l.heartbeat()):
		return nil, fmt.Sprintf("another replica holds the slot (%s, heartbeat %s ago)", cur.Holder, age.Round(time.Second)), nil
	}
	rec.Late, rec.TookOverFrom = true, cur.Holder
	etag, err = l.put(ctx, key, rec, curTag)
	if isPreconditionFailed(err) {
		return nil, "another replica took the stale slot over first", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("lease %s: take over: %w", key, err)
	}
	return &Lease{l: l, key: key, etag: etag, rec: rec}, "", nil
}

// Once reports whether the caller won a mode-each slot, by creating
// its lease object once: no heartbeat, completion or takeover, since an
// each-mode run left unfinished is the queue's to retry, not the
// slot's. The record has no heartbeat, so Acquire and Get take it as
// done.
func (l *Leases) Once(ctx context.Context, schedule string, planned time.Time) (bool, error) {
	key := l.key(schedule, planned)
	body := fmt.Sprintf(`{"holder":%q,"taken_at":%q}`, Holder(), time.Now().UTC().Format(time.RFC3339Nano))
	err := retryConflict(ctx, func() error {
		_, err := l.Client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &l.Bucket, Key: aws.String(key), Body: bytes.NewReader([]byte(body)),
			IfNoneMatch: aws.String("*"), ContentType: aws.String("application/json"),
		})
		return err
	})
	if err == nil {
		return true, nil
	}
	if isPreconditionFailed(err) {
		return false, nil
	}
	return false, fmt.Errorf("lease %s: %w", key, err)
}

// beatEvery is the holder's heartbeat interval, or def when the record
// does not say.
func (r SlotRecord) beatEvery(def time.Duration) time.Duration {
	if r.BeatEveryMS > 0 {
		return time.Duration(r.BeatEveryMS) * time.Millisecond
	}
	return def
}

// Get returns the slot's record, and false when no replica took it.
func (l *Leases) Get(ctx context.Context, schedule string, planned time.Time) (SlotRecord, bool, error) {
	rec, _, _, err := l.read(ctx, l.key(schedule, planned))
	if isNotFound(err) {
		return SlotRecord{}, false, nil
	}
	return rec, err == nil, err
}

// Record returns what the lease says now.
func (h *Lease) Record() SlotRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rec
}

// Beat rewrites the lease, conditional on its ETag; ErrLeaseLost when
// another replica took it over.
func (h *Lease) Beat(ctx context.Context) error {
	return h.change(ctx, func(r *SlotRecord) { r.Beat = time.Now().UTC() })
}

// Complete records that the slot's run finished with outcome: no
// replica runs it again.
func (h *Lease) Complete(ctx context.Context, outcome string) error {
	return h.change(ctx, func(r *SlotRecord) { r.DoneAt, r.Outcome = time.Now().UTC(), outcome })
}

func (h *Lease) change(ctx context.Context, f func(*SlotRecord)) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost {
		return ErrLeaseLost
	}
	rec := h.rec
	f(&rec)
	etag, err := h.l.put(ctx, h.key, rec, h.etag)
	if isPreconditionFailed(err) {
		h.lost = true
		return ErrLeaseLost
	}
	if err != nil {
		return fmt.Errorf("lease %s: %w", h.key, err)
	}
	h.etag, h.rec = etag, rec
	return nil
}

// Keep beats every Heartbeat until stop is called, and calls lost once
// if another replica took the slot over. A failed beat is retried at
// the next one; only a lost race means the slot is gone.
func (h *Lease) Keep(ctx context.Context, lost func(), logf func(error)) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(h.l.heartbeat())
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			err := h.Beat(context.WithoutCancel(ctx))
			if errors.Is(err, ErrLeaseLost) {
				lost()
				return
			}
			if err != nil {
				logf(err)
			}
		}
	}()
	return func() { close(done); <-finished }
}

// put writes rec at key: a new object when ifMatch is "", otherwise
// over the object with that ETag. A 409 is tried again; only a 412
// means the slot is someone else's.
func (l *Leases) put(ctx context.Context, key string, rec SlotRecord, ifMatch string) (string, error) {
	body, _ := json.Marshal(rec)
	in := &s3.PutObjectInput{Bucket: &l.Bucket, Key: aws.String(key), Body: bytes.NewReader(body), ContentType: aws.String("application/json")}
	if ifMatch == "" {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(ifMatch)
	}
	var out *s3.PutObjectOutput
	err := retryConflict(ctx, func() (err error) {
		in.Body = bytes.NewReader(body)
		out, err = l.Client.PutObject(ctx, in)
		return err
	})
	if err != nil {
		return "", err
	}
	return aws.ToString(out.ETag), nil
}

// read returns a lease, its ETag and its age by S3's clock.
func (l *Leases) read(ctx context.Context, key string) (SlotRecord, string, time.Duration, error) {
	out, err := l.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &l.Bucket, Key: aws.String(key)})
	if err != nil {
		return SlotRecord{}, "", 0, fmt.Errorf("lease %s: %w", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, 1<<16))
	if err != nil {
		return SlotRecord{}, "", 0, fmt.Errorf("lease %s: %w", key, err)
	}
	var rec SlotRecord
	if len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, &rec); err != nil {
			return SlotRecord{}, "", 0, fmt.Errorf("lease %s: %w", key, err)
		}
	}
	now, ok := awsmiddleware.GetServerTime(out.ResultMetadata)
	if !ok {
		now = time.Now()
	}
	age := max(now.Sub(aws.ToTime(out.LastModified)), 0)
	if rec.Beat.IsZero() && rec.DoneAt.IsZero() {
		// A lease from before heartbeats ({"holder","taken_at"}): its run
		// ended or died long ago; treat it as done rather than run the
		// slot again.
		rec.DoneAt, rec.Outcome = aws.ToTime(out.LastModified), "unknown (an older version's lease)"
	}
	return rec, aws.ToString(out.ETag), age, nil
}
