package store_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/sesevents"
	"github.com/reportmailer/reportmailer/worker/store"
)

// The ledger is what SES's events settle.
var _ sesevents.Settler = (*store.Ledger)(nil)

// TestLedgerReleaseEmail: SES's record that it did not send an email
// (Reject, Rendering Failure) frees each of its deliveries still
// "sending", once, for the next claim to send; a delivery already sent
// is left alone.
func TestLedgerReleaseEmail(t *testing.T) {
	ctx := context.Background()
	_, c := newFaulty(t)
	l := quick(c)
	claim := func(ev string) *worker.Claim {
		t.Helper()
		cl, err := l.Claim(ctx, claimReq(worker.DeliveryKey(ev, "ana@example.com")))
		if err != nil || cl.State != worker.Claimed {
			t.Fatalf("claim %s: %+v, %v", ev, cl, err)
		}
		return &cl
	}
	cls := []*worker.Claim{claim("e1"), claim("e2"), claim("e3")}
	if err := l.Sending(ctx, "email-1", cls); err != nil {
		t.Fatal(err)
	}
	// e3's answer came back: it is sent, and stays so.
	if err := l.Complete(ctx, cls[2], "ses-1"); err != nil {
		t.Fatal(err)
	}

	n, err := l.ReleaseEmail(ctx, "email-1")
	if err != nil || n != 2 {
		t.Fatalf("ReleaseEmail = %d, %v; want 2", n, err)
	}
	for _, cl := range cls[:2] {
		if got := readRecord(t, c, "ledger/"+cl.Key); got["state"] != "released" || got["settled_by"] != "ses-event" {
			t.Errorf("record %s = %v; want released by the SES event", cl.Key, got)
		}
	}
	if got := readRecord(t, c, "ledger/"+cls[2].Key); got["state"] != "sent" {
		t.Errorf("the sent delivery became %v", got["state"])
	}
	if n, err := l.ReleaseEmail(ctx, "email-1"); err != nil || n != 0 {
		t.Errorf("ReleaseEmail again = %d, %v; want 0", n, err)
	}
	if n, err := l.ReleaseEmail(ctx, "no-such-email"); err != nil || n != 0 {
		t.Errorf("ReleaseEmail of an unknown email = %d, %v; want 0, nil", n, err)
	}
	// The next run claims a released delivery at once, and may send it.
	again, err := l.Claim(ctx, claimReq(worker.DeliveryKey("e1", "ana@example.com")))
	if err != nil || again.State != worker.Claimed {
		t.Errorf("claim after release = %+v, %v; want Claimed", again, err)
	}
}

// TestLedgerSingleDeliveryEmail: an email of one delivery (every email
// of mode each) writes no index: its id names its record, so SES's
// Send event settles it, and its Reject event releases it, from the id
// alone. The event's index still lists the delivery.
func TestLedgerSingleDeliveryEmail(t *testing.T) {
	ctx := context.Background()
	_, c := newFaulty(t)
	l := quick(c)
	for _, tc := range []struct {
		name   string
		event  string
		settle func(emailID string) (int, error)
		want   string
	}{
		{"send event", "e1", func(id string) (int, error) { return l.SettleEmail(ctx, id, "ses-1") }, "sent"},
		{"reject event", "e2", func(id string) (int, error) { return l.ReleaseEmail(ctx, id) }, "released"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := worker.DeliveryKey(tc.event, "ana@example.com")
			req := claimReq(key)
			req.EventID = tc.event
			cl, err := l.Claim(ctx, req)
			if err != nil || cl.State != worker.Claimed {
				t.Fatalf("claim: %+v, %v", cl, err)
			}
			emailID := worker.NewEmailID([]string{key})
			if got, ok := worker.EmailDelivery(emailID); !ok || got != key {
				t.Fatalf("EmailDelivery(%s) = %s, %v; want %s", emailID, got, ok, key)
			}
			if err := l.Sending(ctx, emailID, []*worker.Claim{&cl}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("state"), Key: aws.String("ledger/emails/" + emailID + ".json")}); err == nil {
				t.Errorf("an email of one delivery wrote an index")
			}
			if n, err := tc.settle(emailID); err != nil || n != 1 {
				t.Fatalf("settle by the id = %d, %v; want 1", n, err)
			}
			if got := readRecord(t, c, "ledger/"+key); got["state"] != tc.want || got["settled_by"] != "ses-event" {
				t.Errorf("record = %v; want %s by the SES event", got, tc.want)
			}
			recs, err := l.EventDeliveries(ctx, tc.event)
			if err != nil || len(recs) != 1 || recs[0].Recipient != "ana@example.com" {
				t.Errorf("EventDeliveries(%s) = %+v, %v; want the one delivery", tc.event, recs, err)
			}
		})
	}
	// Ids of other emails name no delivery.
	for _, id := range []string{worker.NewEmailID(nil), worker.NewEmailID([]string{"a", "b"}), "email-1", worker.NewID() + "-" + worker.NewID()} {
		if key, ok := worker.EmailDelivery(id); ok {
			t.Errorf("EmailDelivery(%s) = %s; want none", id, key)
		}
	}
}
