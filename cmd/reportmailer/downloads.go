package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker/accesslog"
	"github.com/reportmailer/reportmailer/worker/linktoken"
	"github.com/reportmailer/reportmailer/worker/store"
)

const downloadsSynopsis = `downloads -config FILE [-since 7d] [-event-id ID] [-json]

Says who opened the links they were sent. It lists the deliveries the
ledger recorded as sent (or maybe sent) in the window, or every delivery
of -event-id, recomputes each one's link token (links.trace), and reads
the distribution's standard access logs (links.cloudfront.access_logs,
gzipped W3C files) for requests that carry those tokens; it does not
read CloudFront real-time logs (Kinesis Data Streams). For each
delivery it prints the first download, the number of GET requests
answered (200, 206, 304) and of requests refused (403: expired,
tampered or revoked), and marks those not opened yet. A HEAD (a link
preview) is not a download.

Mail security scanners and link previewers that fetch a link with GET
count as downloads: "first download" may be a scanner's, and a link
they fetch never shows as "not opened". Deliveries sent before
links.trace was on carry no token and show as not opened.

CloudFront delivers log files up to an hour after the requests, some up
to 24 hours. A damaged log line is counted and skipped; the first few
are named by file and line. Objects under the prefix that are not
CloudFront log files (<distribution-ID>.YYYY-MM-DD-HH.<unique-ID>.gz)
are skipped and counted. Exit codes: 0 done, 1 failure, 2 usage,
3 done but some log lines or files could not be read.`

// downloadRow is one delivery and what the access logs say of it.
type downloadRow struct {
	EventID       string         `json:"event_id"`
	Recipient     string         `json:"recipient"`
	State         string         `json:"state"` // the ledger's: sent, or sending (maybe sent)
	SentAt        time.Time      `json:"sent_at,omitzero"`
	FirstDownload time.Time      `json:"first_download,omitzero"`
	LastDownload  time.Time      `json:"last_download,omitzero"`
	Downloads     int            `json:"downloads"`
	Denied        int            `json:"denied"`
	Files         map[string]int `json:"files,omitempty"` // URI stem -> requests answered
}

// downloadsReport is what downloads prints with -json.
type downloadsReport struct {
	Since      time.Time     `json:"since"`
	EventID    string        `json:"event_id,omitempty"`
	Deliveries []downloadRow `json:"deliveries"`
	Opened     int           `json:"opened"`
	NotOpened  int           `json:"not_opened"`
	// UnknownTokens counts requests with a token no delivery in the
	// window has: older deliveries, or links made with another secret.
	UnknownTokens int `json:"unknown_tokens"`
	LogFiles      int `json:"log_files"`
	LogEntries    int `json:"log_entries"`
	SkippedLines  int `json:"skipped_lines"`
	UnreadFiles   int `json:"unread_files"`
	// SkippedObjects counts objects under the log prefix that are not
	// CloudFront log files by their name.
	SkippedObjects int `json:"skipped_objects"`
}

// sinceRE is a -since of whole days, which time.ParseDuration lacks.
var sinceRE = regexp.MustCompile(`^([0-9]+)d$`)

// parseSince reads -since: a Go duration (36h) or whole days (7d).
func parseSince(s string) (time.Duration, error) {
	if m := sinceRE.FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err == nil && n > 0 && n <= 3660 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("-since %q: want a positive duration such as 7d or 36h", s)
	}
	return d, nil
}

func (m *Main) downloads(ctx context.Context, args []string) error {
	fs := m.newFlagSet("downloads", downloadsSynopsis)
	configPath := fs.String("config", "", "config file (default $REPORTMAILER_CONFIG)")
	sinceFlag := fs.String("since", "7d", "deliveries and downloads this long ago or later (7d, 36h)")
	eventID := fs.String("event-id", "", "only this event's deliveries, however old (its downloads still within -since)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := parse(fs, args); err != nil {
		return err
	}
	window, err := parseSince(*sinceFlag)
	if err != nil {
		return usageError("downloads: %v", err)
	}
	c, err := m.loadConfig(*configPath)
	if err != nil {
		return err
	}
	if !c.Links.Trace {
		return fmt.Errorf("downloads: links.trace is off, so links carry no token to find in the access logs; turn it on, and links sent from then on can be counted")
	}
	logs := c.Links.CloudFront.AccessLogs
	if logs.Bucket == "" {
		return fmt.Errorf("downloads: links.cloudfront.access_logs.bucket is not set: name the bucket the distribution's standard logs are delivered to")
	}
	tokens, err := loadTokens(c.Links)
	if err != nil {
		return err
	}
	cl, err := newOpsClients(ctx, c)
	if err != nil {
		return err
	}
	logger := newLogger(m.Stderr, c.Log).With("command", "downloads")
	since := time.Now().Add(-window).UTC()
	ledger := &store.Ledger{Client: cl.s3, Bucket: c.Ledger.Bucket, Prefix: c.Ledger.Prefix}

	var recs []store.Record
	if *eventID != "" {
		if recs, err = ledger.EventDeliveries(ctx, *eventID); err != nil {
			return fmt.Errorf("downloads: %w", err)
		}
	} else if recs, err = recentDeliveries(ctx, cl.s3, ledger, since); err != nil {
		return fmt.Errorf("downloads: %w", err)
	}
	rep := downloadsReport{Since: since, EventID: *eventID, Deliveries: []downloadRow{}}
	byToken := map[string]*downloadRow{}
	for _, r := range recs {
		if r.State != "sent" && r.State != "sending" || r.Covered {
			continue // nothing was sent under it (a covered one's links went out under newer events)
		}
		rep.Deliveries = append(rep.Deliveries, downloadRow{EventID: r.EventID, Recipient: r.Recipient, State: r.State, SentAt: r.SentAt})
	}
	for i := range rep.Deliveries {
		d := &rep.Deliveries[i]
		byToken[tokens.Of(d.EventID, d.Recipient)] = d
	}
	logger.Info("deliveries from the ledger", "deliveries", len(rep.Deliveries), "since", since.Format(time.RFC3339))

	files, others, err := logFiles(ctx, cl.s3, logs, since)
	if err != nil {
		return fmt.Errorf("downloads: %w", err)
	}
	rep.SkippedObjects = len(others)
	if len(others) > 0 {
		logger.Warn("objects under the log prefix that are not CloudFront log files, skipped", "count", len(others), "first", others[0])
	}
	logger.Info("reading access log files", "files", len(files), "bucket", logs.Bucket, "prefix", logs.Prefix)
	for _, key := range files {
		res, err := readLogFile(ctx, cl.s3, logs.Bucket, key, func(e accesslog.Entry) {
			if e.Time.Before(since) {
				return
			}
			for _, tok := range linktoken.FromQuery(e.Query) {
				d := byToken[tok]
				if d == nil {
					rep.UnknownTokens++
					continue
				}
				switch {
				case e.Method == "GET" && (e.Status == 200 || e.Status == 206 || e.Status == 304):
					d.Downloads++
					if d.FirstDownload.IsZero() || e.Time.Before(d.FirstDownload) {
						d.FirstDownload = e.Time
					}
					if e.Time.After(d.LastDownload) {
						d.LastDownload = e.Time
					}
					if d.Files == nil {
						d.Files = map[string]int{}
					}
					d.Files[e.URIStem]++
				case e.Status == 403:
					d.Denied++
				}
			}
		})
		rep.LogFiles++
		rep.LogEntries += res.Entries
		rep.SkippedLines += res.Skipped
		for _, le := range res.Errors {
			logger.Warn("access log line skipped", "line", le.Error())
		}
		if err != nil {
			var ae accessError
			if errors.As(err, &ae) {
				return fmt.Errorf("downloads: %w", err)
			}
			rep.UnreadFiles++
			logger.Warn("access log file not read", "err", err)
		}
	}
	for _, d := range rep.Deliveries {
		if d.Downloads > 0 {
			rep.Opened++
		} else {
			rep.NotOpened++
		}
	}
	slices.SortStableFunc(rep.Deliveries, func(a, b downloadRow) int {
		return cmpOr(strings.Compare(a.EventID, b.EventID), strings.Compare(a.Recipient, b.Recipient))
	})
	if *asJSON {
		err = writeJSON(m.Stdout, rep)
	} else {
		printDownloads(m.Stdout, rep)
	}
	if err != nil {
		return err
	}
	if rep.SkippedLines > 0 || rep.UnreadFiles > 0 {
		return exitError{code: ExitPartial, err: fmt.Errorf("downloads: %d log lines and %d log files could not be read: the counts may be short (see the warnings above)", rep.SkippedLines, rep.UnreadFiles)}
	}
	return nil
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

func printDownloads(w io.Writer, rep downloadsReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EVENT\tRECIPIENT\tSENT\tFIRST DOWNLOAD\tDOWNLOADS\tDENIED")
	for _, d := range rep.Deliveries {
		sent := "maybe sent"
		if d.State == "sent" {
			sent = d.SentAt.Format(time.RFC3339)
		}
		first := "not opened"
		if !d.FirstDownload.IsZero() {
			first = d.FirstDownload.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", d.EventID, d.Recipient, sent, first, d.Downloads, d.Denied)
	}
	tw.Flush()
	if rep.EventID != "" {
		fmt.Fprintf(w, "%d deliveries of event %s (downloads since %s)", len(rep.Deliveries), rep.EventID, rep.Since.Format(time.RFC3339))
	} else {
		fmt.Fprintf(w, "%d deliveries since %s", len(rep.Deliveries), rep.Since.Format(time.RFC3339))
	}
	fmt.Fprintf(w, ": %d opened, %d not opened; %d log files, %d requests", rep.Opened, rep.NotOpened, rep.LogFiles, rep.LogEntries)
	if rep.UnknownTokens > 0 {
		if rep.EventID != "" {
			fmt.Fprintf(w, ", %d with a token of no delivery listed (other events' links, or another secret)", rep.UnknownTokens)
		} else {
			fmt.Fprintf(w, ", %d with a token of no delivery listed (older, or another secret)", rep.UnknownTokens)
		}
	}
	if rep.SkippedObjects > 0 {
		fmt.Fprintf(w, "; %d objects under the prefix not CloudFront log files, skipped", rep.SkippedObjects)
	}
	fmt.Fprintln(w)
}

// ledgerKeyRE is the name of a delivery record under the ledger
// prefix: its delivery key.
var ledgerKeyRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// recentDeliveries returns the ledger's delivery records written since
// since: one listing of the ledger prefix (records only, not its
// sub-prefixes), then a read of each, eight at a time.
func recentDeliveries(ctx context.Context, c *s3.Client, l *store.Ledger, since time.Time) ([]store.Record, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(l.Bucket), Prefix: aws.String(l.Prefix), Delimiter: aws.String("/")})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("ledger s3://%s/%s: %w", l.Bucket, l.Prefix, err)
		}
		for _, o := range out.Contents {
			k := strings.TrimPrefix(aws.ToString(o.Key), l.Prefix)
			if ledgerKeyRE.MatchString(k) && !aws.ToTime(o.LastModified).Before(since) {
				keys = append(keys, k)
			}
		}
	}
	recs := make([]store.Record, len(keys))
	found := make([]bool, len(keys))
	errs := make([]error, len(keys))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, k := range keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			recs[i], found[i], errs[i] = l.Lookup(ctx, k)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var out []store.Record
	for i, r := range recs {
		if found[i] {
			out = append(out, r)
		}
	}
	return out, nil
}

// logFileRE is the name of a CloudFront standard (legacy) log file:
// <distribution-ID>.YYYY-MM-DD-HH.<unique-ID>.gz, after the prefix.
var logFileRE = regexp.MustCompile(`^[A-Z0-9]+\.[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{2}\.[A-Za-z0-9]+\.gz$`)

// logFiles lists the access log files under logs.Prefix written since
// since: CloudFront writes a file after the requests in it, so no file
// older than the window can hold a request in it. others are the keys
// in the window that are not log files by name (folder markers,
// anything else put there).
func logFiles(ctx context.Context, c *s3.Client, logs config.AccessLogs, since time.Time) (keys, others []string, err error) {
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(logs.Bucket), Prefix: aws.String(logs.Prefix)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("access logs s3://%s/%s: %w", logs.Bucket, logs.Prefix, err)
		}
		for _, o := range out.Contents {
			if aws.ToTime(o.LastModified).Before(since) {
				continue
			}
			k := aws.ToString(o.Key)
			// The name after the prefix, and after any folder within it
			// (a prefix set wider than CloudFront's).
			name := strings.TrimPrefix(k, logs.Prefix)
			name = name[strings.LastIndex(name, "/")+1:]
			if logFileRE.MatchString(name) {
				keys = append(keys, k)
			} else {
				others = append(others, k)
			}
		}
	}
	slices.Sort(keys)
	slices.Sort(others)
	return keys, others, nil
}

// accessError is a log file S3 would not give: a failure of the
// command, not a damaged file.
type accessError struct{ err error }

func (e accessError) Error() string { return e.err.Error() }
func (e accessError) Unwrap() error { return e.err }

// readLogFile reads one access log file from S3 into fn. accesslog.Read
// bounds what it reads of the file once decompressed.
func readLogFile(ctx context.Context, c *s3.Client, bucket, key string, fn func(accesslog.Entry)) (accesslog.Result, error) {
	name := "s3://" + bucket + "/" + key
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return accesslog.Result{}, accessError{fmt.Errorf("access log %s: %w", name, err)}
	}
	defer out.Body.Close()
	return accesslog.Read(out.Body, name, fn)
}
