package preflight

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// checkCloudFront checks that the distribution serves the reports
// bucket at the configured origin path, and that CloudFront's public key
// for each configured key id is the public half of its private key.
//
// The worker signs offline and never calls the CloudFront API, so where
// the API cannot be asked (not granted, unreachable) the checks warn
// rather than fail; only an answer that shows a broken setting fails.
func (c *Checker) checkCloudFront(ctx context.Context, report func(Finding)) {
	c.checkDistribution(ctx, report)
	for _, k := range c.Plan.CloudFront.Keys {
		report(c.checkPublicKey(ctx, k))
	}
}

// notAsked is the finding for a CloudFront call that got no useful
// answer.
func notAsked(name, action string, err error) Finding {
	f := Finding{Area: "cloudfront", Name: name, Status: Warn}
	if isDenied(err) {
		f.Detail = "not checked: cloudfront:" + action + " not granted"
		f.Fix = "grant cloudfront:" + action + " to the role that runs check, to check it"
	} else {
		f.Detail = "not checked: " + action + ": " + brief(err)
	}
	return f
}

func (c *Checker) checkDistribution(ctx context.Context, report func(Finding)) {
	cf := c.Plan.CloudFront
	name := "distribution origin"
	switch {
	case cf.DistributionID == "":
		report(Finding{Area: "cloudfront", Name: name, Status: Warn, Detail: "not checked: links.cloudfront.distribution_id is not set",
			Fix: "set links.cloudfront.distribution_id to check that the distribution serves the reports bucket"})
		return
	case cf.Bucket == "":
		report(Finding{Area: "cloudfront", Name: name, Status: Warn, Detail: "not checked: reports.bucket is not set",
			Fix: "set reports.bucket to the bucket the distribution serves"})
		return
	}
	out, err := c.CloudFront.GetDistributionConfig(ctx, &cloudfront.GetDistributionConfigInput{Id: aws.String(cf.DistributionID)})
	var nd *types.NoSuchDistribution
	switch {
	case err == nil:
	case errors.As(err, &nd) || errorCode(err) == "NoSuchDistribution":
		report(Finding{Area: "cloudfront", Name: name, Status: Fail, Detail: fmt.Sprintf("distribution %s does not exist", cf.DistributionID),
			Fix: "correct links.cloudfront.distribution_id"})
		return
	default:
		report(notAsked(name, "GetDistributionConfig", err))
		return
	}
	dc := out.DistributionConfig
	var origins []Origin
	if dc != nil && dc.Origins != nil {
		for _, o := range dc.Origins.Items {
			origins = append(origins, Origin{ID: aws.ToString(o.Id), Domain: aws.ToString(o.DomainName), Path: aws.ToString(o.OriginPath)})
		}
	}
	report(originFinding(cf, origins))
	if dc != nil && dc.Aliases != nil {
		if f, ok := domainFinding(cf, dc.Aliases.Items); ok {
			report(f)
		}
	}
}

// Origin is a distribution's origin, as the checks need it.
type Origin struct {
	ID, Domain, Path string
}

// s3OriginRE matches the domain names of S3 REST endpoints that a
// CloudFront S3 origin uses: BUCKET.s3.amazonaws.com,
// BUCKET.s3.REGION.amazonaws.com, the older BUCKET.s3-REGION.amazonaws.com
// and the dual-stack form.
var s3OriginRE = regexp.MustCompile(`^(.+?)\.s3(?:\.dualstack)?(?:[.-][a-z]{2}(?:-[a-z]+)+-\d+)?\.amazonaws\.com(?:\.cn)?$`)

// OriginBucket returns the bucket an origin domain name serves, and
// false if it is not an S3 REST endpoint.
func OriginBucket(domain string) (string, bool) {
	m := s3OriginRE.FindStringSubmatch(strings.ToLower(strings.TrimSuffix(domain, ".")))
	if m == nil {
		return "", false
	}
	return m[1], true
}

// cleanPath makes origin paths comparable: CloudFront writes "/a/b",
// a config may say "a/b/".
func cleanPath(p string) string {
	return strings.Trim(p, "/")
}

// MatchOrigin returns the origin that serves bucket, and whether its
// path is the expected one.
func MatchOrigin(origins []Origin, bucket, path string) (Origin, bool, bool) {
	for _, o := range origins {
		if b, ok := OriginBucket(o.Domain); ok && b == bucket {
			return o, true, cleanPath(o.Path) == cleanPath(path)
		}
	}
	return Origin{}, false, false
}

func originFinding(cf *CloudFrontPlan, origins []Origin) Finding {
	f := Finding{Area: "cloudfront", Name: "distribution origin"}
	o, found, pathOK := MatchOrigin(origins, cf.Bucket, cf.OriginPath)
	switch {
	case !found:
		var names []string
		for _, o := range origins {
			names = append(names, o.Domain)
		}
		f.Status = Fail
		f.Detail = fmt.Sprintf("distribution %s has no origin for bucket %s (origins: %s): its links would open objects of another bucket, or nothing", cf.DistributionID, cf.Bucket, strings.Join(names, ", "))
		f.Fix = "correct reports.bucket or links.cloudfront.distribution_id, or add " + cf.Bucket + ".s3.REGION.amazonaws.com as an origin"
	case !pathOK:
		f.Status = Fail
		f.Detail = fmt.Sprintf("origin %s serves %s with origin path %q, but links.cloudfront.origin_path is %q: links would name the wrong key", o.ID, cf.Bucket, o.Path, cf.OriginPath)
		f.Fix = fmt.Sprintf("set links.cloudfront.origin_path to %q", o.Path)
	default:
		f.Status, f.Detail = OK, fmt.Sprintf("origin %s serves bucket %s with origin path %q", o.ID, cf.Bucket, o.Path)
	}
	return f
}

// domainFinding checks that links.cloudfront.domain is one of the
// distribution's alternate domain names. A *.cloudfront.net domain
// cannot be checked from the distribution's config, so it gives none.
func domainFinding(cf *CloudFrontPlan, aliases []string) (Finding, bool) {
	u, err := url.Parse(cf.Domain)
	if err != nil || u.Hostname() == "" || strings.HasSuffix(u.Hostname(), ".cloudfront.net") {
		return Finding{}, false
	}
	host := strings.ToLower(u.Hostname())
	f := Finding{Area: "cloudfront", Name: "distribution domain"}
	if slices.ContainsFunc(aliases, func(a string) bool { return strings.EqualFold(a, host) }) {
		f.Status, f.Detail = OK, host+" is an alternate domain name of the distribution"
	} else {
		f.Status = Fail
		f.Detail = fmt.Sprintf("%s is not an alternate domain name of distribution %s (%s): links go to another distribution, or nowhere", host, cf.DistributionID, strings.Join(aliases, ", "))
		f.Fix = "correct links.cloudfront.domain or links.cloudfront.distribution_id"
	}
	return f, true
}

func (c *Checker) checkPublicKey(ctx context.Context, k Key) Finding {
	name := "key " + k.ID
	if k.Public == nil && k.KMSKeyID != "" {
		if c.KMS == nil {
			return Finding{Area: "cloudfront", Name: name, Status: Warn, Detail: "KMS key " + k.KMSKeyID + " not checked: no KMS client"}
		}
		out, err := c.KMS.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(k.KMSKeyID)})
		if err != nil {
			// The worker signs with this key: a key it cannot read is one
			// it cannot sign with either.
			return Finding{Area: "cloudfront", Name: name, Status: Fail, Detail: fmt.Sprintf("KMS key %s: kms:GetPublicKey: %v", k.KMSKeyID, err),
				Fix: "tag the key reportmailer=cloudfront-signing, grant what `reportmailer iam` prints, and check that the key is enabled and in this region"}
		}
		if k.Public, err = x509.ParsePKIXPublicKey(out.PublicKey); err != nil {
			return Finding{Area: "cloudfront", Name: name, Status: Fail, Detail: fmt.Sprintf("KMS key %s: its public key cannot be read: %v", k.KMSKeyID, err)}
		}
	}
	out, err := c.CloudFront.GetPublicKey(ctx, &cloudfront.GetPublicKeyInput{Id: aws.String(k.ID)})
	var ns *types.NoSuchPublicKey
	switch {
	case err == nil:
	case errors.As(err, &ns) || errorCode(err) == "NoSuchPublicKey":
		return Finding{Area: "cloudfront", Name: name, Status: Fail, Detail: "CloudFront has no public key " + k.ID + ": every link signed with it answers 403",
			Fix: "upload the public half (openssl pkey -pubout) as a CloudFront public key, add it to the distribution's key group, and use its id"}
	default:
		return notAsked(name, "GetPublicKey", err)
	}
	var encoded string
	if out.PublicKey != nil && out.PublicKey.PublicKeyConfig != nil {
		encoded = aws.ToString(out.PublicKey.PublicKeyConfig.EncodedKey)
	}
	ok, err := PublicKeyMatches(encoded, k.Public)
	switch {
	case err != nil:
		return Finding{Area: "cloudfront", Name: name, Status: Fail, Detail: "CloudFront's public key " + k.ID + " cannot be read: " + err.Error()}
	case !ok:
		return Finding{Area: "cloudfront", Name: name, Status: Fail,
			Detail: "CloudFront's public key " + k.ID + " is not the public half of the configured private key: every link signed with it answers 403",
			Fix:    "configure the private key that belongs to " + k.ID + ", or upload this key's public half and use its new id"}
	}
	if k.KMSKeyID != "" {
		return Finding{Area: "cloudfront", Name: name, Status: OK, Detail: "CloudFront's public key matches KMS key " + k.KMSKeyID}
	}
	return Finding{Area: "cloudfront", Name: name, Status: OK, Detail: "CloudFront's public key matches the configured private key"}
}

// PublicKeyMatches reports whether the PEM-encoded public key (as
// CloudFront's EncodedKey holds it) is pub.
func PublicKeyMatches(encoded string, pub crypto.PublicKey) (bool, error) {
	block, _ := pem.Decode([]byte(strings.TrimSpace(encoded)))
	if block == nil {
		return false, errors.New("not PEM")
	}
	got, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return false, fmt.Errorf("not a PKIX public key: %w", err)
	}
	eq, ok := got.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(pub), nil
}
