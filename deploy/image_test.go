package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestImageStampsVersion builds the binary with the Dockerfile's -X
// symbols and checks that `reportmailer version` shows what they set:
// a renamed variable would leave every image reporting "devel".
func TestImageStampsVersion(t *testing.T) {
	out, err := exec.Command(binary(t), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("reportmailer version: %v\n%s", err, out)
	}
	for _, want := range []string{stampVersion, stampCommit} {
		if !strings.Contains(string(out), want) {
			t.Errorf("reportmailer version printed %q; the Dockerfile's -ldflags did not stamp %q", out, want)
		}
	}
	// make build stamps the same symbols as the image.
	mk, err := os.ReadFile(filepath.Join("..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	for arg, sym := range dockerfileStamps(t) {
		if !strings.Contains(string(mk), "-X "+sym+"=$("+arg+")") {
			t.Errorf("Makefile: LDFLAGS does not set -X %s=$(%s) as the Dockerfile does", sym, arg)
		}
	}
}

// TestDockerfile checks the image's shape: the Go release go.mod asks
// for, pinned to a patch; a static binary; distroless and non-root.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	gomod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goDirective := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindSubmatch(gomod)
	if goDirective == nil {
		t.Fatal("go.mod has no go directive")
	}
	m := regexp.MustCompile(`(?m)^FROM golang:(\d+)\.(\d+)\.(\d+)\S* AS build$`).FindStringSubmatch(df)
	if m == nil {
		t.Fatal("Dockerfile: want FROM golang:X.Y.Z AS build, a Go release pinned to its patch")
	}
	if goLine := string(goDirective[1]) + "." + string(goDirective[2]); m[1]+"."+m[2] != goLine {
		t.Errorf("Dockerfile builds with Go %s.%s.%s; go.mod says go %s", m[1], m[2], m[3], goLine)
	}
	for _, want := range []string{
		"CGO_ENABLED=0",
		"-trimpath",
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"USER 65532:65532", // the pods' runAsUser
		"./cmd/reportmailer",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}
