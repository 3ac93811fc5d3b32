package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	pathpkg "path"
	"path/filepath"
	"strings"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/templates/eml"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/link"
)

const previewSynopsis = "preview -config FILE -event FILE -out DIR [-schedule NAME] [-mode each|digest] [-metadata KEY=VALUE]... [-now TIME]"

// preview renders the emails that the message bodies in a file would
// produce, through the worker's own grouping, recipient policy, signing
// and templates, and writes them to a directory. It sends nothing and
// touches no queue or ledger.
func (m *Main) preview(ctx context.Context, args []string) error {
	fs := m.newFlagSet("preview", previewSynopsis)
	configPath := fs.String("config", "", "config file (default $REPORTMAILER_CONFIG)")
	eventPath := fs.String("event", "", "file holding one message body (a native event, an S3 notification, an SNS envelope),\nor a JSON array of bodies, previewed as one run (use -mode digest for a digest); - reads stdin")
	out := fs.String("out", "", "directory to write NN-RECIPIENT.html, .txt and .eml to (created if missing)")
	name := fs.String("schedule", "", "schedule whose name and mode to use; may be left out when the config has at most one")
	mode := fs.String("mode", "", "each or digest (default: the schedule's mode)")
	meta := metadataFlag{}
	fs.Var(meta, "metadata", "`KEY=VALUE` user metadata of the objects that S3 notifications name, as HeadObject would return it\n(user-email, user-name, user-locale, ...; see docs/events.md); repeatable. Preview never calls S3")
	nowFlag := fs.String("now", "", "compose the emails as at this RFC 3339 time, e.g. 2026-12-11T09:00:00Z (default: now)")
	// The screenshot flags stay only to say where the feature went.
	screenshot := fs.Bool("screenshot", false, "not in this binary: screenshot the -out directory with reportmailer-screenshot")
	chromium := fs.String("chromium", "", "not in this binary: see -screenshot")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *screenshot || *chromium != "":
		return usageError("preview: %s", errNoScreenshots)
	case *eventPath == "":
		return usageError("preview: -event is required")
	case *out == "":
		return usageError("preview: -out is required")
	case *mode != "" && *mode != string(worker.ModeEach) && *mode != string(worker.ModeDigest):
		return usageError("preview: -mode %q is not each or digest", *mode)
	}
	now := time.Now()
	if *nowFlag != "" {
		t, err := time.Parse(time.RFC3339, *nowFlag)
		if err != nil {
			return usageError("preview: -now: %v", err)
		}
		now = t
	}
	c, err := m.loadConfig(*configPath)
	if err != nil {
		return err
	}
	s, err := previewSchedule(c, *name)
	if err != nil {
		return err
	}
	if *mode != "" {
		s.Mode = *mode
	}
	bodies, err := readBodies(*eventPath, os.Stdin)
	if err != nil {
		return err
	}
	objects, err := newPreviewObjects(bodies, meta)
	if err != nil {
		return err
	}

	w, err := m.previewWorker(ctx, c, s)
	if err != nil {
		return err
	}
	emails, perr := w.Preview(ctx, bodies, worker.PreviewOptions{Objects: objects, Now: now})

	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "preview: %d %s from %d message %s, schedule %s, mode %s, as at %s; nothing was sent\n",
		len(emails), plural(len(emails), "email", "emails"), len(bodies), plural(len(bodies), "body", "bodies"), s.Name, s.Mode, now.Format(time.RFC3339))
	for i, e := range emails {
		base := filepath.Join(*out, fmt.Sprintf("%02d-%s", i+1, fileSafe(strings.Join(e.To, ","))))
		msg, err := eml.Encode(eml.Message{
			From: e.From, To: e.To, ReplyTo: e.ReplyTo, Subject: e.Subject, Date: now,
			Headers: e.Headers, Text: e.Text, HTML: e.HTML,
		})
		if err != nil {
			return fmt.Errorf("email to %s: %w", strings.Join(e.To, ","), err)
		}
		for ext, b := range map[string][]byte{".html": []byte(e.HTML), ".txt": []byte(e.Text), ".eml": msg} {
			if err := os.WriteFile(base+ext, b, 0o644); err != nil {
				return err
			}
		}
		fmt.Fprintf(m.Stdout, "  %s.{html,txt,eml}  to %s: %q\n", base, strings.Join(e.To, ", "), e.Subject)
	}
	if perr != nil {
		return exitError{code: ExitPartial, err: fmt.Errorf("preview: some bodies give no email:\n%w", perr)}
	}
	return nil
}

// errNoScreenshots is the answer to preview -screenshot.
var errNoScreenshots = errors.New(`-screenshot is not in the production binary: it runs where no browser can (a distroless image), so it leaves the headless-browser client out. Write the emails, then screenshot them with the separate command:
  reportmailer preview ... -out DIR
  reportmailer-screenshot DIR    (in the repository: go run ./cmd/reportmailer-screenshot DIR; make preview does both)`)

// previewSchedule picks the schedule named name; with no name, the
// config's only schedule, or a "preview" schedule in mode each when
// the config has none.
func previewSchedule(c *config.Config, name string) (config.Schedule, error) {
	switch {
	case name != "":
		s, err := c.Schedule(name)
		if err != nil {
			return s, usageError("preview: %v", err)
		}
		return s, nil
	case len(c.Schedules) == 1:
		return c.Schedules[0], nil
	case len(c.Schedules) == 0:
		return config.Schedule{Name: "preview", Mode: string(worker.ModeEach)}, nil
	}
	return config.Schedule{}, usageError("preview: -schedule is required when the config has %d schedules", len(c.Schedules))
}

// previewWorker builds the schedule's worker as drain would, with the
// same templates and link signer, but with no AWS clients behind its
// queue and object store, and a mailer and ledger that refuse every
// call: Worker.Preview calls none of them.
func (m *Main) previewWorker(ctx context.Context, c *config.Config, s config.Schedule) (*worker.Worker, error) {
	logger := newLogger(m.Stderr, c.Log)
	sets, err := offline(c)
	if err != nil {
		return nil, err
	}
	// Signing is local: CloudFront needs only the key, and S3 presigning
	// only credentials from the environment or the shared files. The
	// instance metadata service is off so that preview makes no network
	// call at all.
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	if c.Links.CloudFront == nil && awsCfg.Region == "" {
		return nil, errors.New("links are S3 presigned URLs, which preview signs locally with your AWS credentials: set AWS_REGION (and credentials), or configure links.cloudfront")
	}
	s3c := s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = c.S3.UsePathStyle })
	signer, err := newSigner(c, s3c, awsCfg.Credentials, logger)
	if err != nil {
		return nil, err
	}
	// The key expiry log records links that went out so a key can be
	// retired safely; previewed links never go out, and preview writes
	// nothing.
	if cf, ok := signer.(*link.CloudFront); ok {
		cf.Expiries = nil
	}
	a := &app{cfg: c, logger: logger, signer: signer, templates: sets, mailer: refuse{}, ledger: refuse{}}
	// Traced links carry each recipient's token in a preview too: the
	// preview shows the links a drain would send.
	if a.tokens, err = loadTokens(c.Links); err != nil {
		return nil, err
	}
	return a.worker(s)
}

// refuse is the mailer and ledger of a preview: it does nothing and
// says so.
type refuse struct{}

var errPreview = errors.New("preview sends nothing and records nothing")

func (refuse) Send(context.Context, worker.Email) (string, error) { return "", errPreview }
func (refuse) Claim(context.Context, worker.ClaimRequest) (worker.Claim, error) {
	return worker.Claim{}, errPreview
}
func (refuse) Sending(context.Context, string, []*worker.Claim) error { return errPreview }
func (refuse) Complete(context.Context, *worker.Claim, string) error  { return errPreview }
func (refuse) Release(context.Context, *worker.Claim) error           { return errPreview }
func (refuse) Cover(context.Context, *worker.Claim, []string) error   { return errPreview }

// readBodies reads one message body from path ("-" is r), or a JSON
// array of them. An array item that is a JSON string is taken as the
// body itself (for an SNS envelope, say); any other item as the JSON
// text of the body.
func readBodies(path string, r io.Reader) ([]string, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(r)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("-event: %w", err)
	}
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("-event %s: empty", path)
	}
	if trimmed[0] != '[' {
		return []string{string(b)}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(trimmed, &items); err != nil {
		return nil, fmt.Errorf("-event %s: an array of message bodies: %w", path, err)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("-event %s: the array holds no message bodies", path)
	}
	bodies := make([]string, len(items))
	for i, it := range items {
		var s string
		if json.Unmarshal(it, &s) == nil {
			bodies[i] = s
		} else {
			bodies[i] = string(it)
		}
	}
	return bodies, nil
}

// metadataFlag collects -metadata KEY=VALUE flags.
type metadataFlag map[string]string

func (f metadataFlag) String() string { return "" }

func (f metadataFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("%q is not KEY=VALUE", s)
	}
	f[strings.TrimSpace(k)] = v
	return nil
}

// previewObjects stands in for S3 when previewing S3 notifications:
// every object has the metadata given with -metadata, the size its
// notification gave, and the content type its name suggests.
type previewObjects struct {
	meta  map[string]string
	sizes map[string]int64 // "bucket/key"
}

// newPreviewObjects checks that metadata was given when a body is an S3
// notification, since preview cannot ask S3 for it.
func newPreviewObjects(bodies []string, meta map[string]string) (previewObjects, error) {
	o := previewObjects{meta: meta, sizes: map[string]int64{}}
	for i, b := range bodies {
		d, err := event.Decode([]byte(b))
		if err != nil {
			continue // the worker reports it
		}
		for _, ref := range d.Objects {
			if len(meta) == 0 {
				return o, usageError("preview: body %d is an S3 notification for s3://%s/%s; preview does not call S3, so give the object's user metadata as HeadObject would return it: -metadata user-email=ana@example.com [-metadata user-name=... -metadata user-locale=... -metadata user-timezone=... -metadata title=...] (the names are in docs/events.md)",
					i+1, ref.Bucket, ref.Key)
			}
			o.sizes[ref.Bucket+"/"+ref.Key] = ref.Size
		}
	}
	return o, nil
}

func (o previewObjects) Head(_ context.Context, bucket, key string) (worker.ObjectInfo, error) {
	if len(o.meta) == 0 {
		return worker.ObjectInfo{}, worker.Permanent(errors.New("preview does not call S3; give the object's metadata with -metadata"))
	}
	return worker.ObjectInfo{Size: o.sizes[bucket+"/"+key], ContentType: mime.TypeByExtension(pathpkg.Ext(key)), Metadata: o.meta}, nil
}

// fileSafe keeps s usable as a file name: addresses may hold '/'.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || strings.ContainsRune(`/\:*?"<>|`, r) {
			return '_'
		}
		return r
	}, s)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
