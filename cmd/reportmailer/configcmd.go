package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/config"
)

func (m *Main) config(_ context.Context, args []string) error {
	fs := m.newFlagSet("config check", "config check -config FILE")
	configPath := fs.String("config", "", "config file (default $REPORTMAILER_CONFIG)")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := m.loadConfig(*configPath)
	if err != nil {
		return err
	}
	if _, err := offline(c); err != nil {
		return err
	}
	// Build the signer as drain does, so config check refuses exactly
	// what drain would; constructing the clients calls no AWS API.
	s3c := s3.New(s3.Options{Region: "us-east-1"})
	if _, err := newSigner(c, s3c, aws.AnonymousCredentials{}, slog.New(slog.DiscardHandler)); err != nil {
		return err
	}
	// And the trace secret, which drain reads at start-up.
	if _, err := loadTokens(c.Links); err != nil {
		return err
	}
	links := "S3 presigned URLs"
	if cf := c.Links.CloudFront; cf != nil {
		links = "CloudFront signed URLs via " + cf.Domain
	}
	fmt.Fprintf(m.Stdout, "config OK: links are %s, valid for %s; %d schedule(s)\n", links, c.Links.TTL, len(c.Schedules))
	for _, s := range c.Schedules {
		next := "no cron spec (drain only)"
		if s.Cron != "" {
			loc, _ := time.LoadLocation(s.TimeZone)
			sched, _ := config.ParseCron(s.Cron, loc)
			next = "next run " + sched.Next(time.Now()).Format(time.RFC3339)
		}
		fmt.Fprintf(m.Stdout, "  %s: mode %s, %s\n", s.Name, s.Mode, next)
	}
	fmt.Fprintln(m.Stdout, sesEventsLine(c.SESEvents))
	return nil
}

// sesEventsLine says what becomes of a delivery whose SES answer was
// lost.
func sesEventsLine(e config.SESEvents) string {
	if e.QueueURL == "" {
		return fmt.Sprintf("ses events: not read; a delivery left \"sending\" is dead-lettered after %s for an operator to settle", e.Grace)
	}
	then := "dead-lettered"
	if e.Unsettled == config.UnsettledResend {
		then = "sent again"
	}
	return fmt.Sprintf("ses events: read from %s before each run; a delivery they leave \"sending\" for %s is %s", e.QueueURL, e.Grace, then)
}
