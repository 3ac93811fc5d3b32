package worker_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode"

	"golang.org/x/net/idna"

	"github.com/reportmailer/reportmailer/internal/fuzzseed"
	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
)

// asciiLower is a domain as SES and DNS see it, worked out here
// independently of the policy: IDNA's lookup form, lower-cased, or the
// domain lower-cased when IDNA refuses it.
func asciiLower(domain string) string {
	if d, err := idna.Lookup.ToASCII(domain); err == nil {
		domain = d
	}
	return strings.ToLower(domain)
}

// mailbox is the mailbox an address reaches: lower-cased, with the
// domain in ASCII form.
func mailbox(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return strings.ToLower(addr)
	}
	return strings.ToLower(addr[:at]) + "@" + asciiLower(addr[at+1:])
}

// inDomains reports whether the ASCII domain d is one of allowed
// ("*.example.com" naming the subdomains of example.com); an empty list
// allows any domain.
func inDomains(d string, allowed []string) bool {
	if len(allowed) == 0 {
		return true
	}
	d = strings.ToLower(d)
	for _, a := range allowed {
		if base, wild := strings.CutPrefix(a, "*."); wild {
			if strings.HasSuffix(d, "."+asciiLower(base)) {
				return true
			}
		} else if d == asciiLower(a) {
			return true
		}
	}
	return false
}

// FuzzRecipientPolicy applies a policy (allowed domains, max) to any
// user and extra recipients, NUL-separated in the fuzzer's strings. It
// checks what docs/design.md and RecipientPolicy promise:
//   - the user comes first and is never refused, not even when an extra
//     recipient is the user in another spelling;
//   - every allowed extra address is a valid bare address, without CR or
//     LF, whose SES form (event.ASCIIAddress) is ASCII and whose domain
//     is in allowed_domains; no two reach the same mailbox; there are at
//     most max of them;
//   - every extra recipient is allowed, refused with a reason free of
//     control characters, or dropped as a duplicate, in the order given;
//   - the result does not depend on the order of allowed_domains, is the
//     same on a second call, and applying the policy to what it allowed
//     changes nothing.
func FuzzRecipientPolicy(f *testing.F) {
	type seed struct {
		user, extra, domains string
		max                  int
	}
	seeds := []seed{
		{"ana@example.com", "b@other.test", "", 0},
		{"ana@example.com", "cfo@example.com\x00x@evil.test", "example.com", 0},
		{"ana@example.com", "cfo@EXAMPLE.com", "Example.COM", 0},
		{"ana@example.com", "a@eu.example.com\x00b@example.com\x00c@badexample.com", "*.example.com", 0},
		{"ana@example.com", "a@example.com\r\nBcc: z@evil.test", "", 0},
		{"ana@example.com", "Bob <bob@example.com>\x00not an address\x00\x00a@b@c", "", 0},
		{"ana@example.com", "ANA@example.com\x00b@example.com\x00B@example.com", "", 0},
		{"ana@example.com", "a@x.test\x00b@x.test\x00c@x.test", "", 2},
		{"ana@example.com", "a@x.test", "", -1},
		{"ana@example.com", "zoë@example.com\x00Zoë@bücher.example", "", 0},
		{"ana@example.com", "a@bücher-.example\x00b@xn--zz.example", "", 0},
		{"ana@example.com", "a@xn--bcher-kva.example\x00b@BÜCHER.example\x00c@bucher.example", "bücher.example", 0},
		{"ana@example.com", "user@bücher.example\x00x@eu.xn--maana-pta.test\x00y@mañana.test", "XN--BCHER-KVA.example\x00*.mañana.test", 0},
		{"user@bücher.example", "USER@xn--bcher-kva.example\x00user@bücher.example", "", 0},
		{"ana@example.com", "ana@ＥＸＡＭＰＬＥ.com\x00ana@example。com\x00\"ana\"@example.com", "example.com", 1},
	}
	for _, s := range seeds {
		f.Add(s.user, s.extra, s.domains, s.max)
	}
	// The addresses the worker's tests use, three at a time.
	var addrs []string
	for _, s := range fuzzseed.Literals(f, "*_test.go", nil) {
		if strings.Contains(s, "@") && len(s) < 300 {
			addrs = append(addrs, s)
		}
	}
	for i := 0; i+2 < len(addrs); i += 3 {
		f.Add("ana@example.com", strings.Join(addrs[i:i+3], "\x00"), "example.com\x00*.example.com", i%5)
	}

	f.Fuzz(func(t *testing.T, user, extras, domains string, max int) {
		extra := split(extras)
		p := worker.RecipientPolicy{AllowedDomains: split(domains), Max: max}
		allowed, refused := p.Apply(user, slices.Clone(extra))

		a2, r2 := p.Apply(user, slices.Clone(extra))
		rev := p
		rev.AllowedDomains = slices.Clone(p.AllowedDomains)
		slices.Reverse(rev.AllowedDomains)
		a3, r3 := rev.Apply(user, slices.Clone(extra))
		if !reflect.DeepEqual(allowed, a2) || !reflect.DeepEqual(refused, r2) {
			t.Fatalf("Apply is not deterministic: %q %q, then %q %q", allowed, refused, a2, r2)
		}
		if !reflect.DeepEqual(allowed, a3) || !reflect.DeepEqual(refused, r3) {
			t.Fatalf("the order of allowed_domains matters: %q %q, reversed %q %q", allowed, refused, a3, r3)
		}

		if len(allowed) == 0 || allowed[0] != user {
			t.Fatalf("allowed %q does not start with the user %q", allowed, user)
		}
		limit := max
		switch {
		case max == 0:
			limit = worker.RecipientPolicyMaxDefault
		case max < 0:
			limit = 0
		}
		if n := len(allowed) - 1; n > limit {
			t.Fatalf("%d extra recipients allowed, max %d: %q", n, max, allowed)
		}
		seen := map[string]bool{mailbox(user): true}
		for _, a := range allowed[1:] {
			ascii, err := event.ASCIIAddress(a)
			switch {
			case !event.ValidAddress(a) || strings.ContainsAny(a, "\r\n"):
				t.Fatalf("allowed %q is not a valid bare address", a)
			case err != nil:
				t.Fatalf("allowed %q has no SES form: %v", a, err)
			case strings.ContainsFunc(ascii, func(r rune) bool { return r > unicode.MaxASCII || unicode.IsControl(r) }):
				t.Fatalf("allowed %q goes to SES as %q, which is not printable ASCII", a, ascii)
			case !inDomains(ascii[strings.LastIndexByte(ascii, '@')+1:], p.AllowedDomains):
				t.Fatalf("allowed %q (%s) is outside %q", a, ascii, p.AllowedDomains)
			case seen[mailbox(a)]:
				t.Fatalf("allowed %q reaches a mailbox already in %q", a, allowed)
			}
			seen[mailbox(a)] = true
		}
		for _, r := range refused {
			switch {
			case r.Reason == "" || strings.ContainsFunc(r.Reason, unicode.IsControl):
				t.Fatalf("refusal of %q has reason %q", r.Address, r.Reason)
			case mailbox(r.Address) == mailbox(user):
				t.Fatalf("the user's own address %q was refused as %q: %s", user, r.Address, r.Reason)
			}
		}

		// Walk the extra recipients in order: each is the next allowed,
		// the next refused, or a mailbox already allowed.
		ai, ri := 1, 0
		taken := map[string]bool{mailbox(user): true}
		for _, x := range extra {
			switch {
			case ai < len(allowed) && allowed[ai] == x && !taken[mailbox(x)]:
				taken[mailbox(x)] = true
				ai++
			case ri < len(refused) && refused[ri].Address == x:
				ri++
			case taken[mailbox(x)]:
			default:
				t.Fatalf("extra recipient %q is neither allowed, refused nor a duplicate: %q, %q", x, allowed, refused)
			}
		}
		if ai != len(allowed) || ri != len(refused) {
			t.Fatalf("allowed %q and refused %q hold addresses that are not among the extra recipients %q", allowed, refused, extra)
		}

		if again, none := p.Apply(user, allowed[1:]); !slices.Equal(again, allowed) || len(none) != 0 {
			t.Fatalf("applied to its own result %q, the policy gives %q, refusing %q", allowed, again, none)
		}
	})
}

// split splits the fuzzer's NUL-separated list; "" is no entries.
func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\x00")
}
