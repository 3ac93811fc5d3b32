// Package iam declares, once, the AWS permissions reportmailer needs:
// per command, which IAM actions on which resources. The policy that
// `reportmailer iam` prints, deploy/iam-policy.json, the README's list
// and the least-privilege tests (internal/awsproxy) all come from [For].
//
// The declaration follows the calls the code makes:
//
//   - worker/queue: ReceiveMessage, DeleteMessage(Batch),
//     ChangeMessageVisibility(Batch) and GetQueueAttributes (the check
//     before a run) on a schedule's queue; SendMessage and
//     GetQueueAttributes on its dead-letter queue. SQS authorises a batch call by its
//     single action, so there is no sqs:DeleteMessageBatch.
//   - worker/sesevents: ReceiveMessage and DeleteMessage(Batch) on the
//     queue SES's sending events are published to, when one is set.
//   - worker/store: HeadObject on reports (authorised by s3:GetObject);
//     the ledger's records, the halt record (halt.json), serve's slot
//     leases, digests' pending events and the unreadable ones a slot
//     quarantines (Put, Get, Delete and a List under the ledger
//     prefix); the key-expiry records (Get, Put, and a
//     List for `keys`).
//   - worker/mail: ses:SendEmail as the sender identity, ses:GetAccount
//     for the quota.
//   - downloads: the ledger's records (Get, List) and the CloudFront
//     access log files (Get, List) under their prefix.
//   - revoke: the ledger's records (Get, List), and DescribeKeyValueStore,
//     UpdateKeys and ListKeys (for -prune) on the deny list's CloudFront
//     KeyValueStore.
//
// Every prefix the worker reads also gets s3:ListBucket, limited to that
// prefix: without it S3 answers a read of a missing key with 403
// AccessDenied instead of 404, and the worker cannot tell "no such
// report" (or "no record yet") from "not allowed".
package iam

import (
	"cmp"
	"fmt"
	"net/mail"
	"slices"
	"strings"

	"github.com/reportmailer/reportmailer/worker/event"
)

// Version is the IAM policy language version every Document uses.
const Version = "2012-10-17"

// Statement is one statement of an IAM policy.
type Statement struct {
	Sid       string                         `json:"Sid,omitempty"`
	Effect    string                         `json:"Effect"`
	Action    []string                       `json:"Action"`
	Resource  []string                       `json:"Resource"`
	Condition map[string]map[string][]string `json:"Condition,omitempty"`
}

// Document is an IAM policy document.
type Document struct {
	Version   string      `json:"Version"`
	Statement []Statement `json:"Statement"`
}

// Command is a reportmailer command, named as on the command line.
type Command string

// The commands that call AWS. Each gets what it calls and no more.
const (
	// Drain is `reportmailer drain`: receive, check reports, sign, send,
	// record, settle.
	Drain Command = "drain"
	// Serve is `reportmailer serve`: drain on a schedule, plus a lease
	// per schedule slot under the ledger prefix.
	Serve Command = "serve"
	// Keys is `reportmailer keys`: reads the key-expiry records.
	Keys Command = "keys"
	// Check is `reportmailer check -aws`, the preflight of the live
	// account: harmless reads of every queue, S3 prefix, SES setting
	// and, with CloudFront, the distribution and its public keys, plus
	// a probe object put and deleted under the ledger prefix.
	Check Command = "check"
	// DLQList is `reportmailer dlq list`: reads each dead-letter queue
	// and makes what it read visible again.
	DLQList Command = "dlq-list"
	// DLQDelete is `reportmailer dlq delete`: reads each dead-letter
	// queue and deletes the messages of the events named.
	DLQDelete Command = "dlq-delete"
	// Redrive is `reportmailer redrive`: moves dead letters back to
	// their queue, message by message (receive, send, delete) or with
	// an SQS message move task.
	Redrive Command = "redrive"
	// Resend is `reportmailer resend`: drain's sending for one event,
	// found in a dead-letter queue, which it then deletes.
	Resend Command = "resend"
	// History is `reportmailer history`: reads the run records under
	// the ledger prefix.
	History Command = "history"
	// Status is `reportmailer status`: queue depths, the last run, the
	// SES quota and the key records.
	Status Command = "status"
	// KeysRotate is `reportmailer keys rotate`, an operator's command:
	// creates a key (in KMS, or a file), uploads its public key to
	// CloudFront, makes the distribution trust it through a new key
	// group, and schedules it in the key ring's state.
	KeysRotate Command = "keys-rotate"
	// KeysRetire is `reportmailer keys retire`, an operator's command:
	// stops the distribution trusting a key and deletes its public key,
	// after counting the deliveries whose links it would break.
	KeysRetire Command = "keys-retire"
	// Downloads is `reportmailer downloads`: reads the ledger's records
	// and the distribution's access log files.
	Downloads Command = "downloads"
	// Revoke is `reportmailer revoke`: reads the ledger's records and
	// adds tokens to (or, -undo and -prune, deletes them from) the deny
	// list in a CloudFront KeyValueStore.
	Revoke Command = "revoke"
)

// The commands that call no AWS API: For gives them nothing.
const (
	Preview     Command = "preview"
	Sign        Command = "sign"
	Verify      Command = "verify"
	ConfigCheck Command = "config-check"
)

// Commands returns every command For knows, those that call AWS first.
func Commands() []Command {
	return []Command{Drain, Serve, Keys, Check, DLQList, DLQDelete, Redrive, Resend, History, Status, Downloads, Revoke, KeysRotate, KeysRetire, Preview, Sign, Verify, ConfigCheck}
}

// ParseCommands reads a comma-separated list of command names, such as
// "drain,serve". An unknown name is an error that lists the known ones.
func ParseCommands(s string) ([]Command, error) {
	var out []Command
	for name := range strings.SplitSeq(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		c := Command(name)
		if !slices.Contains(Commands(), c) {
			known := make([]string, 0, len(Commands()))
			for _, k := range Commands() {
				known = append(known, string(k))
			}
			return nil, fmt.Errorf("unknown command %q (known: %s)", name, strings.Join(known, ", "))
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no command in %q", s)
	}
	return out, nil
}

// QueuePair is one schedule's queue and its dead-letter queue, as queue
// URLs.
type QueuePair struct {
	URL           string
	DeadLetterURL string
}

// Inputs are the names a policy is written for: plain values, so that
// this package needs no config. An empty Region or Account becomes "*"
// in the ARNs that need them.
type Inputs struct {
	// Region is where the worker runs: its SES region, and the region of
	// queue URLs that do not name one (local emulators).
	Region string
	// Account is the AWS account id, for SES and CloudFront ARNs.
	Account string

	// ReportsBucket is the one bucket reports may live in, and
	// ReportsPrefix the key prefix they have there ("" for any key).
	ReportsBucket, ReportsPrefix string
	// StateBucket holds the ledger (records and slot leases under
	// LedgerPrefix) and the key-expiry records (under KeyRecordsPrefix).
	StateBucket, LedgerPrefix, KeyRecordsPrefix string

	// Queues are the schedules' queues.
	Queues []QueuePair
	// EventsQueueURL is the queue SES's sending events arrive on
	// (ses_events.queue_url), or "" when none is read.
	EventsQueueURL string

	// From is the sender address, e.g. "Reports <reports@example.com>":
	// SES authorises a send as the address's identity or its domain's.
	From string
	// ConfigurationSet is the SES configuration set emails are sent
	// with, if any: SendEmail then needs it as a resource too.
	ConfigurationSet string

	// CloudFront is set when links are CloudFront signed URLs: the worker
	// then keeps key-expiry records, and check reads the distribution.
	CloudFront bool
	// DistributionID is the CloudFront distribution check reads; ""
	// allows any distribution of the account.
	DistributionID string
	// KMS is set when a CloudFront key is in AWS KMS: the worker then
	// signs with kms:Sign, on the keys tagged KMSTagKey=KMSTagValue.
	KMS bool
	// AccessLogsBucket and AccessLogsPrefix are where the
	// distribution's standard logs are, for downloads.
	AccessLogsBucket, AccessLogsPrefix string
	// KeyValueStoreARN is the CloudFront KeyValueStore revoke writes
	// the deny list to.
	KeyValueStoreARN string
}

// KMSTagKey and KMSTagValue tag the KMS keys reportmailer signs with:
// `keys rotate -kms` tags the keys it creates, and the worker's
// kms:Sign is granted on the keys so tagged only, so a key made by a
// later rotation needs no new policy. Tag a KMS key made by hand too.
const (
	KMSTagKey   = "reportmailer"
	KMSTagValue = "cloudfront-signing"
)

// Check reports the first input that For cannot write a statement for,
// naming the field and the value: an unreadable queue URL, or a bucket
// or sender the commands need but which is empty.
func (in Inputs) Check(cmds ...Command) error {
	sending := slices.Contains(cmds, Drain) || slices.Contains(cmds, Serve)
	if (sending || slices.Contains(cmds, Check)) && in.ReportsBucket == "" {
		return fmt.Errorf("ReportsBucket is empty: the policy must name the bucket reports live in")
	}
	if (sending || slices.Contains(cmds, Check) || (in.CloudFront && slices.Contains(cmds, Keys))) && in.StateBucket == "" {
		return fmt.Errorf("StateBucket is empty: the policy must name the ledger's bucket")
	}
	if sending || slices.Contains(cmds, Check) {
		if len(in.Queues) == 0 {
			return fmt.Errorf("no queues: the policy must name each schedule's queue")
		}
		if _, err := mail.ParseAddress(in.From); err != nil {
			return fmt.Errorf("From %q is not an email address: %v", in.From, err)
		}
	}
	if slices.Contains(cmds, Downloads) && in.AccessLogsBucket == "" {
		return fmt.Errorf("AccessLogsBucket is empty: the policy must name the bucket CloudFront's access logs are in")
	}
	if slices.Contains(cmds, Revoke) && in.KeyValueStoreARN == "" {
		return fmt.Errorf("KeyValueStoreARN is empty: the policy must name the deny list's KeyValueStore")
	}
	if in.EventsQueueURL != "" {
		if _, err := QueueARN(in.EventsQueueURL, in.Region); err != nil {
			return err
		}
	}
	for _, q := range in.Queues {
		if _, err := QueueARN(q.URL, in.Region); err != nil {
			return err
		}
		if q.DeadLetterURL != "" {
			if _, err := QueueARN(q.DeadLetterURL, in.Region); err != nil {
				return err
			}
		}
	}
	return nil
}

// Statement ids, one per group of resources. Each command adds its
// actions to the groups it touches, so a combined policy has one
// statement per group.
const (
	sidQueues           = "Queues"
	sidDeadLetterQueues = "DeadLetterQueues"
	sidSESEvents        = "SESEvents"
	sidReadReports      = "ReadReports"
	sidListReports      = "ListReports"
	sidLedger           = "Ledger"
	sidListLedger       = "ListLedger"
	sidKeyRecords       = "KeyRecords"
	sidListKeyRecords   = "ListKeyRecords"
	sidSendingIdentity  = "SendingIdentity"
	sidConfigurationSet = "ConfigurationSet"
	sidSendQuota        = "SendQuota"
	sidDistribution     = "Distribution"
	sidPublicKeys       = "PublicKeys"
	sidKeyGroups        = "KeyGroups"
	sidSigningKeys      = "SigningKeys"
	sidCreateKeys       = "CreateSigningKeys"
	sidAccessLogs       = "AccessLogs"
	sidListAccessLogs   = "ListAccessLogs"
	sidDenyList         = "DenyList"
)

// For returns the least-privilege policy for the commands: one Allow
// statement per group of resources, statements sorted by Sid, actions,
// resources and condition values sorted and without duplicates, so the
// same inputs always give the same bytes. Commands that call no AWS API
// add nothing, and so does an unknown one (ParseCommands refuses those).
// For trusts its inputs: a statement whose resource is missing (an empty
// bucket, an unreadable queue URL) is left out, so call [Inputs.Check]
// first.
func For(in Inputs, cmds ...Command) Document {
	b := builder{in: in, groups: map[string]*Statement{}}
	for _, c := range cmds {
		switch c {
		case Drain, Serve:
			b.drain()
		case Keys:
			b.keys()
		case Check:
			b.check()
		case DLQList:
			b.add(sidDeadLetterQueues, b.queues(true), nil, "sqs:ReceiveMessage", "sqs:ChangeMessageVisibility")
		case DLQDelete:
			b.add(sidDeadLetterQueues, b.queues(true), nil, "sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage")
		case Redrive:
			// A message move task needs, on its source, what a move by
			// hand does, and sqs:SendMessage on the destination.
			b.add(sidDeadLetterQueues, b.queues(true), nil, "sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage",
				"sqs:GetQueueAttributes", "sqs:StartMessageMoveTask", "sqs:ListMessageMoveTasks")
			b.add(sidQueues, b.queues(false), nil, "sqs:SendMessage", "sqs:GetQueueAttributes")
		case Resend:
			b.drain()
			b.add(sidDeadLetterQueues, b.queues(true), nil, "sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage")
		case History:
			b.readPrefix(sidLedger, sidListLedger, b.in.StateBucket, b.in.LedgerPrefix)
		case Status:
			b.add(sidQueues, b.queues(false), nil, "sqs:GetQueueAttributes")
			b.add(sidDeadLetterQueues, b.queues(true), nil, "sqs:GetQueueAttributes")
			b.readPrefix(sidLedger, sidListLedger, b.in.StateBucket, b.in.LedgerPrefix)
			b.keys()
			b.add(sidSendQuota, []string{"*"}, nil, "ses:GetAccount")
		case KeysRotate:
			b.rotate()
		case KeysRetire:
			b.retire()
		case Downloads:
			b.readPrefix(sidLedger, sidListLedger, b.in.StateBucket, b.in.LedgerPrefix)
			b.readPrefix(sidAccessLogs, sidListAccessLogs, b.in.AccessLogsBucket, b.in.AccessLogsPrefix)
		case Revoke:
			b.readPrefix(sidLedger, sidListLedger, b.in.StateBucket, b.in.LedgerPrefix)
			if b.in.KeyValueStoreARN != "" {
				b.add(sidDenyList, []string{b.in.KeyValueStoreARN}, nil,
					"cloudfront-keyvaluestore:DescribeKeyValueStore", "cloudfront-keyvaluestore:UpdateKeys", "cloudfront-keyvaluestore:ListKeys")
			}
		}
	}
	return b.document()
}

type builder struct {
	in     Inputs
	groups map[string]*Statement
}

// add puts actions on the statement sid, creating it with resources
// (and condition) on first use.
func (b *builder) add(sid string, resources []string, cond map[string]map[string][]string, actions ...string) {
	if len(resources) == 0 {
		return
	}
	s := b.groups[sid]
	if s == nil {
		s = &Statement{Sid: sid, Effect: "Allow", Resource: resources, Condition: cond}
		b.groups[sid] = s
	}
	s.Action = append(s.Action, actions...)
}

func (b *builder) document() Document {
	d := Document{Version: Version, Statement: []Statement{}}
	for _, s := range b.groups {
		s.Action = sortedUnique(s.Action)
		s.Resource = sortedUnique(s.Resource)
		for _, op := range s.Condition {
			for k, v := range op {
				op[k] = sortedUnique(v)
			}
		}
		d.Statement = append(d.Statement, *s)
	}
	slices.SortFunc(d.Statement, func(a, b Statement) int { return cmp.Compare(a.Sid, b.Sid) })
	return d
}

func sortedUnique(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

func (b *builder) drain() {
	in := b.in
	// GetQueueAttributes: a run first checks that its queue and DLQ exist.
	b.add(sidQueues, b.queues(false), nil, "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes")
	b.add(sidDeadLetterQueues, b.queues(true), nil, "sqs:SendMessage", "sqs:GetQueueAttributes")
	// A run first reads SES's events and deletes those it settled or
	// does not need; what it cannot read stays for the queue's redrive.
	if in.EventsQueueURL != "" {
		if arn, err := QueueARN(in.EventsQueueURL, in.Region); err == nil {
			b.add(sidSESEvents, []string{Escape(arn)}, nil, "sqs:ReceiveMessage", "sqs:DeleteMessage")
		}
	}
	b.readPrefix(sidReadReports, sidListReports, in.ReportsBucket, in.ReportsPrefix)
	// Ledger records, the halt record (LedgerPrefix + "halt.json"),
	// serve's slot leases (LedgerPrefix + "slots/") and the events
	// digests hold for their slot (LedgerPrefix + "pending/", listed).
	b.readPrefix(sidLedger, sidListLedger, in.StateBucket, in.LedgerPrefix, "s3:PutObject", "s3:DeleteObject")
	if in.CloudFront {
		b.readPrefix(sidKeyRecords, sidListKeyRecords, in.StateBucket, in.KeyRecordsPrefix, "s3:PutObject")
	}
	b.add(sidSendingIdentity, b.identities(), nil, "ses:SendEmail")
	if in.ConfigurationSet != "" {
		b.add(sidConfigurationSet, []string{b.sesARN("configuration-set/" + in.ConfigurationSet)}, nil, "ses:SendEmail")
	}
	b.add(sidSendQuota, []string{"*"}, nil, "ses:GetAccount")
	if in.CloudFront && in.KMS {
		b.signingKeys("kms:Sign", "kms:GetPublicKey")
	}
}

func (b *builder) keys() {
	if b.in.CloudFront {
		b.readPrefix(sidKeyRecords, sidListKeyRecords, b.in.StateBucket, b.in.KeyRecordsPrefix)
		if b.in.KMS {
			b.signingKeys("kms:GetPublicKey")
		}
	}
}

// signingKeys grants actions on the KMS keys tagged as reportmailer's
// signing keys.
func (b *builder) signingKeys(actions ...string) {
	arn := "arn:" + Partition(b.in.Region) + ":kms:" + or(b.in.Region) + ":" + or(b.in.Account) + ":key/*"
	cond := map[string]map[string][]string{"StringEquals": {"aws:ResourceTag/" + KMSTagKey: {KMSTagValue}}}
	b.add(sidSigningKeys, []string{arn}, cond, actions...)
}

func (b *builder) distribution(actions ...string) {
	dist := "distribution/*"
	if b.in.DistributionID != "" {
		dist = "distribution/" + Escape(b.in.DistributionID)
	}
	b.add(sidDistribution, []string{"arn:" + Partition(b.in.Region) + ":cloudfront::" + or(b.in.Account) + ":" + dist}, nil, actions...)
}

// rotate is `keys rotate`: the ring's state next to the key records,
// the new key, its public key and a key group in CloudFront, and the
// distribution's trusted key groups. CloudFront's public keys and key
// groups take no resource-level permission.
func (b *builder) rotate() {
	if !b.in.CloudFront {
		return
	}
	b.readPrefix(sidKeyRecords, sidListKeyRecords, b.in.StateBucket, b.in.KeyRecordsPrefix, "s3:PutObject")
	b.distribution("cloudfront:GetDistribution", "cloudfront:GetDistributionConfig", "cloudfront:UpdateDistribution")
	b.add(sidPublicKeys, []string{"*"}, nil, "cloudfront:CreatePublicKey", "cloudfront:ListPublicKeys")
	b.add(sidKeyGroups, []string{"*"}, nil, "cloudfront:CreateKeyGroup", "cloudfront:GetKeyGroup", "cloudfront:ListKeyGroups")
	// CreateKey with tags needs kms:TagResource as well.
	b.add(sidCreateKeys, []string{"*"}, nil, "kms:CreateKey", "kms:TagResource")
	b.signingKeys("kms:GetPublicKey")
}

// retire is `keys retire`: the ring's state and the key records, the
// ledger's event index (listed, to count the deliveries a forced
// retirement breaks), the distribution's trusted key groups, and the
// key group and public key it deletes.
func (b *builder) retire() {
	if !b.in.CloudFront {
		return
	}
	b.readPrefix(sidKeyRecords, sidListKeyRecords, b.in.StateBucket, b.in.KeyRecordsPrefix, "s3:PutObject")
	b.readPrefix(sidLedger, sidListLedger, b.in.StateBucket, b.in.LedgerPrefix)
	b.distribution("cloudfront:GetDistribution", "cloudfront:GetDistributionConfig", "cloudfront:UpdateDistribution")
	b.add(sidPublicKeys, []string{"*"}, nil, "cloudfront:DeletePublicKey", "cloudfront:GetPublicKey")
	b.add(sidKeyGroups, []string{"*"}, nil, "cloudfront:CreateKeyGroup", "cloudfront:DeleteKeyGroup", "cloudfront:GetKeyGroup", "cloudfront:ListKeyGroups")
}

func (b *builder) check() {
	in := b.in
	b.add(sidQueues, b.queues(false), nil, "sqs:GetQueueUrl", "sqs:GetQueueAttributes")
	b.add(sidDeadLetterQueues, b.queues(true), nil, "sqs:GetQueueUrl", "sqs:GetQueueAttributes")
	// A missing probe key must answer 404 under each prefix the worker
	// reads; the probe object is put and deleted under the ledger prefix.
	b.readPrefix(sidReadReports, sidListReports, in.ReportsBucket, in.ReportsPrefix)
	b.readPrefix(sidLedger, sidListLedger, in.StateBucket, in.LedgerPrefix, "s3:PutObject", "s3:DeleteObject")
	if in.CloudFront {
		b.readPrefix(sidKeyRecords, sidListKeyRecords, in.StateBucket, in.KeyRecordsPrefix)
		dist := "distribution/*"
		if in.DistributionID != "" {
			dist = "distribution/" + Escape(in.DistributionID)
		}
		b.add(sidDistribution, []string{"arn:" + Partition(in.Region) + ":cloudfront::" + or(in.Account) + ":" + dist}, nil, "cloudfront:GetDistributionConfig")
		// GetPublicKey supports no resource-level permission.
		b.add(sidPublicKeys, []string{"*"}, nil, "cloudfront:GetPublicKey")
		if in.KMS {
			b.signingKeys("kms:GetPublicKey") // compared with CloudFront's
		}
	}
	b.add(sidSendingIdentity, b.identities(), nil, "ses:GetEmailIdentity")
	if in.ConfigurationSet != "" {
		b.add(sidConfigurationSet, []string{b.sesARN("configuration-set/" + in.ConfigurationSet)}, nil, "ses:GetConfigurationSet")
	}
	b.add(sidSendQuota, []string{"*"}, nil, "ses:GetAccount")
}

// Store is a kind of object the worker keeps under an S3 prefix.
type Store int

// The stores the worker reads, each with its own s3:ListBucket statement.
const (
	// StoreReports is the reports, under reports.prefix.
	StoreReports Store = iota
	// StoreLedger is the delivery ledger and slot leases, under the
	// ledger prefix.
	StoreLedger
	// StoreKeyRecords is the CloudFront key-expiry records.
	StoreKeyRecords
)

// ListStatement returns the statement For declares to grant
// s3:ListBucket for store's objects under prefix in bucket: on the
// bucket, with an s3:prefix condition for that prefix alone (none for
// ""), so that a read of a missing key there answers 404 rather than
// 403. It is the statement `reportmailer iam` prints for that store,
// Sid included, so a fix can quote it.
func ListStatement(region string, store Store, bucket, prefix string) Statement {
	sid, listSid := sidReadReports, sidListReports
	switch store {
	case StoreLedger:
		sid, listSid = sidLedger, sidListLedger
	case StoreKeyRecords:
		sid, listSid = sidKeyRecords, sidListKeyRecords
	}
	b := builder{in: Inputs{Region: region}, groups: map[string]*Statement{}}
	b.readPrefix(sid, listSid, bucket, prefix)
	for _, s := range b.document().Statement {
		if s.Sid == listSid {
			return s
		}
	}
	return Statement{}
}

// readPrefix grants s3:GetObject (plus extra actions) on the objects
// under prefix, and s3:ListBucket on the bucket for that prefix only,
// so that a missing key answers 404 rather than 403.
func (b *builder) readPrefix(sid, listSid, bucket, prefix string, extra ...string) {
	if bucket == "" {
		return
	}
	p := Partition(b.in.Region)
	b.add(sid, []string{ObjectARN(p, bucket, Escape(prefix)+"*")}, nil, append([]string{"s3:GetObject"}, extra...)...)
	var cond map[string]map[string][]string
	if prefix != "" {
		cond = map[string]map[string][]string{"StringLike": {"s3:prefix": {Escape(prefix) + "*"}}}
	}
	b.add(listSid, []string{BucketARN(p, bucket)}, cond, "s3:ListBucket")
}

// queues returns the ARNs of the source queues, or of the dead-letter
// queues.
func (b *builder) queues(deadLetter bool) []string {
	var arns []string
	for _, q := range b.in.Queues {
		u := q.URL
		if deadLetter {
			u = q.DeadLetterURL
		}
		if u == "" {
			continue
		}
		if arn, err := QueueARN(u, b.in.Region); err == nil {
			arns = append(arns, Escape(arn))
		}
	}
	return arns
}

// identities returns the SES identity ARNs a send from in.From may be
// authorised as: the address's own identity and its domain's.
func (b *builder) identities() []string {
	addr, domain, ok := SenderIdentities(b.in.From)
	if !ok {
		return nil
	}
	return []string{b.sesARN("identity/" + addr), b.sesARN("identity/" + domain)}
}

func (b *builder) sesARN(resource string) string {
	return SESARN(b.in.Region, or(b.in.Account), Escape(resource))
}

// SESARN returns the ARN of an SES resource such as "identity/example.com"
// in region and account.
func SESARN(region, account, resource string) string {
	return "arn:" + Partition(region) + ":ses:" + or(region) + ":" + account + ":" + resource
}

// SenderIdentities returns the two SES identities a sender address may be
// verified as: the address itself and its domain. SES identities are
// ASCII, so an internationalized domain is given in Punycode
// ("bücher.example" as "xn--bcher-kva.example"), the form the email is
// sent with and the identity is created with. Domains are not case
// sensitive and are given in lower case; the local part is kept as
// written. It reports false for a sender that does not parse or whose
// domain is not a valid internationalized domain name.
func SenderIdentities(from string) (address, domain string, ok bool) {
	a, err := mail.ParseAddress(from)
	if err != nil {
		return "", "", false
	}
	at := strings.LastIndexByte(a.Address, '@')
	if at < 0 {
		return "", "", false
	}
	domain, err = event.ASCIIDomain(a.Address[at+1:])
	if err != nil {
		return "", "", false
	}
	domain = strings.ToLower(domain)
	return a.Address[:at+1] + domain, domain, true
}

// or returns s, or "*" when s is empty.
func or(s string) string {
	if s == "" {
		return "*"
	}
	return s
}
