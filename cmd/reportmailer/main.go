// Command reportmailer delivers report-ready events from Amazon SQS as
// emails with signed links, sent with Amazon SES.
//
// Run "reportmailer help" for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

// Exit codes.
const (
	ExitOK      = 0 // everything received was delivered (or there was nothing)
	ExitFailure = 1 // the run could not do its work: bad config, AWS unreachable
	ExitUsage   = 2 // bad command line
	ExitPartial = 3 // the run finished, but some messages were dead-lettered or left for retry
)

func main() {
	ctx, stop := signalContext()
	defer stop()
	os.Exit(NewMain().Run(ctx, os.Args[1:]))
}

// signalContext is cancelled by the first SIGINT or SIGTERM, which
// starts a graceful shutdown; a second one exits at once.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ch
		fmt.Fprintln(os.Stderr, "reportmailer: shutting down (signal again to force)")
		cancel()
		<-ch
		fmt.Fprintln(os.Stderr, "reportmailer: forced exit")
		os.Exit(ExitFailure)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

// Main is the program, with its streams and environment, so tests can
// run it in-process.
type Main struct {
	Stdout  io.Writer
	Stderr  io.Writer
	Getenv  func(string) string
	Environ func() []string
}

// NewMain returns a Main on the process's streams and environment.
func NewMain() *Main {
	return &Main{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Environ: os.Environ}
}

// command is one entry of the command table: a name, a line of help,
// and either a run function or subcommands (as "dlq list").
type command struct {
	name    string
	summary string // for the help; continuation lines are indented
	run     func(m *Main, ctx context.Context, args []string) error
	sub     []command
}

// commands is the command table; "reportmailer help" lists it in this
// order. Every command takes -help, and the same flag names mean the
// same thing everywhere: -config, -schedule, -json, -dry-run, -max,
// -event-id.
var commands = []command{
	{name: "drain", summary: "drain one schedule's queue once, then exit (for cron jobs)", run: (*Main).drain},
	{name: "serve", summary: "run every schedule on its cron spec until SIGTERM", run: (*Main).serve},
	{name: "check", summary: "validate a config file; with -aws, also check the live\naccount (queues, S3, SES, CloudFront) with harmless calls", run: (*Main).check},
	{name: "config", summary: "the config file", sub: []command{
		{name: "check", summary: "validate a config file without touching AWS (check without -aws)", run: (*Main).config},
	}},
	{name: "status", summary: "each schedule's next run and last run, queue and dead-letter\nqueue depths, the SES quota, and the signing keys", run: (*Main).status},
	{name: "dlq", summary: "the dead-letter queues", sub: []command{
		{name: "list", summary: "list what is in each dead-letter queue: event ids, user, class,\ncode, reason, receive count, age", run: (*Main).dlqList},
		{name: "delete", summary: "delete the dead letters of the events named by -event-id, once\ndealt with otherwise (settled, resent to each recipient)", run: (*Main).dlqDelete},
	}},
	{name: "redrive", summary: "move dead letters back to their queue, filtered by -event-id or\n-code; skips maybe-sent ones (see resend)", run: (*Main).redrive},
	{name: "resend", summary: "deliver one event again, directly, showing the ledger for each\nrecipient first; -force for maybe-sent or sent deliveries", run: (*Main).resend},
	{name: "history", summary: "list past runs (drain, serve slots) with their counts, or one in full", run: (*Main).history},
	{name: "downloads", summary: "who opened the links they were sent, from CloudFront's access\nlogs and the ledger (links.trace)", run: (*Main).downloads},
	{name: "revoke", summary: "make one delivery's traced links stop working before they expire,\nthrough a CloudFront KeyValueStore deny list", run: (*Main).revoke},
	{name: "keys", summary: "list the CloudFront keys, and when each may be removed from CloudFront", run: (*Main).keys},
	{name: "sign", summary: "sign one CloudFront URL with a private key, offline", run: (*Main).sign},
	{name: "verify", summary: "check a signed CloudFront URL offline, and say why it fails", run: (*Main).verify},
	{name: "iam", summary: "print the least-privilege IAM policy for a config", run: (*Main).iam},
	{name: "ledger", summary: "the delivery ledger", sub: []command{
		{name: "settle", summary: "settle a delivery dead-lettered as maybe sent: -sent if its\nemail arrived (a redrive skips it), -unsent if not (a\nredrive sends it)", run: (*Main).ledger},
	}},
	{name: "preview", summary: "render the emails that event bodies in a file would give,\nas .html, .txt and .eml, sending nothing", run: (*Main).preview},
	{name: "version", summary: "print the version and commit this binary was built from", run: (*Main).version},
}

// usageText is the help for the commands cmds under prefix ("" at the
// top level).
func usageText(prefix string, cmds []command) string {
	var b strings.Builder
	if prefix == "" {
		b.WriteString("reportmailer delivers report-ready events from SQS as emails with signed links.\n\n")
		b.WriteString("Usage:\n  reportmailer <command> [flags]\n\nCommands:\n")
	} else {
		fmt.Fprintf(&b, "Usage:\n  reportmailer %s <command> [flags]\n\nCommands:\n", prefix)
	}
	lines := func(name, summary string) {
		for i, l := range strings.Split(summary, "\n") {
			if i > 0 {
				name = ""
			}
			fmt.Fprintf(&b, "  %-13s %s\n", name, l)
		}
	}
	for _, c := range cmds {
		if c.sub != nil && prefix == "" {
			for _, s := range c.sub {
				lines(c.name+" "+s.name, s.summary)
			}
			continue
		}
		lines(c.name, c.summary)
	}
	if prefix == "" {
		lines("help", "show this help")
		b.WriteString("\nRun \"reportmailer <command> -help\" for a command's flags.\n\n")
		b.WriteString("Exit codes: 0 all delivered, 1 failure, 2 usage, 3 some messages\ndead-lettered or left for retry.\n")
	}
	return b.String()
}

// Run runs the command in args and returns the exit code.
func (m *Main) Run(ctx context.Context, args []string) int {
	usage := usageText("", commands)
	if len(args) == 0 {
		fmt.Fprint(m.Stderr, usage)
		return ExitUsage
	}
	if isHelp(args[0]) || args[0] == "help" {
		fmt.Fprint(m.Stdout, usage)
		return ExitOK
	}
	cmds, prefix := commands, ""
	var err error
	for {
		i := slices.IndexFunc(cmds, func(c command) bool { return c.name == args[0] })
		if i < 0 {
			if prefix == "" {
				fmt.Fprintf(redacting{m.Stderr}, "reportmailer: unknown command %q\n\n%s", args[0], usage)
			} else {
				fmt.Fprintf(redacting{m.Stderr}, "reportmailer: %s: unknown command %q\n\n%s", prefix, args[0], usageText(prefix, cmds))
			}
			return ExitUsage
		}
		c, rest := cmds[i], args[1:]
		if c.sub == nil {
			err = c.run(m, ctx, rest)
			break
		}
		prefix = strings.TrimSpace(prefix + " " + c.name)
		if len(rest) == 0 || isHelp(rest[0]) {
			if len(rest) == 0 {
				fmt.Fprint(m.Stderr, usageText(prefix, c.sub))
				return ExitUsage
			}
			fmt.Fprint(m.Stdout, usageText(prefix, c.sub))
			return ExitOK
		}
		cmds, args = c.sub, rest
	}
	var ee exitError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.As(err, &ee):
		if ee.err != nil {
			fmt.Fprintf(redacting{m.Stderr}, "reportmailer: %v\n", ee.err)
		}
		return ee.code
	default:
		fmt.Fprintf(redacting{m.Stderr}, "reportmailer: %v\n", err)
		return ExitFailure
	}
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func usageError(format string, args ...any) error {
	return exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// newFlagSet returns a flag set that prints its usage to stderr and
// reports errors instead of exiting.
func (m *Main) newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(redacting{m.Stderr})
	fs.Usage = func() {
		fmt.Fprintf(m.Stderr, "Usage: reportmailer %s\n\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args, turning flag errors into usage errors.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exitError{code: ExitUsage}
	}
	if fs.NArg() > 0 {
		return usageError("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help":
		return true
	}
	return false
}
