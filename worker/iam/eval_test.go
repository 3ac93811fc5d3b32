package iam

import "testing"

func TestMatch(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		{"abc", "abc", true},
		{"abc", "abcd", false},
		{"*", "", true},
		{"*", "anything/at/all", true},
		{"a*", "a", true},
		{"a*c", "abbbc", true},
		{"a*c", "abbbd", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a?c", "aéc", true}, // '?' is one character, not one byte
		{"*/*", "x/y", true},
		{"*b*b", "abab", true},
		{"reports/2026/*", "reports/2026/11/a.pdf", true},
		{"reports/2026/*", "reports/2025/a.pdf", false},
		{"a${*}", "a*", true},
		{"a${*}", "ab", false},
		{"a${?}", "a?", true},
		{"a${$}", "a$", true},
	}
	for _, tt := range tests {
		if got := Match(tt.p, tt.s); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.p, tt.s, got, tt.want)
		}
	}
}

func TestAllows(t *testing.T) {
	doc := Document{Version: Version, Statement: []Statement{
		{Effect: "Allow", Action: []string{"s3:GetObject", "s3:PutObject"}, Resource: []string{"arn:aws:s3:::b/reports/*"}},
		{Effect: "Allow", Action: []string{"s3:ListBucket"}, Resource: []string{"arn:aws:s3:::b"},
			Condition: map[string]map[string][]string{"StringLike": {"s3:prefix": {"reports/*"}}}},
		{Effect: "Allow", Action: []string{"sqs:*"}, Resource: []string{"arn:aws:sqs:*:123456789012:q"}},
		{Effect: "Deny", Action: []string{"sqs:PurgeQueue"}, Resource: []string{"*"}},
		{Effect: "Allow", Action: []string{"ses:SendEmail"}, Resource: []string{"*"},
			Condition: map[string]map[string][]string{"ArnLikeUnsupported": {"x": {"y"}}}},
		{Effect: "Allow", Action: []string{"ses:GetAccount"}, Resource: []string{"*"},
			Condition: map[string]map[string][]string{"StringEqualsIfExists": {"aws:SourceVpc": {"vpc-1"}}}},
	}}
	tests := []struct {
		name             string
		action, resource string
		ctx              map[string]string
		want             bool
	}{
		{"granted action", "s3:GetObject", "arn:aws:s3:::b/reports/a.pdf", nil, true},
		{"actions ignore case", "S3:getobject", "arn:aws:s3:::b/reports/a.pdf", nil, true},
		{"resources do not", "s3:GetObject", "arn:aws:s3:::b/Reports/a.pdf", nil, false},
		{"other prefix", "s3:GetObject", "arn:aws:s3:::b/ledger/x", nil, false},
		{"action not granted", "s3:DeleteObject", "arn:aws:s3:::b/reports/a.pdf", nil, false},
		{"list inside the prefix", "s3:ListBucket", "arn:aws:s3:::b", map[string]string{"s3:prefix": "reports/a.pdf"}, true},
		{"list outside the prefix", "s3:ListBucket", "arn:aws:s3:::b", map[string]string{"s3:prefix": "ledger/"}, false},
		{"list without a prefix key", "s3:ListBucket", "arn:aws:s3:::b", nil, false},
		{"wildcard action", "sqs:ReceiveMessage", "arn:aws:sqs:eu-west-2:123456789012:q", nil, true},
		{"other queue", "sqs:ReceiveMessage", "arn:aws:sqs:eu-west-2:123456789012:q2", nil, false},
		{"explicit deny wins", "sqs:PurgeQueue", "arn:aws:sqs:eu-west-2:123456789012:q", nil, false},
		{"unknown operator grants nothing", "ses:SendEmail", "arn:aws:ses:us-east-1:1:identity/x", nil, false},
		{"IfExists holds when the key is absent", "ses:GetAccount", "*", nil, true},
		{"IfExists checks a present key", "ses:GetAccount", "*", map[string]string{"aws:SourceVpc": "vpc-2"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := doc.Allows(tt.action, tt.resource, tt.ctx); got != tt.want {
				t.Errorf("Allows(%s, %s, %v) = %v, want %v", tt.action, tt.resource, tt.ctx, got, tt.want)
			}
		})
	}
	if (Document{}).Allows("s3:GetObject", "*", nil) {
		t.Error("an empty policy allows nothing")
	}
}
