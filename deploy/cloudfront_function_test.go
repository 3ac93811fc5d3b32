package deploy_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/reportmailer/reportmailer/worker/linktoken"
)

// TestDenyRevokedFunction runs the tests of the CloudFront Function
// that denies revoked links (cloudfront-function/deny-revoked.test.mjs)
// with Node, which the project's emulators already need: a revoked
// token is denied, any other request goes on unchanged.
func TestDenyRevokedFunction(t *testing.T) {
	cmd := exec.Command("node", "--test", "cloudfront-function/deny-revoked.test.mjs")
	cmd.Env = append(os.Environ(), "NODE_OPTIONS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "# pass 7") || !strings.Contains(string(out), "# fail 0") {
		t.Errorf("node --test did not run the 7 cases:\n%s", out)
	}
}

// TestDenyRevokedFunctionSize: CloudFront Functions take at most 10 KB
// of code, the runtime's module is imported as it documents, and the
// parameter it reads is the one the worker writes.
func TestDenyRevokedFunctionSize(t *testing.T) {
	b, err := os.ReadFile("cloudfront-function/deny-revoked.js")
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 10*1024 {
		t.Errorf("deny-revoked.js is %d bytes, over CloudFront Functions' 10 KB", len(b))
	}
	for _, want := range []string{"import cf from 'cloudfront';", "cf.kvs()", "async function handler(event)", "const PARAM = '" + linktoken.Param + "';"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("deny-revoked.js lacks %q", want)
		}
	}
}
