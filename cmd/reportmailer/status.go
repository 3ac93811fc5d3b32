package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/store"
)

// queueDepth is what SQS says a queue holds.
type queueDepth struct {
	URL      string `json:"url"`
	Visible  int    `json:"visible"`
	InFlight int    `json:"in_flight"`
	Delayed  int    `json:"delayed"`
	Error    string `json:"error,omitempty"`
}

type scheduleStatus struct {
	Name     string    `json:"name"`
	Paused   bool      `json:"paused"`
	Cron     string    `json:"cron,omitempty"`
	TimeZone string    `json:"time_zone"`
	Next     time.Time `json:"next_run,omitzero"` // in the schedule's zone
	// LastRun is the last run of the schedule: a drain, or a slot of
	// serve; never a digest's ingest, which has LastIngest.
	LastRun *runRecord `json:"last_run,omitempty"`
	// LastIngest is a digest's last ingest under serve that received
	// messages (an ingest of an empty queue keeps no record).
	LastIngest *runRecord `json:"last_ingest,omitempty"`
	Queue      queueDepth `json:"queue"`
	DeadLetter queueDepth `json:"dead_letter_queue"`
	// Pending is how many events a digest schedule holds in its pending
	// store for its next slot; nil for mode each.
	Pending      *int   `json:"pending,omitempty"`
	PendingError string `json:"pending_error,omitempty"`
}

type sesStatus struct {
	Max24Hour       float64 `json:"max_24_hour_send"`
	MaxSendRate     float64 `json:"max_send_rate"`
	SentLast24Hours float64 `json:"sent_last_24_hours"`
	Sandbox         bool    `json:"sandbox"`
	SendingEnabled  bool    `json:"sending_enabled"`
	Error           string  `json:"error,omitempty"`
}

type keyStatus struct {
	ID     string `json:"id"`
	Active bool   `json:"active"`
	// State is active, scheduled, retiring or retired: the key ring's
	// view, which counts the keys `keys rotate` scheduled and `keys
	// retire` retired as well as the configured ones.
	State string `json:"state"`
	// ActivatesAt is when a scheduled key starts signing; RetiredAt when
	// a retired one was retired.
	ActivatesAt time.Time `json:"activates_at,omitzero"`
	RetiredAt   time.Time `json:"retired_at,omitzero"`
	// SafeToRemove is when its public key may leave CloudFront: the
	// latest expiry of a link it signed.
	SafeToRemove time.Time `json:"safe_to_remove_after,omitzero"`
	Says         string    `json:"says"`
	// FirstUsed is when the key first signed a link, and Age how long
	// ago that was: the key's age in service.
	FirstUsed time.Time     `json:"first_used_at,omitzero"`
	Age       time.Duration `json:"age_ns,omitempty"`
}

type status struct {
	Schedules []scheduleStatus `json:"schedules"`
	SES       sesStatus        `json:"ses"`
	Keys      []keyStatus      `json:"keys"`
	// KeyRingError says why the key ring's state could not be read:
	// Keys then holds the configured keys alone.
	KeyRingError string `json:"key_ring_error,omitempty"`
}

const statusSynopsis = `status -config FILE [-json]

Shows, for each schedule, its next run in its own time zone (or that it
is paused) and its last run from the run history (a drain, or a slot
of serve; for a digest, apart, its last ingest that received any); how
many messages its queue and dead-letter queue hold (visible, in
flight, delayed), and for a digest how many events wait in its
pending store; the SES
sending quota, what was sent in the last 24 hours, and whether the
account is in the sandbox; and each CloudFront signing key the key
ring knows (configured, or scheduled and retired by "keys rotate" and
"keys retire"), by public key id, with its state (active, scheduled,
retiring, retired) and the date after which its public key may be
removed (see "reportmailer keys").
Nothing it reads stops it: what cannot be read is shown as an error.`

func (m *Main) status(ctx context.Context, args []string) error {
	fs := m.newFlagSet("status", statusSynopsis)
	configPath := fs.String("config", "", "config file (default $REPORTMAILER_CONFIG)")
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := m.loadConfig(*configPath)
	if err != nil {
		return err
	}
	cl, err := newOpsClients(ctx, c)
	if err != nil {
		return err
	}
	now := time.Now()
	st := status{Schedules: []scheduleStatus{}, Keys: []keyStatus{}}
	for _, s := range c.Schedules {
		ss := scheduleStatus{Name: s.Name, Paused: s.Paused, Cron: s.Cron, TimeZone: or(s.TimeZone, "UTC")}
		if loc, err := time.LoadLocation(s.TimeZone); err == nil && s.Cron != "" && !s.Paused {
			if sched, err := config.ParseCron(s.Cron, loc); err == nil {
				ss.Next = sched.Next(now).In(loc)
			}
		}
		last, skipped, err := lastRun(ctx, cl.s3, c, s.Name, now)
		for _, e := range skipped {
			fmt.Fprintf(redacting{m.Stderr}, "status: schedule %s: warning: skipped a run record: %v\n", s.Name, e)
		}
		if err == nil && last != nil {
			ss.LastRun = last
			ss.LastRun.Deliveries = nil
		} else if err != nil {
			fmt.Fprintf(m.Stderr, "status: schedule %s: %v\n", s.Name, err)
		}
		if s.Mode == string(worker.ModeDigest) {
			last, skipped, err := lastIngest(ctx, cl.s3, c, s.Name, now)
			for _, e := range skipped {
				fmt.Fprintf(redacting{m.Stderr}, "status: schedule %s: warning: skipped an ingest record: %v\n", s.Name, e)
			}
			if err == nil && last != nil {
				ss.LastIngest = last
				ss.LastIngest.Deliveries = nil
			} else if err != nil {
				fmt.Fprintf(m.Stderr, "status: schedule %s: %v\n", s.Name, err)
			}
		}
		ss.Queue = depth(ctx, cl.sqs, s.QueueURL)
		ss.DeadLetter = depth(ctx, cl.sqs, s.DeadLetterQueueURL)
		if s.Mode == string(worker.ModeDigest) {
			p := &store.Pending{Client: cl.s3, Bucket: c.Ledger.Bucket, Prefix: store.PendingPrefix(c.Ledger.Prefix, s.Name)}
			if n, err := p.Count(ctx); err != nil {
				ss.PendingError = err.Error()
			} else {
				ss.Pending = &n
			}
		}
		st.Schedules = append(st.Schedules, ss)
	}
	acct, err := sesv2.NewFromConfig(cl.aws).GetAccount(ctx, &sesv2.GetAccountInput{})
	if err != nil {
		st.SES.Error = err.Error()
	} else {
		if q := acct.SendQuota; q != nil {
			st.SES.Max24Hour, st.SES.MaxSendRate, st.SES.SentLast24Hours = q.Max24HourSend, q.MaxSendRate, q.SentLast24Hours
		}
		st.SES.Sandbox, st.SES.SendingEnabled = !acct.ProductionAccessEnabled, acct.SendingEnabled
	}
	if cf := c.Links.CloudFront; cf != nil {
		log := keyExpiries(c, cl.s3)
		ring, _, err := ringStore(c, cl.s3).Load(ctx)
		if err != nil {
			st.KeyRingError = err.Error()
		}
		for _, k := range ringKeys(cf, ring, now) {
			ks := keyStatus{ID: k.ID, Active: k.State == keyActive, State: k.State, ActivatesAt: k.ActivatesAt, RetiredAt: k.RetiredAt}
			if k.State == keyRetired {
				ks.Says = k.retiredSays()
				st.Keys = append(st.Keys, ks)
				continue
			}
			latest, err := log.Latest(ctx, k.ID)
			ks.SafeToRemove, ks.Says = latest, removalDate(latest, k.State == keyActive || k.State == keyScheduled, now)
			if err != nil {
				ks.Says = "cannot read its record: " + err.Error()
			} else if first, err := log.FirstUsed(ctx, k.ID); err == nil && !first.IsZero() {
				ks.FirstUsed, ks.Age = first, now.Sub(first).Round(time.Second)
			}
			st.Keys = append(st.Keys, ks)
		}
	}
	if *asJSON {
		return writeJSON(m.Stdout, st)
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCHEDULE\tNEXT RUN\tLAST RUN\tLAST INGEST\tQUEUE (visible/in flight/delayed)\tDEAD-LETTER QUEUE (visible/in flight/delayed)\tPENDING DIGEST")
	for _, s := range st.Schedules {
		next := "-"
		switch {
		case s.Paused:
			next = "paused"
		case !s.Next.IsZero():
			next = s.Next.Format("2006-01-02 15:04 MST")
		}
		last := "none recorded"
		if r := s.LastRun; r != nil {
			last = fmt.Sprintf("%s %s (%s): sent %d, dead-lettered %d, retrying %d", r.StartedAt.Format(time.RFC3339), r.Outcome, r.RunID,
				r.Counts.Sent, r.Counts.DeadLettered, r.Counts.Retrying)
			if r.Digest {
				last += ", " + r.Counts.digest()
			}
		}
		ingest := "-"
		if r := s.LastIngest; r != nil {
			ingest = fmt.Sprintf("%s %s (%s): received %d", r.StartedAt.Format(time.RFC3339), r.Outcome, r.RunID, r.Counts.Received)
		} else if s.Pending != nil || s.PendingError != "" { // a digest
			ingest = "none recorded"
		}
		pending := "-"
		switch {
		case s.PendingError != "":
			pending = "error: " + s.PendingError
		case s.Pending != nil:
			pending = strconv.Itoa(*s.Pending)
		}
		if r := s.LastRun; r != nil && r.Late {
			last += fmt.Sprintf(", late (planned %s)", r.PlannedAt.Format(time.RFC3339))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, next, last, ingest, s.Queue, s.DeadLetter, pending)
	}
	tw.Flush()
	if st.SES.Error != "" {
		fmt.Fprintf(m.Stdout, "SES: cannot read the account: %s\n", st.SES.Error)
	} else {
		sandbox := "production access"
		if st.SES.Sandbox {
			sandbox = "SANDBOX (only verified recipients)"
		}
		sending := "sending enabled"
		if !st.SES.SendingEnabled {
			sending = "SENDING PAUSED"
		}
		fmt.Fprintf(m.Stdout, "SES: quota %.0f per 24h, %.0f sent in the last 24h, %.0f per second; %s; %s\n",
			st.SES.Max24Hour, st.SES.SentLast24Hours, st.SES.MaxSendRate, sandbox, sending)
	}
	if st.KeyRingError != "" {
		fmt.Fprintf(m.Stdout, "key ring: cannot read its state, so only the configured keys are shown: %s\n", st.KeyRingError)
	}
	for _, k := range st.Keys {
		state := k.State
		if k.State == keyScheduled {
			state += " from " + k.ActivatesAt.UTC().Format(time.RFC3339)
		}
		if k.State == keyRetired {
			fmt.Fprintf(m.Stdout, "key %s (%s): %s\n", k.ID, state, k.Says)
			continue
		}
		age := "age unknown (no first use recorded)"
		if !k.FirstUsed.IsZero() {
			age = "signing since " + k.FirstUsed.Format(time.RFC3339) + " (" + k.Age.String() + ")"
		}
		fmt.Fprintf(m.Stdout, "key %s (%s): %s; safe to remove from CloudFront after %s\n", k.ID, state, age, k.Says)
	}
	return nil
}

func (d queueDepth) String() string {
	if d.Error != "" {
		return "error: " + d.Error
	}
	return fmt.Sprintf("%d/%d/%d", d.Visible, d.InFlight, d.Delayed)
}

// depth asks SQS how many messages the queue at url holds.
func depth(ctx context.Context, c *sqs.Client, url string) queueDepth {
	d := queueDepth{URL: url}
	out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{
		sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed}})
	if err != nil {
		d.Error = err.Error()
		return d
	}
	n := func(k sqstypes.QueueAttributeName) int { v, _ := strconv.Atoi(out.Attributes[string(k)]); return v }
	d.Visible = n(sqstypes.QueueAttributeNameApproximateNumberOfMessages)
	d.InFlight = n(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)
	d.Delayed = n(sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed)
	return d
}
