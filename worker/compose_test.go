package worker_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/templates"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
)

// typed is a native event whose reports have the given types.
func typed(t *testing.T, id, user, locale, tz string, recipients []string, types ...string) string {
	t.Helper()
	var reports []map[string]any
	for i, typ := range types {
		reports = append(reports, map[string]any{"bucket": "reports", "key": id + "/" + string(rune('a'+i)) + ".pdf", "title": "Report " + typ, "type": typ})
	}
	b, err := json.Marshal(map[string]any{
		"version": 1, "type": "report.ready", "id": id,
		"user":       map[string]string{"id": user, "email": user + "@example.com", "name": "Zoë Ångström", "locale": locale, "time_zone": tz},
		"recipients": recipients, "reports": reports,
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// typedSets has a set of its own for report type "invoice", from a
// templates_dir, besides the embedded default and finance sets.
func typedSets(t *testing.T) *templates.Sets {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "invoice"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "invoice", templates.SubjectFile), []byte("Invoice set: {{len .Links}} {{.ReportType}}"), 0o644); err != nil {
		t.Fatal(err)
	}
	sets, err := templates.LoadSets(dir)
	if err != nil {
		t.Fatal(err)
	}
	return sets
}

func newWorker(t *testing.T, mode worker.Mode, tmpl worker.Templates, signer worker.Signer, b *bundle) *worker.Worker {
	t.Helper()
	w, err := worker.New(worker.Config{
		Schedule: "test", Mode: mode, From: "reports@example.com", WaitTime: time.Second, Bucket: "reports",
		Recipients: worker.RecipientPolicy{AllowedDomains: []string{"example.com"}},
	}, worker.Deps{
		Queue: b.queue, Objects: anyObjects{}, Signer: signer, Templates: tmpl,
		Mailer: b.mailer, Ledger: b.ledger,
		Logger: slog.New(slog.NewTextHandler(b.logs, nil)),
		Now:    func() time.Time { return b.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestComposePicksTheSetByReportType(t *testing.T) {
	tests := []struct {
		name   string
		mode   worker.Mode
		bodies func(t *testing.T) []string
		want   []string // subjects, in order
	}{
		{"one type", worker.ModeEach, func(t *testing.T) []string {
			return []string{typed(t, "e1", "ana", "", "", nil, "invoice", "invoice")}
		}, []string{"Invoice set: 2 invoice"}},
		{"an embedded type set", worker.ModeEach, func(t *testing.T) []string {
			return []string{typed(t, "e1", "ana", "", "", nil, "finance")}
		}, []string{"Finance report ready: Report finance"}},
		{"mixed types in one event", worker.ModeEach, func(t *testing.T) []string {
			return []string{typed(t, "e1", "ana", "", "", nil, "invoice", "finance")}
		}, []string{"Your 2 reports are ready"}},
		{"a type with no set", worker.ModeEach, func(t *testing.T) []string {
			return []string{typed(t, "e1", "ana", "", "", nil, "Invoice")}
		}, []string{"Your report is ready: Report Invoice"}},
		{"no type", worker.ModeEach, func(t *testing.T) []string {
			return []string{typed(t, "e1", "ana", "", "", nil, "")}
		}, []string{"Your report is ready: Report"}},
		{"digest of one type", worker.ModeDigest, func(t *testing.T) []string {
			return []string{typed(t, "e1", "ana", "", "", nil, "invoice"), typed(t, "e2", "ana", "", "", nil, "invoice")}
		}, []string{"Invoice set: 2 invoice"}},
		{"digest mixing types", worker.ModeDigest, func(t *testing.T) []string {
			return []string{typed(t, "e1", "ana", "", "", nil, "invoice"), typed(t, "e2", "ana", "", "", nil, "finance")}
		}, []string{"Your reports: 2 new reports"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, b := setup(t, tt.mode, nil, tt.bodies(t)...)
			w := newWorker(t, tt.mode, typedSets(t), fakeSigner{}, b)
			if _, err := w.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range b.mailer.sent {
				got = append(got, e.Subject)
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("subjects %q, want %q", got, tt.want)
			}
		})
	}
}

// shortSigner signs links that expire after ttl.
type shortSigner struct{ ttl time.Duration }

func (s shortSigner) Sign(_ context.Context, r event.Report, now time.Time) (worker.Link, error) {
	return worker.Link{URL: "https://cdn.test/" + r.Key + "?Signature=s", Expires: now.Add(s.ttl)}, nil
}

func TestComposeShowsExpiryInTheUsersZoneAndLocale(t *testing.T) {
	tests := []struct {
		locale, tz string
		ttl        time.Duration
		want       []string
		not        string
	}{
		// now is 2026-11-26 07:00 UTC.
		{"de-DE", "Europe/Berlin", 48 * time.Hour, []string{"Link expires 28. November 2026, 08:00 CET"}, "less than 24 hours"},
		{"en-US", "America/New_York", 3 * time.Hour, []string{"Link expires November 26, 2026, 5:00 AM EST", "Download it soon: this link expires in less than 24 hours."}, ""},
		{"pt-BR", "America/Sao_Paulo", 7 * 24 * time.Hour, []string{"Link expires 3 de dezembro de 2026, 04:00 UTC-3"}, "less than 24 hours"},
		{"", "", 24 * time.Hour, []string{"Link expires 27 November 2026, 07:00 UTC"}, "less than 24 hours"},
	}
	for _, tt := range tests {
		t.Run(tt.locale+" "+tt.tz, func(t *testing.T) {
			_, b := setup(t, worker.ModeEach, nil, typed(t, "e1", "ana", tt.locale, tt.tz, nil, "x"))
			w := newWorker(t, worker.ModeEach, templates.DefaultSets(), shortSigner{tt.ttl}, b)
			if _, err := w.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			if len(b.mailer.sent) != 1 {
				t.Fatalf("sent %d emails", len(b.mailer.sent))
			}
			e := b.mailer.sent[0]
			for _, want := range tt.want {
				if !strings.Contains(e.Text, want) || !strings.Contains(e.HTML, want) {
					t.Errorf("text and HTML should both hold %q:\n%s", want, e.Text)
				}
			}
			if tt.not != "" && strings.Contains(e.Text, tt.not) {
				t.Errorf("text holds %q:\n%s", tt.not, e.Text)
			}
		})
	}
}

func TestPreviewSendsNothingAndMatchesDrain(t *testing.T) {
	objects := fakeObjects{
		"reports/inbox/Monthly usage.csv": {Size: 2048, ContentType: "text/csv", Metadata: map[string]string{
			"user-id": "u-bo", "user-email": "bo@example.com", "title": "Monthly usage", "recipients": "cfo@example.com"}},
		"reports/a.pdf": {},
	}
	bodies := []string{
		native("e1", "ana", []string{"cfo@example.com", "mallory@evil.example"}, "a.pdf"),
		s3Notification("inbox/Monthly+usage.csv"),
		testEvent,
		`{"version":1,"type":"report.ready","id":"bad","user":{"id":"u","email":"not-an-address"},"reports":[{"bucket":"reports","key":"x.pdf"}]}`,
		native("e1", "ana", nil, "a.pdf"), // a second copy of e1
	}
	for _, mode := range []worker.Mode{worker.ModeEach, worker.ModeDigest} {
		t.Run(string(mode), func(t *testing.T) {
			w, b := setup(t, mode, nil) // no objects: Preview gets them from the options
			emails, err := w.Preview(context.Background(), bodies, worker.PreviewOptions{Objects: objects, Now: b.now})
			if err == nil || !strings.Contains(err.Error(), "body 4: a run would dead-letter it") || strings.Count(err.Error(), "\n") != 0 {
				t.Errorf("Preview error = %v, want body 4 alone reported as poison", err)
			}
			var to []string
			for _, e := range emails {
				to = append(to, strings.Join(e.To, ","))
			}
			if got := strings.Join(to, " "); got != "ana@example.com cfo@example.com bo@example.com cfo@example.com" {
				t.Errorf("Preview emails to %s", got)
			}
			if len(b.queue.deleted)+len(b.queue.dead)+len(b.queue.released)+len(b.mailer.sent)+len(b.ledger.recs) != 0 || b.queue.receives != 0 {
				t.Errorf("Preview touched the queue, mailer or ledger: %+v %+v %+v", b.queue, b.mailer.sent, b.ledger.recs)
			}
			if !strings.Contains(b.logs.String(), "recipient=mallory@evil.example") {
				t.Errorf("the refusal should be logged:\n%s", b.logs)
			}

			// A drain of the same bodies sends exactly what Preview showed.
			dw, db := setup(t, mode, objects, bodies...)
			if _, err := dw.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			if len(db.mailer.sent) != len(emails) {
				t.Fatalf("drain sent %d emails, preview showed %d", len(db.mailer.sent), len(emails))
			}
			for i, sent := range db.mailer.sent {
				p := emails[i]
				if sent.Subject != p.Subject || sent.HTML != p.HTML || sent.Text != p.Text || strings.Join(sent.To, ",") != strings.Join(p.To, ",") {
					t.Errorf("email %d: drain sent %q to %v, preview showed %q to %v", i+1, sent.Subject, sent.To, p.Subject, p.To)
				}
			}
		})
	}
}

func TestPreviewWithoutObjectsSaysWhy(t *testing.T) {
	w, b := setup(t, worker.ModeEach, fakeObjects{})
	emails, err := w.Preview(context.Background(), []string{s3Notification("missing.pdf")}, worker.PreviewOptions{Now: b.now})
	if len(emails) != 0 || err == nil || !strings.Contains(err.Error(), "body 1") || !strings.Contains(err.Error(), "head s3://reports/missing.pdf") {
		t.Errorf("Preview = %d emails, %v", len(emails), err)
	}
}
