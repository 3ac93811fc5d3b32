package main

import (
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/config"
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
