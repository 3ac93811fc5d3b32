package store_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/store"
)

// conflicts is S3's 409 ConditionalRequestConflict, which AWS documents
// as a concurrent conditional write to retry, on PutObjects under
// prefix, times times.
func conflicts(prefix string, times int) awsproxy.Fault {
	return awsproxy.Fault{Operation: "PutObject", Match: func(c awsproxy.Call) bool { return strings.HasPrefix(c.Key, prefix) },
		Status: http.StatusConflict, Code: "ConditionalRequestConflict", Times: times}
}

// TestPendingPutRetriesAConflict: a 409 is not "already stored": Put
// tries again and the entry exists, or, when every try conflicts, Put
// fails, so ingest keeps the message on the queue.
func TestPendingPutRetriesAConflict(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		times   int
		wantErr bool
	}{
		{"one conflict: stored on a retry", 1, false},
		{"every try conflicts: an error", 100, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, c := newFaulty(t)
			pend := &store.Pending{Client: c, Bucket: "state", Prefix: store.PendingPrefix("rm/ledger/", "weekly")}
			p.Inject(conflicts(pend.Prefix, tc.times))
			e := worker.PendingEvent{Event: event.Event{ID: "a1", User: event.User{ID: "ana"}}, Ingested: time.Now(), Body: "{}"}
			err := pend.Put(ctx, e)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Put after %d conflicts: %v; want error %v", tc.times, err, tc.wantErr)
			}
			out, lerr := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("state"), Prefix: aws.String(pend.Prefix)})
			if lerr != nil {
				t.Fatal(lerr)
			}
			if stored := len(out.Contents) == 1; stored == tc.wantErr {
				t.Errorf("entries stored: %d; Put said %v", len(out.Contents), err)
			}
		})
	}
}

// TestLeaseRetriesAConflict: a 409 neither loses a slot to another
// replica nor loses a held lease.
func TestLeaseRetriesAConflict(t *testing.T) {
	ctx := context.Background()
	p, c := newFaulty(t)
	l := &store.Leases{Client: c, Bucket: "state", Prefix: "slots/", Heartbeat: time.Second}
	planned := time.Date(2026, 1, 5, 7, 0, 0, 0, time.UTC)
	p.Inject(conflicts("slots/", 1))
	lease, why, err := l.Acquire(ctx, "weekly", planned, "run-1", false)
	if err != nil || lease == nil {
		t.Fatalf("acquire after a 409: %v, %q, %v; want the lease", lease, why, err)
	}
	p.Inject(conflicts("slots/", 1))
	if err := lease.Beat(ctx); err != nil {
		t.Fatalf("heartbeat after a 409: %v; want it written", err)
	}
	p.Inject(conflicts("slots/", 1))
	if err := lease.Complete(ctx, "ok"); errors.Is(err, store.ErrLeaseLost) || err != nil {
		t.Fatalf("complete after a 409: %v; want it written", err)
	}
	if rec, found, err := l.Get(ctx, "weekly", planned); err != nil || !found || rec.Outcome != "ok" {
		t.Fatalf("slot record %+v, %v, %v; want done with ok", rec, found, err)
	}
}
