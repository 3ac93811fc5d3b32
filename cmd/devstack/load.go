package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

var interrupt = syscall.SIGTERM

func createLog(path string) (*os.File, error) { return os.Create(path) }

// load enqueues n events (one report each, users spread over n/2 people
// with one allowed extra recipient each), then times one drain of the
// whole queue by the production binary.
func load(ctx context.Context, bin, out string, n int, w io.Writer) error {
	if n < 1 {
		return fmt.Errorf("-events %d: want at least 1", n)
	}
	e, err := up(ctx, bin, out, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer e.close()
	// Time the worker, not the permission proxies the demo puts in front
	// of the stack: they cost about a third of the throughput here.
	e.awsEnv = e.stackEnv
	// Real SES paces us to the account's MaxSendRate; here the quota is
	// set high so the run measures the worker itself.
	e.stack.SetSendQuota(10000, 1e6)
	key := "load/report.pdf"
	if _, err := e.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(content(key))}); err != nil {
		return err
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			user := fmt.Sprintf("user%04d", i/2)
			b, _ := json.Marshal(map[string]any{
				"version": 1, "type": "report.ready", "id": fmt.Sprintf("evt-load-%06d", i),
				"user":       map[string]string{"id": user, "email": user + "@acme.example", "name": "Load " + user, "time_zone": "Europe/London"},
				"recipients": []string{"team-" + user + "@acme.example"},
				"reports":    []map[string]any{{"bucket": bucket, "key": key, "title": fmt.Sprintf("Report %d", i), "size": 1234}},
			})
			if err := e.send(ctx, string(b)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Fprintf(w, "enqueued %d events in %s\n", n, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	code, summary, err := e.reportmailer(ctx, nil, filepath.Join(out, "drain.log"), "drain", "-config", e.config, "-schedule", "on-demand")
	if err != nil {
		return err
	}
	took := time.Since(start)
	sent := len(e.stack.Sent())
	report := fmt.Sprintf("load: %d events -> %d emails in %s (%.0f emails/s, %.0f events/s), exit %d, %d CPUs, %s\n%s\n",
		n, sent, took.Round(time.Millisecond), float64(sent)/took.Seconds(), float64(n)/took.Seconds(), code, runtime.NumCPU(), runtime.Version(), strings.TrimSpace(summary))
	fmt.Fprint(w, report)
	os.WriteFile(filepath.Join(out, "load.txt"), []byte(report), 0o644)
	if code != 0 || sent != 2*n {
		return fmt.Errorf("load run: exit %d, %d emails, want exit 0 and %d emails", code, sent, 2*n)
	}
	return nil
}
