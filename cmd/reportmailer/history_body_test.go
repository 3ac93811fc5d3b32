package main

import (
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/worker"
)

// TestRunRecordBody: the record written for a run of many deliveries,
// assembled from its encoded chunks, reads back as the run it was, and
// reads the same after the SDK seeks back to resend it.
func TestRunRecordBody(t *testing.T) {
	for _, n := range []int{0, 1, 3000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			r := &runRecord{Schedule: "daily", RunID: "r1", Command: "drain", StartedAt: time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC), Outcome: "ok"}
			for i := range n {
				r.add(worker.DeliveryResult{EventID: fmt.Sprintf("evt-%d", i), Recipient: "a@acme.example", MessageID: "m\"<" + fmt.Sprint(i), Outcome: worker.OutcomeDelivered})
			}
			body, err := r.body()
			if err != nil {
				t.Fatal(err)
			}
			for range 2 { // sent, then seeked back and sent again
				b, err := io.ReadAll(body)
				if err != nil {
					t.Fatal(err)
				}
				if int64(len(b)) != body.size {
					t.Fatalf("read %d bytes, length says %d", len(b), body.size)
				}
				var got runRecord
				if err := json.Unmarshal(b, &got); err != nil {
					t.Fatalf("not JSON: %v\n%.300s", err, b)
				}
				if got.Schedule != "daily" || got.Outcome != "ok" || len(got.Deliveries) != n {
					t.Fatalf("read back schedule %q, outcome %q, %d deliveries; want daily, ok, %d", got.Schedule, got.Outcome, len(got.Deliveries), n)
				}
				if n > 0 && (got.Deliveries[n-1].EventID != fmt.Sprintf("evt-%d", n-1) || got.Deliveries[n-1].MessageID != "m\"<"+fmt.Sprint(n-1)) {
					t.Errorf("last delivery = %+v", got.Deliveries[n-1])
				}
				if _, err := body.Seek(0, io.SeekStart); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
