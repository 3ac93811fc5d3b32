package worker_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/reportmailer/reportmailer/worker"
)

func TestRecipientPolicy(t *testing.T) {
	tests := []struct {
		name    string
		policy  worker.RecipientPolicy
		extra   []string
		allowed string   // comma-joined, user first
		refused []string // "address: reason part"
	}{
		{"any domain by default", worker.RecipientPolicy{}, []string{"b@other.test"}, "ana@example.com,b@other.test", nil},
		{"allowed domain", worker.RecipientPolicy{AllowedDomains: []string{"example.com"}}, []string{"cfo@example.com", "x@evil.test"}, "ana@example.com,cfo@example.com",
			[]string{"x@evil.test: domain evil.test is not allowed"}},
		{"domain match is case-insensitive", worker.RecipientPolicy{AllowedDomains: []string{"Example.COM"}}, []string{"cfo@EXAMPLE.com"}, "ana@example.com,cfo@EXAMPLE.com", nil},
		{"wildcard allows subdomains only", worker.RecipientPolicy{AllowedDomains: []string{"*.example.com"}}, []string{"a@eu.example.com", "b@example.com", "c@badexample.com"}, "ana@example.com,a@eu.example.com",
			[]string{"b@example.com: domain example.com is not allowed", "c@badexample.com: domain badexample.com is not allowed"}},
		{"header injection", worker.RecipientPolicy{}, []string{"a@example.com\r\nBcc: z@evil.test"}, "ana@example.com", []string{"a@example.com\r\nBcc: z@evil.test: line break"}},
		{"display names and junk", worker.RecipientPolicy{}, []string{"Bob <bob@example.com>", "not an address", "", "a@b@c"}, "ana@example.com",
			[]string{"Bob <bob@example.com>: not a valid", "not an address: not a valid", ": not a valid", "a@b@c: not a valid"}},
		{"duplicates and the user are dropped quietly", worker.RecipientPolicy{}, []string{"ANA@example.com", "b@example.com", "B@example.com"}, "ana@example.com,b@example.com", nil},
		{"over the maximum", worker.RecipientPolicy{Max: 2}, []string{"a@x.test", "b@x.test", "c@x.test"}, "ana@example.com,a@x.test,b@x.test",
			[]string{"c@x.test: over the limit of 2"}},
		{"negative maximum allows none", worker.RecipientPolicy{Max: -1}, []string{"a@x.test"}, "ana@example.com", []string{"a@x.test: extra recipients are turned off"}},
		{"non-ASCII local part", worker.RecipientPolicy{}, []string{"zoë@example.com", "Zoë@bücher.example"}, "ana@example.com",
			[]string{`zoë@example.com: local part "zoë" is not ASCII, and SES cannot send to it`, `Zoë@bücher.example: SMTPUTF8`}},
		{"invalid internationalized domain", worker.RecipientPolicy{}, []string{"a@bücher-.example", "b@xn--zz.example"}, "ana@example.com",
			[]string{`a@bücher-.example: not a valid internationalized domain name`, `b@xn--zz.example: not a valid internationalized domain name`}},
		{"a Unicode allowed domain matches its Punycode", worker.RecipientPolicy{AllowedDomains: []string{"bücher.example"}},
			[]string{"a@xn--bcher-kva.example", "b@BÜCHER.example", "c@bucher.example"}, "ana@example.com,a@xn--bcher-kva.example,b@BÜCHER.example",
			[]string{"c@bucher.example: domain bucher.example is not allowed"}},
		{"a Punycode allowed domain matches its Unicode", worker.RecipientPolicy{AllowedDomains: []string{"XN--BCHER-KVA.example", "*.mañana.test"}},
			[]string{"user@bücher.example", "x@eu.xn--maana-pta.test", "y@mañana.test"}, "ana@example.com,user@bücher.example,x@eu.xn--maana-pta.test",
			[]string{"y@mañana.test: domain mañana.test is not allowed"}},
		{"one mailbox in two spellings is one recipient", worker.RecipientPolicy{}, []string{"user@bücher.example", "USER@xn--bcher-kva.example"}, "ana@example.com,user@bücher.example", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			allowed, refused := tt.policy.Apply("ana@example.com", tt.extra)
			if got := strings.Join(allowed, ","); got != tt.allowed {
				t.Errorf("allowed = %q, want %q", got, tt.allowed)
			}
			if len(refused) != len(tt.refused) {
				t.Fatalf("refused = %v, want %v", refused, tt.refused)
			}
			for i, r := range refused {
				if got := fmt.Sprintf("%s: %s", r.Address, r.Reason); !strings.HasPrefix(got, tt.refused[i][:strings.LastIndex(tt.refused[i], ": ")+2]) || !strings.Contains(got, tt.refused[i][strings.LastIndex(tt.refused[i], ": ")+2:]) {
					t.Errorf("refusal %d = %q, want %q", i, got, tt.refused[i])
				}
			}
		})
	}
}
