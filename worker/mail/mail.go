// Package mail sends the worker's email with Amazon SES v2.
package mail

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/reportmailer/reportmailer/worker"
)

// API is the part of *sesv2.Client the mailer uses.
type API interface {
	SendEmail(context.Context, *sesv2.SendEmailInput, ...func(*sesv2.Options)) (*sesv2.SendEmailOutput, error)
}

// SES is a worker.Mailer on SES v2 SendEmail with Simple content.
type SES struct {
	Client API
	// ConfigurationSet names the SES configuration set, optional.
	ConfigurationSet string
}

var _ worker.Mailer = (*SES)(nil)

// Send sends e and returns the SES message id. Errors are classified
// for the worker: a rejection of this email is permanent, a throttle or
// a server error is transient, and a failure after which SES may have
// accepted the email is ambiguous.
func (s *SES) Send(ctx context.Context, e worker.Email) (string, error) {
	in := &sesv2.SendEmailInput{
		FromEmailAddress: aws.String(e.From),
		ReplyToAddresses: e.ReplyTo,
		Destination:      &types.Destination{ToAddresses: e.To},
		Content: &types.EmailContent{Simple: &types.Message{
			Subject: &types.Content{Data: aws.String(e.Subject), Charset: aws.String("UTF-8")},
			Body: &types.Body{
				Html: &types.Content{Data: aws.String(e.HTML), Charset: aws.String("UTF-8")},
				Text: &types.Content{Data: aws.String(e.Text), Charset: aws.String("UTF-8")},
			},
			Headers: headers(e.Headers),
		}},
		EmailTags: tags(e.Tags),
	}
	if s.ConfigurationSet != "" {
		in.ConfigurationSetName = aws.String(s.ConfigurationSet)
	}
	out, err := s.Client.SendEmail(ctx, in)
	if err != nil {
		return "", Classify(fmt.Errorf("ses send: %w", err))
	}
	return aws.ToString(out.MessageId), nil
}

// Classify marks an SES error as permanent or ambiguous for the worker,
// leaving transient ones as they are.
func Classify(err error) error {
	var (
		rejected   *types.MessageRejected
		badRequest *types.BadRequestException
		notVerif   *types.MailFromDomainNotVerifiedException
	)
	if errors.As(err, &rejected) || errors.As(err, &badRequest) || errors.As(err, &notVerif) {
		return worker.Permanent(err)
	}
	if !sent(err) {
		return err
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() >= 400 {
		if re.HTTPStatusCode() == 429 || re.HTTPStatusCode() >= 500 {
			return err
		}
		return worker.Permanent(err)
	}
	return worker.Ambiguous(err)
}

// sent reports whether the request may have reached SES. A failure to
// connect, or to sign or build the request, means it certainly did not.
func sent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	var dns *net.DNSError
	return !errors.As(err, &dns)
}

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
// standard rules.
func noRetryAfterSend(err error) aws.Ternary {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		if re.HTTPStatusCode() >= 400 {
			return aws.UnknownTernary
		}
		return aws.FalseTernary
	}
	if !sent(err) {
		return aws.UnknownTernary
	}
	return aws.FalseTernary
}

func headers(h map[string]string) []types.MessageHeader {
	if len(h) == 0 {
		return nil
	}
	out := make([]types.MessageHeader, 0, len(h))
	for k, v := range h {
		out = append(out, types.MessageHeader{Name: aws.String(k), Value: aws.String(v)})
	}
	sort.Slice(out, func(i, j int) bool { return *out[i].Name < *out[j].Name })
	return out
}

func tags(t map[string]string) []types.MessageTag {
	if len(t) == 0 {
		return nil
	}
	out := make([]types.MessageTag, 0, len(t))
	for k, v := range t {
		out = append(out, types.MessageTag{Name: aws.String(k), Value: aws.String(v)})
	}
	sort.Slice(out, func(i, j int) bool { return *out[i].Name < *out[j].Name })
	return out
}
