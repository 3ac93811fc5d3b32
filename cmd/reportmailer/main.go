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

const usage = `reportmailer delivers report-ready events from SQS as emails with signed links.

Usage:
  reportmailer <command> [flags]

Commands:
  drain         drain one schedule's queue once, then exit (for cron jobs)
  serve         run every schedule on its cron spec until SIGTERM
  check         validate a config file; with -aws, also check the live
                account (queues, S3, SES, CloudFront) with harmless calls
  config check  validate a config file without touching AWS (check without -aws)
  keys          list the CloudFront keys, and when each may be removed from CloudFront
  sign          sign one CloudFront URL with a private key, offline
  verify        check a signed CloudFront URL offline, and say why it fails
  iam           print the least-privilege IAM policy for a config
  ledger settle settle a delivery dead-lettered as maybe sent: -sent if its
                email arrived (a redrive skips it), -unsent if not (a
                redrive sends it)
  preview       render the emails that event bodies in a file would give,
                as .html, .txt and .eml, sending nothing
  version       print the version and commit this binary was built from
  help          show this help

Run "reportmailer <command> -help" for a command's flags.

Exit codes: 0 all delivered, 1 failure, 2 usage, 3 some messages
dead-lettered or left for retry.
`

// Run runs the command in args and returns the exit code.
func (m *Main) Run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(m.Stderr, usage)
		return ExitUsage
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "drain":
		err = m.drain(ctx, rest)
	case "serve":
		err = m.serve(ctx, rest)
	case "preview":
		err = m.preview(ctx, rest)
	case "check":
		err = m.check(ctx, rest)
	case "config":
		err = m.config(ctx, rest)
	case "keys":
		err = m.keys(ctx, rest)
	case "sign":
		err = m.sign(ctx, rest)
	case "verify":
		err = m.verify(ctx, rest)
	case "iam":
		err = m.iam(ctx, rest)
	case "ledger":
		err = m.ledger(ctx, rest)
	case "version":
		err = m.version(ctx, rest)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(m.Stdout, usage)
		return ExitOK
	default:
		fmt.Fprintf(redacting{m.Stderr}, "reportmailer: unknown command %q\n\n%s", cmd, usage)
		return ExitUsage
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
