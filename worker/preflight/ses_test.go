package preflight

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"

	"github.com/reportmailer/reportmailer/internal/awsproxy"
	"github.com/reportmailer/reportmailer/internal/emulator"
	"github.com/reportmailer/reportmailer/worker/iam"
)

// TestIdentityLookedUpInPunycode: an internationalized sender domain is
// looked up as SES knows it, in Punycode. The account grants
// ses:GetEmailIdentity on its identities, which are ASCII; before, check
// asked for "bücher.example", which matched no grant and no identity,
// and reported the sender unchecked for want of a permission the
// operator had given.
func TestIdentityLookedUpInPunycode(t *testing.T) {
	t.Parallel()
	const identity = "arn:aws:ses:us-east-1:000000000000:identity/"
	granted := &iam.Document{Version: iam.Version, Statement: []iam.Statement{{
		Effect: "Allow", Action: []string{"ses:GetEmailIdentity"},
		Resource: []string{identity + "reports@xn--bcher-kva.example", identity + "xn--bcher-kva.example"},
	}}}
	p := awsproxy.Start(t, awsproxy.Options{Service: awsproxy.SES, Target: emulator.StartSESLocal(t, ""), Policy: granted})
	c := &Checker{
		SES: sesv2.New(sesv2.Options{Region: "us-east-1", BaseEndpoint: aws.String(p.URL),
			Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}),
		Plan: Plan{Region: "us-east-1", From: "Société Reports <reports@Bücher.example>"},
	}
	var got []string
	c.checkIdentity(context.Background(), func(f Finding) { got = append(got, f.String()) })

	if d := p.Denials(); len(d) != 0 {
		t.Errorf("denied %+v; want both identities asked for in Punycode", d)
	}
	if n := p.Counts("GetEmailIdentity").Forwarded; n != 2 {
		t.Errorf("%d GetEmailIdentity calls reached SES, want 2 (the address and its domain)", n)
	}
	for _, f := range got {
		if strings.Contains(f, "refused") || strings.Contains(f, "ü") {
			t.Errorf("finding %q; want the identities named in Punycode, and no refusal", f)
		}
	}
}
