package worker

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/reportmailer/reportmailer/worker/event"
)

// A run in mode each is a pipeline: the receive loop in Drain keeps
// polling while earlier batches are decoded, delivered and settled in
// goroutines of their own (at most batchesInFlight of them), and every
// delivery of every batch takes one of Concurrency slots while it
// claims, signs, renders and sends. With Concurrency 1 a run is
// sequential, as before: one batch, one email at a time.
//
// What the goroutines share is the run: its Summary, halt, fatal error
// and unsettled emails are guarded by run.smu; a message's failure by
// msgState.mu. The ledger claims keep exactly-once per (event,
// recipient): two deliveries of one event never share a claim, and a
// second copy of a message in another batch finds the first one's claim
// and is left for later or skipped as sent.

// batchesInFlight is how many received batches a run works on at once:
// one when deliveries are sequential, otherwise enough to keep every
// delivery slot busy while the next batch is received and decoded.
func (c Config) batchesInFlight() int {
	if c.Concurrency <= 1 {
		return 1
	}
	return c.Concurrency/c.BatchSize + 2
}

// tally changes the run's Summary under its lock.
func (r *run) tally(f func(s *Summary)) {
	r.smu.Lock()
	defer r.smu.Unlock()
	f(&r.sum)
}

// halting returns the run's halt, or nil while it may send.
func (r *run) halting() error {
	r.smu.Lock()
	defer r.smu.Unlock()
	return r.halt
}

// failing returns the run's fatal error.
func (r *run) failing() error {
	r.smu.Lock()
	defer r.smu.Unlock()
	return r.fatal
}

// failRun records err as the run's fatal error, unless it has one.
func (r *run) failRun(err error) {
	r.smu.Lock()
	defer r.smu.Unlock()
	if r.fatal == nil {
		r.fatal = err
	}
}

// stopping halts the run when it was told to shut down, and returns
// the run's halt; reported says whether this call set it.
func (r *run) stopping() (halt error, reported bool) {
	r.smu.Lock()
	defer r.smu.Unlock()
	if r.halt == nil && r.stop != nil && r.stop.Err() != nil {
		r.halt = errShutdown
		return r.halt, true
	}
	return r.halt, false
}

// deliverAll delivers ds, at most Concurrency at a time, and returns
// once all are done. Deliveries start in order, so with Concurrency 1
// they run one after another as listed.
func (r *run) deliverAll(ds []*delivery) { r.each(ds, r.deliver) }

// each calls f for each delivery, Concurrency at a time across the
// run, and returns when every call has.
func (r *run) each(ds []*delivery, f func(*delivery)) {
	var wg sync.WaitGroup
	for _, d := range ds {
		r.slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-r.slots }()
			f(d)
		})
	}
	wg.Wait()
}

// signCache keeps the links signed for one batch (one digest), so that
// every recipient of an event gets the links signed once: the same
// reports with the same expiry are never signed twice. It is keyed by
// the reports an email links and the time they are signed at, which is
// the batch's: the expiry of a link depends on nothing else. A digest's
// extra recipient sees only its own events' reports, a different set,
// and so gets links signed for that set alone: one signature per email
// (link.CloudFront OneSignaturePerEmail) must not cover reports it
// does not show. With traced links (Deps.LinkToken) the reports carry
// each recipient's token, which is part of the key: a token is signed
// into the URL, so recipients never share a link.
type signCache struct {
	at time.Time
	mu sync.Mutex
	m  map[string]*signed
}

// signed is one entry: ready is closed once links and err are set.
type signed struct {
	ready chan struct{}
	links []Link
	err   error
}

func newSignCache(at time.Time) *signCache {
	return &signCache{at: at, m: map[string]*signed{}}
}

// signKey names a set of reports signed at one time.
func signKey(reports []event.Report, at time.Time) string {
	var b strings.Builder
	b.WriteString(strconv.FormatInt(at.UnixNano(), 10))
	for _, rep := range reports {
		b.WriteByte(0)
		b.WriteString(rep.Bucket)
		b.WriteByte(0)
		b.WriteString(rep.Key)
		b.WriteByte(0)
		b.WriteString(rep.Type)
		b.WriteByte(0)
		b.WriteString(rep.Token)
	}
	return b.String()
}

// links returns the links for reports, signing them with sign only
// when no delivery of the batch has signed the same set. Concurrent
// callers with the same set wait for the first one's signature. A
// failed signature is not kept: the next caller tries again.
func (c *signCache) links(ctx context.Context, reports []event.Report, sign func(context.Context, []event.Report, time.Time) ([]Link, error)) ([]Link, error) {
	k := signKey(reports, c.at)
	c.mu.Lock()
	e, ok := c.m[k]
	if !ok {
		e = &signed{ready: make(chan struct{})}
		c.m[k] = e
	}
	c.mu.Unlock()
	if ok {
		<-e.ready
		if e.err == nil {
			return slices.Clone(e.links), nil
		}
		return sign(ctx, reports, c.at)
	}
	e.links, e.err = sign(ctx, reports, c.at)
	if e.err != nil {
		c.mu.Lock()
		delete(c.m, k)
		c.mu.Unlock()
	}
	close(e.ready)
	if e.err != nil {
		return nil, e.err
	}
	return slices.Clone(e.links), nil
}

// decodeResult is one message body, decoded.
type decodeResult struct {
	d   event.Decoded
	err error
}

// linkedObject is an object that messages of a batch link, and the
// receipt handles of those messages, in the batch's order.
type linkedObject struct {
	bucket, key string
	by          []string
}

// linked lists the objects the decoded messages of a batch link that
// decode heads, in the order they first appear, each with the messages
// that link it. Objects decode would refuse unheaded (not served) are
// left out.
func (r *run) linked(msgs []Message, decoded []decodeResult) []*linkedObject {
	var out []*linkedObject
	seen := map[string]*linkedObject{}
	for i, dr := range decoded {
		if dr.err != nil {
			continue
		}
		h := msgs[i].ReceiptHandle
		add := func(bucket, key string) {
			k := bucket + "/" + key
			o := seen[k]
			if o == nil {
				if r.w.served(bucket, key) != nil {
					return
				}
				o = &linkedObject{bucket: bucket, key: key}
				seen[k] = o
				out = append(out, o)
			}
			if !slices.Contains(o.by, h) {
				o.by = append(o.by, h)
			}
		}
		if r.headNative {
			for _, ev := range dr.d.Events {
				for _, rep := range ev.Reports {
					add(rep.Bucket, rep.Key)
				}
			}
		}
		for _, ref := range dr.d.Objects {
			add(ref.Bucket, ref.Key)
		}
	}
	return out
}

// after returns the handles of by that follow h: the messages a head
// made for h serves too. Those before it, when there are any, already
// had their turn.
func after(by []string, h string) []string {
	if i := slices.Index(by, h); i >= 0 {
		return by[i+1:]
	}
	return nil
}

// prefetch heads every object in objs, Concurrency at a time, into
// heads, so that decode, which heads them in order, finds them there:
// at tens of milliseconds a HeadObject, heading a batch's 50 reports
// one after another would take longer than sending its emails. With
// Concurrency 1 it does nothing, and decode heads in order. Each head
// is a head stage of the first message that links the object, shared
// with the others.
func (r *run) prefetch(heads map[string]headResult, objs []*linkedObject) {
	n := r.w.cfg.Concurrency
	if n <= 1 || !r.headNative || len(objs) < 2 {
		return
	}
	results := make([]headResult, len(objs))
	done := make([]bool, len(objs))
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i, o := range objs {
		if r.halting() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, end := r.sharedStage(o.by[0], o.by[1:], StageHead)
			info, err := r.w.objects.Head(ctx, o.bucket, o.key)
			end(err)
			results[i], done[i] = headResult{info, err}, true
			if ClassOf(err) == ClassHalt {
				r.halted(err)
				r.w.logger.Warn("stopping this run: a report cannot be read; held messages go back to the queue", "object", "s3://"+o.bucket+"/"+o.key, "err", err)
			}
		})
	}
	wg.Wait()
	for i, o := range objs {
		// A head the halt stopped before it started is left out: decode
		// refuses it as halted.
		if done[i] {
			heads[o.bucket+"/"+o.key] = results[i]
		}
	}
}

// locations caches time.LoadLocation, which reads and parses the zone's
// file on every call: once per email, it was 2% of a run's CPU.
var locations sync.Map // name → *time.Location

// loadLocation is time.LoadLocation, cached; errors are not cached.
func loadLocation(name string) (*time.Location, error) {
	if l, ok := locations.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	locations.Store(name, l)
	return l, nil
}
