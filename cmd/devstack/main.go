// Command devstack runs the production reportmailer binary against a
// local AWS-compatible stack that lives in this one process: SQS
// (goaws), S3 (gofakes3), an SES v2 endpoint that keeps what it
// receives, and a CloudFront-style edge that checks signed URLs.
//
// It is for people and benchmarks, never for production, and it is
// kept out of the reportmailer binary.
//
//	devstack demo  -reportmailer bin/reportmailer -out demo-out
//	devstack serve -reportmailer bin/reportmailer -out demo-out
//	devstack load  -reportmailer bin/reportmailer -out demo-out-load -events 500 [-latency 20ms -key rsa -gomaxprocs 1 -python -max-send-rate 100]
//	devstack digest -reportmailer bin/reportmailer -out demo-out-digest -events 100000 -users 5000
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

const usage = `devstack runs reportmailer against a local stack in one process.

Usage:
  devstack demo  [flags]   enqueue sample events, run one drain, show what happened
  devstack serve [flags]   the demo, then keep the stack, inbox and edge up until Ctrl-C
  devstack load  [flags]   enqueue many events and time one drain
  devstack digest [flags]  store many pending digest events and time one digest slot

Run "devstack <command> -help" for flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("reportmailer", "bin/reportmailer", "the reportmailer binary to run")
	out := fs.String("out", "demo-out", "folder for keys, config, emails and logs (recreated)")
	events := fs.Int("events", 500, "load, digest: how many events to enqueue or store")
	users := fs.Int("users", 0, "digest: how many users the events belong to (default one per 20 events, at least 1)")
	latency := fs.Duration("latency", 0, "load: delay added to every SQS, S3 and SES request, e.g. 20ms")
	key := fs.String("key", "ecdsa", "load: the CloudFront key type, ecdsa (P-256, SHA-256) or rsa (2048)")
	procs := fs.Int("gomaxprocs", 0, "load: GOMAXPROCS of the reportmailer run; 0: the machine's")
	conc := fs.Int("concurrency", 0, "load: schedules[].concurrency; 0: the config's default")
	baseline := fs.Bool("baseline", true, "load: also time a bare aws-sdk-go-v2 loop on the same stack")
	python := fs.Bool("python", false, "load: also time the same job done in Python (boto3, jinja2; -key rsa only) on the same stack")
	cpuProfile := fs.String("cpuprofile", "", "load: write reportmailer's CPU profile to this file (and, with -traces, each pair's to cpu-traces-{off,on}-N.prof in -out)")
	memProfile := fs.String("memprofile", "", "load: write reportmailer's heap profile to this file")
	maxSendRate := fs.Float64("max-send-rate", 0, "load: the MaxSendRate the SES endpoint reports and enforces (429 above it in any second), to measure pacing; with -baseline=false")
	replicas := fs.Int("replicas", 1, "load: with -max-send-rate, run this many drains at once, each configured with pacing.replicas of it, to measure how replicas share the rate")
	max24h := fs.Float64("max-24h-send", 0, "load: with -max-send-rate, the Max24HourSend the SES endpoint reports; the run must stop at it (exit 3) with nothing lost or doubled")
	traceSample := fs.Float64("trace-sample", 0, "load: with -traces, the on runs trace this ratio of messages (OTEL_TRACES_SAMPLER=parentbased_traceidratio); 0: every message")
	traces := fs.Int("traces", 0, "load: then time this many pairs of runs with observation off and on (traces over OTLP and metrics to a Pushgateway, both a local receiver)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: devstack %s [flags]\n\n", cmd)
		fs.PrintDefaults()
	}
	switch cmd {
	case "demo", "serve", "load", "digest":
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "devstack: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var err error
	switch cmd {
	case "demo":
		err = demo(ctx, *bin, *out, stdout, false)
	case "serve":
		err = demo(ctx, *bin, *out, stdout, true)
	case "load":
		err = load(ctx, *bin, *out, loadOptions{events: *events, latency: *latency, key: *key, gomaxprocs: *procs, concurrency: *conc,
			baseline: *baseline, python: *python, cpuProfile: *cpuProfile, memProfile: *memProfile, tracePairs: *traces, maxSendRate: *maxSendRate, replicas: *replicas, max24h: *max24h, traceSample: *traceSample}, stdout)
	case "digest":
		if *users == 0 {
			*users = max(1, *events/20)
		}
		err = digestLoad(ctx, *bin, *out, *events, *users, *conc, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "devstack: %v\n", err)
		return 1
	}
	return 0
}
