package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/reportmailer/reportmailer/config"
)

// TestLogFormatAuto: log.format auto writes JSON to a stderr that is
// not a terminal (a pipe, as under Kubernetes or systemd, or a file),
// and text to a writer that is not a file; an explicit format wins.
func TestLogFormatAuto(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	tests := []struct {
		name   string
		w      any
		format string
		want   string
	}{
		{"auto, a pipe", pw, config.LogFormatAuto, "json"},
		{"auto, a file", file, config.LogFormatAuto, "json"},
		{"auto, a buffer", &bytes.Buffer{}, config.LogFormatAuto, "text"},
		{"text, a pipe", pw, "text", "text"},
		{"json, a buffer", &bytes.Buffer{}, "json", "json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := tt.w.(interface{ Write([]byte) (int, error) })
			if got := logFormat(w, config.Log{Format: tt.format}); got != tt.want {
				t.Errorf("logFormat = %q, want %q", got, tt.want)
			}
		})
	}

	// What the logger built for a pipe writes is JSON, line by line.
	newLogger(pw, config.Log{Format: config.LogFormatAuto, Level: "info"}).Info("hello", "schedule", "daily")
	line, err := bufio.NewReader(pr).ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(line, &rec); err != nil || rec["msg"] != "hello" || rec["schedule"] != "daily" {
		t.Errorf("the line written to a pipe is not the JSON record: %q (%v)", line, err)
	}
}
