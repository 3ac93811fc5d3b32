package main

// The fault tests judge their runs with internal/outcome, on this
// package's emulator set-up.

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/internal/outcome"
)

// stack is e's emulators, as internal/outcome reads them.
func (e *itEnv) stack() outcome.Stack {
	return outcome.Stack{SQS: e.sqs, S3: e.s3, SESURL: e.sesURL, Bucket: itBucket, Since: e.started}
}

// queuesWith is e.queues with maxReceiveCount set.
func (e *itEnv) queuesWith(t *testing.T, maxReceive int) (string, string) {
	t.Helper()
	e.queueCount++
	return e.stack().Queues(t, fmt.Sprintf("it-%s-%d-%d", e.name, time.Now().UnixNano()%1e9, e.queueCount), maxReceive)
}

// editConfig replaces, in the config file at path, each old of the
// old, new pairs in edits by its new; old must be there.
func editConfig(t *testing.T, path string, edits ...string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(s, edits[i]) {
			t.Fatalf("config %s has no %q to replace:\n%s", path, edits[i], s)
		}
		s = strings.Replace(s, edits[i], edits[i+1], 1)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
