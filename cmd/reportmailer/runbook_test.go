package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// runbookCommands returns every reportmailer command line of a
// Markdown document: the lines of its code blocks, and its inline code
// spans, that start with "reportmailer ".
func runbookCommands(doc string) []string {
	var out []string
	inBlock := false
	for l := range strings.SplitSeq(doc, "\n") {
		if strings.HasPrefix(l, "```") {
			inBlock = !inBlock
			continue
		}
		if inBlock && strings.HasPrefix(strings.TrimSpace(l), "reportmailer ") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	outside := regexp.MustCompile("(?s)```.*?```").ReplaceAllString(doc, "")
	for _, m := range regexp.MustCompile("`(reportmailer [^`]+)`").FindAllStringSubmatch(outside, -1) {
		out = append(out, strings.Join(strings.Fields(m[1]), " "))
	}
	return out
}

// TestRunbookCommandsExist: every reportmailer command line in
// docs/operations.md names a command of the command table, and each of
// its flags is one that command's -help lists, so the runbook cannot
// drift from the binary.
func TestRunbookCommandsExist(t *testing.T) {
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := runbookCommands(string(b))
	if len(lines) < 15 {
		t.Fatalf("found %d command lines in docs/operations.md, want the runbook's: %q", len(lines), lines)
	}
	flagRE := regexp.MustCompile(`^-[a-z][a-z0-9-]*`)
	for _, line := range lines {
		args := strings.Fields(line)[1:]
		cmds, path, known := commands, []string{}, true
		for len(args) > 0 {
			i := slices.IndexFunc(cmds, func(c command) bool { return c.name == args[0] })
			if i < 0 {
				t.Errorf("%q: no command %q under %q", line, args[0], strings.Join(path, " "))
				known = false
				break
			}
			path, args = append(path, args[0]), args[1:]
			if cmds[i].sub == nil || cmds[i].run != nil && (len(args) == 0 || !slices.ContainsFunc(cmds[i].sub, func(c command) bool { return c.name == args[0] })) {
				break
			}
			cmds = cmds[i].sub
		}
		if !known {
			continue
		}
		code, _, help := run(t, append(slices.Clone(path), "-help")...)
		if code != ExitOK {
			t.Errorf("%q: reportmailer %s -help: exit %d", line, strings.Join(path, " "), code)
			continue
		}
		for _, a := range args {
			f := flagRE.FindString(a)
			if f == "" {
				continue
			}
			if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(f) + `(\s|$)`).MatchString(help) {
				t.Errorf("%q: reportmailer %s has no flag %s", line, strings.Join(path, " "), f)
			}
		}
	}
}

// TestRunbookCommandsCatchDrift: the check above fails on a command or
// flag the binary lacks.
func TestRunbookCommandsCatchDrift(t *testing.T) {
	got := runbookCommands("text `reportmailer dlq\nlist -config FILE` more\n```sh\nreportmailer redrive -nope\n```\n")
	if want := []string{"reportmailer redrive -nope", "reportmailer dlq list -config FILE"}; !slices.Equal(got, want) {
		t.Errorf("runbookCommands = %q, want %q", got, want)
	}
	_, _, help := run(t, "redrive", "-help")
	if !strings.Contains(help, "\n  -event-id") || strings.Contains(help, "\n  -nope") {
		t.Errorf("redrive -help does not list its flags as the check reads them:\n%s", help)
	}
}
