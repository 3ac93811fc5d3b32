package main

import (
	"strings"
	"testing"
)

// TestEveryCommandHasHelp: each command of the table, and each group,
// answers -help with its usage and exit 0, and "help" lists them all.
func TestEveryCommandHasHelp(t *testing.T) {
	code, top, _ := run(t, "help")
	if code != ExitOK {
		t.Fatalf("help: exit %d", code)
	}
	for _, c := range commands {
		if c.run != nil {
			t.Run(c.name, func(t *testing.T) {
				code, _, errOut := run(t, c.name, "-help")
				if code != ExitOK || !strings.Contains(errOut, "Usage: reportmailer "+c.name) {
					t.Errorf("%s -help: exit %d, stderr %q", c.name, code, errOut)
				}
				if !strings.Contains(top, "  "+c.name+" ") {
					t.Errorf("help does not list %s:\n%s", c.name, top)
				}
				for _, s := range c.sub { // a command that also has subcommands
					name := c.name + " " + s.name
					if code, _, errOut := run(t, c.name, s.name, "-help"); code != ExitOK || !strings.Contains(errOut, "Usage: reportmailer "+name) {
						t.Errorf("%s -help: exit %d, stderr %q", name, code, errOut)
					}
					if !strings.Contains(top, "  "+name+" ") {
						t.Errorf("help does not list %s:\n%s", name, top)
					}
				}
			})
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			code, out, _ := run(t, c.name, "-help")
			if code != ExitOK || !strings.Contains(out, "reportmailer "+c.name+" <command>") {
				t.Errorf("%s -help: exit %d:\n%s", c.name, code, out)
			}
			if code, _, errOut := run(t, c.name); code != ExitUsage || !strings.Contains(errOut, "Commands:") {
				t.Errorf("%s alone: exit %d, stderr %q; want usage", c.name, code, errOut)
			}
			if code, _, errOut := run(t, c.name, "nope"); code != ExitUsage || !strings.Contains(errOut, `unknown command "nope"`) {
				t.Errorf("%s nope: exit %d, stderr %q", c.name, code, errOut)
			}
			for _, s := range c.sub {
				name := c.name + " " + s.name
				code, _, errOut := run(t, c.name, s.name, "-help")
				if code != ExitOK || !strings.Contains(errOut, "Usage: reportmailer "+name) {
					t.Errorf("%s -help: exit %d, stderr %q", name, code, errOut)
				}
				if !strings.Contains(top, "  "+name+" ") {
					t.Errorf("help does not list %s:\n%s", name, top)
				}
			}
		})
	}
}

// TestSharedFlagsMeanTheSame: the flags the operator's commands share
// are spelled the same in each.
func TestSharedFlagsMeanTheSame(t *testing.T) {
	for _, tt := range []struct {
		args  []string
		flags []string
	}{
		{[]string{"dlq", "list"}, []string{"-config", "-schedule", "-json"}},
		{[]string{"dlq", "delete"}, []string{"-config", "-schedule", "-event-id", "-dry-run"}},
		{[]string{"redrive"}, []string{"-config", "-schedule", "-event-id", "-code", "-max", "-dry-run", "-include-maybe-sent"}},
		{[]string{"resend"}, []string{"-config", "-schedule", "-event-id", "-event", "-to", "-force", "-dry-run", "-by"}},
		{[]string{"history"}, []string{"-config", "-schedule", "-since", "-run", "-json"}},
		{[]string{"status"}, []string{"-config", "-json"}},
		{[]string{"drain"}, []string{"-config", "-schedule"}},
	} {
		_, _, errOut := run(t, append(tt.args, "-help")...)
		for _, f := range tt.flags {
			if !strings.Contains(errOut, "\n  "+f+" ") && !strings.Contains(errOut, "\n  "+f+"\n") {
				t.Errorf("%v -help lacks %s:\n%s", tt.args, f, errOut)
			}
		}
	}
}

// TestOpsUsageErrors: bad command lines of the operator's commands are
// usage errors (exit 2) that name the flag, before any config is read.
func TestOpsUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"resend", "-config", "x.yaml"}, "give exactly one of -event-id and -event"},
		{[]string{"resend", "-config", "x.yaml", "-event-id", "e1", "-event", "f.json"}, "give exactly one of -event-id and -event"},
		{[]string{"redrive", "-config", "x.yaml", "-max", "-1"}, "-max -1: want 0 (all) or more"},
		{[]string{"history", "-config", "x.yaml", "-since", "0s"}, "-since 0s: want a positive duration"},
		{[]string{"dlq", "list", "extra"}, `unexpected argument "extra"`},
		{[]string{"dlq", "delete", "-config", "x.yaml"}, "-event-id is required"},
	} {
		code, _, errOut := run(t, tt.args...)
		if code != ExitUsage || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tt.args, code, errOut, ExitUsage, tt.want)
		}
	}
}
