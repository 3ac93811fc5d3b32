// Package worker turns report-ready events from a queue into emails that
// carry signed links. It owns the pipeline (receive, parse, resolve,
// sign, render, send, acknowledge) and declares the small interfaces it
// consumes; the sub-packages implement them against AWS.
package worker

import (
	"context"
	"sync"
	"time"

	"github.com/reportmailer/reportmailer/worker/event"
)

// Message is one message received from a queue.
type Message struct {
	ID            string // the queue's message id
	ReceiptHandle string
	Body          string
	ReceiveCount  int // approximate; 0 when the queue does not say
	// Sent is when the queue received the message (SQS's
	// SentTimestamp); zero when it does not say.
	Sent time.Time
	// Attributes holds the producer's message attributes, opaque to the
	// worker, for the queue to keep when it dead-letters the message.
	Attributes any
}

// Queue is the source of messages. Implementations must be safe for
// concurrent use.
type Queue interface {
	// Receive long-polls for up to max messages, waiting at most wait.
	Receive(ctx context.Context, max int, wait time.Duration) ([]Message, error)
	// Delete acknowledges messages. Its error names each message it
	// could not delete; when the others were deleted, it is a
	// *[BatchError] listing the receipt handles that failed.
	Delete(ctx context.Context, msgs []Message) error
	// Release makes messages visible again at once, for another try.
	Release(ctx context.Context, msgs []Message) error
	// Extend keeps messages invisible for d from now: while they are
	// still being worked on, or, after a halt, until sending may work
	// again.
	Extend(ctx context.Context, msgs []Message, d time.Duration) error
	// DeadLetter moves a message to the dead-letter queue with f's code
	// and reason recorded on it, then deletes it from the source queue.
	DeadLetter(ctx context.Context, msg Message, f Failure) error
}

// Checker is a Queue that can tell, before a run receives anything,
// whether it and its dead-letter queue exist. Drain calls Check when
// its Queue provides it; an error (wrapping [ErrNoQueue] when a queue
// is missing, and naming its URL) ends the run before its first receive,
// so that no message is received that could be neither done nor
// dead-lettered.
type Checker interface {
	Check(ctx context.Context) error
}

// SendGate is a Mailer that can say, before a run receives, whether it
// may send at all. Drain calls Admit before each receive when its
// Mailer provides it: nil means it may send; an error marked with
// [Halt] means it may not (the sending quota is spent, say), and the
// run stops without receiving, so that messages it could not send are
// not received only to be handed back, which counts towards the queue's
// maxReceiveCount. Other errors are logged and the run goes on.
type SendGate interface {
	Admit(ctx context.Context) error
}

// Link is a signed URL and the moment it stops working.
type Link struct {
	URL     string
	Expires time.Time
}

// Signer makes a link to one report that stays valid until about now+ttl.
// It may return an earlier expiry than asked for (for example when the
// credentials it signs with expire sooner); the email shows that value.
type Signer interface {
	Sign(ctx context.Context, r event.Report, now time.Time) (Link, error)
}

// BatchSigner is a Signer that can sign every link of one email at
// once, for example with one custom-policy signature over the reports'
// common prefix. The worker uses SignAll when its Signer provides it.
// It returns one Link per report, in order.
type BatchSigner interface {
	Signer
	SignAll(ctx context.Context, rs []event.Report, now time.Time) ([]Link, error)
}

// ObjectInfo is what HeadObject tells about a report file.
type ObjectInfo struct {
	Size        int64
	ContentType string
	Metadata    map[string]string // user metadata, keys lower-case without "x-amz-meta-"
}

// ObjectStore looks up report files. The worker heads every report
// before it links it, and reads the user of an S3 notification from
// its object's metadata.
type ObjectStore interface {
	// Head returns what S3's HeadObject says about an object. A missing
	// object is an error marked [Permanent], with [CodeObjectMissing];
	// one the worker may not read is a halt ([HaltUntil]), with
	// [CodeObjectAccessDenied], since every other report would most
	// likely meet the same refusal.
	Head(ctx context.Context, bucket, key string) (ObjectInfo, error)
}

// HaltNote is a halt kept in a [HaltRecord]: why a run stopped sending,
// and until when no run should receive.
type HaltNote struct {
	Code   Code      `json:"code"`
	Reason string    `json:"reason"` // for people; the halt's error, key material redacted
	Until  time.Time `json:"until"`
	// Schedule and Host name the run that halted; At is when.
	Schedule string    `json:"schedule,omitempty"`
	Host     string    `json:"host,omitempty"`
	At       time.Time `json:"at"`
	// Where names the record for people, e.g. s3://bucket/key, so
	// that an operator who fixed the cause can delete it. Get sets it;
	// it is not stored.
	Where string `json:"-"`
}

// HaltRecord keeps an account-wide halt across runs, processes and
// replicas. A halt that clears only at a known time ([HaltUntil]: the
// sender not verified, sending paused, the quota spent, the reports
// unreadable) stops one run; without a record the next run, in another
// process or on another replica, would receive again, meet the same
// refusal, and hand the messages back, each receive counting towards
// the queue's maxReceiveCount, until SQS moved healthy messages to the
// dead-letter queue. With one, Drain reads it before it receives, and
// while a halt holds it receives nothing.
type HaltRecord interface {
	// Get returns the recorded halt, and false when there is none. An
	// error means the record could not be read, never that a halt
	// holds.
	Get(ctx context.Context) (HaltNote, bool, error)
	// Put records h, replacing any earlier halt.
	Put(ctx context.Context, h HaltNote) error
}

// Email is one message ready to send.
type Email struct {
	// User is whom the reports belong to; Schedule, Digest and EventIDs
	// say what the email gathers. Mailers use them for headers such as
	// List-Unsubscribe and Message-ID.
	User     event.User
	Schedule string
	Digest   bool
	EventIDs []string

	From    string
	ReplyTo []string
	To      []string
	Subject string
	HTML    string
	Text    string
	// Headers are extra headers a mailer adds, winning over its own.
	// The worker sets none today; it is the hook for a template or a
	// caller that needs one.
	Headers map[string]string
	Tags    map[string]string
}

// Mailer sends email.
type Mailer interface {
	// Send returns the provider's message id once the email is accepted.
	// The Mailer that hands the email to the mail service calls
	// [BeforeSend] with Send's context immediately before it does, and
	// [RetryAfterServerError] for each retry after a 5xx; a Mailer that
	// wraps another passes the context on.
	Send(ctx context.Context, e Email) (string, error)
}

// A Mailer tells the worker, through the context of Send, what its
// result cannot say, in the manner of net/http/httptrace: when the
// email is about to leave ([BeforeSend]), and which retries may have
// sent it twice ([RetryAfterServerError]). Both do nothing on a context
// the worker did not make.

type sendTraceKey struct{}

// sendTrace is what the worker learns from one Send.
type sendTrace struct {
	before func(context.Context) error

	mu        sync.Mutex
	called    bool  // BeforeSend was called
	beforeErr error // and what it returned
	retries   int   // retries after a server error
}

func withSendTrace(ctx context.Context, t *sendTrace) context.Context {
	return context.WithValue(ctx, sendTraceKey{}, t)
}

// BeforeSend must be called by the Mailer that hands the email to the
// mail service, immediately before it does, after any wait of its own
// (pacing, backing off): the worker records there that the email may
// leave, which a crash before it leaves does not make ambiguous. If it
// returns an error, the Mailer must not send, and returns that error.
// Calls after the first return the first one's result.
func BeforeSend(ctx context.Context) error {
	t, _ := ctx.Value(sendTraceKey{}).(*sendTrace)
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.called {
		t.called = true
		if t.before != nil {
			t.beforeErr = t.before(ctx)
		}
	}
	return t.beforeErr
}

// RetryAfterServerError is called by a Mailer for each retry of a send
// whose previous attempt was answered with a status of 500 or more: the
// mail service may have accepted the email all the same, so the retry
// may send it twice. The worker counts them as maybe duplicated.
func RetryAfterServerError(ctx context.Context) {
	if t, _ := ctx.Value(sendTraceKey{}).(*sendTrace); t != nil {
		t.mu.Lock()
		t.retries++
		t.mu.Unlock()
	}
}

// state returns what the trace saw.
func (t *sendTrace) state() (called bool, beforeErr error, retries int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.called, t.beforeErr, t.retries
}
