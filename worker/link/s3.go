package link

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
)

// MaxPresignTTL is the longest lifetime S3 allows a SigV4 presigned URL.
const MaxPresignTTL = 7 * 24 * time.Hour

// Reasons S3Presigner gives a shorter link than TTL asks for, as logged.
const (
	capReasonS3Max       = "ttl exceeds the 7-day limit of S3 presigned URLs"
	capReasonCredentials = "credentials expire before the ttl ends"
	capReasonSigningCred = "the client signed with credentials that expire sooner than Credentials reported"
)

// S3Presigner makes S3 SigV4 presigned GET URLs, capped at 7 days and at the expiry of the credentials in use.
//
// A presigned URL stops working when the credentials that signed it
// expire, whatever X-Amz-Expires says: with STS, role or instance
// credentials that is within hours. Sign therefore returns the real
// expiry, and logs a warning the first time each kind of cap applies.
//
// The URL is signed as of the now passed to Sign, rounded down to the
// second (its X-Amz-Date), so Link.Expires is exactly when S3 stops
// accepting it. S3 may refuse a URL dated in its future, so now must
// come from a clock that is about right.
//
// An S3Presigner must not be copied after first use.
type S3Presigner struct {
	// Client presigns the requests; see s3.NewPresignClient.
	Client *s3.PresignClient
	// Credentials is the provider the client signs with (for example
	// the s3.Client's Options().Credentials), asked before each
	// signature when its credentials expire. If nil, the expiry of the
	// credentials actually used is still honoured, but X-Amz-Expires
	// may then promise more than the link lives.
	Credentials aws.CredentialsProvider
	// TTL is how long a link should stay valid: at least one second.
	// More than MaxPresignTTL is capped.
	TTL time.Duration
	// Logger receives the warnings about capped expiries. If nil,
	// slog.Default() is used.
	Logger *slog.Logger

	warned sync.Map // cap reason → struct{}: each is logged once
}

var _ worker.Signer = (*S3Presigner)(nil)

// Validate checks the configuration, so that a bad one can be reported
// at start-up rather than on the first message. Sign calls it too.
func (p *S3Presigner) Validate() error {
	if p.Client == nil {
		return errors.New("s3 presign: no client")
	}
	if p.TTL < time.Second {
		return fmt.Errorf("s3 presign: ttl %v is too short, want at least 1s", p.TTL)
	}
	return nil
}

// Sign returns a presigned GET URL for r.Bucket and r.Key. It expires
// at the earliest of now+TTL, now+MaxPresignTTL and the expiry of the
// signing credentials, counted in whole seconds from now rounded down;
// Link.Expires is that moment, in UTC. Errors caused by the report
// itself (no bucket, an empty key, a key with "." or ".." segments) are
// marked [worker.Permanent].
func (p *S3Presigner) Sign(ctx context.Context, r event.Report, now time.Time) (worker.Link, error) {
	if err := p.Validate(); err != nil {
		return worker.Link{}, err
	}
	if r.Bucket == "" {
		return worker.Link{}, worker.Permanent(errors.New("s3 presign: no bucket"))
	}
	if err := checkKey(r.Key); err != nil {
		return worker.Link{}, worker.Permanent(fmt.Errorf("s3 presign: %w", err))
	}

	expires := now.Add(p.TTL)
	if limit := now.Add(MaxPresignTTL); limit.Before(expires) {
		expires = limit
		p.warn(capReasonS3Max, now, expires, aws.Credentials{})
	}
	if p.Credentials != nil {
		creds, err := p.Credentials.Retrieve(ctx)
		if err != nil {
			return worker.Link{}, fmt.Errorf("s3 presign: credentials: %w", err)
		}
		if creds.CanExpire && creds.Expires.Before(expires) {
			expires = creds.Expires
			p.warn(capReasonCredentials, now, expires, creds)
		}
	}
	// SigV4 times are whole seconds; sign at now rounded down, so that
	// signedAt+ttl never passes any of the limits above.
	signedAt := time.Unix(now.Unix(), 0).UTC()
	ttl := expires.Sub(signedAt).Truncate(time.Second)
	if ttl < time.Second {
		// Transient: the provider should refresh them.
		return worker.Link{}, fmt.Errorf("s3 presign: credentials expire at %s, too soon to sign",
			expires.UTC().Format(time.RFC3339))
	}

	ps := &pinnedPresigner{at: signedAt}
	req, err := p.Client.PresignGetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(r.Bucket),
		Key:    aws.String(r.Key),
	}, s3.WithPresignExpires(ttl), func(o *s3.PresignOptions) {
		ps.next = o.Presigner
		o.Presigner = ps
	})
	if err != nil {
		return worker.Link{}, fmt.Errorf("s3 presign: %w", err)
	}
	expires = signedAt.Add(ttl)
	if ps.used && ps.creds.CanExpire && ps.creds.Expires.Before(expires) {
		// Credentials is not the provider the client uses, or they
		// were refreshed in between: trust the ones that signed.
		expires = ps.creds.Expires.UTC()
		p.warn(capReasonSigningCred, now, expires, ps.creds)
		if !expires.After(now) {
			return worker.Link{}, errors.New("s3 presign: the signing credentials have expired")
		}
	}
	return worker.Link{URL: req.URL, Expires: expires}, nil
}

// warn logs a capped expiry once per reason.
func (p *S3Presigner) warn(reason string, now, expires time.Time, creds aws.Credentials) {
	if _, loaded := p.warned.LoadOrStore(reason, struct{}{}); loaded {
		return
	}
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	attrs := []any{
		slog.String("reason", reason),
		slog.Duration("ttl", p.TTL),
		slog.Duration("capped_to", expires.Sub(now).Truncate(time.Second)),
	}
	if creds.Source != "" {
		attrs = append(attrs, slog.String("credentials_source", creds.Source))
	}
	log.Warn("presigned links expire sooner than the configured ttl; this is logged once", attrs...)
}

// pinnedPresigner signs as of a fixed time, so that the URL's life is
// measured from the now that Sign reasons with, and records the
// credentials the client actually signed with.
type pinnedPresigner struct {
	next  s3.HTTPPresignerV4
	at    time.Time
	used  bool
	creds aws.Credentials
}

func (p *pinnedPresigner) PresignHTTP(ctx context.Context, credentials aws.Credentials, r *http.Request,
	payloadHash string, service string, region string, _ time.Time, optFns ...func(*v4.SignerOptions),
) (string, http.Header, error) {
	p.used, p.creds = true, credentials
	return p.next.PresignHTTP(ctx, credentials, r, payloadHash, service, region, p.at, optFns...)
}
