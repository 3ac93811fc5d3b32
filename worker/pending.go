package worker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
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
	// Quarantine keeps a copy of an unreadable entry's body apart from
	// the pending events, where no listing of them finds it, and
	// returns where (for the operator); Delete then removes the entry.
	Quarantine(ctx context.Context, u UnreadableEntry) (string, error)
}

// UnreadableEntry is an entry of the [Pending] store that was read but
// is not a [PendingEvent]. A slot dead-letters its body
// (ledger_unreadable, the reason naming Key) and deletes it; a body
// too large for the dead-letter queue it quarantines first, and
// dead-letters a note naming the copy instead.
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
// showing its other reports (see split and together), and one that
// adds no links once they all reached the recipient (see
// recordCovered). Deliver needs Deps.Pending.
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
		r.due(st)
		batch = append(batch, st)
		for _, rep := range due[i].Event.Reports {
			if _, err := r.head(st, heads, nil, rep.Bucket, rep.Key); err != nil {
				st.fail(err, fmt.Sprintf("head s3://%s/%s", rep.Bucket, rep.Key), headCode(err))
				break
			}
		}
	}
	r.tally(func(s *Summary) { s.Users++; s.Due += len(due) })
	var digests []digest
	for _, d := range r.plan(batch) {
		// plan lets the last event of a group name the user; here the
		// last is the oldest, and the newest event's name and time
		// zone are the user's now.
		d.user = due[0].Event.User
		parts, covered := r.split(d)
		digests = append(digests, digest{parts: parts, covered: covered})
	}
	for _, dg := range digests {
		r.claimCovered(dg)
	}
	r.deliverParts(digests)
	for _, dg := range digests {
		r.recordCovered(dg)
	}
	// While an event of the user is left for retry, the events sent keep
	// their entries too: the next run then splits the same events into
	// the same parts, finds the sent ones sent in the ledger, and sends
	// the rest under the labels their parts had (a user who got "part 2
	// of 2" gets "part 1 of 2", not a digest of its own), and an older
	// event left for retry goes with its own reports only, not with one
	// a newer event showed, which the ledger finds sent (see together).
	// So does an event bound for the dead-letter queue whose email reached
	// the user (only an extra recipient of it was refused): it goes there
	// at the run that finishes the user, since without its entry the
	// older event would show its report again. One that reached no one
	// goes now: an older event may be waiting for it.
	keep := map[*msgState]bool{}
	hold := slices.ContainsFunc(batch, (*msgState).retrying)
	if hold {
		for _, st := range batch {
			keep[st] = st.ok() // sent, not dead-lettered
		}
	}
	for _, st := range batch {
		dead := false
		if f := st.failed; f != nil && f.deadLetters() && hold && st.hasReached() {
			r.tally(func(s *Summary) { s.Retrying++; s.Pending++ })
			log.Info("sent; left pending, bound for the dead-letter queue once the user's other events are done", "event", st.pending.Event.ID, "code", f.Code)
			r.delivered(st, SettleRetrying)
			continue
		}
		if f := st.failed; f != nil && f.deadLetters() {
			// Retrying cannot mend it: to the dead-letter queue, as a
			// message the ingest refused would go.
			f.Schedule, f.EventIDs, f.User = w.cfg.Schedule, eventIDs(st.events), userOf(st.events)
			m := Message{ID: st.pending.MessageID, Body: st.pending.Body}
			if err := w.queue.DeadLetter(r.msgCtx(st), m, *f); err != nil {
				r.tally(func(s *Summary) { s.Retrying++; s.Pending++ })
				log.Error("dead-letter: left pending", "event", st.pending.Event.ID, "code", f.Code, "err", err)
				r.delivered(st, SettleRetrying)
				continue
			}
			r.tally(func(s *Summary) { s.DeadLettered++ })
			r.observeMessage(st, *f, f.Outcome())
			log.Warn("dead-lettered", "event", st.pending.Event.ID, "code", f.Code, "reason", f.Reason)
			r.delivered(st, SettleDeadLettered)
			st.failed, dead = nil, true // its entry goes
		}
		if f := st.failed; f != nil {
			r.tally(func(s *Summary) { s.Retrying++; s.Pending++ })
			r.observeMessage(st, *f, OutcomeRetry)
			log.Warn("left pending for the next slot", "event", st.pending.Event.ID, "code", f.Code, "reason", f.Reason)
			r.delivered(st, SettleRetrying)
			continue
		}
		if keep[st] {
			r.tally(func(s *Summary) { s.Pending++ })
			log.Info("sent; left pending while another event of the user waits for the next run, so that it splits alike", "event", st.pending.Event.ID)
			r.delivered(st, SettleAcked)
			continue
		}
		if !dead {
			r.delivered(st, SettleAcked)
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
// mend it, and an operator reads what it held there. A body the
// dead-letter queue does not take (over SQS's 256 KiB) is quarantined
// in the store, and a note naming the copy, its size and why goes to
// the dead-letter queue in its place; until both are done the entry
// stays, and the next slot tries again.
func (r *run) deadLetterUnreadable(log *slog.Logger, u UnreadableEntry) {
	w := r.w
	f := Failure{Class: ClassPermanent, Code: CodeLedgerUnreadable, Schedule: w.cfg.Schedule,
		Reason: secret.Redact(fmt.Sprintf("pending entry %s: %v", u.Key, u.Err))}
	err := w.queue.DeadLetter(r.ctx, Message{ID: u.Key, Body: u.Body}, f)
	if errors.Is(err, ErrUnsendable) {
		err = r.quarantine(log, u, &f)
	}
	if err != nil {
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

// QuarantineNote is the body of the dead letter that stands for an
// unreadable pending entry the dead-letter queue cannot take (too
// large, empty, or not text).
type QuarantineNote struct {
	// Entry is the entry's key in the pending store, where it no
	// longer is.
	Entry string `json:"pending_entry"`
	// Size is the entry's size in bytes.
	Size int `json:"size"`
	// Error is why it is not an event.
	Error string `json:"error"`
	// Quarantined is where the store keeps its copy.
	Quarantined string `json:"quarantined"`
}

// quarantine keeps u's body aside in the store and dead-letters a
// note of it instead, f's reason saying where it is.
func (r *run) quarantine(log *slog.Logger, u UnreadableEntry, f *Failure) error {
	where, err := r.w.pending.Quarantine(r.ctx, u)
	if err != nil {
		return fmt.Errorf("not a body the dead-letter queue takes (%d bytes), and not quarantined: %w", len(u.Body), err)
	}
	log.Warn("pending entry the dead-letter queue cannot take: quarantined", "key", u.Key, "size", len(u.Body), "quarantined", where)
	note, _ := json.Marshal(QuarantineNote{Entry: u.Key, Size: len(u.Body), Error: secret.Redact(fmt.Sprint(u.Err)), Quarantined: where})
	f.Reason = secret.Redact(fmt.Sprintf("pending entry %s (%d bytes, not a body the dead-letter queue takes; kept at %s): %v", u.Key, len(u.Body), where, u.Err))
	return r.w.queue.DeadLetter(r.ctx, Message{ID: u.Key, Body: string(note)}, *f)
}

// digest is one recipient's digest of a slot: its parts, and apart
// the events that add no links (nil when there are none).
type digest struct {
	parts   []*delivery
	covered *delivery
}

// split cuts one recipient's digest into parts of at most
// MaxLinksPerEmail links, keeping each event whole (an event with more
// links than that is a part of its own). The events come newest
// first, and a report linked by several is shown once, under the
// newest: an older event shows only its reports not shown yet, and is
// recorded sent only with the newer events showing its others
// (delivery.with, see together), when they are in its part. An event
// with no report left to show adds no links and goes in no part: it
// is returned apart, its with naming the events that show its
// reports, and is recorded sent, covered by their emails, once each
// of them reached the recipient, in whichever parts (recordCovered).
func (r *run) split(d *delivery) (parts []*delivery, covered *delivery) {
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
	var idx [][]int // the events of each part, newest first
	partOf := make([]int, n)
	links := 0
	for i := range n {
		if len(own[i]) == 0 && len(by[i]) > 0 {
			if covered == nil {
				covered = &delivery{user: d.user, recipient: d.recipient, with: map[string][]string{}}
			}
			ev := d.events[i]
			ev.Reports = nil
			covered.events = append(covered.events, ev)
			covered.from = append(covered.from, d.from[i])
			for _, j := range by[i] {
				covered.with[ev.ID] = append(covered.with[ev.ID], d.events[j].ID)
			}
			continue
		}
		if len(idx) == 0 || (links > 0 && links+len(own[i]) > maxLinks) {
			idx = append(idx, nil)
			links = 0
		}
		p := len(idx) - 1
		idx[p] = append(idx[p], i)
		partOf[i] = p
		links += len(own[i])
	}
	parts = make([]*delivery, len(idx))
	for p, is := range idx {
		part := &delivery{user: d.user, recipient: d.recipient, signs: d.signs, covered: covered}
		for _, i := range is {
			ev := d.events[i]
			ev.Reports = own[i]
			part.events = append(part.events, ev)
			part.from = append(part.from, d.from[i])
			for _, j := range by[i] {
				// j is newer than i, and shows a report: it is in a part.
				if partOf[j] != p {
					continue
				}
				if part.with == nil {
					part.with = map[string][]string{}
				}
				part.with[ev.ID] = append(part.with[ev.ID], d.events[j].ID)
			}
		}
		parts[p] = part
	}
	return parts, covered
}

// claimCovered claims, for its recipient, each event of dg that adds
// no links, before any part goes: one another run holds is left for
// retry, and so holds back the events that show its reports (see
// together), as one found sent before needs nothing more.
func (r *run) claimCovered(dg digest) {
	cv := dg.covered
	if cv == nil {
		return
	}
	if halt, _ := r.stopping(); halt != nil {
		for _, st := range cv.from {
			st.fail(halt, "not sent", CodeHalted)
		}
		return
	}
	cv.ready = r.claim(cv, r.logger(cv))
}

// deliverParts sends the parts of each recipient's digest in two
// steps: each part claims and signs its events (prepare), then the
// parts with something to send go (finish), each with its number among
// all the parts of the split ("part i of n"; one part says none). A
// slot run again after a failure splits the same events alike (the
// sent ones keep their entries while another waits: see deliverUser),
// so a part sent by the first run and one sent by the rerun carry
// labels that fit together: "part 1 of 2", then "part 2 of 2".
func (r *run) deliverParts(digests []digest) {
	var all []*delivery
	for _, dg := range digests {
		all = append(all, dg.parts...)
	}
	r.each(all, func(d *delivery) { r.prepare(d) })
	var going []*delivery
	for _, dg := range digests {
		for i, p := range dg.parts {
			if len(dg.parts) > 1 {
				p.part, p.parts = i+1, len(dg.parts)
			}
			if len(p.ready) > 0 {
				going = append(going, p)
			}
		}
	}
	r.each(going, r.finish)
}

// recordCovered settles each event of dg that adds no links and was
// claimed: once every event showing its reports reached the
// recipient, sent by a part now or found sent before, it is recorded
// sent, covered by their emails (so that a later copy of its message
// is found sent, and its entry can go); otherwise its claim is given
// up and it is left for retry, keeping the entries of the events sent
// now that show its reports (see deliverUser), so that the next slot
// finds them sent and records it then.
func (r *run) recordCovered(dg digest) {
	cv := dg.covered
	if cv == nil {
		return
	}
	log := r.logger(cv)
	reached := map[string]string{} // event id -> its email to the recipient
	for _, p := range dg.parts {
		maps.Copy(reached, p.emails)
	}
	for _, c := range cv.ready {
		var emails []string
		missing := ""
		for _, by := range cv.with[c.ev.ID] {
			e, ok := reached[by]
			if !ok {
				missing = by
				break
			}
			if e != "" && !slices.Contains(emails, e) {
				emails = append(emails, e)
			}
		}
		if missing != "" {
			log.Info("left for the next slot: an event showing its reports was not sent", "event", c.ev.ID, "with", missing)
			r.release(log, []claim{c}, errors.New("event "+missing+" shows its reports and was not sent"), "digest", CodeClaimedElsewhere)
			continue
		}
		if err := r.w.ledger.Cover(r.msgCtx(c.from), c.c, emails); err != nil {
			// Its record may still say claimed: a later claim waits for
			// it to be taken over, and finds it sent if it was written.
			c.from.fail(err, "ledger cover", CodeLedgerFailed)
			log.Error("ledger cover: left for the next slot", "event", c.ev.ID, "record", c.c.Record, "err", err)
			continue
		}
		r.observe(DeliveryResult{EventID: c.ev.ID, Recipient: cv.recipient, Outcome: OutcomeDelivered})
		log.Info("its reports went out under newer events: recorded sent with no email of its own", "event", c.ev.ID, "with", cv.with[c.ev.ID], "emails", emails)
	}
}

// together gives up the claims of cs that cannot go without another
// event of d: an event is recorded sent only with the newer events of
// its email that show its other reports (d.with), so one whose
// showing event is not going waits, lest it be recorded sent though
// that report never reached the recipient (unless that event was sent
// to the recipient before); and those events wait for it when it is
// left for retry (not when it was sent before, nor when it goes to the
// dead-letter queue: its email may have been sent, and an operator
// settles it), lest the report be sent again later by the one left
// behind. So do the events showing the reports of one of d.covered
// left for retry.
func (r *run) together(d *delivery, cs []claim, log *slog.Logger) []claim {
	if len(d.with) == 0 && d.covered == nil {
		return cs
	}
	for changed := true; changed; {
		changed = false
		in := map[string]bool{}
		for _, c := range cs {
			in[c.ev.ID] = true
		}
		held := map[string]string{} // event id -> why it waits
		for i, ev := range d.events {
			for _, by := range d.with[ev.ID] {
				switch {
				case in[ev.ID] && !in[by] && !d.sent[by]:
					held[ev.ID] = "event " + by + " shows its reports and is not in this email"
				case !in[ev.ID] && in[by] && !d.sent[ev.ID] && d.from[i].retrying():
					held[by] = "it shows the reports of event " + ev.ID + ", which is left for retry"
				}
			}
		}
		if cv := d.covered; cv != nil {
			for i, ev := range cv.events {
				if cv.sent[ev.ID] || !cv.from[i].retrying() {
					continue
				}
				for _, by := range cv.with[ev.ID] {
					if in[by] {
						held[by] = "it shows the reports of event " + ev.ID + ", which is left for retry"
					}
				}
			}
		}
		kept := cs[:0:0]
		for _, c := range cs {
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
