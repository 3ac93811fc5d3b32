package emulator

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// fauxqsLauncher is the script, relative to the module root, that runs
// fauxqs on 127.0.0.1 (its own CLI binds 0.0.0.0). It sits inside the
// module so that node resolves "fauxqs" from the root's node_modules.
const fauxqsLauncher = "internal/emulator/fauxqs.mjs"

var fauxqsReady = regexp.MustCompile(`fauxqs listening on port (\d+)`)

// StartFauxqs starts fauxqs (SQS, SNS and S3 on one port) on a free
// 127.0.0.1 port and returns its base URL, http://127.0.0.1:port. It
// returns once GET /health answers, and stops the emulator when t's
// cleanups run. Each call starts a separate, empty emulator.
//
// Queue URLs it returns use the host clients dial, so they point back at
// the base URL. It fails t if node or the fauxqs package is missing, or if
// fauxqs does not start; the failure quotes the tail of its output.
func StartFauxqs(t testing.TB) string {
	t.Helper()
	root, node := setup(t, "fauxqs")
	script := filepath.Join(root, fauxqsLauncher)
	// Stat through os so that go test's cache notices edits to the script.
	if _, err := os.Stat(script); err != nil {
		t.Fatalf("emulator: fauxqs launcher: %v", err)
	}
	cmd := exec.Command(node, script, "0")
	cmd.Dir = root
	base, _ := startProcess(t, "fauxqs", cmd, fauxqsReady, "/health")
	return base
}
