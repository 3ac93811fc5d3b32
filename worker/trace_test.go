package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/templates"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
)

// tokenSigner counts its signatures by report key and token, and puts
// the token in the URL as link.CloudFront does.
type tokenSigner struct {
	mu    sync.Mutex
	calls map[string]int
}

func (s *tokenSigner) Sign(_ context.Context, r event.Report, now time.Time) (worker.Link, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls == nil {
		s.calls = map[string]int{}
	}
	s.calls[r.Key+" "+r.Token]++
	return worker.Link{URL: "https://cdn.test/" + r.Key + "?rmt=" + r.Token + "&sig", Expires: now.Add(48 * time.Hour)}, nil
}

// TestDrainTracedLinksArePerRecipient: with a LinkToken, each
// recipient's email links carry that recipient's token for each event,
// and no one else's, and each (report, token) is signed once, in each
// mode and at each concurrency: the sign cache is keyed by the token.
func TestDrainTracedLinksArePerRecipient(t *testing.T) {
	token := func(eventID, rcpt string) string { return "T-" + eventID + "-" + strings.ToLower(rcpt) }
	for _, tt := range []struct {
		name        string
		mode        worker.Mode
		concurrency int
		bodies      []string
		want        map[string]int
	}{{
		name: "each, one at a time", mode: worker.ModeEach, concurrency: 1,
		bodies: []string{native("e1", "ana", []string{"bo@example.com", "Cy@example.com"}, "a.pdf", "b.pdf")},
		want: map[string]int{
			"a.pdf T-e1-ana@example.com": 1, "b.pdf T-e1-ana@example.com": 1,
			"a.pdf T-e1-bo@example.com": 1, "b.pdf T-e1-bo@example.com": 1,
			"a.pdf T-e1-cy@example.com": 1, "b.pdf T-e1-cy@example.com": 1,
		},
	}, {
		name: "digest, eight at a time", mode: worker.ModeDigest, concurrency: 8,
		bodies: []string{
			native("e1", "ana", []string{"bo@example.com"}, "a.pdf"),
			native("e3", "ana", nil, "d.pdf"),
		},
		want: map[string]int{"a.pdf T-e1-ana@example.com": 1, "d.pdf T-e3-ana@example.com": 1, "a.pdf T-e1-bo@example.com": 1},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			s := &tokenSigner{}
			m := &syncMailer{}
			q := &fakeQueue{}
			for i, body := range tt.bodies {
				q.pending = append(q.pending, worker.Message{ID: fmt.Sprintf("m%d", i), ReceiptHandle: fmt.Sprintf("r%d", i), Body: body})
			}
			w, err := worker.New(worker.Config{
				Schedule: "test", Mode: tt.mode, From: "reports@example.com", WaitTime: time.Second, Bucket: "reports",
				Recipients: worker.RecipientPolicy{AllowedDomains: []string{"example.com"}}, Concurrency: tt.concurrency,
			}, worker.Deps{
				Queue: q, Objects: anyObjects{}, Signer: s, Templates: templates.Default(), Mailer: m, Ledger: &memLedger{},
				Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), LinkToken: token,
			})
			if err != nil {
				t.Fatal(err)
			}
			if sum, err := w.Drain(context.Background()); err != nil || !sum.OK() {
				t.Fatalf("summary %+v, err %v", sum, err)
			}
			if fmt.Sprint(s.calls) != fmt.Sprint(tt.want) {
				t.Errorf("signatures by report and token %v, want %v", s.calls, tt.want)
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			if len(m.sent) == 0 {
				t.Fatal("no email sent")
			}
			for _, e := range m.sent {
				to := strings.ToLower(e.To[0])
				for _, id := range e.EventIDs {
					if !strings.Contains(e.Text, "rmt=T-"+id+"-"+to+"&") {
						t.Errorf("email to %s lacks its token for %s:\n%s", to, id, e.Text)
					}
				}
				if n := strings.Count(e.Text, "rmt=T-"); n != strings.Count(e.Text, "-"+to+"&") {
					t.Errorf("email to %s carries another recipient's token:\n%s", to, e.Text)
				}
			}
		})
	}
}
