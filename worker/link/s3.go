package link

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
)

// MaxPresignTTL is the longest lifetime S3 allows a SigV4 presigned URL.
const MaxPresignTTL = 7 * 24 * time.Hour

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
	// TTL is how long a link should stay valid, at least one second,
	// for reports whose type has no entry in TTLByType. More than
	// MaxPresignTTL is capped.
	TTL time.Duration
	// TTLByType overrides TTL per report type (event.Report.Type).
	TTLByType map[string]time.Duration
	// MaxTTL, when positive, caps every lifetime.
	MaxTTL time.Duration
	// Logger receives the warnings about capped expiries. If nil,
	// slog.Default() is used.
	Logger *slog.Logger

	warned warner
}

var _ worker.Signer = (*S3Presigner)(nil)

// Validate checks the configuration, so that a bad one can be reported
// at start-up rather than on the first message. Sign calls it too.
func (p *S3Presigner) Validate() error {
	if p.Client == nil {
		return errors.New("s3 presign: no client")
	}
	if err := checkTTLs(p.TTL, p.TTLByType, p.MaxTTL); err != nil {
		return fmt.Errorf("s3 presign: %w", err)
	}
	return nil
}

// Sign returns a presigned GET URL for r.Bucket and r.Key. It expires
// at the earliest of now plus the TTL for r.Type (capped at MaxTTL),
// now+MaxPresignTTL and the expiry of the
// signing credentials, counted in whole seconds from now rounded down;
// Link.Expires is that moment, in UTC. Errors caused by the report
// itself (no bucket, an empty key, a key with "." or ".." segments) are
// marked [worker.Permanent].
func (p *S3Presigner) Sign(ctx context.Context, r event.Report, now time.Time) (worker.Link, error) {
	if r.Token != "" {
		// Config validation refuses links.trace without CloudFront.
		return worker.Link{}, errors.New("s3 presign: traced links need CloudFront (links.trace with links.cloudfront)")
	}
	if err := p.Validate(); err != nil {
		return worker.Link{}, err
	}
	if r.Bucket == "" {
		return worker.Link{}, worker.Permanent(errors.New("s3 presign: no bucket"))
	}
	if err := checkKey(r.Key); err != nil {
		return worker.Link{}, worker.Permanent(fmt.Errorf("s3 presign: %w", err))
	}

	want, life := ttlFor(p.TTL, p.TTLByType, p.MaxTTL, r.Type)
	if life < want {
		p.warn(capReasonMaxTTL, r.Type, want, life, aws.Credentials{})
	}
	expires := now.Add(life)
	if limit := now.Add(MaxPresignTTL); limit.Before(expires) {
		expires = limit
		p.warn(capReasonS3Max, r.Type, want, MaxPresignTTL, aws.Credentials{})
	}
	if p.Credentials != nil {
		creds, err := p.Credentials.Retrieve(ctx)
		if err != nil {
			return worker.Link{}, fmt.Errorf("s3 presign: credentials: %w", err)
		}
		if creds.CanExpire && creds.Expires.Before(expires) {
			expires = creds.Expires
			p.warn(capReasonCredentials, r.Type, want, expires.Sub(now), creds)
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
		p.warn(capReasonSigningCred, r.Type, want, expires.Sub(now), ps.creds)
		if !expires.After(now) {
			return worker.Link{}, errors.New("s3 presign: the signing credentials have expired")
		}
	}
	return worker.Link{URL: req.URL, Expires: expires}, nil
}

// warn logs a capped expiry once per reason; the max-ttl cap once per
// report type, as types have their own ttls.
func (p *S3Presigner) warn(reason, typ string, want, got time.Duration, creds aws.Credentials) {
	dedup := reason
	if reason == capReasonMaxTTL {
		dedup += "\x00" + typ
	}
	var attrs []slog.Attr
	if creds.Source != "" {
		attrs = append(attrs, slog.String("credentials_source", creds.Source))
	}
	p.warned.warn(p.Logger, dedup, reason, typ, want, got, attrs...)
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
