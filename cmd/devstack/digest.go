package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/store"
)

// digestLoad measures the production binary delivering one digest slot
// from a pending store that already holds events for users: how long
// it takes, its CPU, and its peak RSS (VmHWM), which must not grow with
// the events, since users are streamed a page at a time.
func digestLoad(ctx context.Context, bin, out string, events, users, concurrency int, w io.Writer) error {
	if events < 1 || users < 1 || users > events {
		return fmt.Errorf("-events %d -users %d: want 1 <= users <= events", events, users)
	}
	e, err := upWith(ctx, bin, out, slog.New(slog.DiscardHandler), upOptions{ecdsa: true, concurrency: concurrency, budget: time.Hour})
	if err != nil {
		return err
	}
	defer e.close()
	e.stack.SetSendQuota(1e6, 1e9)
	e.stack.KeepBodies(false)
	// A digest: a wall-clock spec (serve is not run here; drain is the
	// slot).
	b, err := os.ReadFile(e.config)
	if err != nil {
		return err
	}
	cfg := strings.Replace(string(b), "cron: \"@every 10s\"\n    mode: each", "cron: \"0 8 * * 1\"\n    mode: digest", 1)
	if cfg == string(b) {
		return fmt.Errorf("devstack config: no schedule to make a digest of")
	}
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		return err
	}
	// Straight to the stack: the proxies would time themselves.
	e.awsEnv = e.stackEnv

	fmt.Fprintf(w, "digest load: storing %d pending events for %d users...\n", events, users)
	p := &store.Pending{Client: e.s3, Bucket: bucket, Prefix: store.PendingPrefix("reportmailer/ledger/", "on-demand")}
	at := time.Now().Add(-time.Hour).UTC()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	sem := make(chan struct{}, 32)
	for i := range events {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			user := fmt.Sprintf("du%06d", i%users)
			key := fmt.Sprintf("digest/%s/report-%07d.pdf", user, i)
			ev := event.Event{ID: fmt.Sprintf("dg-%07d", i),
				User:    event.User{ID: user, Email: user + "@acme.example", Name: "Digest " + user, TimeZone: "Europe/London"},
				Reports: []event.Report{{Bucket: bucket, Key: key, Title: fmt.Sprintf("Report %d", i), Size: 1234}}}
			// The slot heads each report before it links it.
			_, err := e.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(content(key))})
			if err == nil {
				err = p.Put(ctx, worker.PendingEvent{Event: ev, Ingested: at.Add(time.Duration(i) * time.Millisecond), Body: "{}"})
			}
			if err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return fmt.Errorf("store pending events: %w", err)
	default:
	}
	fmt.Fprintf(w, "  stored in %s; machine: %d CPUs, %s, load average %s\n", time.Since(start).Round(time.Second), runtime.NumCPU(), runtime.Version(), loadAverage())

	start = time.Now()
	code, summary, err := e.reportmailer(ctx, nil, filepath.Join(out, "drain.log"), "drain", "-config", e.config, "-schedule", "on-demand")
	if err != nil {
		return err
	}
	took := time.Since(start)
	cpu := e.lastRun.UserTime() + e.lastRun.SystemTime()
	sent := len(e.stack.Sent())
	left, err := p.Count(ctx)
	if err != nil {
		return err
	}
	report := fmt.Sprintf("digest: %d events for %d users -> %d emails in %s (%.0f events/s), exit %d; CPU %.1f s; peak RSS (VmHWM) %.1f MB; left pending %d\n  %s\n",
		events, users, sent, took.Round(time.Second), float64(events)/took.Seconds(), code, cpu.Seconds(), float64(e.lastPeakRSS)/(1<<20), left, strings.TrimSpace(summary))
	fmt.Fprint(w, report)
	os.WriteFile(filepath.Join(out, "digest.txt"), []byte(report), 0o644)
	if code != 0 || left != 0 {
		return fmt.Errorf("digest run: exit %d, %d left pending; want exit 0 and none", code, left)
	}
	return nil
}
