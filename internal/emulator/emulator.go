// Package emulator starts the npm-packaged AWS emulators for integration
// tests.
//
// The emulators are pinned in the module root's package.json and installed
// into node_modules by `npm ci` (`make test` runs it). Each Start function
// runs one emulator as a node child process listening on a free 127.0.0.1
// port, waits until it answers its health check, and stops it when the
// test (or subtest) that started it ends. If node or the packages are
// missing the test fails rather than skips: an integration test that
// quietly does not run is a defect in CI.
//
// Point aws-sdk-go-v2 clients at the returned base URL with static
// credentials and region us-east-1; the emulators do not check signatures.
package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"
)

// startTimeout bounds an emulator's start-up: node loading the package,
// binding its port and answering its health check. A warm start takes well
// under a second; a cold one on a busy CI runner can take several.
const startTimeout = 30 * time.Second

// stopTimeout is how long an emulator gets to exit after SIGTERM before it
// is killed.
const stopTimeout = 5 * time.Second

// tailSize is how much of an emulator's output a failure message quotes.
const tailSize = 4 << 10

// setup finds the module root and checks that node and the npm package pkg
// are installed there, failing t with what to run if they are not.
func setup(t testing.TB, pkg string) (root, node string) {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("emulator: %v", err)
	}
	node, err = exec.LookPath("node")
	if err != nil {
		t.Fatalf("emulator: node (>= 20) is not on PATH: install it, then run `npm ci` in %s (or `make test`, which does it)", root)
	}
	if err := checkPackage(root, pkg); err != nil {
		t.Fatalf("emulator: %v: run `npm ci` in %s (or `make test`, which does it)", err, root)
	}
	return root, node
}

// moduleRoot walks up from the working directory, which go test sets to
// the package's directory, to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// checkPackage reports whether node_modules holds pkg at the version
// package.json pins, so that a stale install fails with a clear message
// rather than odd emulator behaviour.
func checkPackage(root, pkg string) error {
	var manifest struct {
		Dependencies    map[string]string `json:"dependencies"`
		DevDependencies map[string]string `json:"devDependencies"`
	}
	if err := readJSON(filepath.Join(root, "package.json"), &manifest); err != nil {
		return err
	}
	want := manifest.DevDependencies[pkg]
	if want == "" {
		want = manifest.Dependencies[pkg]
	}
	if want == "" {
		return fmt.Errorf("package.json does not list %s", pkg)
	}
	var installed struct {
		Version string `json:"version"`
	}
	if err := readJSON(filepath.Join(root, "node_modules", pkg, "package.json"), &installed); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s is not installed in node_modules", pkg)
		}
		return err
	}
	if installed.Version != want {
		return fmt.Errorf("node_modules has %s %s, package.json pins %s", pkg, installed.Version, want)
	}
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	return nil
}

// process is a running emulator.
type process struct {
	name    string
	cmd     *exec.Cmd
	out     *tailBuffer // stdout and stderr, interleaved
	done    chan struct{}
	waitErr error // set before done is closed
}

// startProcess starts an emulator and arranges for t's cleanup to stop it.
// ready must match a line the emulator prints once its socket is bound,
// with the port as the first submatch; health is the path it answers 2xx
// on once it serves requests. It returns the emulator's base URL.
func startProcess(t testing.TB, name string, cmd *exec.Cmd, ready *regexp.Regexp, health string) (string, *process) {
	t.Helper()
	p := &process{name: name, cmd: cmd, out: &tailBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = sysProcAttr()
	// Bounds Wait if something else still holds the output pipes.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("emulator: start %s: %v", name, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	failed := false
	t.Cleanup(func() {
		if exited, err := p.stop(); exited && !failed {
			t.Errorf("emulator: %s exited before the test ended: %v\n%s", name, err, p.out.tail())
		}
	})

	fail := func(format string, args ...any) {
		t.Helper()
		failed = true
		t.Fatalf("emulator: %s: %s\noutput:\n%s", name, fmt.Sprintf(format, args...), p.out.tail())
	}
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()

	var port int
	for port == 0 {
		if m := ready.FindSubmatch(p.out.bytes()); m != nil {
			port, _ = strconv.Atoi(string(m[1]))
			if port <= 0 || port > 65535 {
				fail("reported port %q", m[1])
			}
			break
		}
		select {
		case <-p.done:
			fail("exited during start-up: %v", p.waitErr)
		case <-tick.C:
			if time.Now().After(deadline) {
				fail("did not report its port within %v", startTimeout)
			}
		}
	}

	base := "http://127.0.0.1:" + strconv.Itoa(port)
	client := &http.Client{Timeout: time.Second}
	var lastErr error
	for {
		resp, err := client.Get(base + health)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return base, p
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		lastErr = err
		select {
		case <-p.done:
			fail("exited during start-up: %v", p.waitErr)
		case <-tick.C:
			if time.Now().After(deadline) {
				fail("GET %s did not succeed within %v: %v", health, startTimeout, lastErr)
			}
		}
	}
}

// stop ends the emulator's process group: SIGTERM, then SIGKILL if it has
// not exited within stopTimeout. It reports whether the process had
// already exited by itself, and how.
func (p *process) stop() (exited bool, err error) {
	select {
	case <-p.done:
		killGroup(p.cmd, true) // anything it left behind
		return true, p.waitErr
	default:
	}
	killGroup(p.cmd, false)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
	}
	killGroup(p.cmd, true)
	<-p.done
	return false, nil
}

// tailBuffer keeps the most recent output of a process.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

// keep is how much output tailBuffer holds: enough to find the start-up
// line in and to quote a useful tail from.
const keep = 64 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 2*keep {
		t.b = append([]byte(nil), t.b[len(t.b)-keep:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.b...)
}

// tail returns the last tailSize bytes of output, for failure messages.
func (t *tailBuffer) tail() string {
	b := t.bytes()
	if len(b) == 0 {
		return "(no output)"
	}
	if len(b) > tailSize {
		return "..." + string(b[len(b)-tailSize:])
	}
	return string(b)
}
