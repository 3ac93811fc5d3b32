package store_test

import (
	"context"
	"testing"

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
