package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/secret"
)

// MaxLinksPerEmailDefault is the default of Config.MaxLinksPerEmail.
const MaxLinksPerEmailDefault = 50

// PendingEvent is one event of a digest schedule waiting in the
// [Pending] store for its slot.
type PendingEvent struct {
	Event event.Event `json:"event"`
	// Ingested is when the event arrived: when the queue received its
	// message (SQS's SentTimestamp), or, when the queue does not say or
	// says a later time, when it was stored, by the worker's clock. A
	// slot delivers the events that arrived up to its planned time, so
	// a slot run late still holds only its own, and the newest of two
	// events that link the same report wins.
	Ingested time.Time `json:"ingested"`
	// MessageID and Body are the queue message it came from: a
	// failure at delivery that retrying cannot mend dead-letters the
	// body, which a redrive ingests again.
	MessageID string `json:"message_id,omitempty"`
	Body      string `json:"body"`
	// Key is the store's name for the entry; Put ignores it.
	Key string `json:"-"`
}

// Pending is the durable store of a digest schedule's events, between
// the ingest that takes them off the queue and the slot that sends
// them. Implementations must be safe for concurrent use.
type Pending interface {
	// Put stores e under its user. Storing an event that is already
	// stored is not an error.
	Put(ctx context.Context, e PendingEvent) error
	// Users calls f with each user that has pending events, in pages,
	// without holding them all; an error from f stops it.
	Users(ctx context.Context, f func(user string) error) error
	// List returns the pending events of one user, as Users named it,
	// and apart the entries it read but could not decode, so that one
	// of them does not hold back the others.
	List(ctx context.Context, user string) ([]PendingEvent, []UnreadableEntry, error)
	// Delete removes an entry List returned.
	Delete(ctx context.Context, e PendingEvent) error
}

// UnreadableEntry is an entry of the [Pending] store that was read but
// is not a [PendingEvent]. A slot dead-letters its body
// (ledger_unreadable, the reason naming Key) and deletes it.
type UnreadableEntry struct {
	Key  string
	Body string
	Err  error
}

// Slot is one firing of a digest schedule.
type Slot struct {
	// Planned is the slot's time: the digest holds the events ingested
	// up to it.
	Planned time.Time
	// Late is set when the slot runs after it was due: caught up after
	// no replica ran it, or taken over from a holder that stopped. The
	// email says so.
	Late bool
}

// ingest stores the events of the batch's healthy messages in the
// pending store; a message whose events cannot all be stored is left
// for retry, and settle deletes the rest.
func (r *run) ingest(batch []*msgState) {
	now := r.w.now().UTC()
	for _, st := range batch {
		if !st.ok() {
			continue
		}
		at := now
		if sent := st.msg.Sent; !sent.IsZero() && sent.Before(now) {
			at = sent.UTC()
		}
		for _, ev := range st.events {
			err := r.w.pending.Put(r.msgCtx(st), PendingEvent{Event: ev, Ingested: at, MessageID: st.msg.ID, Body: st.msg.Body})
			if err != nil {
				st.fail(err, "pending store", CodeLedgerFailed)
				r.w.logger.Error("pending store: the message stays on the queue", "message_id", st.msg.ID, "event", ev.ID, "err", err)
				break
			}
		}
	}
}

// Deliver sends the digest of a slot from the pending store: for each
// user, every event ingested up to slot.Planned, newest first, each
// report shown once to each recipient (the newest event wins), split
// into parts of at most Config.MaxLinksPerEmail links.
// Users are read from the store a page at a time and delivered
// Concurrency at once, so memory holds a few users' events, never the
// whole digest; at Config.Budget it stops taking users, and counts a
// retry. An entry is deleted only once its email is recorded sent in
// the ledger (or the ledger shows it sent before), or once it is
// dead-lettered; any other entry stays for the next slot, and while
// one of a user's events stays for a retry, so do the user's sent
// ones, so that the retry splits the same events into the same parts.
// An event is recorded sent only with the newer events of its email
// showing its other reports (see split and together). Deliver needs
// Deps.Pending.
func (w *Worker) Deliver(ctx context.Context, slot Slot) (Summary, error) {
	return w.deliver(ctx, slot, w.now().Add(w.cfg.Budget))
}

// RunSlot runs one slot of a digest schedule: it ingests what the
// queue holds (Drain), then delivers the slot (Deliver), within one
// Config.Budget from its start. The ingest stops receiving at half of
// it, so that a queue that never runs dry (each long poll answered by
// a new message) cannot leave the delivery no time; the delivery takes
// no user once the budget is spent. A slot with no planned time holds
// the events stored when the ingest ends. The delivery runs even when
// the ingest failed: what is stored is due whatever the queue does
// now; not when ctx is cancelled. With no Deps.Pending it is Drain.
func (w *Worker) RunSlot(ctx context.Context, slot Slot) (Summary, error) {
	if w.pending == nil {
		return w.Drain(ctx)
	}
	start := w.now()
	sum, err := w.drain(ctx, start.Add(w.cfg.Budget/2))
	if ctx.Err() != nil {
		return sum, err
	}
	if slot.Planned.IsZero() {
		slot.Planned = w.now()
	}
	d, derr := w.deliver(ctx, slot, start.Add(w.cfg.Budget))
	return sum.Plus(d), errors.Join(err, derr)
}

// deliver is Deliver with no user started at or after deadline.
func (w *Worker) deliver(ctx context.Context, slot Slot, deadline time.Time) (Summary, error) {
	if w.pending == nil {
		return Summary{}, errors.New("deliver: the worker has no pending store")
	}
	id := cmp.Or(RunID(ctx), NewID()[:16])
	ctx = WithSchedule(WithRunID(ctx, id), w.cfg.Schedule)
	w = w.forRun(id)
	start := w.now()
	work := WithStop(context.WithoutCancel(ctx), ctx.Done())
	r := &run{w: w, ctx: work, stop: ctx, start: start, headNative: true, keep: true, held: map[string]Message{},
		id: id, unsettled: map[string]bool{}, slots: make(chan struct{}, w.cfg.Concurrency), slot: &slot}
	r.recorded()
	log := w.logger.With("slot", slot.Planned.UTC().Format(time.RFC3339), "late", slot.Late)
	var spent sync.Once
	overBudget := func() bool {
		if w.now().Before(deadline) {
			return false
		}
		spent.Do(func() {
			// Counted as a retry: the slot is not done, and a replica
			// runs it again for the users not reached.
			r.tally(func(s *Summary) { s.Retrying++ })
			log.Warn("budget spent: the users not reached wait for the slot to run again", "budget", w.cfg.Budget, "deadline", deadline)
		})
		return true
	}
	if r.halting() == nil && r.admit() {
		users := make(chan string)
		var wg sync.WaitGroup
		for range max(1, w.cfg.Concurrency/4) {
			wg.Go(func() {
				for u := range users {
					if overBudget() {
						continue
					}
					r.deliverUser(u, slot)
				}
			})
		}
		err := w.pending.Users(ctx, func(u string) error {
			if r.halting() != nil || ctx.Err() != nil || overBudget() {
				return errStopUsers
			}
			users <- u
			return nil
		})
		close(users)
		wg.Wait()
		switch {
		case err == nil || errors.Is(err, errStopUsers):
		case ctx.Err() != nil:
			// Shutting down: not a failure; the users not reached wait
			// in the store.
			log.Info("shutting down: the users not reached wait for the slot to run again")
		default:
			r.failRun(fmt.Errorf("pending store: %w", err))
		}
	}
	if r.halt != nil && r.halt != errShutdown {
		r.sum.Halted = true
		r.sum.Halt = Failure{Class: ClassHalt, Code: cmp.Or(CodeOf(r.halt), CodeHalted), Reason: secret.Redact(r.halt.Error())}
	}
	log.Info("digest finished", "run", r.id, "summary", r.sum, "took", w.now().Sub(start).Round(time.Millisecond))
	w.observer().RunFinished(r.sum, w.now().Sub(start), r.fatal)
	return r.sum, r.fatal
}

var errStopUsers = errors.New("stop")

// deliverUser sends one user's digest for the slot and removes the
// entries it delivered or dead-lettered.
func (r *run) deliverUser(user string, slot Slot) {
	w := r.w
	log := w.logger.With("pending_user", user)
	entries, unreadable, err := w.pending.List(r.ctx, user)
	if err != nil {
		r.tally(func(s *Summary) { s.Retrying++ })
		log.Error("pending store: list; the user's events wait for the next slot", "err", err)
		return
	}
	for _, u := range unreadable {
		r.deadLetterUnreadable(log, u)
	}
	due := entries[:0]
	for _, e := range entries {
		if e.Ingested.After(slot.Planned) {
			r.tally(func(s *Summary) { s.Pending++ })
			continue
		}
		due = append(due, e)
	}
	if len(due) == 0 {
		return
	}
	// Newest first; the newest event that links a report keeps it.
	slices.SortStableFunc(due, func(a, b PendingEvent) int {
		return cmp.Or(b.Ingested.Compare(a.Ingested), cmp.Compare(b.Event.ID, a.Event.ID))
	})
	// A report can be deleted while its event waits for the slot: each
	// is checked again before anything is claimed, as at receive, so
	// that a missing one dead-letters its event (object_missing)
	// rather than being linked to a 404. The check comes before split
	// decides which event shows a report, so that an event
	// dead-lettered here never hides another's report.
	batch := make([]*msgState, 0, len(due))
	heads := map[string]headResult{}
	for i := range due {
		st := &msgState{msg: Message{ID: due[i].Key}, pending: &due[i], events: []event.Event{due[i].Event}}
		batch = append(batch, st)
		for _, rep := range due[i].Event.Reports {
			if _, err := r.head(st, heads, nil, rep.Bucket, rep.Key); err != nil {
				st.fail(err, fmt.Sprintf("head s3://%s/%s", rep.Bucket, rep.Key), headCode(err))
				break
			}
		}
	}
	r.tally(func(s *Summary) { s.Users++; s.Due += len(due) })
	var parts []*delivery
	for _, d := range r.plan(batch) {
		// plan lets the last event of a group name the user; here the
		// last is the oldest, and the newest event's name and time
		// zone are the user's now.
		d.user = due[0].Event.User
		parts = append(parts, r.split(d)...)
	}
	r.deliverAll(parts)
	// While an event of the user is left for retry, the events sent keep
	// their entries too: the next run then splits the same events into
	// the same parts, finds the sent ones sent in the ledger, and sends
	// the rest under the labels their parts had (a user who got "part 2
	// of 2" gets "part 1 of 2", not a digest of its own), and an older
	// event left for retry goes with its own reports only, not with one
	// a newer event showed, which the ledger finds sent (see together).
	keep := map[*msgState]bool{}
	if slices.ContainsFunc(batch, (*msgState).retrying) {
		for _, st := range batch {
			keep[st] = st.ok() // sent, not dead-lettered
		}
	}
	for _, st := range batch {
		if f := st.failed; f != nil && f.deadLetters() {
			// Retrying cannot mend it: to the dead-letter queue, as a
			// message the ingest refused would go.
			f.Schedule, f.EventIDs, f.User = w.cfg.Schedule, eventIDs(st.events), userOf(st.events)
			m := Message{ID: st.pending.MessageID, Body: st.pending.Body}
			if err := w.queue.DeadLetter(r.ctx, m, *f); err != nil {
				r.tally(func(s *Summary) { s.Retrying++; s.Pending++ })
				log.Error("dead-letter: left pending", "event", st.pending.Event.ID, "code", f.Code, "err", err)
				continue
			}
			r.tally(func(s *Summary) { s.DeadLettered++ })
			r.observeMessage(st, *f, f.Outcome())
			log.Warn("dead-lettered", "event", st.pending.Event.ID, "code", f.Code, "reason", f.Reason)
			st.failed = nil // its entry goes
		}
		if f := st.failed; f != nil {
			r.tally(func(s *Summary) { s.Retrying++; s.Pending++ })
			r.observeMessage(st, *f, OutcomeRetry)
			log.Warn("left pending for the next slot", "event", st.pending.Event.ID, "code", f.Code, "reason", f.Reason)
			continue
		}
		if keep[st] {
			r.tally(func(s *Summary) { s.Pending++ })
			log.Info("sent; left pending while another event of the user waits for the next run, so that it splits alike", "event", st.pending.Event.ID)
			continue
		}
		if err := w.pending.Delete(r.ctx, *st.pending); err != nil {
			// Sent and recorded: the next slot finds it sent in the
			// ledger, skips it and deletes it then.
			r.tally(func(s *Summary) { s.Pending++ })
			log.Error("pending store: delete; the next slot skips it as sent", "event", st.pending.Event.ID, "err", err)
			continue
		}
		r.tally(func(s *Summary) { s.Delivered++ })
	}
}

// deadLetterUnreadable sends the body of an entry that cannot be
// decoded to the dead-letter queue and deletes it: retrying cannot
// mend it, and an operator reads what it held there.
func (r *run) deadLetterUnreadable(log *slog.Logger, u UnreadableEntry) {
	w := r.w
	f := Failure{Class: ClassPermanent, Code: CodeLedgerUnreadable, Schedule: w.cfg.Schedule,
		Reason: secret.Redact(fmt.Sprintf("pending entry %s: %v", u.Key, u.Err))}
	if err := w.queue.DeadLetter(r.ctx, Message{ID: u.Key, Body: u.Body}, f); err != nil {
		r.tally(func(s *Summary) { s.Retrying++; s.Pending++ })
		log.Error("dead-letter of an unreadable pending entry: left pending", "key", u.Key, "err", err)
		return
	}
	r.tally(func(s *Summary) { s.DeadLettered++ })
	log.Warn("dead-lettered an unreadable pending entry", "key", u.Key, "code", f.Code, "reason", f.Reason)
	if err := w.pending.Delete(r.ctx, PendingEvent{Key: u.Key}); err != nil {
		// The next slot dead-letters it again.
		r.tally(func(s *Summary) { s.Pending++ })
		log.Error("pending store: delete of an unreadable entry", "key", u.Key, "err", err)
	}
}

// split cuts one recipient's digest into parts of at most
// MaxLinksPerEmail links, keeping each event whole (an event with more
// links than that is a part of its own). The events come newest
// first, and a report linked by several is shown once, under the
// newest: an older event shows only its reports not shown yet, and is
// recorded sent only with the newer events showing its others
// (delivery.with, see together), when they are in its part. An event
// with no report left to show adds no links and goes in one part with
// every event showing its reports, so that it is claimed, sent and
// recorded with all of them: that part may then hold an older event
// out of turn, or more links than the most.
func (r *run) split(d *delivery) []*delivery {
	maxLinks := r.w.cfg.MaxLinksPerEmail
	n := len(d.events)
	own := make([][]event.Report, n)
	by := make([][]int, n)    // the newer events showing a report of event i
	shown := map[string]int{} // report -> the index of the event showing it
	for i, ev := range d.events {
		for _, rep := range ev.Reports {
			k := rep.Bucket + "/" + rep.Key
			if j, ok := shown[k]; ok {
				if !slices.Contains(by[i], j) {
					by[i] = append(by[i], j)
				}
				continue
			}
			shown[k] = i
			own[i] = append(own[i], rep)
		}
	}
	// An event wholly shown by others goes with all of them: join them
	// in one group (union-find), placed at its newest member.
	root := make([]int, n)
	for i := range root {
		root[i] = i
	}
	find := func(i int) int {
		for root[i] != i {
			root[i] = root[root[i]]
			i = root[i]
		}
		return i
	}
	for i := range n {
		if len(own[i]) == 0 && len(by[i]) > 0 {
			for _, j := range by[i] {
				root[find(j)] = find(i)
			}
		}
	}
	groups := map[int][]int{}
	for i := range n {
		groups[find(i)] = append(groups[find(i)], i) // in order
	}
	var parts [][]int
	partOf := make([]int, n)
	placed := make([]bool, n)
	links := 0
	for i := range n {
		if placed[i] {
			continue
		}
		group := groups[find(i)] // i is its newest
		size := 0
		for _, m := range group {
			size += len(own[m])
		}
		if len(parts) == 0 || (links > 0 && links+size > maxLinks) {
			parts = append(parts, nil)
			links = 0
		}
		p := len(parts) - 1
		for _, m := range group {
			parts[p] = append(parts[p], m)
			partOf[m], placed[m] = p, true
		}
		links += size
	}
	out := make([]*delivery, len(parts))
	for p, idx := range parts {
		slices.Sort(idx) // newest first within the part
		part := &delivery{user: d.user, recipient: d.recipient, signs: d.signs}
		for _, i := range idx {
			ev := d.events[i]
			ev.Reports = own[i]
			part.events = append(part.events, ev)
			part.from = append(part.from, d.from[i])
			for _, j := range by[i] {
				if partOf[j] != p {
					continue
				}
				if part.with == nil {
					part.with = map[string][]string{}
				}
				part.with[ev.ID] = append(part.with[ev.ID], d.events[j].ID)
			}
		}
		if len(parts) > 1 {
			part.part, part.parts = p+1, len(parts)
		}
		out[p] = part
	}
	return out
}

// together gives up the claims of cs that cannot go without another
// event of d: an event is recorded sent only with the newer events of
// its email that show its other reports (d.with), so one whose
// showing event is not going waits, lest it be recorded sent though
// that report never reached the recipient (unless that event was sent
// to the recipient before, and this one has reports of its own to
// show; one with none, all of whose showing events were sent to the
// recipient before, is done with no email); and those events wait for
// it when it is left for retry (not when it was sent before, nor when
// it goes to the dead-letter queue: its email may have been sent, and
// an operator settles it), lest the report be sent again later by the
// one left behind.
func (r *run) together(d *delivery, cs []claim, log *slog.Logger) []claim {
	if len(d.with) == 0 {
		return cs
	}
	for changed := true; changed; {
		changed = false
		in := map[string]bool{}
		for _, c := range cs {
			in[c.ev.ID] = true
		}
		held := map[string]string{} // event id -> why it waits
		covered := map[string]bool{}
		for _, ev := range d.events {
			if in[ev.ID] && len(ev.Reports) == 0 && len(d.with[ev.ID]) > 0 &&
				!slices.ContainsFunc(d.with[ev.ID], func(by string) bool { return !d.sent[by] }) {
				// Every report of it reached the recipient under newer
				// events sent before: it goes with no email, rather than
				// wait and go later alone, sending them again.
				covered[ev.ID] = true
			}
		}
		for i, ev := range d.events {
			for _, by := range d.with[ev.ID] {
				switch {
				case covered[ev.ID]:
				case in[ev.ID] && !in[by] && (len(ev.Reports) == 0 || !d.sent[by]):
					held[ev.ID] = "event " + by + " shows its reports and is not in this email"
				case !in[ev.ID] && in[by] && !d.sent[ev.ID] && d.from[i].retrying():
					held[by] = "it shows the reports of event " + ev.ID + ", which is left for retry"
				}
			}
		}
		kept := cs[:0:0]
		for _, c := range cs {
			if covered[c.ev.ID] {
				changed = true
				log.Info("its reports were sent before under newer events: done without an email", "event", c.ev.ID, "with", d.with[c.ev.ID])
				if err := r.w.ledger.Release(r.msgCtx(c.from), c.c); err != nil {
					log.Error("ledger release: the record stays as it was; nothing was sent under it", "event", c.ev.ID, "record", c.c.Record, "err", err)
				}
				continue
			}
			why, ok := held[c.ev.ID]
			if !ok {
				kept = append(kept, c)
				continue
			}
			changed = true
			log.Info("left for the next slot with the event it goes with", "event", c.ev.ID, "reason", why)
			r.release(log, []claim{c}, errors.New(why), "digest", CodeClaimedElsewhere)
		}
		cs = kept
	}
	return cs
}

// ingesting reports whether Drain moves the queue into the pending
// store: a digest with a store. It is then bounded by its budget, not
// by MaxMessages, since each batch is deleted once stored and a digest
// must not be cut short.
func (r *run) ingesting() bool { return r.w.cfg.Mode == ModeDigest && r.w.pending != nil }

// Plus returns the counts of s and o as one run's: a digest slot's
// ingest (Drain) and delivery (Deliver), whose counts do not overlap.
// The first halt stands.
func (s Summary) Plus(o Summary) Summary {
	s.Received += o.Received
	s.Acked += o.Acked
	s.Dropped += o.Dropped
	s.DeadLettered += o.DeadLettered
	s.Retrying += o.Retrying
	s.Sent += o.Sent
	s.Duplicates += o.Duplicates
	s.MaybeSent += o.MaybeSent
	s.MaybeDuplicated += o.MaybeDuplicated
	s.Unrecorded += o.Unrecorded
	s.Refused += o.Refused
	s.Pending += o.Pending
	s.Users += o.Users
	s.Due += o.Due
	s.Delivered += o.Delivered
	if !s.Halted && o.Halted {
		s.Halted, s.Halt = true, o.Halt
	}
	return s
}

// retrying reports whether the message is left for retry: it failed,
// and not so that it goes to the dead-letter queue.
func (m *msgState) retrying() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failed != nil && !m.failed.deadLetters()
}
