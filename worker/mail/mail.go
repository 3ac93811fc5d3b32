// Package mail sends the worker's email with Amazon SES v2.
package mail

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/mail"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/reportmailer/reportmailer/worker"
)

// API is the part of *sesv2.Client the mailer uses.
type API interface {
	SendEmail(context.Context, *sesv2.SendEmailInput, ...func(*sesv2.Options)) (*sesv2.SendEmailOutput, error)
}

// SES is a worker.Mailer on SES v2 SendEmail with Simple content.
//
// Simple, not Raw, on purpose. With Simple content SES writes the MIME
// message itself: the RFC 2047 encoding of a UTF-8 subject, the
// multipart/alternative structure, transfer encodings, line lengths
// and the Date and Message-ID headers. Every header the email needs
// beyond those (List-Unsubscribe, List-Unsubscribe-Post, List-Id,
// References) can be set as a custom header on Simple content, so Raw
// would buy us nothing but a MIME writer to keep correct. Raw would not
// even let us choose the Message-ID: SES replaces it on every send. The
// price of Simple is SES's limits on custom headers (at most 15, names
// other than From, To, Cc, Bcc, Subject, Reply-To, Date, Message-ID,
// MIME-Version, Content-Type, Content-Disposition and Return-Path,
// values of printable ASCII up to 870 characters), which [SES.Send]
// checks before it calls SES so that a bad header fails one email
// clearly instead of as a BadRequestException.
type SES struct {
	// Client is the SES v2 client. Build it with [PacedRetryer] when
	// the SES is behind a [Paced], and with [Retryer] otherwise.
	Client API
	// ConfigurationSet names the SES configuration set, optional.
	ConfigurationSet string
	// ListID is the RFC 2919 list namespace, a domain name the sender
	// controls. Each email gets "List-Id: <SCHEDULE.ListID>", so a
	// recipient can filter each schedule's email. Empty: no List-Id.
	ListID string
	// UnsubscribeURL is a text/template for the one-click unsubscribe
	// URL of each email (see [UnsubscribeData] and
	// [ParseUnsubscribeURL]). When set, each email gets List-Unsubscribe
	// and List-Unsubscribe-Post (RFC 8058). Empty: neither header.
	UnsubscribeURL string
	// RetryServerErrors lets the SDK retry a SendEmail that SES answered
	// with a 5xx. SES may have accepted the email before it failed to
	// answer, and it has no idempotency token, so such a retry may send
	// the email twice; each one is reported to the worker
	// ([worker.RetryAfterServerError]), which counts it as maybe
	// duplicated. Default false: a 5xx is not retried, and the send is
	// ambiguous (maybe sent), for SES's sending events or an operator to
	// settle. Either way, a 5xx on the last try is ambiguous.
	RetryServerErrors bool

	once  sync.Once
	unsub *template.Template
	err   error
}

var _ worker.Mailer = (*SES)(nil)

// Send sends e and returns the SES message id. Errors are classified
// for the worker (see [Classify]): a rejection of this email is
// permanent, a throttle is transient, a failure after which SES may
// have accepted the email (a 5xx, a connection lost after the request
// was written) is ambiguous, and a refusal that every email would meet
// (sender not verified, sending paused, account suspended) halts the
// run.
func (s *SES) Send(ctx context.Context, e worker.Email) (string, error) {
	in, err := s.input(e)
	if err != nil {
		return "", err
	}
	// The last moment before the email may leave: the worker records
	// it in the ledger, after any pacing wait.
	if err := worker.BeforeSend(ctx); err != nil {
		return "", err
	}
	retries, any5xx := s.serverErrors()
	out, err := s.Client.SendEmail(ctx, in, traceWrites, retries)
	if err != nil {
		err = classify(fmt.Errorf("ses send: %w", err), in)
		if any5xx() && !worker.IsAmbiguous(err) {
			// An earlier attempt's 5xx may have been an accepted email:
			// however the last attempt failed, it may be out.
			err = worker.Ambiguous(fmt.Errorf("an earlier attempt got a 5xx, after which SES may have accepted the email: %w", err))
		}
		return "", err
	}
	return aws.ToString(out.MessageId), nil
}

// input builds the SendEmail request for e.
func (s *SES) input(e worker.Email) (*sesv2.SendEmailInput, error) {
	hdrs, err := s.headers(e)
	if err != nil {
		return nil, err
	}
	// The sender's addresses are the same for every email, so one SES
	// cannot take stops the run; a recipient's fails this email alone.
	from, err := encodeAddress(e.From)
	if err != nil {
		return nil, worker.Halt(fmt.Errorf("from %w", err))
	}
	replyTo, err := encodeAddresses(e.ReplyTo)
	if err != nil {
		return nil, worker.Halt(fmt.Errorf("reply-to %w", err))
	}
	to, err := encodeAddresses(e.To)
	if err != nil {
		return nil, worker.Permanent(fmt.Errorf("recipient %w", err))
	}
	in := &sesv2.SendEmailInput{
		FromEmailAddress: aws.String(from),
		ReplyToAddresses: replyTo,
		Destination:      &types.Destination{ToAddresses: to},
		Content: &types.EmailContent{Simple: &types.Message{
			// Charset UTF-8 makes SES encode the subject per RFC 2047.
			Subject: &types.Content{Data: aws.String(cleanSubject(e.Subject)), Charset: aws.String("UTF-8")},
			Body: &types.Body{
				Html: &types.Content{Data: aws.String(e.HTML), Charset: aws.String("UTF-8")},
				Text: &types.Content{Data: aws.String(e.Text), Charset: aws.String("UTF-8")},
			},
			Headers: hdrs,
		}},
		EmailTags: tags(e.Tags),
	}
	if s.ConfigurationSet != "" {
		in.ConfigurationSetName = aws.String(s.ConfigurationSet)
	}
	return in, nil
}

// Classify marks an SES SendEmail error for the worker:
//
//   - halting, for a refusal every email would meet, so that the run
//     stops and the messages stay queued instead of being dead-lettered
//     one by one: the sender's identity or MAIL FROM domain not verified,
//     sending paused, the account suspended, no permission (401, 403),
//     or a configuration set that does not exist;
//   - permanent, for a refusal of this email: its content or addresses
//     (MessageRejected, BadRequestException, other 4xx), or, in the
//     sandbox, a recipient that is not verified;
//   - ambiguous, when SES may have accepted it (see sent): a 5xx answer
//     (SES can fail after accepting), or a failure after the request
//     was written;
//   - transient otherwise: throttles, failures before the request left.
//
// Classify does not know the email, so a MessageRejected naming
// unverified identities halts, as it would for the sender; [SES.Send]
// knows the recipients and dead-letters the email when SES names only
// them.
func Classify(err error) error { return classify(err, nil) }

func classify(err error, in *sesv2.SendEmailInput) error {
	var (
		mailFrom  *types.MailFromDomainNotVerifiedException
		paused    *types.SendingPausedException
		suspended *types.AccountSuspendedException
		notFound  *types.NotFoundException
		re        *smithyhttp.ResponseError
	)
	if errors.As(err, &mailFrom) || errors.As(err, &paused) || errors.As(err, &suspended) || errors.As(err, &notFound) ||
		(errors.As(err, &re) && (re.HTTPStatusCode() == 401 || re.HTTPStatusCode() == 403)) {
		return worker.Halt(err)
	}
	var (
		rejected   *types.MessageRejected
		badRequest *types.BadRequestException
	)
	if errors.As(err, &rejected) {
		return rejection(err, rejected.ErrorMessage(), in)
	}
	if errors.As(err, &badRequest) {
		return worker.Permanent(err)
	}
	if !sent(err) {
		return err
	}
	if errors.As(err, &re) && re.HTTPStatusCode() >= 400 {
		switch {
		case throttled(err):
			return err
		case re.HTTPStatusCode() >= 500:
			return worker.Ambiguous(fmt.Errorf("SES answered %d, and may have accepted the email before it failed: %w", re.HTTPStatusCode(), err))
		}
		return worker.Permanent(err)
	}
	return worker.Ambiguous(err)
}

// serverErrors returns the SendEmail option that applies
// RetryServerErrors to one call, and a func that reports whether any of
// its attempts got a 5xx: unless set, the SDK's retryer does not retry
// a 5xx; either way, each attempt that follows a 5xx is reported to the
// worker. The middleware comes last in the finalize step, inside the
// retry loop, where each attempt's error is already deserialized.
func (s *SES) serverErrors() (func(*sesv2.Options), func() bool) {
	var last5xx, any5xx atomic.Bool
	return func(o *sesv2.Options) {
		if !s.RetryServerErrors {
			o.Retryer = noServerRetries{o.Retryer}
		}
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Finalize.Add(middleware.FinalizeMiddlewareFunc("reportmailer/ServerErrorRetries",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					if last5xx.Load() {
						worker.RetryAfterServerError(ctx)
					}
					out, md, err := next.HandleFinalize(ctx, in)
					last5xx.Store(serverError(err))
					if serverError(err) {
						any5xx.Store(true)
					}
					return out, md, err
				}), middleware.After)
		})
	}, any5xx.Load
}

// serverError reports an answer of 500 or more from SES that is not a
// throttle: SES may have accepted the email before it failed.
func serverError(err error) bool {
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() >= 500 && !throttled(err)
}

// noServerRetries is a retryer that does not retry a server error.
type noServerRetries struct{ aws.Retryer }

func (r noServerRetries) IsErrorRetryable(err error) bool {
	return !serverError(err) && r.Retryer.IsErrorRetryable(err)
}

// GetAttemptToken keeps the wrapped retryer's, when it has one.
func (r noServerRetries) GetAttemptToken(ctx context.Context) (func(error) error, error) {
	if v2, ok := r.Retryer.(aws.RetryerV2); ok {
		return v2.GetAttemptToken(ctx)
	}
	return r.Retryer.GetInitialToken(), nil
}

// rejection classes a MessageRejected whose message is msg. SES uses it
// both for this email's content and for identities that are not
// verified; the latter stops every email when one is the sender's
// (From, or its domain), and only this one when all are recipients (in
// the sandbox, where recipients must be verified too).
func rejection(err error, msg string, in *sesv2.SendEmailInput) error {
	ids, truncated, ok := unverifiedIdentities(msg)
	if !ok {
		return worker.Permanent(err)
	}
	rcpt := map[string]bool{}
	if in != nil && in.Destination != nil {
		for _, a := range in.Destination.ToAddresses {
			rcpt[strings.ToLower(addressOnly(a))] = true
		}
	}
	var others, recipients []string
	for _, id := range ids {
		if rcpt[id] {
			recipients = append(recipients, id)
		} else {
			others = append(others, id)
		}
	}
	if len(others) == 0 && len(recipients) > 0 && !truncated {
		return worker.Permanent(fmt.Errorf("ses sandbox: recipient %s is not verified: %w", strings.Join(recipients, ", "), err))
	}
	if len(others) == 0 {
		others = []string{"(SES did not list them all)"}
	}
	return worker.Halt(fmt.Errorf("ses sender identity not verified: %s; no email can be sent from it until it is verified in this region: %w", strings.Join(others, ", "), err))
}

// unverifiedMarker precedes the region and the identities in SES's
// message for an unverified identity:
//
//	Email address is not verified. The following identities failed the check in region US-EAST-1: Ana <ana@example.com>, ana@example.com
const unverifiedMarker = "The following identities failed the check in region "

// unverifiedIdentities reads the identities SES names in a
// MessageRejected for unverified ones. SES gives them only in its prose
// (the error has no field for them), in the text its developer guide
// documents ("Amazon SES email sending errors"), so the parse is narrow:
// the marker, a region without spaces, ": ", then a comma-separated list
// of addresses, with or without display names, or domains. Each comes
// back lower-case, as a bare address or a domain. truncated reports the
// ellipsis SES ends the list with when it cannot show them all. ok is
// false when msg is not this refusal.
func unverifiedIdentities(msg string) (ids []string, truncated, ok bool) {
	_, rest, found := strings.Cut(msg, unverifiedMarker)
	if !found {
		return nil, false, false
	}
	region, list, found := strings.Cut(rest, ": ")
	if !found || region == "" || strings.ContainsAny(region, " \t") {
		return nil, false, false
	}
	list = strings.TrimSpace(list)
	if l, cut := strings.CutSuffix(list, "..."); cut {
		list, truncated = l, true
	} else if l, cut := strings.CutSuffix(list, "…"); cut {
		list, truncated = l, true
	}
	for _, part := range splitList(list) {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if a, err := mail.ParseAddress(part); err == nil {
			part = a.Address
		}
		ids = append(ids, strings.ToLower(part))
	}
	return ids, truncated, true
}

// splitList splits s at the commas outside quotes and angle brackets.
func splitList(s string) []string {
	var (
		out            []string
		start          int
		quoted, angled bool
	)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == '<' && !quoted:
			angled = true
		case c == '>' && !quoted:
			angled = false
		case c == ',' && !quoted && !angled:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// sent reports whether the request may have reached SES: SES answered,
// or the transport failed after the request's header was written.
// Everything before that (no credentials, signing, validation, endpoint
// resolution, a failed dial, DNS lookup, proxy CONNECT or TLS handshake)
// means it certainly did not: no server acts on a request whose header
// it has not received in full.
//
// Where [SES.Send] traced the attempt (see [traceWrites]), the trace
// decides. Otherwise the error's type does, for the failures net/http
// reports with a type of their own; a TLS handshake timeout and a proxy
// refusing CONNECT have none, so without a trace they count as sent.
func sent(err error) bool {
	if answered(err) {
		return true
	}
	var a *attempt
	if errors.As(err, &a) {
		return a.wrote
	}
	var se *smithyhttp.RequestSendError
	if !errors.As(err, &se) {
		return false
	}
	return !beforeRequest(err)
}

// answered reports whether SES sent an HTTP response, whatever its
// status. The SDK wraps a transport failure in a ResponseError too, with
// status 0 and no response behind it; that is not an answer.
func answered(err error) bool {
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() != 0
}

// beforeRequest reports whether err is one net/http returns only while
// it sets up a connection, before it writes a request.
func beforeRequest(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && (op.Op == "dial" || op.Op == "proxyconnect") {
		return true
	}
	var (
		dns      *net.DNSError
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		record   tls.RecordHeaderError
	)
	return errors.As(err, &dns) || errors.As(err, &verify) || errors.As(err, &unknown) ||
		errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &record) ||
		errors.Is(err, http.ErrSchemeMismatch) // "server gave HTTP response to HTTPS client"
}

// traceWrites has each attempt of a SendEmail record, through
// net/http's httptrace, whether the request's header was written; a
// failed attempt's error then carries the answer (see [attempt]). It is
// the only way to tell a TLS handshake timeout, a proxy's refusal of
// CONNECT or a cancellation while waiting for a connection (never sent)
// from a failure after the request went out (maybe sent): net/http
// gives the first two no type, and smithy reports a cancellation the
// same way whenever it happens.
func traceWrites(o *sesv2.Options) {
	o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
		// After: innermost, next to the HTTP client, inside the retry
		// loop, so that each attempt has its own trace.
		return st.Deserialize.Add(writeTracer{}, middleware.After)
	})
}

type writeTracer struct{}

func (writeTracer) ID() string { return "reportmailer/TraceWrites" }

func (writeTracer) HandleDeserialize(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (
	middleware.DeserializeOutput, middleware.Metadata, error,
) {
	var asked, wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GetConn:      func(string) { asked.Store(true) },
		WroteHeaders: func() { wrote.Store(true) },
	})
	out, md, err := next.HandleDeserialize(ctx, in)
	var (
		se       *smithyhttp.RequestSendError
		canceled *smithy.CanceledError
	)
	// Without GetConn the HTTP client does not run httptrace's hooks
	// (it is not net/http's), so the trace says nothing.
	if err != nil && asked.Load() && (errors.As(err, &se) || errors.As(err, &canceled)) {
		err = &attempt{err: err, wrote: wrote.Load()}
	}
	return out, md, err
}

// attempt is a failed attempt without an answer, with what its trace
// saw: whether net/http wrote the request's whole header.
type attempt struct {
	err   error
	wrote bool
}

func (a *attempt) Error() string { return a.err.Error() }
func (a *attempt) Unwrap() error { return a.err }

// Retryer returns the SDK retryer for the SES client: the standard one,
// except that it never retries a request SES may already have acted
// on. The SDK retries net.ErrClosed and similar transport errors by
// default, and for SendEmail a retry after the email was accepted sends
// it twice; SES has no idempotency token to stop that.
func Retryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.Retryables = append([]retry.IsErrorRetryable{retry.IsErrorRetryableFunc(noRetryAfterSend)}, o.Retryables...)
	})
}

// noRetryAfterSend vetoes a retry of a request that SES may have acted
// on: a success response whose body was lost, or a transport failure
// after connecting. Error responses and failed connects are left to the
// standard rules; whether a 5xx is retried is [SES.RetryServerErrors]'s
// to say, per call.
func noRetryAfterSend(err error) aws.Ternary {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() >= 400 {
		return aws.UnknownTernary
	}
	if sent(err) {
		return aws.FalseTernary
	}
	return aws.UnknownTernary
}

// tags turns the worker's tags into SES message tags. SES accepts only
// ASCII letters, digits, '_' and '-' in tag names and values, at most
// 256 of them, and rejects the whole email otherwise; schedule names
// may hold '.', and report types come from producers. So every other
// byte becomes '_', and a tag with an empty name or value is dropped.
func tags(t map[string]string) []types.MessageTag {
	if len(t) == 0 {
		return nil
	}
	out := make([]types.MessageTag, 0, len(t))
	for k, v := range t {
		k, v = tagText(k), tagText(v)
		if k == "" || v == "" {
			continue
		}
		out = append(out, types.MessageTag{Name: aws.String(k), Value: aws.String(v)})
	}
	sort.Slice(out, func(i, j int) bool { return *out[i].Name < *out[j].Name })
	return out
}

func tagText(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) > 256 {
		b = b[:256]
	}
	return string(b)
}
