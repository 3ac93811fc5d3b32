package mail

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/reportmailer/reportmailer/worker"
)

func responseErr(status int, err error) error {
	return &smithy.OperationError{ServiceID: "SESv2", OperationName: "SendEmail", Err: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: err}}
}

// transportErr is a transport failure as the SDK reports it: a
// ResponseError of status 0, with no response behind it, around a
// RequestSendError.
func transportErr(err error) error {
	return &smithy.OperationError{ServiceID: "SESv2", OperationName: "SendEmail", Err: &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{Header: http.Header{}, Body: http.NoBody}}, Err: &smithyhttp.RequestSendError{Err: err}}}}
}

func TestClassify(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	type class int
	const (
		transient class = iota
		permanent
		ambiguous
		halt
	)
	tests := []struct {
		name  string
		err   error
		want  class
		retry aws.Ternary // what our retryer rule says
	}{
		{"message rejected", responseErr(400, &types.MessageRejected{Message: aws.String("bad address")}), permanent, aws.UnknownTernary},
		{"other 400", responseErr(400, errors.New("InvalidParameterValue")), permanent, aws.UnknownTernary},
		{"MAIL FROM domain not verified halts the run", responseErr(400, &types.MailFromDomainNotVerifiedException{}), halt, aws.UnknownTernary},
		{"an identity not verified, recipients unknown, halts the run", responseErr(400, &types.MessageRejected{Message: aws.String(
			"Email address is not verified. The following identities failed the check in region US-EAST-1: reports@example.com")}), halt, aws.UnknownTernary},
		{"no permission halts the run", responseErr(403, errors.New("AccessDenied")), halt, aws.UnknownTernary},
		{"missing configuration set halts the run", responseErr(404, &types.NotFoundException{}), halt, aws.UnknownTernary},
		{"sending paused halts the run", responseErr(400, &types.SendingPausedException{}), halt, aws.UnknownTernary},
		{"throttled", responseErr(429, &types.TooManyRequestsException{}), transient, aws.UnknownTernary},
		{"server error: SES may have accepted it first", responseErr(503, errors.New("unavailable")), ambiguous, aws.UnknownTernary},
		{"cannot connect", transportErr(dial), transient, aws.UnknownTernary},
		{"no such host", transportErr(&net.DNSError{Err: "no such host", Name: "email.test"}), transient, aws.UnknownTernary},
		{"no credentials: never sent", &smithy.OperationError{ServiceID: "SESv2", OperationName: "SendEmail", Err: errors.New("get identity: get credentials: failed to refresh cached credentials")}, transient, aws.UnknownTernary},
		{"connection closed after writing", transportErr(fmt.Errorf("read tcp: %w", net.ErrClosed)), ambiguous, aws.FalseTernary},
		{"body lost after a 200", responseErr(200, &smithy.DeserializationError{Err: &net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}}), ambiguous, aws.FalseTernary},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Classify(tt.err)
			c := transient
			switch {
			case worker.IsPermanent(got):
				c = permanent
			case worker.IsAmbiguous(got):
				c = ambiguous
			case worker.IsHalt(got):
				c = halt
			}
			if c != tt.want {
				t.Errorf("Classify = class %d, want %d (0 transient, 1 permanent, 2 ambiguous, 3 halt)", c, tt.want)
			}
			if r := noRetryAfterSend(tt.err); r != tt.retry {
				t.Errorf("retry rule = %v, want %v", r, tt.retry)
			}
		})
	}
}

func TestRetryerNeverRetriesAnAmbiguousSend(t *testing.T) {
	r := Retryer()
	if r.IsErrorRetryable(transportErr(fmt.Errorf("write: %w", net.ErrClosed))) {
		t.Error("a transport error after the request may have reached SES must not be retried")
	}
	// The stock retryer does retry it, which is why ours exists.
	if !retry.NewStandard().IsErrorRetryable(transportErr(fmt.Errorf("write: %w", net.ErrClosed))) {
		t.Log("note: the SDK no longer retries net.ErrClosed by default")
	}
	lost := responseErr(200, &smithy.DeserializationError{Err: &net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}})
	if r.IsErrorRetryable(lost) {
		t.Error("a 200 whose body was lost means SES accepted the email; retrying sends it twice")
	}
	if !retry.NewStandard().IsErrorRetryable(lost) {
		t.Log("note: the stock retryer would not retry a lost 200 body either")
	}
	if !r.IsErrorRetryable(responseErr(429, &types.TooManyRequestsException{})) {
		t.Error("throttling should still be retried")
	}
	if !r.IsErrorRetryable(transportErr(&net.OpError{Op: "dial", Err: errors.New("refused")})) {
		t.Error("a failed connect never reached SES and should be retried")
	}
}
