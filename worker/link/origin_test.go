package link

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/worker"
	"github.com/reportmailer/reportmailer/worker/event"
)

// TestCloudFrontServesOnlyItsOrigin: a link opens the object the
// distribution fetches for its URL path, which is origin bucket +
// origin path + path. A report elsewhere must be refused, never linked.
func TestCloudFrontServesOnlyItsOrigin(t *testing.T) {
	k, _ := keys(t)
	tests := []struct {
		name       string
		bucket     string // CloudFront.Bucket
		originPath string
		report     event.Report
		wantPath   string // the URL's decoded path; "" for a refusal
		wantErr    string
	}{
		{"no origin path", "reports", "", event.Report{Bucket: "reports", Key: "2026/Q3 results.pdf"}, "/2026/Q3 results.pdf", ""},
		{"origin path is cut from the key", "reports", "/exports", event.Report{Bucket: "reports", Key: "exports/2026/Q3 results+notes.pdf"}, "/2026/Q3 results+notes.pdf", ""},
		{"deep origin path", "reports", "/a/b", event.Report{Bucket: "reports", Key: "a/b/c.pdf"}, "/c.pdf", ""},
		{"bucket not checked when unset", "", "", event.Report{Bucket: "anything", Key: "a.pdf"}, "/a.pdf", ""},
		{"another bucket", "reports", "", event.Report{Bucket: "payroll", Key: "a.pdf"}, "", `bucket "payroll" is not the distribution's origin, "reports"`},
		{"outside the origin path", "reports", "/exports", event.Report{Bucket: "reports", Key: "private/a.pdf"}, "", `key "private/a.pdf" is outside the origin path "/exports"`},
		{"a prefix of a segment is not the path", "reports", "/exports", event.Report{Bucket: "reports", Key: "exports-old/a.pdf"}, "", "outside the origin path"},
		{"the origin path itself", "reports", "/exports", event.Report{Bucket: "reports", Key: "exports/"}, "", "object key is empty"},
	}
	for _, tt := range tests {
		for _, shared := range []bool{false, true} {
			name := tt.name
			if shared {
				name += "/one signature per email"
			}
			t.Run(name, func(t *testing.T) {
				cf := &CloudFront{Domain: testDomain, Bucket: tt.bucket, OriginPath: tt.originPath, KeyID: testKeyID, Key: k,
					TTL: time.Hour, OneSignaturePerEmail: shared}
				// Two reports in one directory, so that one signature
				// could cover both.
				sibling := tt.report
				sibling.Key = tt.report.Key[:strings.LastIndexByte(tt.report.Key, '/')+1] + "sibling.pdf"
				links, err := cf.SignAll(context.Background(), []event.Report{tt.report, sibling}, testNow)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !worker.IsPermanent(err) {
						t.Fatalf("SignAll = %v, want a permanent error containing %q", err, tt.wantErr)
					}
					if _, err := cf.Sign(context.Background(), tt.report, testNow); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("Sign = %v, want %q", err, tt.wantErr)
					}
					if tt.wantErr != "object key is empty" && worker.CodeOf(err) != worker.CodeBucketNotServed {
						t.Fatalf("code %q, want %q", worker.CodeOf(err), worker.CodeBucketNotServed)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				u, err := url.Parse(links[0].URL)
				if err != nil || u.Path != tt.wantPath {
					t.Fatalf("link path %q (%v), want %q: %s", u.Path, err, tt.wantPath, links[0].URL)
				}
				v, err := Verify(links[0].URL, lookup(t), testNow)
				if err != nil {
					t.Fatalf("link does not verify: %v", err)
				}
				if !shared && v.Resource != testDomain+"/"+EscapeKey(strings.TrimPrefix(tt.wantPath, "/")) {
					t.Fatalf("signed resource %q", v.Resource)
				}
			})
		}
	}
}

func TestCheckOriginPath(t *testing.T) {
	for _, p := range []string{"", "/r", "/reports/2026", "/a b"} {
		if err := CheckOriginPath(p); err != nil {
			t.Errorf("CheckOriginPath(%q) = %v", p, err)
		}
	}
	for _, p := range []string{"r", "/", "/r/", "//r", "/r//s", "/r/../s", "/./r"} {
		if err := CheckOriginPath(p); err == nil || !strings.Contains(err.Error(), "origin path") {
			t.Errorf("CheckOriginPath(%q) = %v, want an error", p, err)
		}
		cf := &CloudFront{Domain: testDomain, OriginPath: p, KeyID: testKeyID, TTL: time.Hour}
		cf.Key, _ = keys(t)
		if err := cf.Validate(); err == nil || !strings.Contains(err.Error(), "origin path") {
			t.Errorf("Validate with origin path %q = %v", p, err)
		}
	}
}

// TestCloudFrontDomainPathIsPassedToTheOrigin: CloudFront sends the
// origin the viewer's whole path after the origin path ("example.com/acme/
// index.html" from origin path "/production" fetches
// "production/acme/index.html"), so a path in Domain is part of the key,
// never a prefix that stands for the bucket's root. Linking key
// "2026/q3.pdf" as ".../reports/2026/q3.pdf" would open another object.
func TestCloudFrontDomainPathIsPassedToTheOrigin(t *testing.T) {
	k, _ := keys(t)
	tests := []struct {
		domain, originPath, key string
		want                    string // the URL before its query; "" means refused
	}{
		{"https://d.example/reports", "", "reports/2026/q3.pdf", "https://d.example/reports/2026/q3.pdf"},
		{"https://d.example/reports", "", "2026/q3.pdf", ""},
		{"https://d.example/reports/", "", "reportsX/a.pdf", ""},
		{"https://d.example/reports", "/exports", "exports/reports/a.pdf", "https://d.example/reports/a.pdf"},
		{"https://d.example/reports", "/exports", "exports/a.pdf", ""},
		{"https://d.example/a%20b", "", "a b/c.pdf", "https://d.example/a%20b/c.pdf"},
		{"https://d.example", "/exports", "exports/a.pdf", "https://d.example/a.pdf"},
	}
	for _, tt := range tests {
		t.Run(tt.domain+"|"+tt.originPath+"|"+tt.key, func(t *testing.T) {
			cf := &CloudFront{Domain: tt.domain, OriginPath: tt.originPath, KeyID: testKeyID, Key: k, TTL: time.Hour}
			l, err := cf.Sign(context.Background(), event.Report{Bucket: "b", Key: tt.key}, testNow)
			if tt.want == "" {
				if worker.CodeOf(err) != worker.CodeBucketNotServed {
					t.Fatalf("Sign = %v, %v; want refused with %s", l, err, worker.CodeBucketNotServed)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, _, _ := strings.Cut(l.URL, "?"); got != tt.want {
				t.Errorf("URL %s, want %s", got, tt.want)
			}
		})
	}
}
