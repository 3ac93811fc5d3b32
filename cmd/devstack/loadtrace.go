package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// tracePairs times the worker with observation off and on, pairs
// times, each run on fresh events, in the order off, on, on, off, ...
// so that a drift of the machine's load favours neither: the on runs
// export every span over OTLP/HTTP and push their metrics to a
// Pushgateway, both a local receiver that reads and drops them, so the
// figure is the worker's cost of observing, not a collector's; the off
// runs do neither (drain keeps no metrics without -pushgateway). Each
// on run must have exported spans and pushed once. With -latency,
// every run goes through the proxies that add it, as the load run
// before them does.
func (e *env) tracePairs(ctx context.Context, out string, o loadOptions, w io.Writer) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var spans, pushes atomic.Int64 // span bytes received; metric pushes
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		if strings.HasPrefix(r.URL.Path, "/metrics/") {
			pushes.Add(1)
		} else {
			spans.Add(n)
		}
		rw.WriteHeader(http.StatusOK)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	base := e.runEnv
	defer func() { e.runEnv = base }()
	var off, on []figures
	for i := range o.tracePairs {
		order := []bool{false, true}
		if i%2 == 1 {
			order = []bool{true, false}
		}
		for _, traced := range order {
			env := slices.Clone(base)
			name := "off"
			if traced {
				name = "on"
				env = append(env, "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+ln.Addr().String(), "OTEL_SDK_DISABLED=false")
				if o.traceSample > 0 {
					env = append(env, "OTEL_TRACES_SAMPLER=parentbased_traceidratio", fmt.Sprintf("OTEL_TRACES_SAMPLER_ARG=%g", o.traceSample))
				}
			} else {
				env = append(env, "OTEL_SDK_DISABLED=true")
			}
			e.runEnv = env
			evs := loadEvents(fmt.Sprintf("tr%d%s", i, name), o.events)
			enq, err := enqueueAll(ctx, e.sqs, e.queueURL, evs)
			if err != nil {
				return err
			}
			start := time.Now()
			args := []string{"drain", "-config", e.config, "-schedule", "on-demand"}
			if traced {
				args = append(args, "-pushgateway", "http://"+ln.Addr().String())
			}
			spansBefore, pushesBefore := spans.Load(), pushes.Load()
			if o.cpuProfile != "" {
				// One profile a run, beside the logs, for
				// go tool pprof -diff_base off.prof on.prof.
				args = append(args, "-cpuprofile", filepath.Join(out, fmt.Sprintf("cpu-traces-%s-%d.prof", name, i)))
			}
			code, _, err := e.reportmailer(ctx, nil, filepath.Join(out, fmt.Sprintf("drain-traces-%s-%d.log", name, i)), args...)
			if err != nil {
				return err
			}
			f := e.measure(evs, enq, time.Since(start))
			f.cpu = e.lastRun.UserTime() + e.lastRun.SystemTime()
			f.peakRSS = e.lastPeakRSS
			if code != 0 || f.emails != wantEmails(evs) {
				return fmt.Errorf("traces %s: exit %d, %d emails, want exit 0 and %d", name, code, f.emails, wantEmails(evs))
			}
			gotSpans, gotPushes := spans.Load()-spansBefore, pushes.Load()-pushesBefore
			if traced && (gotSpans == 0 || gotPushes != 1) {
				return fmt.Errorf("observation on, pair %d: %d bytes of spans and %d metric pushes, want spans and 1 push", i, gotSpans, gotPushes)
			}
			if !traced && (gotSpans != 0 || gotPushes != 0) {
				return fmt.Errorf("observation off, pair %d: %d bytes of spans and %d metric pushes, want none", i, gotSpans, gotPushes)
			}
			if traced {
				on = append(on, f)
			} else {
				off = append(off, f)
			}
			e.stack.ForgetSent()
		}
	}
	var b strings.Builder
	sampled := "every message traced"
	if o.traceSample > 0 {
		sampled = fmt.Sprintf("messages traced at ratio %g (OTEL_TRACES_SAMPLER=parentbased_traceidratio)", o.traceSample)
	}
	fmt.Fprintf(&b, "observation (traces and metrics) off/on, %s, %d pairs, off-on then on-off, latency %s; load average %s\n", sampled, o.tracePairs, o.latency, loadAverage())
	for i := range off {
		fmt.Fprintf(&b, "  off: %s\n  on:  %s\n", off[i], on[i])
	}
	wall := func(fs []figures) (s float64) {
		for _, f := range fs {
			s += f.took.Seconds()
		}
		return s
	}
	cpu := func(fs []figures) (s float64) {
		for _, f := range fs {
			s += f.cpu.Seconds()
		}
		return s
	}
	fmt.Fprintf(&b, "observation on vs off: wall %.3f×, drain CPU %.3f× (sums over the pairs); %.1f KB of spans an email\n",
		wall(on)/wall(off), cpu(on)/cpu(off), float64(spans.Load())/1024/float64(len(on)*wantEmails(loadEvents("x", o.events))))
	fmt.Fprint(w, b.String())
	return appendFile(filepath.Join(out, "load.txt"), b.String())
}

// appendFile appends s to the file at path.
func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	return errors.Join(err, f.Close())
}
