package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/metrics"
)

// runCounts are a run's counts, as its history record keeps them.
type runCounts struct {
	Received        int `json:"received"`
	Sent            int `json:"sent"`
	Acked           int `json:"acked"`
	Dropped         int `json:"dropped"`
	DeadLettered    int `json:"dead_lettered"`
	Retrying        int `json:"retrying"`
	Duplicates      int `json:"duplicates"`
	MaybeSent       int `json:"maybe_sent"`
	MaybeDuplicated int `json:"maybe_duplicated"`
	Unrecorded      int `json:"unrecorded"`
	Refused         int `json:"refused"`
	Settled         int `json:"settled"` // by SES's events, before the run
	// Pending is what a digest's run left in its pending store: events
	// ingested after the slot, or not delivered.
	Pending int `json:"pending"`
	// Users, Due and Delivered are what a digest slot delivered from
	// its pending store: the users with events due, those events, and
	// the events delivered and removed. Received and Acked are queue
	// messages: in a slot, those its own ingest took (under serve,
	// ingest_every's runs take most of them, each with a record).
	Users     int `json:"users,omitempty"`
	Due       int `json:"due,omitempty"`
	Delivered int `json:"delivered,omitempty"`
}

// digest says what a digest slot did with its pending store.
func (k runCounts) digest() string {
	return fmt.Sprintf("%d users with %d events due: %d delivered, %d left pending", k.Users, k.Due, k.Delivered, k.Pending)
}

// runRecord is one run's history record: one JSON object under
// ledger.history_prefix, at <schedule>/<start>-<run id>.json (an
// ingest's at <schedule>/ingest/<start>-<run id>.json, see
// historyKey), so that a listing of a schedule's prefix is in time
// order.
type runRecord struct {
	Schedule string `json:"schedule"`
	RunID    string `json:"run_id"`
	Command  string `json:"command"` // drain, serve or ingest
	// Digest is set for a digest schedule's run: a slot (drain or
	// serve) delivers from the pending store, an ingest fills it.
	Digest    bool      `json:"digest,omitempty"`
	PlannedAt time.Time `json:"planned_at,omitzero"`
	// Late is set when a serve slot ran after it was due: missed, or
	// taken over from a replica that stopped.
	Late       bool        `json:"late,omitempty"`
	StartedAt  time.Time   `json:"started_at"`
	EndedAt    time.Time   `json:"ended_at"`
	Outcome    string      `json:"outcome"` // ok, incomplete, failed, halted or paused
	Counts     runCounts   `json:"counts"`
	HaltCode   worker.Code `json:"halt_code,omitempty"`
	HaltReason string      `json:"halt_reason,omitempty"`
	Error      string      `json:"error,omitempty"`
	// Deliveries are a record's deliveries as read back. A run being
	// recorded keeps them in listed instead, already encoded.
	Deliveries []worker.DeliveryResult `json:"deliveries,omitempty"`
	// DeliveriesOmitted counts the deliveries past maxRunDeliveries,
	// counted but not listed.
	DeliveriesOmitted int `json:"deliveries_omitted,omitempty"`

	mu     sync.Mutex
	listed deliveryList
}

// deliveryList is a run's deliveries as the JSON array's elements,
// encoded as they come, in chunks: a run of 20,000 deliveries held them
// as values and then as one marshalled copy, and that was what its peak
// memory grew by over a run of 2,000 (docs/benchmarks.md).
type deliveryList struct {
	chunks [][]byte
	n      int
}

// deliveryChunk is the size of each chunk of a deliveryList.
const deliveryChunk = 64 << 10

// add appends d's JSON, comma-separated from the one before.
func (l *deliveryList) add(d worker.DeliveryResult) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if l.n > 0 {
		b = append([]byte{','}, b...)
	}
	if len(l.chunks) == 0 || len(l.chunks[len(l.chunks)-1])+len(b) > deliveryChunk {
		l.chunks = append(l.chunks, make([]byte, 0, max(deliveryChunk, len(b))))
	}
	last := &l.chunks[len(l.chunks)-1]
	*last = append(*last, b...)
	l.n++
	return nil
}

// body returns the record's JSON, r's fields and then the deliveries,
// as a reader over the chunks rather than one more copy of them, and
// its length.
func (r *runRecord) body() (*chunks, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	head, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	// head ends with its closing brace; the deliveries go before it.
	parts := [][]byte{head[:len(head)-1], []byte(`,"deliveries":[`)}
	parts = append(parts, r.listed.chunks...)
	return newChunks(append(parts, []byte(`]}`))), nil
}

// chunks reads byte slices one after another, and seeks, as the SDK
// needs of a request body it hashes and may send again.
type chunks struct {
	parts [][]byte
	size  int64
	off   int64
}

func newChunks(parts [][]byte) *chunks {
	c := &chunks{parts: parts}
	for _, p := range parts {
		c.size += int64(len(p))
	}
	return c
}

// Len is the unread length, which the SDK takes as the content length.
func (c *chunks) Len() int { return int(c.size - c.off) }

func (c *chunks) Read(b []byte) (int, error) {
	if c.off >= c.size {
		return 0, io.EOF
	}
	n, at := 0, int64(0)
	for _, p := range c.parts {
		end := at + int64(len(p))
		if c.off < end && n < len(b) {
			k := copy(b[n:], p[c.off-at:])
			n += k
			c.off += int64(k)
		}
		at = end
	}
	return n, nil
}

func (c *chunks) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		offset += c.off
	case io.SeekEnd:
		offset += c.size
	}
	if offset < 0 {
		return 0, errors.New("chunks: seek before the start")
	}
	c.off = offset
	return offset, nil
}

// startRun begins the history record of a run of s; planned is the
// slot's time for serve, the start for drain.
func startRun(s config.Schedule, command string, planned time.Time) *runRecord {
	now := time.Now().UTC()
	return &runRecord{Schedule: s.Name, RunID: worker.NewID()[:16], Command: command, Digest: s.Mode == string(worker.ModeDigest),
		PlannedAt: planned.UTC(), StartedAt: now}
}

// context returns ctx with the run's id and an observer that collects
// its deliveries.
func (r *runRecord) context(ctx context.Context) context.Context {
	ctx = worker.WithRunID(ctx, r.RunID)
	return worker.WithDeliveryResults(ctx, r.add)
}

// add lists d, up to maxRunDeliveries, and counts the rest.
func (r *runRecord) add(d worker.DeliveryResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.listed.n >= maxRunDeliveries || r.listed.add(d) != nil {
		r.DeliveriesOmitted++
	}
}

// finish fills in how the run ended.
func (r *runRecord) finish(sum worker.Summary, settled settleRun, cause error) {
	r.EndedAt = time.Now().UTC()
	r.Counts = runCounts{Received: sum.Received, Sent: sum.Sent, Acked: sum.Acked, Dropped: sum.Dropped, DeadLettered: sum.DeadLettered,
		Retrying: sum.Retrying, Duplicates: sum.Duplicates, MaybeSent: sum.MaybeSent, MaybeDuplicated: sum.MaybeDuplicated,
		Unrecorded: sum.Unrecorded, Refused: sum.Refused, Settled: settled.res.Settled, Pending: sum.Pending,
		Users: sum.Users, Due: sum.Due, Delivered: sum.Delivered}
	switch {
	case cause != nil:
		r.Outcome, r.Error = "failed", cause.Error()
	case sum.Halted:
		r.Outcome = "halted"
	case !sum.OK():
		r.Outcome = "incomplete"
	default:
		r.Outcome = "ok"
	}
	if sum.Halted {
		r.HaltCode, r.HaltReason = sum.Halt.Code, sum.Halt.Reason
	}
}

// historyKey is where a run of command is kept under prefix: an
// ingest's record under the schedule's "ingest/", the others
// (drain, serve) directly under the schedule, so that a digest's slot
// runs are listed without its ingests, one every ingest_every.
func historyKey(prefix, schedule, command string, started time.Time, runID string) string {
	dir := prefix + schedule + "/"
	if command == "ingest" {
		dir += ingestDir
	}
	return dir + started.UTC().Format(historyTime) + "-" + runID + ".json"
}

// ingestDir holds a schedule's ingest records, under its own prefix.
const ingestDir = "ingest/"

// historyTime is a record key's start time: keys sort by it.
const historyTime = "20060102T150405.000Z"

// writeHistory puts r under the history prefix. A run whose record
// cannot be written is still the run it was: the error is logged, and
// the run's result stands.
func (a *app) writeHistory(ctx context.Context, r *runRecord) {
	body, err := r.body()
	log := a.logger.With("schedule", r.Schedule, "run_id", r.RunID)
	if err != nil {
		log.Error("run history: encode", "err", err)
		return
	}
	key := historyKey(a.cfg.Ledger.HistoryPrefix, r.Schedule, r.Command, r.StartedAt, r.RunID)
	_, err = a.s3.PutObject(context.WithoutCancel(ctx), &s3.PutObjectInput{Bucket: aws.String(a.cfg.Ledger.Bucket), Key: aws.String(key),
		Body: body, ContentLength: aws.Int64(body.size), ContentType: aws.String("application/json")})
	if err != nil {
		log.Error("run history: not written", "record", "s3://"+a.cfg.Ledger.Bucket+"/"+key, "err", err)
		return
	}
	log.Info("run history written", "record", "s3://"+a.cfg.Ledger.Bucket+"/"+key)
}

// maxRunDeliveries bounds the deliveries a run record lists (about 3
// MB of JSON), so that a run's memory does not grow with its events (a
// digest slot of 100,000 events held them all) and the record stays
// readable under maxRunRecord.
const maxRunDeliveries = 20000

// maxRunRecord bounds what readHistory reads of one run record.
const maxRunRecord = 16 << 20

// runKind selects a schedule's run records.
type runKind int

const (
	runsAll    runKind = iota
	runsSlot           // drain and serve: a run of the schedule
	runsIngest         // a digest's ingests under serve
)

// readHistory returns the runs of schedule recorded since since (by
// their start), oldest first; newestOnly returns only the newest one
// that can be read. A record that cannot be read (too large, not a
// run record) is skipped, and named in skipped; err is for a history
// that cannot be listed.
func readHistory(ctx context.Context, c *s3.Client, cfg *config.Config, schedule string, since time.Time, newestOnly bool) (runs []*runRecord, skipped []error, err error) {
	return readRuns(ctx, c, cfg, schedule, runsAll, since, newestOnly)
}

// readRuns is readHistory for the runs of one kind. A slot's runs are
// listed without the ingest records (kept under their own prefix),
// whose bodies are not read: only a record written before they were
// kept apart is read to learn it is an ingest.
func readRuns(ctx context.Context, c *s3.Client, cfg *config.Config, schedule string, kind runKind, since time.Time, newestOnly bool) (runs []*runRecord, skipped []error, err error) {
	prefix := cfg.Ledger.HistoryPrefix + schedule + "/"
	var keys []string
	if kind != runsIngest {
		if keys, err = historyKeys(ctx, c, cfg.Ledger.Bucket, prefix, since); err != nil {
			return nil, nil, err
		}
	}
	if kind != runsSlot {
		ingests, err := historyKeys(ctx, c, cfg.Ledger.Bucket, prefix+ingestDir, since)
		if err != nil {
			return nil, nil, err
		}
		keys = append(keys, ingests...)
	}
	// By start time, whichever prefix a record is under.
	base := func(k string) string { return k[strings.LastIndex(k, "/")+1:] }
	slices.SortFunc(keys, func(a, b string) int { return strings.Compare(base(a), base(b)) })
	if newestOnly {
		slices.Reverse(keys)
	}
	for _, k := range keys {
		r, err := readRun(ctx, c, cfg.Ledger.Bucket, k)
		if err != nil {
			if ctx.Err() != nil {
				return nil, skipped, err
			}
			skipped = append(skipped, err)
			continue
		}
		if kind == runsSlot && r.Command == "ingest" {
			continue // written before ingests were kept apart
		}
		runs = append(runs, r)
		if newestOnly {
			break
		}
	}
	return runs, skipped, nil
}

// historyKeys lists the records directly under prefix (not those of a
// sub-prefix such as ingestDir) that started at since or later.
func historyKeys(ctx context.Context, c *s3.Client, bucket, prefix string, since time.Time) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix),
		Delimiter: aws.String("/"), StartAfter: aws.String(prefix + since.UTC().Format(historyTime))})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("run history s3://%s/%s: %w", bucket, prefix, err)
		}
		for _, o := range out.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys, nil
}

// readRun reads the run record at key.
func readRun(ctx context.Context, c *s3.Client, bucket, key string) (*runRecord, error) {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("run history s3://%s/%s: %w", bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, maxRunRecord+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("run history s3://%s/%s: %w", bucket, key, err)
	case len(b) > maxRunRecord:
		return nil, fmt.Errorf("run history s3://%s/%s: larger than %d MiB: not read", bucket, key, maxRunRecord>>20)
	}
	r := &runRecord{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("run history s3://%s/%s: not a run record: %w", bucket, key, err)
	}
	return r, nil
}

// lastRunWindows are how far back lastRun looks, widening in turn: the
// history keys sort by start time, so a window is one listing from
// its start, and a schedule that runs often is not listed whole.
var lastRunWindows = []time.Duration{24 * time.Hour, 7 * 24 * time.Hour, 90 * 24 * time.Hour}

// lastRun returns schedule's newest readable record of a run of the
// schedule (drain or serve, not a digest's ingest), or nil if it has
// none; the records it could not read are in skipped.
func lastRun(ctx context.Context, c *s3.Client, cfg *config.Config, schedule string, now time.Time) (last *runRecord, skipped []error, err error) {
	return lastOf(ctx, c, cfg, schedule, runsSlot, now)
}

// lastIngest returns the newest readable record of a digest's ingest
// (one that received messages; an ingest of an empty queue writes
// none), or nil.
func lastIngest(ctx context.Context, c *s3.Client, cfg *config.Config, schedule string, now time.Time) (last *runRecord, skipped []error, err error) {
	return lastOf(ctx, c, cfg, schedule, runsIngest, now)
}

func lastOf(ctx context.Context, c *s3.Client, cfg *config.Config, schedule string, kind runKind, now time.Time) (last *runRecord, skipped []error, err error) {
	for _, w := range append(slices.Clone(lastRunWindows), 0) {
		since := time.Time{}
		if w > 0 {
			since = now.Add(-w)
		}
		runs, bad, err := readRuns(ctx, c, cfg, schedule, kind, since, true)
		skipped = append(skipped, bad...)
		if err != nil {
			return nil, skipped, err
		}
		if len(runs) > 0 {
			return runs[0], skipped, nil
		}
	}
	return nil, skipped, nil
}

// maxSeedReads bounds the records lastSuccess reads, newest first,
// looking for a success.
const maxSeedReads = 20

// lastSuccess returns the newest run of schedule (drain or serve, not
// an ingest) that succeeded as the metrics count success, among the
// newest maxSeedReads records of the last 90 days, or nil.
func lastSuccess(ctx context.Context, c *s3.Client, cfg *config.Config, schedule string, now time.Time) (*runRecord, error) {
	keys, err := historyKeys(ctx, c, cfg.Ledger.Bucket, cfg.Ledger.HistoryPrefix+schedule+"/", now.Add(-lastRunWindows[len(lastRunWindows)-1]))
	if err != nil {
		return nil, err
	}
	slices.Sort(keys)
	for i := len(keys) - 1; i >= 0 && i >= len(keys)-maxSeedReads; i-- {
		r, err := readRun(ctx, c, cfg.Ledger.Bucket, keys[i])
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			continue
		}
		if r.Command != "ingest" && r.succeeded() {
			return r, nil
		}
	}
	return nil, nil
}

// succeeded says whether the run succeeded as metrics.Succeeded counts
// it, from what its record kept.
func (r *runRecord) succeeded() bool {
	k := r.Counts
	sum := worker.Summary{Received: k.Received, Sent: k.Sent, Acked: k.Acked, Dropped: k.Dropped, DeadLettered: k.DeadLettered,
		Retrying: k.Retrying, Duplicates: k.Duplicates, MaybeSent: k.MaybeSent, Halted: r.Outcome == "halted"}
	var err error
	if r.Outcome == "failed" {
		err = errors.New(r.Error)
	}
	return (r.Outcome == "ok" || r.Outcome == "incomplete" || r.Outcome == "failed" || r.Outcome == "halted") && metrics.Succeeded(sum, err)
}

const historySynopsis = `history -config FILE [-schedule NAME] [-since 24h] [-run ID] [-json]

Lists the runs of each schedule (each drain, each slot serve ran) from
their records under ledger.history_prefix, oldest first, as a table
with their counts; -run shows one run in full, with each delivery's
event id, recipient, SES message id and outcome.`

func (m *Main) history(ctx context.Context, args []string) error {
	fs := m.newFlagSet("history", historySynopsis)
	configPath := fs.String("config", "", "config file (default $REPORTMAILER_CONFIG)")
	name := fs.String("schedule", "", "only this schedule's runs (default: every schedule's)")
	since := fs.Duration("since", 24*time.Hour, "runs that started this long ago or later")
	runID := fs.String("run", "", "show this run in full")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *since <= 0 {
		return usageError("history: -since %s: want a positive duration such as 24h", *since)
	}
	c, err := m.loadConfig(*configPath)
	if err != nil {
		return err
	}
	scheds, err := schedulesFor(c, "history", *name)
	if err != nil {
		return err
	}
	cl, err := newOpsClients(ctx, c)
	if err != nil {
		return err
	}
	var runs []*runRecord
	for _, s := range scheds {
		rs, skipped, err := readHistory(ctx, cl.s3, c, s.Name, time.Now().Add(-*since), false)
		for _, e := range skipped {
			fmt.Fprintf(redacting{m.Stderr}, "reportmailer: warning: skipped a run record: %v\n", e)
		}
		if err != nil {
			return err
		}
		runs = append(runs, rs...)
	}
	slices.SortFunc(runs, func(a, b *runRecord) int { return a.StartedAt.Compare(b.StartedAt) })
	if *runID != "" {
		i := slices.IndexFunc(runs, func(r *runRecord) bool { return r.RunID == *runID })
		if i < 0 {
			return fmt.Errorf("history: no run %q of %s in the last %s (widen -since)", *runID, scheduleNames(scheds), *since)
		}
		if *asJSON {
			return writeJSON(m.Stdout, runs[i])
		}
		printRun(m.Stdout, runs[i])
		return nil
	}
	if *asJSON {
		if runs == nil {
			runs = []*runRecord{}
		}
		return writeJSON(m.Stdout, runs)
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCHEDULE\tRUN\tCOMMAND\tSTARTED\tTOOK\tOUTCOME\tRECEIVED\tSENT\tDUPLICATES\tDEAD-LETTERED\tRETRYING\tMAYBE SENT\tREFUSED\tDIGEST")
	for _, r := range runs {
		k := r.Counts
		digest := "-"
		if r.Digest && r.Command != "ingest" {
			digest = k.digest()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", r.Schedule, r.RunID, r.Command, r.StartedAt.Format(time.RFC3339),
			r.EndedAt.Sub(r.StartedAt).Round(time.Millisecond), r.Outcome, k.Received, k.Sent, k.Duplicates, k.DeadLettered, k.Retrying, k.MaybeSent, k.Refused, digest)
	}
	tw.Flush()
	fmt.Fprintf(m.Stdout, "%d runs since %s\n", len(runs), time.Now().Add(-*since).UTC().Format(time.RFC3339))
	return nil
}

func printRun(w io.Writer, r *runRecord) {
	fmt.Fprintf(w, "run %s of %s (%s): %s\n", r.RunID, r.Schedule, r.Command, r.Outcome)
	if !r.PlannedAt.IsZero() {
		late := ""
		if r.Late {
			late = " (run late: " + r.StartedAt.Sub(r.PlannedAt).Round(time.Second).String() + " after it)"
		}
		fmt.Fprintf(w, "  planned  %s%s\n", r.PlannedAt.Format(time.RFC3339), late)
	}
	fmt.Fprintf(w, "  started  %s\n  ended    %s\n", r.StartedAt.Format(time.RFC3339Nano), r.EndedAt.Format(time.RFC3339Nano))
	k := r.Counts
	fmt.Fprintf(w, "  counts   received %d, sent %d, acked %d, dropped %d, dead-lettered %d, retrying %d, duplicates %d, maybe sent %d, maybe duplicated %d, unrecorded %d, refused %d, settled %d\n",
		k.Received, k.Sent, k.Acked, k.Dropped, k.DeadLettered, k.Retrying, k.Duplicates, k.MaybeSent, k.MaybeDuplicated, k.Unrecorded, k.Refused, k.Settled)
	if r.Digest && r.Command != "ingest" {
		fmt.Fprintf(w, "  digest   %s\n", k.digest())
	} else if k.Pending > 0 {
		fmt.Fprintf(w, "  pending  %d digest events left for the next slot\n", k.Pending)
	}
	if r.HaltReason != "" {
		fmt.Fprintf(w, "  halted   %s: %s\n", r.HaltCode, r.HaltReason)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  error    %s\n", r.Error)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  EVENT\tRECIPIENT\tOUTCOME\tCODE\tSES MESSAGE")
	for _, d := range r.Deliveries {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", d.EventID, or(d.Recipient, "-"), d.Outcome, or(string(d.Code), "-"), or(d.MessageID, "-"))
	}
	if r.DeliveriesOmitted > 0 {
		fmt.Fprintf(tw, "  ... and %d more deliveries, counted above but not listed\n", r.DeliveriesOmitted)
	}
	tw.Flush()
}

// pausedLine is what drain says of a paused schedule.
func pausedLine(name string) string {
	return fmt.Sprintf("drain %s: paused (paused: true in the config): nothing received; remove it to resume", name)
}
