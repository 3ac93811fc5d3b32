package preflight

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"

	"github.com/reportmailer/reportmailer/worker/iam"
)

// checkSES reads the account (sending, sandbox, enforcement, quota),
// the sender's identity and DKIM, and the configuration set.
func (c *Checker) checkSES(ctx context.Context, report func(Finding)) {
	c.checkAccount(ctx, report)
	c.checkIdentity(ctx, report)
	if c.Plan.ConfigurationSet != "" {
		c.checkConfigurationSet(ctx, report)
	}
}

func (c *Checker) checkAccount(ctx context.Context, report func(Finding)) {
	f := func(name string, st Status, detail, fix string) {
		report(Finding{Area: "ses", Name: "account " + name, Status: st, Detail: detail, Fix: fix})
	}
	acct, err := c.SES.GetAccount(ctx, &sesv2.GetAccountInput{})
	switch {
	case err == nil:
	case isDenied(err):
		f("read", Fail, "ses:GetAccount refused: the worker reads the quota before it sends, and stops without it ("+brief(err)+")",
			`grant {"Effect":"Allow","Action":"ses:GetAccount","Resource":"*"}`)
		return
	default:
		f("read", Fail, "GetAccount: "+brief(err), "check the SES endpoint, credentials and AWS_REGION")
		return
	}
	region := orPlaceholder(c.Plan.Region, "this region")
	if acct.SendingEnabled {
		f("sending", OK, "sending is enabled in "+region, "")
	} else {
		f("sending", Fail, "sending is disabled for the account in "+region+": SES refuses every email",
			"aws sesv2 put-account-sending-attributes --sending-enabled; if AWS paused it, see the SES console's reputation page")
	}
	if acct.ProductionAccessEnabled {
		f("production access", OK, "out of the sandbox: mail goes to any recipient", "")
	} else {
		f("production access", Warn, "the account is in the SES sandbox: mail goes only to verified addresses, at most 200 a day at 1 a second",
			"request production access in the SES console (Account dashboard), or with aws sesv2 put-account-details")
	}
	switch st := aws.ToString(acct.EnforcementStatus); st {
	case "HEALTHY":
		f("enforcement", OK, "HEALTHY", "")
	case "SHUTDOWN":
		f("enforcement", Fail, "SHUTDOWN: AWS has stopped the account's sending", "see the SES console's reputation page and contact AWS Support")
	case "PROBATION":
		f("enforcement", Warn, "PROBATION: bounces or complaints are too high, and SES may pause sending", "see the SES console's reputation page")
	default:
		f("enforcement", Warn, fmt.Sprintf("status %q", st), "see the SES console's reputation page")
	}
	if q := acct.SendQuota; q != nil {
		detail := fmt.Sprintf("Max24HourSend %g, MaxSendRate %g/s, SentLast24Hours %g", q.Max24HourSend, q.MaxSendRate, q.SentLast24Hours)
		if q.Max24HourSend > 0 && q.SentLast24Hours >= q.Max24HourSend {
			f("quota", Warn, detail+": the 24-hour quota is spent; runs halt until it frees", "wait, or request a higher quota")
		} else {
			f("quota", OK, detail, "")
		}
	} else {
		f("quota", Warn, "GetAccount returned no SendQuota", "")
	}
}

// identity is the outcome of GetEmailIdentity for one identity.
type identity struct {
	name string
	out  *sesv2.GetEmailIdentityOutput // nil unless found
	err  error                         // nil when found or not found
}

func (c *Checker) getIdentity(ctx context.Context, name string) identity {
	out, err := c.SES.GetEmailIdentity(ctx, &sesv2.GetEmailIdentityInput{EmailIdentity: aws.String(name)})
	if err != nil {
		var nf *types.NotFoundException
		if errors.As(err, &nf) || errorCode(err) == "NotFoundException" {
			return identity{name: name}
		}
		return identity{name: name, err: err}
	}
	return identity{name: name, out: out}
}

// checkIdentity looks the From address and its domain up: SES sends
// from an address when either is verified. DKIM is the domain's when it
// is an identity, else the address's.
func (c *Checker) checkIdentity(ctx context.Context, report func(Finding)) {
	f := func(name string, st Status, detail, fix string) {
		report(Finding{Area: "ses", Name: name, Status: st, Detail: detail, Fix: fix})
	}
	// SES identities are ASCII: the domain is looked up as SES knows it,
	// in Punycode, which is also how the worker sends it.
	addr, domain, ok := iam.SenderIdentities(c.Plan.From)
	if !ok {
		f("sender identity", Fail, fmt.Sprintf("sender.from %q is not an address SES can take", c.Plan.From), "correct sender.from")
		return
	}
	ids := []identity{c.getIdentity(ctx, addr), c.getIdentity(ctx, domain)}

	var verified, found []identity
	var errs []identity
	for _, id := range ids {
		switch {
		case id.out != nil:
			found = append(found, id)
			if id.out.VerifiedForSendingStatus {
				verified = append(verified, id)
			}
		case id.err != nil:
			errs = append(errs, id)
		}
	}
	create := "aws sesv2 create-email-identity --email-identity " + domain + ", then publish the DKIM CNAME records it returns"
	switch {
	case len(verified) > 0:
		f("sender identity", OK, fmt.Sprintf("%s is verified for sending (identity %s)", addr, verified[0].name), "")
	case len(found) > 0:
		id := found[0]
		f("sender identity", Fail, fmt.Sprintf("identity %s exists but is not verified for sending (status %s): SES refuses every email from %s", id.name, id.out.VerificationStatus, addr),
			"publish the DNS records SES gave for "+id.name+" (aws sesv2 get-email-identity --email-identity "+id.name+")")
	case len(errs) == 0:
		f("sender identity", Fail, fmt.Sprintf("neither %s nor %s is an SES identity in %s: SES refuses every email from %s", addr, domain, orPlaceholder(c.Plan.Region, "this region"), addr), create)
	case isDenied(errs[0].err):
		f("sender identity", Fail, "ses:GetEmailIdentity refused, so the sender could not be checked ("+brief(errs[0].err)+")",
			fmt.Sprintf(`grant {"Effect":"Allow","Action":"ses:GetEmailIdentity","Resource":["arn:aws:ses:*:*:identity/%s","arn:aws:ses:*:*:identity/%s"]} to the role that runs check`, addr, domain))
	case isUnimplemented(errs[0].err):
		f("sender identity", Warn, "not checked: the SES endpoint does not implement GetEmailIdentity ("+brief(errs[0].err)+")", "")
	default:
		f("sender identity", Fail, fmt.Sprintf("GetEmailIdentity %s: %s", errs[0].name, brief(errs[0].err)), "check the SES endpoint and credentials")
	}
	if len(found) == 0 {
		return
	}

	dkim := found[0]
	for _, id := range found {
		if id.name == domain {
			dkim = id
		}
	}
	switch d := dkim.out.DkimAttributes; {
	case d == nil:
		f("sender DKIM", Warn, fmt.Sprintf("identity %s reports no DKIM attributes", dkim.name), "set up Easy DKIM for "+domain)
	case d.Status == types.DkimStatusSuccess && d.SigningEnabled:
		f("sender DKIM", OK, fmt.Sprintf("identity %s signs with DKIM (SUCCESS)", dkim.name), "")
	case d.Status == types.DkimStatusSuccess:
		f("sender DKIM", Warn, fmt.Sprintf("identity %s has DKIM set up but signing is off: mail is more likely to be marked as spam", dkim.name),
			"aws sesv2 put-email-identity-dkim-attributes --email-identity "+dkim.name+" --signing-enabled")
	default:
		f("sender DKIM", Warn, fmt.Sprintf("identity %s DKIM status %s: mail is more likely to be marked as spam, and Gmail and Yahoo require DKIM of bulk senders", dkim.name, orPlaceholder(string(d.Status), "unknown")),
			"publish the DKIM CNAME records (aws sesv2 get-email-identity --email-identity "+dkim.name+")")
	}

	for _, id := range found {
		m := id.out.MailFromAttributes
		if m == nil || aws.ToString(m.MailFromDomain) == "" || m.MailFromDomainStatus == types.MailFromDomainStatusSuccess {
			continue
		}
		detail := fmt.Sprintf("identity %s's MAIL FROM domain %s is %s", id.name, aws.ToString(m.MailFromDomain), m.MailFromDomainStatus)
		fix := "publish the MX and SPF records for " + aws.ToString(m.MailFromDomain)
		if m.BehaviorOnMxFailure == types.BehaviorOnMxFailureRejectMessage {
			f("sender MAIL FROM", Fail, detail+", and it is set to reject: SES refuses every email", fix)
		} else {
			f("sender MAIL FROM", Warn, detail+": SES falls back to amazonses.com", fix)
		}
	}
}

func (c *Checker) checkConfigurationSet(ctx context.Context, report func(Finding)) {
	name := c.Plan.ConfigurationSet
	f := Finding{Area: "ses", Name: "configuration set"}
	out, err := c.SES.GetConfigurationSet(ctx, &sesv2.GetConfigurationSetInput{ConfigurationSetName: aws.String(name)})
	var nf *types.NotFoundException
	switch {
	case err == nil && out.SendingOptions != nil && !out.SendingOptions.SendingEnabled:
		f.Status, f.Detail = Fail, fmt.Sprintf("%s has sending disabled: SES refuses every email that names it", name)
		f.Fix = "aws sesv2 put-configuration-set-sending-options --configuration-set-name " + name + " --sending-enabled"
	case err == nil:
		f.Status, f.Detail = OK, name+" exists"
	case errors.As(err, &nf) || errorCode(err) == "NotFoundException":
		f.Status, f.Detail = Fail, fmt.Sprintf("%s does not exist: SES refuses every email that names it", name)
		f.Fix = "aws sesv2 create-configuration-set --configuration-set-name " + name + ", or correct sender.configuration_set"
	case isDenied(err):
		f.Status, f.Detail = Fail, "ses:GetConfigurationSet refused ("+brief(err)+")"
		f.Fix = fmt.Sprintf(`grant {"Effect":"Allow","Action":"ses:GetConfigurationSet","Resource":"arn:aws:ses:*:*:configuration-set/%s"} to the role that runs check`, name)
	case isUnimplemented(err):
		f.Status, f.Detail = Warn, "not checked: the SES endpoint does not implement GetConfigurationSet ("+brief(err)+")"
	default:
		f.Status, f.Detail, f.Fix = Fail, "GetConfigurationSet: "+brief(err), "check the SES endpoint and credentials"
	}
	report(f)
}
