package preflight

import (
	"crypto"
	"time"
)

// Plan is what the worker is configured to use, as the checks need it.
// Field names a finding's fix refers to are config paths, so that the
// operator knows which setting to change.
type Plan struct {
	// Region is the AWS region the clients use.
	Region string
	// Schedules are the queues to check.
	Schedules []Schedule
	// Ledger is where delivery records are written: probed with a
	// conditional write, a read of a missing key and a delete.
	Ledger Location
	// Reports is where report objects live: probed with a read of a
	// missing key. A zero Bucket skips the probe.
	Reports Location
	// KeyRecords is where the CloudFront signer records key expiries:
	// probed with a read of a missing key. A zero Bucket skips it.
	KeyRecords Location
	// From is the sender address, as configured ("Name <addr>" or addr).
	From string
	// ConfigurationSet is the SES configuration set; "" skips its check.
	ConfigurationSet string
	// CloudFront is the distribution links go through; nil skips the
	// CloudFront checks.
	CloudFront *CloudFrontPlan
}

// Schedule is one schedule's queues and timing.
type Schedule struct {
	// Name is the schedule's name.
	Name string
	// Field is the schedule's config path, e.g. "schedules[0]".
	Field string
	// QueueURL and DeadLetterURL are the configured queue URLs.
	QueueURL, DeadLetterURL string
	// VisibilityTimeout is what the worker sets on each receive.
	VisibilityTimeout time.Duration
	// Budget bounds a run.
	Budget time.Duration
	// Next returns the schedule's next run after t, or the zero time if
	// there is none; nil when the schedule has no cron spec (it runs
	// when something outside, a CronJob say, runs drain).
	Next func(t time.Time) time.Time
	// IngestEvery is, for a digest schedule, how often serve moves its
	// queue into the pending store (schedules[].ingest_every); 0 for
	// mode each. The queue then needs to keep messages only that long.
	IngestEvery time.Duration
}

// Location is an S3 bucket and key prefix.
type Location struct {
	Bucket string
	Prefix string
	// Field is the config path of the bucket setting, e.g.
	// "ledger.bucket".
	Field string
}

// CloudFrontPlan is the distribution and keys that signed links use.
type CloudFrontPlan struct {
	// DistributionID is the distribution's id; "" skips the origin
	// check.
	DistributionID string
	// Domain is links.cloudfront.domain.
	Domain string
	// Bucket is the bucket the distribution must serve (reports.bucket);
	// "" skips the origin check.
	Bucket string
	// OriginPath is the origin path the configuration expects.
	OriginPath string
	// Keys are the configured key ids with the public halves of their
	// private keys.
	Keys []Key
}

// Key is a CloudFront public key id and the public half of the private
// key configured for it.
type Key struct {
	ID     string
	Public crypto.PublicKey
	// KMSKeyID names the KMS key whose public key is compared, in place
	// of Public, for a key in KMS.
	KMSKeyID string
}
