package main

import (
	"bytes"
	"context"
	"runtime/debug"
	"strings"
	"testing"
)

func TestBuildInfo(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	tests := []struct {
		name            string
		stampV, stampC  string
		info            *debug.BuildInfo
		wantV, wantComm string
	}{
		{"stamped wins over the toolchain's record", "v1.4.0", "0123abc",
			&debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-x"}, Settings: vcs("fff", "false")}, "v1.4.0", "0123abc"},
		{"go build in a clean checkout", "", "",
			&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("3936b55c", "false")}, "devel", "3936b55c"},
		{"go build with local changes", "", "",
			&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("3936b55c", "true")}, "devel", "3936b55c-dirty"},
		{"go install of a tagged module", "", "",
			&debug.BuildInfo{Main: debug.Module{Version: "v1.3.2"}}, "v1.3.2", "unknown"},
		{"no build info", "", "", nil, "devel", "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			version, commit = tt.stampV, tt.stampC
			t.Cleanup(func() { version, commit = "", "" })
			v, c := buildInfo(func() (*debug.BuildInfo, bool) { return tt.info, tt.info != nil })
			if v != tt.wantV || c != tt.wantComm {
				t.Errorf("buildInfo() = %q, %q; want %q, %q", v, c, tt.wantV, tt.wantComm)
			}
		})
	}
}

func TestVersionCommand(t *testing.T) {
	version, commit = "v9.8.7", "cafef00d"
	t.Cleanup(func() { version, commit = "", "" })
	var out, errOut bytes.Buffer
	m := &Main{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }, Environ: func() []string { return nil }}
	if code := m.Run(context.Background(), []string{"version"}); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if got := out.String(); !strings.HasPrefix(got, "reportmailer v9.8.7 (commit cafef00d, go") {
		t.Errorf("version printed %q", got)
	}
	if code := m.Run(context.Background(), []string{"version", "extra"}); code != ExitUsage {
		t.Errorf("version extra: exit %d, want %d", code, ExitUsage)
	}
}
