package iam

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var (
	codeRE   = regexp.MustCompile("`([^`]+)`")
	actionRE = regexp.MustCompile(`^[a-z0-9-]+:[A-Za-z]+$`)
)

// TestREADMEActions checks the README's table of actions per command
// against the declaration: every action For gives a command is in its
// row, and the row names no other. Offline commands must not appear.
func TestREADMEActions(t *testing.T) {
	doc, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "<!-- iam-actions")
	table, _, ok2 := strings.Cut(table, "<!-- /iam-actions -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no <!-- iam-actions --> ... <!-- /iam-actions --> table")
	}
	covered := map[Command]bool{}
	rows := 0
	for line := range strings.SplitSeq(table, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || strings.Contains(cells[1], "---") || strings.TrimSpace(cells[1]) == "command" {
			continue
		}
		rows++
		var cmds []Command
		for _, m := range codeRE.FindAllStringSubmatch(cells[1], -1) {
			c := Command(m[1])
			if !slices.Contains(Commands(), c) {
				t.Errorf("README row %q: unknown command %q", strings.TrimSpace(cells[1]), c)
			}
			cmds = append(cmds, c)
			covered[c] = true
		}
		var got []string
		for _, m := range codeRE.FindAllStringSubmatch(cells[2], -1) {
			if actionRE.MatchString(m[1]) {
				got = append(got, m[1])
			}
		}
		got = sortedUnique(got)
		var want []string
		for _, s := range For(full, cmds...).Statement {
			want = append(want, s.Action...)
		}
		want = sortedUnique(want)
		if !slices.Equal(got, want) {
			t.Errorf("README row for %v lists\n  %v\nthe declaration gives\n  %v", cmds, got, want)
		}
	}
	if rows == 0 {
		t.Fatal("the README's iam-actions table has no rows")
	}
	for _, c := range Commands() {
		needs := len(For(full, c).Statement) > 0
		if needs != covered[c] {
			t.Errorf("command %s: needs AWS %v, has a README row %v", c, needs, covered[c])
		}
	}
}
