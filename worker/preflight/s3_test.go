package preflight

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/internal/s3test"
	"github.com/reportmailer/reportmailer/worker/iam"
)

// TestMissingKeyFixIsTheDeclaredStatement: where a missing key answers
// 403 for want of s3:ListBucket, the fix quotes the statements the
// policy declares (`reportmailer iam`), one per prefix with its
// s3:prefix condition, and granting exactly those turns the 403s into
// 404s. Before, the fix suggested s3:ListBucket on the whole bucket,
// which is not what the declared policy grants.
func TestMissingKeyFixIsTheDeclaredStatement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	emuURL, _ := s3test.Start(t, "state", "reports")
	reads := iam.Statement{Effect: "Allow", Action: []string{"s3:GetObject"}, Resource: []string{
		"arn:aws:s3:::state/reportmailer/ledger/*", "arn:aws:s3:::state/reportmailer/keys/*", "arn:aws:s3:::reports/exports/*",
	}}
	policy := &iam.Document{Version: iam.Version, Statement: []iam.Statement{reads}}
	p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.S3, Target: emuURL, Policy: policy})
	c := &Checker{
		S3: s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(p.URL), UsePathStyle: true,
			Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
			DisableLogOutputChecksumValidationSkipped: true}),
		Plan: Plan{Region: "us-east-1"},
	}
	places := []place{
		{Location{"state", "reportmailer/ledger/", "ledger.bucket"}, "ledger", iam.StoreLedger},
		{Location{"state", "reportmailer/keys/", "ledger.bucket"}, "key records", iam.StoreKeyRecords},
		{Location{"reports", "exports/", "reports.bucket"}, "reports", iam.StoreReports},
	}
	probe := func() []Finding {
		var got []Finding
		c.probeMissing(ctx, places, func(f Finding) { got = append(got, f) })
		return got
	}

	got := probe()
	if len(got) != 2 {
		t.Fatalf("findings %v; want one per bucket", got)
	}
	declared := map[string]bool{} // the statements the policy declares, as JSON
	for _, pl := range places {
		b, _ := json.Marshal(iam.ListStatement("us-east-1", pl.store, pl.Bucket, pl.Prefix))
		declared[string(b)] = true
	}
	var grant []iam.Statement
	for _, f := range got {
		if f.Status != Fail || !strings.Contains(f.Detail, "403 AccessDenied, not 404") {
			t.Errorf("finding %s; want a FAIL for the 403", f)
		}
		quoted := 0
		for i := strings.Index(f.Fix, `{"Sid"`); i >= 0; i = next(f.Fix, i) {
			var s iam.Statement
			if err := json.NewDecoder(strings.NewReader(f.Fix[i:])).Decode(&s); err != nil {
				t.Fatalf("fix %q: %v", f.Fix, err)
			}
			b, _ := json.Marshal(s)
			if !declared[string(b)] {
				t.Errorf("fix quotes %s, which the policy does not declare", b)
			}
			grant = append(grant, s)
			quoted++
		}
		if want := strings.Count(f.Detail, "("); quoted != want {
			t.Errorf("fix %q quotes %d statements; want one per prefix, %d", f.Fix, quoted, want)
		}
	}
	if len(grant) != len(places) {
		t.Fatalf("the fixes quote %d statements, want %d", len(grant), len(places))
	}

	// Granting what the fixes say mends every prefix.
	policy = &iam.Document{Version: iam.Version, Statement: append([]iam.Statement{reads}, grant...)}
	p.SetPolicy(policy)
	for _, f := range probe() {
		if f.Status != OK {
			t.Errorf("with the quoted statements granted: %s", f)
		}
	}
}

// next returns the index of the next statement in fix after the one at i.
func next(fix string, i int) int {
	j := strings.Index(fix[i+1:], `{"Sid"`)
	if j < 0 {
		return -1
	}
	return i + 1 + j
}
