package worker

import (
	"fmt"
	"slices"
	"strings"

	"github.com/reportmailer/reportmailer/worker/event"
)

// RecipientPolicyMaxDefault is the default for RecipientPolicy.Max.
const RecipientPolicyMaxDefault = 10

// RecipientPolicy decides which of the extra recipients a user allowed
// may really be emailed. The user's own address is always a recipient.
type RecipientPolicy struct {
	// AllowedDomains lists the domains extra recipients may belong to,
	// compared case-insensitively and in ASCII form, so "bücher.example"
	// and "xn--bcher-kva.example" name the same domain. "*.example.com"
	// allows any subdomain of example.com but not example.com itself.
	// Empty allows any domain.
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

// domainOnly reports whether r refused its address only because the
// address's domain is not allowed: a config change can allow it.
func (r Refusal) domainOnly() bool { return r.Reason == domainRefused(r.Address) }

// Apply returns the addresses to email: user first, then the extra
// recipients that pass the policy, without duplicates (compared
// case-insensitively, and with the domain in its ASCII form, so that
// user@bücher.example and user@xn--bcher-kva.example are one address).
// Every extra recipient not returned appears in refused with the reason.
// Addresses are returned as given; the mailer encodes them for SES.
func (p RecipientPolicy) Apply(user string, extra []string) (allowed []string, refused []Refusal) {
	max := p.Max
	if max == 0 {
		max = RecipientPolicyMaxDefault
	}
	seen := map[string]bool{addressKey(user): true}
	allowed = []string{user}
	for _, addr := range extra {
		if seen[addressKey(addr)] {
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
		seen[addressKey(addr)] = true
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
	ascii, err := event.ASCIIAddress(addr)
	if err != nil {
		return "not an address SES can send to: " + err.Error()
	}
	if len(p.AllowedDomains) == 0 {
		return ""
	}
	domain := strings.ToLower(ascii[strings.LastIndexByte(ascii, '@')+1:])
	for _, d := range p.AllowedDomains {
		wild := strings.HasPrefix(d, "*.")
		d = domainKey(strings.TrimPrefix(d, "*."))
		if wild {
			if strings.HasSuffix(domain, "."+d) {
				return ""
			}
		} else if domain == d {
			return ""
		}
	}
	return domainRefused(addr)
}

// domainRefused is check's reason for an address whose domain is not
// allowed.
func domainRefused(addr string) string {
	return "domain " + strings.ToLower(addr[strings.LastIndexByte(addr, '@')+1:]) + " is not allowed"
}

// domainKey is domain as compared: lower-case ASCII, with an
// internationalized domain in Punycode, however it was written. A
// domain IDNA refuses is only lower-cased.
func domainKey(domain string) string {
	if d, err := event.ASCIIDomain(domain); err == nil {
		domain = d
	}
	return strings.ToLower(domain)
}

// addressKey is addr as compared for duplicates: lower-cased, with the
// domain as in domainKey.
func addressKey(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return strings.ToLower(addr)
	}
	return strings.ToLower(addr[:at]) + "@" + domainKey(addr[at+1:])
}

// wants reports whether the run delivers to rcpt (see OnlyRecipients).
func (c Config) wants(rcpt string) bool {
	return len(c.OnlyRecipients) == 0 || slices.ContainsFunc(c.OnlyRecipients, func(a string) bool { return strings.EqualFold(a, rcpt) })
}
