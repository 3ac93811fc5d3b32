package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/preflight"
	"github.com/reportmailer/reportmailer/worker/transport"
)

// checkTimeoutDefault bounds check -aws: a few dozen calls, each
// retried by the SDK, should never take longer.
const checkTimeoutDefault = 2 * time.Minute

const checkSynopsis = `check -config FILE [-aws [-json] [-timeout D]]

Without -aws, check validates the config file without touching AWS, as
"config check" does. With -aws it then checks the live account with
harmless calls and prints one line per check:

  ok|warn|FAIL  AREA  WHAT: DETAIL  (HOW TO FIX)

It reads every schedule's queue and dead-letter queue (RedrivePolicy,
visibility timeout, retention against the cron spec), writes a probe
object under ledger.prefix with If-None-Match: * (twice: the second must
answer 412) and deletes it, reads a key that cannot exist under each S3
prefix the worker reads (it must answer 404, not 403: 403 means
s3:ListBucket is missing), reads the SES account, sender identity, DKIM
and configuration set, and, with links.cloudfront, the distribution's
origins and the public key of each key id. Exit 0 when nothing FAILs
(warnings allowed), 1 otherwise, 2 on a bad command line.`

func (m *Main) check(ctx context.Context, args []string) error {
	fs := m.newFlagSet("check", checkSynopsis)
	configPath := fs.String("config", "", "config file (default $REPORTMAILER_CONFIG)")
	live := fs.Bool("aws", false, "also check the live AWS account (credentials, region and endpoints from the SDK's default chain)")
	asJSON := fs.Bool("json", false, "with -aws, print each check as a JSON object on its own line (area, name, status ok|warn|fail, detail, fix); the config summary goes to stderr")
	timeout := fs.Duration("timeout", checkTimeoutDefault, "with -aws, stop checking after this long")
	if err := parse(fs, args); err != nil {
		return err
	}
	var needAWS []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "json" || f.Name == "timeout" {
			needAWS = append(needAWS, "-"+f.Name)
		}
	})
	if !*live && len(needAWS) > 0 {
		return usageError("check: %s needs -aws", strings.Join(needAWS, " and "))
	}
	if *timeout <= 0 {
		return usageError("check: -timeout %s is not positive", *timeout)
	}

	// The offline check first, exactly as "config check" does it: a
	// config drain would refuse is not worth checking AWS for.
	offline := m
	if *asJSON {
		cp := *m
		cp.Stdout = m.Stderr
		offline = &cp
	}
	if err := offline.config(ctx, []string{"-config", *configPath}); err != nil || !*live {
		return err
	}
	c, err := m.loadConfig(*configPath)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("aws config: %w", err)
	}
	awsCfg.HTTPClient = transport.Wrap(awsCfg.HTTPClient)
	if awsCfg.Region == "" {
		return fmt.Errorf("aws config: no region: set AWS_REGION")
	}
	plan, err := checkPlan(c, awsCfg.Region)
	if err != nil {
		return err
	}
	ck := &preflight.Checker{
		SQS:  sqs.NewFromConfig(awsCfg),
		S3:   s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = c.S3.UsePathStyle }),
		SES:  sesv2.NewFromConfig(awsCfg),
		Plan: plan,
	}
	if plan.CloudFront != nil {
		ck.CloudFront = cloudfront.NewFromConfig(awsCfg)
		ck.KMS = kms.NewFromConfig(awsCfg, kmsOptions)
	}

	summaryTo := m.Stdout
	report := func(f preflight.Finding) { fmt.Fprintln(m.Stdout, f) }
	if *asJSON {
		summaryTo = m.Stderr
		enc := json.NewEncoder(m.Stdout)
		enc.SetEscapeHTML(false)
		report = func(f preflight.Finding) { enc.Encode(f) }
	} else {
		fmt.Fprintf(m.Stdout, "checking AWS in %s\n", awsCfg.Region)
	}
	sum := ck.Run(ctx, report)
	verdict := "passed"
	if sum.Fail > 0 {
		verdict = "FAILED"
	}
	fmt.Fprintf(summaryTo, "check %s: %d ok, %d warn, %d FAIL\n", verdict, sum.OK, sum.Warn, sum.Fail)
	if sum.Fail > 0 {
		return exitError{code: ExitFailure}
	}
	return nil
}

// checkPlan turns the config into what the checks need.
func checkPlan(c *config.Config, region string) (preflight.Plan, error) {
	p := preflight.Plan{
		Region:           region,
		Ledger:           preflight.Location{Bucket: c.Ledger.Bucket, Prefix: c.Ledger.Prefix, Field: "ledger.bucket"},
		Reports:          preflight.Location{Bucket: c.Reports.Bucket, Prefix: c.Reports.Prefix, Field: "reports.bucket"},
		From:             c.Sender.From,
		ConfigurationSet: c.Sender.ConfigurationSet,
	}
	for i, s := range c.Schedules {
		ps := preflight.Schedule{
			Name:              s.Name,
			Field:             fmt.Sprintf("schedules[%d]", i),
			QueueURL:          s.QueueURL,
			DeadLetterURL:     s.DeadLetterQueueURL,
			VisibilityTimeout: s.VisibilityTimeout,
			Budget:            s.Budget,
		}
		if s.Mode == string(worker.ModeDigest) {
			ps.IngestEvery = s.IngestEvery
		}
		if s.Cron != "" {
			loc := time.UTC
			if s.TimeZone != "" {
				loc, _ = time.LoadLocation(s.TimeZone) // validated by config
			}
			sched, err := config.ParseCron(s.Cron, loc)
			if err != nil {
				return p, fmt.Errorf("%s.cron: %w", ps.Field, err)
			}
			ps.Next = sched.Next
		}
		p.Schedules = append(p.Schedules, ps)
	}
	if cf := c.Links.CloudFront; cf != nil {
		p.KeyRecords = preflight.Location{Bucket: c.Ledger.Bucket, Prefix: cf.KeyRecordsPrefix, Field: "ledger.bucket"}
		keys, err := loadKeys(cf)
		if err != nil {
			return p, err
		}
		p.CloudFront = &preflight.CloudFrontPlan{
			DistributionID: cf.DistributionID,
			Domain:         cf.Domain,
			Bucket:         c.Reports.Bucket,
			OriginPath:     cf.OriginPath,
		}
		for _, k := range keys {
			if k.Signer == nil {
				// A KMS key: its public key is read from KMS.
				p.CloudFront.Keys = append(p.CloudFront.Keys, preflight.Key{ID: k.ID, KMSKeyID: k.KMSKeyID})
				continue
			}
			p.CloudFront.Keys = append(p.CloudFront.Keys, preflight.Key{ID: k.ID, Public: k.Signer.Public()})
		}
	}
	return p, nil
}
