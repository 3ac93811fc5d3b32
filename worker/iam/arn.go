package iam

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
)

var (
	accountRE   = regexp.MustCompile(`^[0-9]{12}$`)
	queueNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}(\.fifo)?$`)
	regionRE    = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
)

// QueueARN returns the ARN of the SQS queue at queueURL.
//
// AWS queue URLs name their region (https://sqs.REGION.amazonaws.com/
// ACCOUNT/NAME, the legacy https://REGION.queue.amazonaws.com/... and
// https://queue.amazonaws.com/... for us-east-1, and the .amazonaws.com.cn
// and .api.aws forms), and that region wins over the region argument.
// Any other host is taken for a local emulator
// (http://127.0.0.1:PORT/ACCOUNT/NAME) and gets region, which must then
// be set.
func QueueARN(queueURL, region string) (string, error) {
	u, err := url.Parse(queueURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("queue URL %q is not an http(s) URL", queueURL)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || !accountRE.MatchString(parts[0]) || !queueNameRE.MatchString(parts[1]) {
		return "", fmt.Errorf("queue URL %q: want a path /ACCOUNT/NAME (12-digit account id, queue name)", queueURL)
	}
	if r, ok := urlRegion(u.Hostname()); ok {
		region = r
	} else if region == "" {
		return "", fmt.Errorf("queue URL %q names no region: give the region", queueURL)
	}
	return "arn:" + Partition(region) + ":sqs:" + region + ":" + parts[0] + ":" + parts[1], nil
}

// urlRegion returns the region an AWS SQS host names.
func urlRegion(host string) (string, bool) {
	host = strings.ToLower(host)
	if net.ParseIP(host) != nil {
		return "", false
	}
	var rest string
	for _, suffix := range []string{".amazonaws.com", ".amazonaws.com.cn", ".api.aws"} {
		if r, ok := strings.CutSuffix(host, suffix); ok {
			rest = r
			break
		}
	}
	if rest == "" {
		return "", false
	}
	if rest == "queue" {
		return "us-east-1", true
	}
	for label := range strings.SplitSeq(rest, ".") {
		if regionRE.MatchString(label) {
			return label, true
		}
	}
	return "", false
}

// partition returns the ARN partition of region.
func Partition(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	case strings.HasPrefix(region, "us-isob-"):
		return "aws-iso-b"
	case strings.HasPrefix(region, "us-iso-"):
		return "aws-iso"
	}
	return "aws"
}

// BucketARN returns the ARN of an S3 bucket in partition p.
func BucketARN(p, bucket string) string { return "arn:" + p + ":s3:::" + bucket }

// ObjectARN returns the ARN of the S3 object (or, with wildcards, the
// objects) key in bucket, in partition p. key is used as given: escape
// literal '*', '?' and '$' with [Escape] first.
func ObjectARN(p, bucket, key string) string { return "arn:" + p + ":s3:::" + bucket + "/" + key }

// escaper writes IAM's special characters as the policy variables that
// stand for them, so that a '*' in a prefix matches only a '*'.
var escaper = strings.NewReplacer("$", "${$}", "*", "${*}", "?", "${?}")

// Escape makes s literal inside an IAM resource or StringLike pattern:
// '*', '?' and '$' become ${*}, ${?} and ${$}.
func Escape(s string) string { return escaper.Replace(s) }
