package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker"
)

func TestLastSlot(t *testing.T) {
	now := time.Date(2026, 12, 3, 16, 7, 0, 0, time.UTC)
	tests := []struct {
		spec string
		want time.Time
	}{
		{"*/5 * * * *", time.Date(2026, 12, 3, 16, 5, 0, 0, time.UTC)},
		{"0 8 * * 1", time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)},
		{"@monthly", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
		{"0 0 1 1 *", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"7 16 * * *", now},
	}
	for _, tt := range tests {
		sched, err := config.ParseCron(tt.spec, time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := lastSlot(sched, now)
		if !ok || !got.Equal(tt.want) {
			t.Errorf("lastSlot(%q) = %s, %v; want %s", tt.spec, got, ok, tt.want)
		}
	}
}

// TestRunRecordListsAtMostMaxDeliveries: a run's record, which it holds
// in memory until the run ends, stops listing deliveries past the cap
// and counts the rest.
func TestRunRecordListsAtMostMaxDeliveries(t *testing.T) {
	rec := startRun(config.Schedule{Name: "weekly"}, "serve", time.Now())
	for i := range maxRunDeliveries + 5 {
		rec.add(worker.DeliveryResult{EventID: fmt.Sprint(i), Outcome: worker.OutcomeDelivered})
	}
	if len(rec.Deliveries) != maxRunDeliveries || rec.DeliveriesOmitted != 5 {
		t.Errorf("listed %d, omitted %d; want %d and 5", len(rec.Deliveries), rec.DeliveriesOmitted, maxRunDeliveries)
	}
	var b strings.Builder
	printRun(&b, rec)
	if !strings.Contains(b.String(), "and 5 more deliveries") {
		t.Errorf("history does not say some were left out:\n%s", b.String()[max(0, b.Len()-300):])
	}
}
