// Package preflight checks a live AWS account against what the worker
// needs, before the first send: the queues and their redrive policies,
// the S3 prefixes (including the 404-not-403 answer for a missing key
// that needs s3:ListBucket), the SES account and sender identity, and
// the CloudFront distribution and public keys.
//
// Every call is harmless: reads, and in the ledger prefix one probe
// object with a unique random name that is written conditionally and
// then deleted. Each check gives one [Finding], in the order made, so a
// command can print progress as it goes.
package preflight

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/cloudfront"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Status is a finding's verdict.
type Status int

// Statuses, from good to bad.
const (
	// OK means the setting holds.
	OK Status = iota
	// Warn means the worker can run, but something was not checked or
	// deserves attention.
	Warn
	// Fail means the worker will misbehave until the setting is fixed.
	Fail
)

// String returns "ok", "warn" or "FAIL": capitals make a failure stand
// out in a column of results.
func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Warn:
		return "warn"
	default:
		return "FAIL"
	}
}

// MarshalText returns "ok", "warn" or "fail", for JSON output.
func (s Status) MarshalText() ([]byte, error) {
	return []byte(strings.ToLower(s.String())), nil
}

// Finding is the result of one check.
type Finding struct {
	// Area is the AWS service: sqs, s3, ses or cloudfront.
	Area string `json:"area"`
	// Name says what was checked, e.g. "schedule daily: redrive policy".
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Detail says what was found.
	Detail string `json:"detail"`
	// Fix says how to mend it; empty when Status is OK.
	Fix string `json:"fix,omitempty"`
}

// String formats f as one line: "STATUS  AREA  NAME: DETAIL  (FIX)".
func (f Finding) String() string {
	s := fmt.Sprintf("%-4s  %-10s  %s: %s", f.Status, f.Area, f.Name, f.Detail)
	if f.Fix != "" {
		s += "  (" + f.Fix + ")"
	}
	return s
}

// Summary counts findings by status.
type Summary struct {
	OK, Warn, Fail int
}

// SQS is the part of *sqs.Client the checks use.
type SQS interface {
	GetQueueUrl(context.Context, *sqs.GetQueueUrlInput, ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
	GetQueueAttributes(context.Context, *sqs.GetQueueAttributesInput, ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// S3 is the part of *s3.Client the checks use.
type S3 interface {
	PutObject(context.Context, *s3.PutObjectInput, ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	DeleteObject(context.Context, *s3.DeleteObjectInput, ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

// SES is the part of *sesv2.Client the checks use.
type SES interface {
	GetAccount(context.Context, *sesv2.GetAccountInput, ...func(*sesv2.Options)) (*sesv2.GetAccountOutput, error)
	GetEmailIdentity(context.Context, *sesv2.GetEmailIdentityInput, ...func(*sesv2.Options)) (*sesv2.GetEmailIdentityOutput, error)
	GetConfigurationSet(context.Context, *sesv2.GetConfigurationSetInput, ...func(*sesv2.Options)) (*sesv2.GetConfigurationSetOutput, error)
}

// CloudFront is the part of *cloudfront.Client the checks use.
type CloudFront interface {
	GetDistributionConfig(context.Context, *cloudfront.GetDistributionConfigInput, ...func(*cloudfront.Options)) (*cloudfront.GetDistributionConfigOutput, error)
	GetPublicKey(context.Context, *cloudfront.GetPublicKeyInput, ...func(*cloudfront.Options)) (*cloudfront.GetPublicKeyOutput, error)
}

// KMS is the part of *kms.Client the checks use: the public keys of
// the CloudFront keys in KMS.
type KMS interface {
	GetPublicKey(context.Context, *kms.GetPublicKeyInput, ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error)
}

// Checker checks one account against a Plan.
type Checker struct {
	SQS SQS
	S3  S3
	SES SES
	// CloudFront may be nil when Plan.CloudFront is.
	CloudFront CloudFront
	// KMS reads the public keys of the Plan's KMS keys; nil when it
	// has none.
	KMS KMS
	// Plan is what the worker is configured to use.
	Plan Plan
	// ProbeName returns a name no object has, for probe objects;
	// default 16 random bytes in hex.
	ProbeName func() string
	// Now is the clock the schedules' periods are measured from;
	// default time.Now.
	Now func() time.Time
}

// Run makes every check, passing each finding to report as soon as it
// is made, and returns the counts.
func (c *Checker) Run(ctx context.Context, report func(Finding)) Summary {
	var sum Summary
	r := func(f Finding) {
		switch f.Status {
		case OK:
			sum.OK++
		case Warn:
			sum.Warn++
		default:
			sum.Fail++
		}
		report(f)
	}
	c.checkQueues(ctx, r)
	c.checkS3(ctx, r)
	c.checkSES(ctx, r)
	if c.Plan.CloudFront != nil {
		c.checkCloudFront(ctx, r)
	}
	return sum
}

func (c *Checker) probeName() string {
	if c.ProbeName != nil {
		return c.ProbeName()
	}
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (c *Checker) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// errorCode returns the AWS error code of err, or "".
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// httpStatus returns the HTTP status of the response that gave err, or
// 0 when there was none.
func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// isDenied reports whether err is a refusal for lack of permission.
// Services spell the code differently (AccessDenied,
// AccessDeniedException); S3 answers a bare 403 to HEAD.
func isDenied(err error) bool {
	return strings.Contains(errorCode(err), "AccessDenied") || httpStatus(err) == http.StatusForbidden
}

// isUnimplemented reports whether err says the endpoint has no such
// operation: an emulator, never AWS. AWS answers an unknown resource
// with its own NotFound code, which the caller tests first; a 404 with
// no code or an UnknownOperation code comes only from endpoints that do
// not implement the call.
func isUnimplemented(err error) bool {
	code := errorCode(err)
	if strings.Contains(code, "UnknownOperation") {
		return true
	}
	st := httpStatus(err)
	return (st == http.StatusNotFound || st == http.StatusNotImplemented) && !strings.Contains(code, "NotFound") && !strings.HasPrefix(code, "NoSuch")
}

// brief shortens an SDK error for a finding: the operation and the
// service's answer, without the request ids.
func brief(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() != "" {
		if msg := ae.ErrorMessage(); msg != "" {
			return ae.ErrorCode() + ": " + msg
		}
		return ae.ErrorCode()
	}
	if st := httpStatus(err); st != 0 {
		return fmt.Sprintf("HTTP %d", st)
	}
	// A request that got no response: the transport's error says why,
	// without the SDK's wrapping.
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Error()
	}
	return err.Error()
}
