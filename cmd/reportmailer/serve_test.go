package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/internal/s3test"
	"github.com/reportmailer/reportmailer/worker/store"
)

func TestSlotJobRunsOncePerSlotAcrossReplicas(t *testing.T) {
	_, client := s3test.Start(t, "state")
	tests := []struct {
		name, spec string
		runs       int
	}{
		{"wall-clock spec: one replica runs", "0 7 * * *", 1},
		{"@every: not aligned across replicas, both run", "@every 1h", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sched, err := config.ParseCron(tt.spec, time.UTC)
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			runs := 0
			replica := func() func() {
				a := &app{logger: slog.New(slog.NewTextHandler(&logs, nil)),
					leases: &store.Leases{Client: client, Bucket: "state", Prefix: "slots/" + tt.name + "/"}}
				return slotJob(context.Background(), a, "daily", sched, func(time.Time) { runs++ })
			}
			one, two := replica(), replica()
			one()
			two()
			if runs != tt.runs {
				t.Errorf("%d runs, want %d\n%s", runs, tt.runs, logs.String())
			}
			if tt.runs == 1 && !strings.Contains(logs.String(), "another replica took this slot") {
				t.Errorf("the skipped replica should say why:\n%s", logs.String())
			}
		})
	}
}
