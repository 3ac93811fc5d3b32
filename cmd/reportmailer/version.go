package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// Stamped at build time by the image and `make build`:
//
//	go build -ldflags "-X main.version=v1.2.0 -X main.commit=$(git rev-parse HEAD)"
//
// A plain `go build` or `go install` leaves them empty, and buildInfo
// falls back to what the Go toolchain records in the binary.
var (
	version string
	commit  string
)

func (m *Main) version(_ context.Context, args []string) error {
	fs := m.newFlagSet("version", "version")
	if err := parse(fs, args); err != nil {
		return err
	}
	v, c := buildInfo(debug.ReadBuildInfo)
	fmt.Fprintf(m.Stdout, "reportmailer %s (commit %s, %s %s/%s)\n", v, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// buildInfo returns the version and commit: the stamped ones, or else
// the module version and VCS revision the toolchain recorded ("-dirty"
// when the tree had uncommitted changes), or "unknown".
func buildInfo(read func() (*debug.BuildInfo, bool)) (v, c string) {
	v, c = version, commit
	if bi, ok := read(); ok {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		if c == "" {
			var rev string
			var dirty bool
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					dirty = s.Value == "true"
				}
			}
			if rev != "" && dirty {
				rev += "-dirty"
			}
			c = rev
		}
	}
	if v == "" {
		v = "devel"
	}
	if c == "" {
		c = "unknown"
	}
	return v, c
}
