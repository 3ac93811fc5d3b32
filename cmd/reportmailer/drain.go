package main

import (
	"context"
	"fmt"

	"github.com/reportmailer/reportmailer/worker"
)

func (m *Main) drain(ctx context.Context, args []string) error {
	fs := m.newFlagSet("drain", "drain -config FILE [-schedule NAME]")
	configPath := fs.String("config", "", "config file (default $REPORTMAILER_CONFIG)")
	name := fs.String("schedule", "", "schedule to drain; may be left out when the config has only one")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := m.loadConfig(*configPath)
	if err != nil {
		return err
	}
	if *name == "" {
		if len(c.Schedules) != 1 {
			return usageError("drain: -schedule is required when the config has %d schedules", len(c.Schedules))
		}
		*name = c.Schedules[0].Name
	}
	s, err := c.Schedule(*name)
	if err != nil {
		return usageError("drain: %v", err)
	}
	a, err := m.newApp(ctx, c)
	if err != nil {
		return err
	}
	w, err := a.worker(s)
	if err != nil {
		return err
	}
	sum, err := w.Drain(ctx)
	fmt.Fprintln(m.Stdout, summaryLine(s.Name, sum, err))
	if err != nil {
		return err
	}
	if !sum.OK() {
		return exitError{code: ExitPartial}
	}
	return nil
}

func summaryLine(schedule string, s worker.Summary, err error) string {
	status := "ok"
	switch {
	case err != nil:
		status = "failed"
	case !s.OK():
		status = "incomplete"
	}
	return fmt.Sprintf("drain %s: %s: received %d, sent %d emails, acked %d, dropped %d, dead-lettered %d, retrying %d, duplicates %d, refused %d",
		schedule, status, s.Received, s.Sent, s.Acked, s.Dropped, s.DeadLettered, s.Retrying, s.Duplicates, s.Refused)
}
