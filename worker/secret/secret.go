// Package secret recognises private key material pasted where a name
// belongs (a file path, a variable name, a key id), so that errors can
// say what is wrong with a setting without quoting it.
//
// A setting that names a key file or variable is echoed in errors,
// because the name helps the reader and is not secret; the key itself
// must never be. Users do paste a PEM where its path belongs, so every
// place that echoes such a setting asks [IsKeyMaterial] first.
package secret

import (
	"regexp"
	"strings"
)

// minRun is the shortest run of base64 text taken for key material.
// A PEM body is made of such runs: 64-character lines, split now and
// then by a '/'.
const minRun = 24

// b64Run matches runs of base64 text, '/' included, long enough to
// matter: a shorter run gives little of a key away.
var b64Run = regexp.MustCompile(`[A-Za-z0-9+/=]{16,}`)

// IsKeyMaterial reports whether s looks like key material rather than a
// name: PEM armour ("-----BEGIN", "PRIVATE KEY"), more than one line,
// or a run of base64 text (a PEM body without its armour).
func IsKeyMaterial(s string) bool {
	if strings.Contains(s, "-----") || strings.Contains(s, "PRIVATE KEY") || strings.ContainsAny(s, "\r\n") {
		return true
	}
	for _, run := range b64Run.FindAllString(s, -1) {
		if isBase64Body(run) {
			return true
		}
	}
	return false
}

// isBase64Body reports whether a run of base64 characters holds a
// piece, between '/'s, that looks like encoded bytes rather than words:
// minRun characters in a row that mix upper case, lower case and
// digits, have digits in two places or more, and switch between
// classes at 12 or more of their 23 joins. Random base64 switches at
// about two joins in three (15 of 23 on average) and scatters its
// digits; words, even run together in CamelCase with a number
// (TestLoadNeverQuotesAKeyGivenAsTheFileName2839635230), switch at one
// join in two or less and keep their digits together.
func isBase64Body(run string) bool {
	for piece := range strings.SplitSeq(run, "/") {
		for i := 0; i+minRun <= len(piece); i++ {
			w := piece[i : i+minRun]
			if switches(w) >= 12 && mixed(w) && digitGroups(w) >= 2 {
				return true
			}
		}
	}
	return false
}

// digitGroups counts the runs of digits in s.
func digitGroups(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if class(s[i]) == 3 && (i == 0 || class(s[i-1]) != 3) {
			n++
		}
	}
	return n
}

// switches counts the places where s changes between upper case, lower
// case, digits and other characters.
func switches(s string) int {
	n := 0
	for i := 1; i < len(s); i++ {
		if class(s[i]) != class(s[i-1]) {
			n++
		}
	}
	return n
}

func class(c byte) int {
	switch {
	case 'A' <= c && c <= 'Z':
		return 1
	case 'a' <= c && c <= 'z':
		return 2
	case '0' <= c && c <= '9':
		return 3
	}
	return 0
}

// mixed reports whether s has upper case, lower case and digits.
func mixed(s string) bool {
	var seen [4]bool
	for i := 0; i < len(s); i++ {
		seen[class(s[i])] = true
	}
	return seen[1] && seen[2] && seen[3]
}

// pemArmour matches a PEM block, from its BEGIN to its END line, or to
// the end of the text when the END is missing.
var pemArmour = regexp.MustCompile(`(?s)-----BEGIN.*?(?:-----END[^\n]*?-----|-----END[^\n]*|$)`)

// Redacted replaces what Redact removes.
const Redacted = "[key material not shown]"

// Redact returns s with PEM blocks, and base64 text that looks like a
// PEM body, replaced by [Redacted]. It is the last line of defence for
// text about to be printed; errors should not quote key material in the
// first place.
func Redact(s string) string {
	if !strings.Contains(s, "-----") && !b64Run.MatchString(s) {
		return s
	}
	s = pemArmour.ReplaceAllStringFunc(s, func(block string) string {
		if !strings.Contains(block, "-----END") && strings.HasSuffix(block, "\n") {
			return Redacted + "\n" // a block cut short keeps the line end
		}
		return Redacted
	})
	// A PEM body without its armour is a sequence of base64 runs split
	// by whitespace or escaped line ends (its lines, or what flattening
	// or quoting put there). Some runs are short, or cut by '/'s into
	// short pieces: they go with the neighbours that give them away,
	// and two or more such lines in a row give each other away.
	//
	// The runs are found in a copy of s whose escaped line ends are
	// whitespace of the same length, so that "\nMIIB" is not read as
	// the run "nMIIB", and indices in the copy are indices in s.
	shadow := escapedBreaks.Replace(s)
	locs := b64Run.FindAllStringIndex(shadow, -1)
	var b strings.Builder
	last := 0
	for i := 0; i < len(locs); {
		j, strong, lines := i, false, 0
		for {
			run := shadow[locs[j][0]:locs[j][1]]
			strong = strong || isBase64Body(run)
			if mixed(run) {
				lines++
			}
			if j+1 == len(locs) || strings.TrimSpace(shadow[locs[j][1]:locs[j+1][0]]) != "" {
				break
			}
			j++
		}
		if strong || lines >= 2 {
			b.WriteString(s[last:locs[i][0]])
			b.WriteString(Redacted)
			last = locs[j][1]
		}
		i = j + 1
	}
	b.WriteString(s[last:])
	return b.String()
}

// escapedBreaks turns the escaped line ends of a quoted string into
// whitespace of the same length.
var escapedBreaks = strings.NewReplacer(`\n`, "\n\n", `\r`, "\r\r")
