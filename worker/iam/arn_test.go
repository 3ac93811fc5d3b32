package iam

import (
	"strings"
	"testing"
)

func TestQueueARN(t *testing.T) {
	tests := []struct {
		name, url, region string
		want              string
		err               string
	}{
		{"regional", "https://sqs.eu-west-2.amazonaws.com/123456789012/reports-ready", "", "arn:aws:sqs:eu-west-2:123456789012:reports-ready", ""},
		{"the URL's region wins", "https://sqs.eu-west-2.amazonaws.com/123456789012/q", "us-east-1", "arn:aws:sqs:eu-west-2:123456789012:q", ""},
		{"fifo", "https://sqs.us-east-1.amazonaws.com/123456789012/q.fifo", "", "arn:aws:sqs:us-east-1:123456789012:q.fifo", ""},
		{"legacy regional", "https://eu-central-1.queue.amazonaws.com/123456789012/q", "", "arn:aws:sqs:eu-central-1:123456789012:q", ""},
		{"legacy us-east-1", "https://queue.amazonaws.com/123456789012/q", "", "arn:aws:sqs:us-east-1:123456789012:q", ""},
		{"fips", "https://sqs-fips.us-gov-west-1.amazonaws.com/123456789012/q", "", "arn:aws-us-gov:sqs:us-gov-west-1:123456789012:q", ""},
		{"china", "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q", "", "arn:aws-cn:sqs:cn-north-1:123456789012:q", ""},
		{"dual-stack", "https://sqs.ap-southeast-2.api.aws/123456789012/q", "", "arn:aws:sqs:ap-southeast-2:123456789012:q", ""},
		{"trailing slash", "https://sqs.eu-west-2.amazonaws.com/123456789012/q/", "", "arn:aws:sqs:eu-west-2:123456789012:q", ""},
		{"emulator", "http://127.0.0.1:4566/000000000000/reports", "us-east-1", "arn:aws:sqs:us-east-1:000000000000:reports", ""},
		{"emulator by name", "http://localhost:9324/000000000000/reports", "eu-west-1", "arn:aws:sqs:eu-west-1:000000000000:reports", ""},
		{"emulator needs a region", "http://127.0.0.1:4566/000000000000/reports", "", "", "names no region"},
		{"no account", "https://sqs.eu-west-2.amazonaws.com/reports", "", "", "/ACCOUNT/NAME"},
		{"short account", "https://sqs.eu-west-2.amazonaws.com/1234/reports", "", "", "/ACCOUNT/NAME"},
		{"bad name", "https://sqs.eu-west-2.amazonaws.com/123456789012/re ports", "", "", "/ACCOUNT/NAME"},
		{"not a URL", "reports-ready", "us-east-1", "", "not an http(s) URL"},
		{"ARN given", "arn:aws:sqs:us-east-1:123456789012:q", "us-east-1", "", "not an http(s) URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := QueueARN(tt.url, tt.region)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), tt.url) {
					t.Fatalf("QueueARN(%q) = %q, %v; want an error naming the URL and saying %q", tt.url, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("QueueARN(%q, %q) = %q, %v; want %q", tt.url, tt.region, got, err, tt.want)
			}
		})
	}
}

func TestEscape(t *testing.T) {
	if got := Escape("a*b?c$d"); got != "a${*}b${?}c${$}d" {
		t.Fatalf("Escape = %q", got)
	}
	if !Match(Escape("odd*key?")+"*", "odd*key?/x") || Match(Escape("odd*key")+"*", "oddXkey/x") {
		t.Fatal("an escaped '*' must match only itself")
	}
}
