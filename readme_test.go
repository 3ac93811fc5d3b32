package reportmailer_test

import (
	"bufio"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestReadmeDependencies keeps README's dependency table honest: it
// lists exactly the direct requirements of go.mod and the packages of
// package.json, and says "yes" in its production column exactly for the
// modules the reportmailer binary links.
func TestReadmeDependencies(t *testing.T) {
	rows := readmeDependencies(t)
	want := map[string]bool{}
	for _, m := range directRequirements(t, "go.mod") {
		want[m] = true
	}
	// The emulator tests' own module (test/kumo) and what it adds.
	for _, m := range directRequirements(t, "test/kumo/go.mod") {
		if m != "github.com/reportmailer/reportmailer" {
			want[m] = true
		}
	}
	var pkg struct{ Dependencies, DevDependencies map[string]string }
	b, err := os.ReadFile("package.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		t.Fatal(err)
	}
	for name := range maps.Keys(pkg.Dependencies) {
		want[name+" (npm)"] = true
	}
	for name := range maps.Keys(pkg.DevDependencies) {
		want[name+" (npm)"] = true
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if _, ok := rows[name]; !ok {
			t.Errorf("README's Dependencies table does not list %s: add a row saying why it is there", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(rows)) {
		if !want[name] {
			t.Errorf("README's Dependencies table lists %s, which is not a direct requirement in go.mod or package.json", name)
		}
	}

	out, err := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{.Path}}{{end}}", "./cmd/reportmailer").Output()
	if err != nil {
		t.Fatal(err)
	}
	linked := map[string]bool{}
	for _, m := range strings.Fields(string(out)) {
		linked[m] = true
	}
	for name, production := range rows {
		if production != linked[name] {
			t.Errorf("README says %s is in the production binary: %v; go list -deps ./cmd/reportmailer says %v", name, production, linked[name])
		}
	}
}

// readmeDependencies reads the table under "## Dependencies": the
// first column's name (with " (npm)" kept) and whether the second says
// yes.
func readmeDependencies(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open("README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string]bool{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## Dependencies"
			continue
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			t.Fatalf("README dependency row %q has too few cells", line)
		}
		name := strings.ReplaceAll(strings.TrimSpace(cells[1]), "`", "")
		production := strings.TrimSpace(cells[2])
		if production != "yes" && production != "no" {
			t.Errorf("README dependency %s: production column %q is not yes or no", name, production)
		}
		if _, dup := rows[name]; dup {
			t.Errorf("README lists %s twice", name)
		}
		rows[name] = production == "yes"
	}
	if len(rows) == 0 {
		t.Fatal(`README.md has no "## Dependencies" table`)
	}
	return rows
}

// directRequirements are go.mod's requirements without "// indirect".
func directRequirements(t *testing.T, gomod string) []string {
	t.Helper()
	b, err := os.ReadFile(gomod)
	if err != nil {
		t.Fatal(err)
	}
	var mods []string
	block := false
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "require (":
			block = true
			continue
		case block && line == ")":
			block = false
			continue
		case strings.HasPrefix(line, "require "):
			line = strings.TrimPrefix(line, "require ")
		case !block:
			continue
		}
		if f := strings.Fields(line); len(f) >= 2 && !strings.Contains(line, "// indirect") {
			mods = append(mods, f[0])
		}
	}
	if len(mods) == 0 {
		t.Fatalf("%s has no direct requirements", gomod)
	}
	return mods
}
