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

// tracePairs times the worker with tracing off and on, pairs times,
// alternating, each run on fresh events: the on runs export every span
// over OTLP/HTTP to a local receiver that reads and drops them, so the
// figure is the worker's cost of tracing, not a collector's. Metrics are
// on in every run (the binary has no switch for them); their cost is
// BenchmarkDrainObserved's. With -latency, every run goes through the
// proxies that add it, as the load run before them does.
func (e *env) tracePairs(ctx context.Context, out string, o loadOptions, w io.Writer) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var spans atomic.Int64 // bytes received
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		spans.Add(n)
		rw.WriteHeader(http.StatusOK)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()

	base := e.runEnv
	defer func() { e.runEnv = base }()
	var off, on []figures
	for i := range o.tracePairs {
		for _, traced := range []bool{false, true} {
			env := slices.Clone(base)
			name := "off"
			if traced {
				name = "on"
				env = append(env, "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+ln.Addr().String(), "OTEL_SDK_DISABLED=false")
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
			if traced {
				on = append(on, f)
			} else {
				off = append(off, f)
			}
			e.stack.ForgetSent()
		}
	}
	if spans.Load() == 0 {
		return fmt.Errorf("traces on: the receiver got no spans")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "tracing off/on, %d pairs alternated, latency %s, metrics on in both; load average %s\n", o.tracePairs, o.latency, loadAverage())
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
	fmt.Fprintf(&b, "tracing on vs off: wall %.3f×, drain CPU %.3f× (sums over the pairs); %.1f KB of spans an email\n",
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
