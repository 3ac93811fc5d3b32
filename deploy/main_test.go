package deploy_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "reportmailer-deploy-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Values the test build stamps, through the -X symbols the Dockerfile
// uses, so that `reportmailer version` shows whether they took.
const (
	stampVersion = "v0.0.0-deploytest"
	stampCommit  = "0123456789abcdef0123456789abcdef01234567"
)

var build struct {
	once sync.Once
	path string
	err  error
}

// binary builds cmd/reportmailer once per test run, stamped with the
// Dockerfile's -X symbols. It keeps the environment's CGO_ENABLED,
// unlike the image: -X only changes the link, so the build reuses the
// packages `go test ./...` has just compiled instead of compiling them
// all again without cgo.
func binary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		syms := dockerfileStamps(t)
		ldflags := fmt.Sprintf("-X %s=%s -X %s=%s", syms["VERSION"], stampVersion, syms["COMMIT"], stampCommit)
		build.path = filepath.Join(binDir, "reportmailer")
		cmd := exec.Command("go", "build", "-ldflags", ldflags, "-o", build.path, "./cmd/reportmailer")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// dockerfileStamps returns the Go symbols the Dockerfile's -ldflags set,
// by the build argument that fills each: {"VERSION": "main.version", ...}.
func dockerfileStamps(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	syms := map[string]string{}
	for _, m := range regexp.MustCompile(`-X ([\w./]+)=\$\{?(\w+)\}?`).FindAllStringSubmatch(string(b), -1) {
		syms[m[2]] = m[1]
	}
	if syms["VERSION"] == "" || syms["COMMIT"] == "" {
		t.Fatalf("the Dockerfile stamps %v; want -X SYMBOL=${VERSION} and -X SYMBOL=${COMMIT}", syms)
	}
	return syms
}

// cliFlags returns the flags `reportmailer <cmd...> -help` lists, each
// with whether it takes a value.
func cliFlags(t *testing.T, cmd []string) map[string]bool {
	t.Helper()
	c := exec.Command(binary(t), slices.Concat(cmd, []string{"-help"})...)
	c.Env = []string{"HOME=" + t.TempDir()}
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("reportmailer %s -help: %v\n%s", strings.Join(cmd, " "), err, out)
	}
	flags := map[string]bool{}
	// flag.PrintDefaults: "  -name type" for a flag that takes a value,
	// "  -name" alone for a bool.
	for _, m := range regexp.MustCompile(`(?m)^  -(\S+)( \S+)?`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = m[2] != ""
	}
	if len(flags) == 0 {
		t.Fatalf("reportmailer %s -help lists no flags:\n%s", strings.Join(cmd, " "), out)
	}
	return flags
}

// parseArgs checks a command line the deploy files give the binary:
// the subcommand and every flag must exist. It returns the flags' values.
func parseArgs(t *testing.T, where string, args []string) map[string]string {
	t.Helper()
	if len(args) == 0 {
		t.Fatalf("%s: no arguments", where)
	}
	n := 1
	if args[0] == "config" {
		n = 2
	}
	known := cliFlags(t, args[:n])
	values := map[string]string{}
	for i := n; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			t.Errorf("%s: unexpected argument %q", where, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takesValue, ok := known[name]
		if !ok {
			t.Errorf("%s: reportmailer %s has no flag -%s", where, strings.Join(args[:n], " "), name)
			continue
		}
		if takesValue && !hasVal {
			if i+1 == len(args) {
				t.Errorf("%s: -%s has no value", where, name)
				continue
			}
			i++
			val = args[i]
		}
		values[name] = val
	}
	return values
}

// exitCode reads a constant of cmd/reportmailer/main.go, such as
// ExitPartial, so the manifests are checked against the code's codes.
func exitCode(t *testing.T, name string) int {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", "cmd", "reportmailer", "main.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if obj := f.Scope.Lookup(name); obj != nil {
		if vs, ok := obj.Decl.(*ast.ValueSpec); ok {
			for i, id := range vs.Names {
				if id.Name == name {
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok {
						n, err := strconv.Atoi(lit.Value)
						if err == nil {
							return n
						}
					}
				}
			}
		}
	}
	t.Fatalf("cmd/reportmailer/main.go has no integer constant %s", name)
	return 0
}
