package main

import (
	"encoding/json"
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
	body, err := rec.body()
	if err != nil {
		t.Fatal(err)
	}
	var got runRecord
	if err := json.NewDecoder(body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if len(got.Deliveries) != maxRunDeliveries || got.DeliveriesOmitted != 5 {
		t.Errorf("listed %d, omitted %d; want %d and 5", len(got.Deliveries), got.DeliveriesOmitted, maxRunDeliveries)
	}
	var b strings.Builder
	printRun(&b, &got)
	if !strings.Contains(b.String(), "and 5 more deliveries") {
		t.Errorf("history does not say some were left out:\n%s", b.String()[max(0, b.Len()-300):])
	}
}

// TestCronPeriod: the period "no successful run in two periods" counts
// is the longest gap between firings, whatever day it is taken on.
func TestCronPeriod(t *testing.T) {
	day := 24 * time.Hour
	mon := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC) // a Monday
	fri := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name, spec string
		from       time.Time
		want       time.Duration
	}{
		{"weekdays, from a Monday", "0 7 * * 1-5", mon, 3 * day},
		{"weekdays, from a Friday", "0 7 * * 1-5", fri, 3 * day},
		{"daily", "0 7 * * *", mon, day},
		{"weekly", "0 8 * * 1", fri, 7 * day},
		{"every five minutes", "*/5 * * * *", mon, 5 * time.Minute},
		{"monthly: the longest month", "@monthly", mon, 31 * day},
		{"@every", "@every 90m", mon, 90 * time.Minute},
		{"twice a day, unevenly", "0 7,9 * * *", mon, 22 * time.Hour},
		{"yearly: 2028 is a leap year", "0 0 1 1 *", mon, 366 * day},
		{"never fires", "0 0 30 2 *", mon, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sched, err := config.ParseCron(tt.spec, time.UTC)
			if err != nil {
				t.Fatal(err)
			}
			if got := cronPeriod(sched, tt.from); got != tt.want {
				t.Errorf("cronPeriod(%q from %s) = %s, want %s", tt.spec, tt.from.Format("Mon 2006-01-02"), got, tt.want)
			}
		})
	}
}
