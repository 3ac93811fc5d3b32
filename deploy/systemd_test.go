package deploy_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/config"
)

const unitPath = "systemd/reportmailer.service"

// unit is a systemd unit file: section -> key -> values, in order.
type unit map[string]map[string][]string

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not key=value in a section: %q", path, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// last returns the effective value of a key that may be set more than once.
func (u unit) last(section, key string) (string, bool) {
	v := u[section][key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// timespan parses a systemd time span such as "11min", "90s" or
// "1h 30min"; a bare number is seconds.
func timespan(s string) (time.Duration, bool) {
	units := map[string]time.Duration{"": time.Second, "s": time.Second, "sec": time.Second, "m": time.Minute, "min": time.Minute,
		"h": time.Hour, "hr": time.Hour, "ms": time.Millisecond, "us": time.Microsecond}
	var total time.Duration
	parts := regexp.MustCompile(`(\d+)\s*([a-z]*)`).FindAllStringSubmatch(s, -1)
	if len(parts) == 0 || strings.TrimSpace(regexp.MustCompile(`(\d+)\s*([a-z]*)`).ReplaceAllString(s, "")) != "" {
		return 0, false
	}
	for _, p := range parts {
		n, _ := strconv.Atoi(p[1])
		u, ok := units[p[2]]
		if !ok {
			return 0, false
		}
		total += time.Duration(n) * u
	}
	return total, true
}

func TestSystemdUnit(t *testing.T) {
	u := readUnit(t, unitPath)
	want := map[string]string{
		"DynamicUser":             "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"NoNewPrivileges":         "yes",
		"CapabilityBoundingSet":   "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"SystemCallFilter":        "@system-service",
		"Restart":                 "on-failure",
		"KillSignal":              "SIGTERM",
	}
	for k, v := range want {
		got, ok := u.last("Service", k)
		if k == "SystemCallFilter" {
			// Several lines add up; the allow list must be there.
			got = strings.Join(u["Service"][k], " ")
			ok = ok && strings.Contains(got, v)
			if ok {
				got = v
			}
		}
		if !ok || got != v {
			t.Errorf("[Service] %s=%q, want %q", k, got, v)
		}
	}
	if _, ok := u.last("Service", "EnvironmentFile"); !ok {
		t.Error("[Service] has no EnvironmentFile for the AWS settings")
	}

	// The command line: a subcommand and flags the binary has.
	exe, _ := u.last("Service", "ExecStart")
	args := strings.Fields(exe)
	if len(args) < 2 || filepath.Base(args[0]) != "reportmailer" {
		t.Fatalf("ExecStart=%q does not run reportmailer", exe)
	}
	flags := parseArgs(t, unitPath+": ExecStart", args[1:])
	if args[1] != "serve" {
		t.Errorf("ExecStart runs %q, want serve", args[1])
	}
	if flags["config"] == "" {
		t.Error("ExecStart gives no -config")
	}

	// The signing key arrives as a credential; the README must tell the
	// config where the service sees it.
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	creds := u["Service"]["LoadCredential"]
	if len(creds) == 0 {
		t.Error("[Service] has no LoadCredential for the signing key")
	}
	for _, c := range creds {
		name, _, _ := strings.Cut(c, ":")
		if p := "/run/credentials/reportmailer.service/" + name; !strings.Contains(string(readme), p) {
			t.Errorf("deploy/README.md does not give the key's path %s for the config", p)
		}
	}

	// systemd must not kill a run that is still inside its budget.
	stop, _ := u.last("Service", "TimeoutStopSec")
	d, ok := timespan(stop)
	if !ok {
		t.Fatalf("TimeoutStopSec=%q is not a time span", stop)
	}
	b, err := os.ReadFile("kubernetes/base/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cfg.Schedules {
		if d <= s.Budget {
			t.Errorf("TimeoutStopSec=%s does not exceed schedule %s's budget %s", stop, s.Name, s.Budget)
		}
	}
}

// TestSystemdAnalyze runs systemd's own checks where systemd-analyze is
// installed: the unit parses without a warning, and its exposure score
// stays low.
func TestSystemdAnalyze(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze is not installed; TestSystemdUnit checked the unit by parsing it")
		return
	}
	src, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	// verify wants the executable to exist: point it at the test build.
	dir := t.TempDir()
	unitFile := filepath.Join(dir, "reportmailer.service")
	text := strings.ReplaceAll(string(src), "/usr/local/bin/reportmailer", binary(t))
	if err := os.WriteFile(unitFile, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", unitFile).CombinedOutput()
	// verify exits 0 on a value it cannot parse, and only says so.
	if err != nil || strings.Contains(string(out), "reportmailer.service") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(sa, "security", "--offline=yes", "--threshold=30", unitFile).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security (exposure above 3.0 of 10): %v\n%s", err, lastLines(string(out), 3))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
