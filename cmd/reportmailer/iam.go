package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker/iam"
)

// iamCommandsDefault are the commands `reportmailer iam` writes a policy
// for when -command is not given: what a deployment runs.
const iamCommandsDefault = "drain,serve,keys,check"

func (m *Main) iam(_ context.Context, args []string) error {
	fs := m.newFlagSet("iam", "iam -config FILE [-command drain,serve,keys,check] [-region REGION] [-account ID]")
	configPath := fs.String("config", "", "config file (default $REPORTMAILER_CONFIG)")
	commands := fs.String("command", iamCommandsDefault, "commands the policy is for, comma-separated")
	region := fs.String("region", "", "region the worker runs in (default: the queue URLs' region, else $AWS_REGION)")
	account := fs.String("account", "", "AWS account id (default: the queue URLs' account)")
	if err := parse(fs, args); err != nil {
		return err
	}
	cmds, err := iam.ParseCommands(*commands)
	if err != nil {
		return usageError("iam: -command: %v", err)
	}
	c, err := m.loadConfig(*configPath)
	if err != nil {
		return err
	}
	if *region == "" {
		*region = queueRegion(c)
	}
	if *region == "" {
		*region = m.Getenv("AWS_REGION")
	}
	if *region == "" {
		return usageError("iam: no region: the queue URLs name none; give -region or set AWS_REGION")
	}
	in, err := iamInputs(c, *region, *account, cmds...)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(iam.For(in, cmds...), "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(m.Stdout, "%s\n", b)
	return err
}

// iamInputs is the one place a config becomes the names an IAM policy is
// written for. account "" is taken from the queue URLs. The inputs are
// checked for cmds, or, without any, for every command a deployment
// runs (drain, serve, keys, check).
func iamInputs(c *config.Config, region, account string, cmds ...iam.Command) (iam.Inputs, error) {
	if c.Reports.Bucket == "" {
		return iam.Inputs{}, fmt.Errorf("iam: reports.bucket is not set: the policy must name the one bucket reports live in")
	}
	in := iam.Inputs{
		Region:           region,
		Account:          account,
		ReportsBucket:    c.Reports.Bucket,
		ReportsPrefix:    c.Reports.Prefix,
		StateBucket:      c.Ledger.Bucket,
		LedgerPrefix:     c.Ledger.Prefix,
		KeyRecordsPrefix: keyRecordsPrefix(c),
		From:             c.Sender.From,
		ConfigurationSet: c.Sender.ConfigurationSet,
		CloudFront:       c.Links.CloudFront != nil,
		EventsQueueURL:   c.SESEvents.QueueURL,
	}
	if cf := c.Links.CloudFront; cf != nil {
		in.DistributionID = cf.DistributionID
		in.AccessLogsBucket, in.AccessLogsPrefix = cf.AccessLogs.Bucket, cf.AccessLogs.Prefix
		in.KeyValueStoreARN = cf.KeyValueStoreARN
	}
	for _, s := range c.Schedules {
		in.Queues = append(in.Queues, iam.QueuePair{URL: s.QueueURL, DeadLetterURL: s.DeadLetterQueueURL})
		if in.Account == "" {
			if arn, err := iam.QueueARN(s.QueueURL, region); err == nil {
				in.Account = strings.Split(arn, ":")[4]
			}
		}
	}
	if len(cmds) == 0 {
		cmds = []iam.Command{iam.Drain, iam.Serve, iam.Keys, iam.Check}
	}
	// The config's names for what Check would call by its own.
	if slices.Contains(cmds, iam.Downloads) && in.AccessLogsBucket == "" {
		return iam.Inputs{}, fmt.Errorf("iam: links.cloudfront.access_logs.bucket is not set: the downloads policy must name the bucket CloudFront's access logs are delivered to")
	}
	if slices.Contains(cmds, iam.Revoke) && in.KeyValueStoreARN == "" {
		return iam.Inputs{}, fmt.Errorf("iam: links.cloudfront.key_value_store_arn is not set: the revoke policy must name the deny list's KeyValueStore")
	}
	if err := in.Check(cmds...); err != nil {
		return iam.Inputs{}, fmt.Errorf("iam: %w", err)
	}
	return in, nil
}

// queueRegion is the region the first AWS queue URL names, or "".
func queueRegion(c *config.Config) string {
	for _, s := range c.Schedules {
		if arn, err := iam.QueueARN(s.QueueURL, ""); err == nil {
			return strings.Split(arn, ":")[3]
		}
	}
	return ""
}

// keyRecordsPrefix is where the key-expiry records live; keyExpiries
// builds its store with the same prefix.
func keyRecordsPrefix(c *config.Config) string {
	if cf := c.Links.CloudFront; cf != nil && cf.KeyRecordsPrefix != "" {
		return cf.KeyRecordsPrefix
	}
	return config.KeyRecordsPrefixDefault
}
