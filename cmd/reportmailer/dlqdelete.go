package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

const dlqDeleteSynopsis = `dlq delete -config FILE [-schedule NAME] -event-id ID ... [-dry-run]

Deletes from the dead-letter queues the messages holding the events
named, for a dead letter dealt with otherwise: its "maybe sent" email
arrived and "ledger settle -sent" recorded it, "resend -to" sent each
recipient theirs, or its event is not to be delivered at all. It
prints each message deleted and a total; an event id found in no
dead-letter queue is named, and the exit code is then 3. Messages not
named are made visible again at once. -dry-run deletes nothing.`

func (m *Main) dlqDelete(ctx context.Context, args []string) error {
	fs := m.newFlagSet("dlq delete", dlqDeleteSynopsis)
	configPath := fs.String("config", "", "config file (default $REPORTMAILER_CONFIG)")
	name := fs.String("schedule", "", "only this schedule's dead-letter queue (default: every schedule's)")
	var ids listFlag
	fs.Var(&ids, "event-id", "delete the messages holding this event id (repeatable, or comma-separated; required)")
	dry := fs.Bool("dry-run", false, "show what would be deleted, and delete nothing")
	if err := parse(fs, args); err != nil {
		return err
	}
	if len(ids) == 0 {
		return usageError("dlq delete: -event-id is required: name the events whose dead letters go")
	}
	c, err := m.loadConfig(*configPath)
	if err != nil {
		return err
	}
	scheds, err := schedulesFor(c, "dlq delete", *name)
	if err != nil {
		return err
	}
	cl, err := newOpsClients(ctx, c)
	if err != nil {
		return err
	}
	verb := "deleted"
	if *dry {
		verb = "would delete"
	}
	found := map[string]bool{}
	n := 0
	for _, s := range scheds {
		err := scanDeadLetters(ctx, cl.sqs, s, 0, func(d deadLetter) (bool, error) {
			if !slices.ContainsFunc(d.EventIDs, func(id string) bool { return slices.Contains(ids, id) }) {
				return false, nil
			}
			for _, id := range d.EventIDs {
				found[id] = true
			}
			line := fmt.Sprintf("%s %s %s: events %s, %s", verb, s.Name, d.MessageID, strings.Join(d.EventIDs, ","), or(string(d.Code), "-"))
			if *dry {
				fmt.Fprintln(m.Stdout, line)
				n++
				return false, nil
			}
			if _, err := cl.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(s.DeadLetterQueueURL), ReceiptHandle: d.msg.ReceiptHandle}); err != nil {
				return false, fmt.Errorf("dead-letter queue %s: delete %s: %w", s.DeadLetterQueueURL, d.MessageID, err)
			}
			fmt.Fprintln(m.Stdout, line)
			n++
			return true, nil
		})
		if err = m.warnPutBack(err); err != nil {
			fmt.Fprintf(m.Stdout, "dlq delete: %s %d\n", verb, n)
			return fmt.Errorf("schedule %q: %w", s.Name, err)
		}
	}
	fmt.Fprintf(m.Stdout, "dlq delete: %s %d\n", verb, n)
	var missing []string
	for _, id := range ids {
		if !found[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return exitError{code: ExitPartial, err: fmt.Errorf("dlq delete: event %s: in no dead-letter queue of %s", strings.Join(missing, ", "), scheduleNames(scheds))}
	}
	return nil
}
