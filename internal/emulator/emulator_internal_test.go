package emulator

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCheckPackage(t *testing.T) {
	root := t.TempDir()
	write := func(path, content string) {
		t.Helper()
		path = filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("package.json", `{"devDependencies":{"fauxqs":"1.9.2","aws-ses-v2-local":"2.10.2"}}`)
	write("node_modules/fauxqs/package.json", `{"version":"1.9.2"}`)
	write("node_modules/aws-ses-v2-local/package.json", `{"version":"2.9.0"}`)

	tests := []struct {
		pkg, wantErr string
	}{
		{"fauxqs", ""},
		{"aws-ses-v2-local", "node_modules has aws-ses-v2-local 2.9.0, package.json pins 2.10.2"},
		{"kumo", "package.json does not list kumo"},
	}
	for _, tt := range tests {
		err := checkPackage(root, tt.pkg)
		if got := fmt.Sprint(err); (tt.wantErr == "" && err != nil) || (tt.wantErr != "" && got != tt.wantErr) {
			t.Errorf("checkPackage(%s) = %v, want %q", tt.pkg, err, tt.wantErr)
		}
	}

	write("package.json", `{"devDependencies":{"fauxqs":"1.9.2"}}`)
	os.RemoveAll(filepath.Join(root, "node_modules"))
	if err := checkPackage(root, "fauxqs"); err == nil || err.Error() != "fauxqs is not installed in node_modules" {
		t.Errorf("checkPackage without node_modules = %v", err)
	}
}

// fakeTB records what startProcess reports and runs its cleanups on
// demand.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	fatal    string
	errors   []string
	cleanups []func()
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

func (f *fakeTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// run calls fn as a test body would, on its own goroutine so that Fatalf
// can end it.
func (f *fakeTB) run(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
}

func TestStartProcessReportsOutputOnFailure(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not on PATH; install Node >= 20 and run `npm ci` (or `make test`)")
	}
	f := &fakeTB{TB: t}
	f.run(func() {
		cmd := exec.Command(node, "-e", `console.log("loading"); console.error("boom: cannot start"); process.exit(3)`)
		_, _ = startProcess(f, "broken", cmd, regexp.MustCompile(`never printed (\d+)`), "/health")
	})
	f.runCleanups()
	t.Logf("fatal message:\n%s", f.fatal)
	if !strings.Contains(f.fatal, "broken: exited during start-up: exit status 3") ||
		!strings.Contains(f.fatal, "boom: cannot start") || !strings.Contains(f.fatal, "loading") {
		t.Errorf("fatal message does not explain the failure:\n%s", f.fatal)
	}
	if len(f.errors) != 0 {
		t.Errorf("cleanup reported again after the fatal: %q", f.errors)
	}
}

func TestStartProcessReportsCrashDuringTest(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not on PATH; install Node >= 20 and run `npm ci` (or `make test`)")
	}
	// A server that is healthy, then dies.
	script := `
const http = require("node:http");
const s = http.createServer((req, res) => { res.end("ok"); setTimeout(() => { console.error("crashed"); process.exit(7); }, 10); });
s.listen(0, "127.0.0.1", () => console.log("port " + s.address().port));`
	f := &fakeTB{TB: t}
	var (
		base string
		p    *process
	)
	f.run(func() {
		base, p = startProcess(f, "flaky", exec.Command(node, "-e", script), regexp.MustCompile(`port (\d+)`), "/")
	})
	if f.fatal != "" {
		t.Fatalf("start-up failed: %s", f.fatal)
	}
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Errorf("base = %q", base)
	}
	// Ask once, so that it crashes, and wait for that.
	if resp, err := http.Get(base); err == nil {
		resp.Body.Close()
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not exit")
	}
	f.runCleanups()
	if len(f.errors) != 1 || !strings.Contains(f.errors[0], "flaky exited before the test ended: exit status 7") ||
		!strings.Contains(f.errors[0], "crashed") {
		t.Errorf("cleanup errors = %q", f.errors)
	}
}

func TestSetupFailsWithInstructions(t *testing.T) {
	f := &fakeTB{TB: t}
	f.run(func() { setup(f, "left-pad") })
	t.Logf("fatal message: %s", f.fatal)
	if !strings.Contains(f.fatal, "package.json does not list left-pad") || !strings.Contains(f.fatal, "`npm ci`") ||
		!strings.Contains(f.fatal, "make test") {
		t.Errorf("fatal message = %q", f.fatal)
	}
}
