package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/worker"
)

// Halts is a worker.HaltRecord on S3: one small JSON object at Key in
// Bucket, written by the run that halted and read by every run before
// it receives. Put it under the ledger prefix, whose Get, Put and
// Delete the declared policy grants, e.g. "reportmailer/ledger/halt.json".
//
// A record that does not exist (404) is no halt. Any other failure to
// read it, a 403 included, is an error and never a halt: without
// s3:ListBucket S3 answers 403 for a record that does not exist, and
// reading that as "halted" would stop every run for good.
type Halts struct {
	Client API
	Bucket string
	Key    string
}

var _ worker.HaltRecord = (*Halts)(nil)

func (h *Halts) where() string { return "s3://" + h.Bucket + "/" + h.Key }

// Get returns the recorded halt, with Where set to the record's
// s3:// URL, and false when there is none.
func (h *Halts) Get(ctx context.Context) (worker.HaltNote, bool, error) {
	out, err := h.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &h.Bucket, Key: &h.Key})
	if err != nil {
		if isNotFound(err) {
			return worker.HaltNote{}, false, nil
		}
		return worker.HaltNote{}, false, fmt.Errorf("halt record %s: %w", h.where(), err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, 1<<16))
	if err != nil {
		return worker.HaltNote{}, false, fmt.Errorf("halt record %s: %w", h.where(), err)
	}
	var n worker.HaltNote
	if err := json.Unmarshal(b, &n); err != nil {
		return worker.HaltNote{}, false, fmt.Errorf("halt record %s is not a record (%v); delete it", h.where(), err)
	}
	n.Where = h.where()
	return n, true, nil
}

// Put records n, replacing any earlier halt, with this host's name when
// n names none.
func (h *Halts) Put(ctx context.Context, n worker.HaltNote) error {
	if n.Host == "" {
		n.Host, _ = os.Hostname()
	}
	body, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("halt record %s: %w", h.where(), err)
	}
	_, err = h.Client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &h.Bucket, Key: aws.String(h.Key),
		Body: bytes.NewReader(body), ContentType: aws.String("application/json"),
	})
	if err != nil {
		return fmt.Errorf("halt record %s: %w", h.where(), err)
	}
	return nil
}
