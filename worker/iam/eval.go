package iam

import (
	"strings"
	"unicode/utf8"
)

// Allows reports whether d allows action on resource, given the
// request's condition keys (such as "s3:prefix"). It evaluates as IAM
// does for one identity policy: an explicit Deny wins, then any Allow,
// and otherwise the request is implicitly denied.
//
// Actions match case-insensitively and resources case-sensitively, both
// with the wildcards '*' and '?' and the literals ${*}, ${?} and ${$}.
// Conditions support StringEquals, StringLike, StringNotEquals and
// StringNotLike, each with an IfExists form; a condition on a key the
// request lacks does not hold (the Not forms do). A condition operator
// it does not know never holds, so an unsupported Allow grants nothing.
func (d Document) Allows(action, resource string, context map[string]string) bool {
	allowed := false
	for _, s := range d.Statement {
		if !s.applies(action, resource, context) {
			continue
		}
		switch s.Effect {
		case "Deny":
			return false
		case "Allow":
			allowed = true
		}
	}
	return allowed
}

func (s Statement) applies(action, resource string, context map[string]string) bool {
	if !anyMatch(s.Action, strings.ToLower(action), true) || !anyMatch(s.Resource, resource, false) {
		return false
	}
	for op, keys := range s.Condition {
		for key, values := range keys {
			if !holds(op, context, key, values) {
				return false
			}
		}
	}
	return true
}

func anyMatch(patterns []string, s string, fold bool) bool {
	for _, p := range patterns {
		if fold {
			p = strings.ToLower(p)
		}
		if Match(p, s) {
			return true
		}
	}
	return false
}

// holds evaluates one condition key of one operator.
func holds(op string, context map[string]string, key string, values []string) bool {
	op, ifExists := strings.CutSuffix(op, "IfExists")
	v, present := context[key]
	var like, negate bool
	switch op {
	case "StringEquals":
	case "StringLike":
		like = true
	case "StringNotEquals":
		negate = true
	case "StringNotLike":
		like, negate = true, true
	default:
		return false
	}
	if !present {
		return ifExists || negate
	}
	matched := false
	for _, want := range values {
		if (like && Match(want, v)) || (!like && want == v) {
			matched = true
			break
		}
	}
	return matched != negate
}

// Match reports whether s matches the IAM pattern p: '*' matches any run
// of characters, '?' any one character, and ${*}, ${?} and ${$} match
// those characters literally.
func Match(p, s string) bool {
	toks, rs := tokens(p), []rune(s)
	// Backtracking over the last '*', as in a classic glob matcher.
	ti, si := 0, 0
	starT, starS := -1, 0
	for si < len(rs) {
		switch {
		case ti < len(toks) && toks[ti] == tokAny:
			starT, starS = ti, si
			ti++
		case ti < len(toks) && (toks[ti] == tokOne || toks[ti] == rs[si]):
			ti++
			si++
		case starT >= 0:
			starS++
			ti, si = starT+1, starS
		default:
			return false
		}
	}
	for ti < len(toks) && toks[ti] == tokAny {
		ti++
	}
	return ti == len(toks)
}

// Pattern tokens: the pattern's characters, or one of these.
const (
	tokAny rune = -1
	tokOne rune = -2
)

// tokens splits a pattern into characters and wildcards.
func tokens(p string) []rune {
	out := make([]rune, 0, len(p))
	for len(p) > 0 {
		switch {
		case strings.HasPrefix(p, "${*}"), strings.HasPrefix(p, "${?}"), strings.HasPrefix(p, "${$}"):
			out = append(out, rune(p[2]))
			p = p[4:]
			continue
		case p[0] == '*':
			out = append(out, tokAny)
		case p[0] == '?':
			out = append(out, tokOne)
		default:
			r, n := utf8.DecodeRuneInString(p)
			out = append(out, r)
			p = p[n:]
			continue
		}
		p = p[1:]
	}
	return out
}
