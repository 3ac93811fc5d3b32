package worker

import (
	"fmt"
	"strings"

	"github.com/reportmailer/reportmailer/worker/event"
)

// RecipientPolicyMaxDefault is the default for RecipientPolicy.Max.
const RecipientPolicyMaxDefault = 10

// RecipientPolicy decides which of the extra recipients a user allowed
// may really be emailed. The user's own address is always a recipient.
type RecipientPolicy struct {
	// AllowedDomains lists the domains extra recipients may belong to,
	// compared case-insensitively. "*.example.com" allows any subdomain
	// of example.com but not example.com itself. Empty allows any domain.
	AllowedDomains []string
	// Max is the most extra recipients one event may name; those past
	// it are refused. 0 means RecipientPolicyMaxDefault;
	// a negative value allows none.
	Max int
}

// Refusal is an extra recipient that the policy turned away.
type Refusal struct {
	Address string
	Reason  string
}

// Apply returns the addresses to email: user first, then the extra
// recipients that pass the policy, without duplicates (compared
// case-insensitively). Every extra recipient not returned appears in
// refused with the reason.
func (p RecipientPolicy) Apply(user string, extra []string) (allowed []string, refused []Refusal) {
	max := p.Max
	if max == 0 {
		max = RecipientPolicyMaxDefault
	}
	seen := map[string]bool{strings.ToLower(user): true}
	allowed = []string{user}
	for _, addr := range extra {
		if seen[strings.ToLower(addr)] {
			continue
		}
		if reason := p.check(addr); reason != "" {
			refused = append(refused, Refusal{Address: addr, Reason: reason})
			continue
		}
		if max < 0 {
			refused = append(refused, Refusal{Address: addr, Reason: "extra recipients are turned off"})
			continue
		}
		if len(allowed)-1 >= max {
			refused = append(refused, Refusal{Address: addr, Reason: fmt.Sprintf("over the limit of %d extra recipients", max)})
			continue
		}
		seen[strings.ToLower(addr)] = true
		allowed = append(allowed, addr)
	}
	return allowed, refused
}

func (p RecipientPolicy) check(addr string) string {
	if strings.ContainsAny(addr, "\r\n") {
		return "address contains a line break"
	}
	if !event.ValidAddress(addr) {
		return "not a valid bare email address"
	}
	if len(p.AllowedDomains) == 0 {
		return ""
	}
	domain := strings.ToLower(addr[strings.LastIndexByte(addr, '@')+1:])
	for _, d := range p.AllowedDomains {
		d = strings.ToLower(d)
		if rest, ok := strings.CutPrefix(d, "*."); ok {
			if strings.HasSuffix(domain, "."+rest) {
				return ""
			}
		} else if domain == d {
			return ""
		}
	}
	return "domain " + domain + " is not allowed"
}
