package store_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/store"
)

func TestPendingStoresEachEventOncePerUser(t *testing.T) {
	ctx := context.Background()
	p := &store.Pending{Client: newS3(t), Bucket: "state", Prefix: store.PendingPrefix("rm/ledger/", "weekly")}
	at := time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)
	put := func(id, user string) {
		t.Helper()
		ev := event.Event{ID: id, User: event.User{ID: user, Email: "x@example.com"},
			Reports: []event.Report{{Bucket: "reports", Key: id + ".pdf", Title: id}}}
		if err := p.Put(ctx, worker.PendingEvent{Event: ev, Ingested: at, MessageID: "m-" + id, Body: "{}"}); err != nil {
			t.Fatal(err)
		}
	}
	put("e1", "ana/with/slashes")
	put("e2", "ana/with/slashes")
	put("e1", "ana/with/slashes") // a second copy of the message
	put("e3", "bo")
	var users []string
	if err := p.Users(ctx, func(u string) error { users = append(users, u); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 {
		t.Fatalf("users = %v, want 2", users)
	}
	// An entry that is not JSON comes apart, and the user's others with it.
	corrupt := p.Prefix + users[0] + "/zz.json"
	if _, err := p.Client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("state"), Key: aws.String(corrupt), Body: strings.NewReader("{truncated")}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	var ana []worker.PendingEvent
	var unreadable []worker.UnreadableEntry
	for _, u := range users {
		es, bad, err := p.List(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		unreadable = append(unreadable, bad...)
		for _, e := range es {
			ids = append(ids, e.Event.ID)
			if !e.Ingested.Equal(at) || e.Key == "" || e.Body != "{}" {
				t.Errorf("entry = %+v", e)
			}
			if e.Event.User.ID == "ana/with/slashes" {
				ana = append(ana, e)
			}
		}
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"e1", "e2", "e3"}) {
		t.Errorf("pending ids = %v, want e1 e2 e3 once each", ids)
	}
	if len(unreadable) != 1 || unreadable[0].Key != corrupt || unreadable[0].Body != "{truncated" || unreadable[0].Err == nil {
		t.Errorf("unreadable = %+v, want %s with its body", unreadable, corrupt)
	}
	if err := p.Delete(ctx, worker.PendingEvent{Key: corrupt}); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, ana[0]); err != nil {
		t.Fatal(err)
	}
	if n, err := p.Count(ctx); err != nil || n != 2 {
		t.Errorf("Count = %d, %v; want 2", n, err)
	}
}

// TestPendingUsersPagesEachUserOnce: past a page of the listing, each
// user is named once, whether the store pages by users or by keys
// (gofakes3 counts keys, and names a user whose keys straddle two
// pages in both).
func TestPendingUsersPagesEachUserOnce(t *testing.T) {
	ctx := context.Background()
	p := &store.Pending{Client: newS3(t), Bucket: "state", Prefix: store.PendingPrefix("rm/ledger/", "weekly")}
	const users = 1050
	for i := range users {
		u := fmt.Sprintf("u%04d", i)
		for j := range 1 + i%3 {
			ev := event.Event{ID: fmt.Sprintf("e-%s-%d", u, j), User: event.User{ID: u}, Reports: []event.Report{{Bucket: "reports", Key: u + ".pdf"}}}
			if err := p.Put(ctx, worker.PendingEvent{Event: ev, Ingested: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	seen := map[string]int{}
	if err := p.Users(ctx, func(u string) error { seen[u]++; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != users {
		t.Errorf("%d users listed, want %d", len(seen), users)
	}
	for u, n := range seen {
		if n != 1 {
			t.Errorf("user %s listed %d times", u, n)
		}
	}
}
