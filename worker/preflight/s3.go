package preflight

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/reportmailer/reportmailer/worker/iam"
)

// probeBody is what a probe object holds, for whoever finds one left
// behind.
const probeBody = "reportmailer check: a probe object; it is deleted at once, and may be deleted if found\n"

// deleteTimeout bounds the delete of the probe object, which runs even
// when the check's own time is up.
const deleteTimeout = 30 * time.Second

// checkS3 probes the ledger prefix with a conditional write, a read and
// a delete, then reads a key that cannot exist under each prefix the
// worker reads: it must answer 404, which S3 gives only where
// s3:ListBucket is granted.
func (c *Checker) checkS3(ctx context.Context, report func(Finding)) {
	p := c.Plan
	var absent []place
	if c.probeLedger(ctx, report) {
		absent = append(absent, place{p.Ledger, "ledger", iam.StoreLedger})
	} else {
		// One finding for the missing bucket, not one per prefix in it.
		if p.KeyRecords.Bucket == p.Ledger.Bucket {
			p.KeyRecords.Bucket = ""
		}
		if p.Reports.Bucket == p.Ledger.Bucket {
			p.Reports.Bucket = ""
		}
	}
	if p.KeyRecords.Bucket != "" {
		absent = append(absent, place{p.KeyRecords, "key records", iam.StoreKeyRecords})
	}
	switch {
	case p.Reports.Bucket != "":
		absent = append(absent, place{p.Reports, "reports", iam.StoreReports})
	case c.Plan.Reports.Bucket == "":
		report(Finding{Area: "s3", Name: "reports", Status: Warn, Detail: "not probed: reports.bucket is not set",
			Fix: "set reports.bucket (and reports.prefix) to where report objects live"})
	}
	c.probeMissing(ctx, absent, report)
}

func objectARN(bucket, prefix string) string {
	return "arn:aws:s3:::" + bucket + "/" + prefix + "*"
}

// probeLedger writes a probe object under the ledger prefix with
// If-None-Match: *, reads it back, writes it again (which must answer
// 412), and deletes it. It reports whether the bucket exists.
func (c *Checker) probeLedger(ctx context.Context, report func(Finding)) bool {
	l := c.Plan.Ledger
	key := l.Prefix + "reportmailer-check-" + c.probeName()
	where := "s3://" + l.Bucket + "/" + key
	grant := fmt.Sprintf(`grant {"Effect":"Allow","Action":["s3:PutObject","s3:GetObject","s3:DeleteObject"],"Resource":"%s"}`, objectARN(l.Bucket, l.Prefix))
	f := func(name string, st Status, detail, fix string) Finding {
		return Finding{Area: "s3", Name: "ledger " + name, Status: st, Detail: detail, Fix: fix}
	}
	put := func() error {
		_, err := c.S3.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(l.Bucket), Key: aws.String(key), IfNoneMatch: aws.String("*"),
			Body: strings.NewReader(probeBody), ContentType: aws.String("text/plain; charset=utf-8"),
		})
		return err
	}

	err := put()
	switch {
	case err == nil:
	case isNoSuchBucket(err):
		report(f("bucket", Fail, fmt.Sprintf("bucket %s does not exist", l.Bucket), "create it, or correct "+l.Field))
		return false
	case isDenied(err):
		report(f("write", Fail, fmt.Sprintf("s3:PutObject refused on %s: the worker cannot record deliveries (%s)", where, brief(err)), grant))
		return true
	default:
		report(f("write", Fail, fmt.Sprintf("PutObject %s: %s", where, brief(err)), "check the S3 endpoint and credentials"))
		if httpStatus(err) < 400 || httpStatus(err) >= 500 {
			// It may have been written before the error.
			c.deleteProbe(ctx, l, key, report)
		}
		return true
	}
	// Whatever happens next, the probe object goes.
	defer c.deleteProbe(ctx, l, key, report)

	out, err := c.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(l.Bucket), Key: aws.String(key)})
	switch {
	case err == nil:
		io.Copy(io.Discard, out.Body)
		out.Body.Close()
		report(f("write", OK, "wrote and read back a probe object with If-None-Match: *", ""))
	case isDenied(err):
		report(f("write", Fail, fmt.Sprintf("s3:GetObject refused on %s: the worker cannot read delivery records (%s)", where, brief(err)), grant))
	default:
		report(f("write", Fail, fmt.Sprintf("GetObject of the probe just written %s: %s", where, brief(err)), "check the S3 endpoint"))
	}

	err = put()
	switch {
	case isPreconditionFailed(err):
		report(f("conditional write", OK, "a second If-None-Match: * write of the probe answered 412, so two workers cannot both claim a delivery", ""))
	case err == nil:
		report(f("conditional write", Fail, "a second If-None-Match: * write of the probe succeeded: this S3 endpoint ignores conditional writes, so two workers can both claim a delivery and both send",
			"use an S3 endpoint that honours If-None-Match (AWS S3 does)"))
	case isDenied(err):
		report(f("conditional write", Fail, fmt.Sprintf("the second write answered 403, not 412: %s", brief(err)), grant))
	default:
		report(f("conditional write", Fail, fmt.Sprintf("the second write answered %s, not 412 PreconditionFailed", brief(err)), "check the S3 endpoint"))
	}
	return true
}

// deleteProbe deletes the probe object and says so.
func (c *Checker) deleteProbe(ctx context.Context, l Location, key string, report func(Finding)) {
	// The run's context may be spent; the probe must still go.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
	defer cancel()
	_, err := c.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(l.Bucket), Key: aws.String(key)})
	f := Finding{Area: "s3", Name: "ledger delete"}
	switch {
	case err == nil:
		f.Status, f.Detail = OK, "deleted the probe object"
	case isDenied(err):
		f.Status = Fail
		f.Detail = fmt.Sprintf("s3:DeleteObject refused: the worker cannot release a claim after SES refuses a send (%s)", brief(err))
		f.Fix = fmt.Sprintf(`grant {"Effect":"Allow","Action":"s3:DeleteObject","Resource":"%s"}, and delete s3://%s/%s`, objectARN(l.Bucket, l.Prefix), l.Bucket, key)
	default:
		f.Status = Fail
		f.Detail = fmt.Sprintf("DeleteObject: %s", brief(err))
		f.Fix = fmt.Sprintf("delete s3://%s/%s by hand", l.Bucket, key)
	}
	report(f)
}

// place is a location and what the worker keeps there.
type place struct {
	Location
	what  string
	store iam.Store
}

// probeMissing reads a key that cannot exist under each location. A
// bucket whose missing keys answer 403 gets one finding for all its
// prefixes, whose fix quotes the s3:ListBucket statement the policy
// declares for each (`reportmailer iam`): on the bucket, for that prefix
// only.
func (c *Checker) probeMissing(ctx context.Context, locs []place, report func(Finding)) {
	denied := map[string][]string{}
	grants := map[string][]string{}
	var order []string
	missing := map[string]bool{}
	for _, l := range locs {
		if missing[l.Bucket] {
			continue
		}
		key := l.Prefix + "reportmailer-check-absent-" + c.probeName()
		name := l.what + " missing key"
		out, err := c.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(l.Bucket), Key: aws.String(key)})
		switch {
		case err == nil:
			io.Copy(io.Discard, out.Body)
			out.Body.Close()
			report(Finding{Area: "s3", Name: name, Status: Warn, Detail: fmt.Sprintf("s3://%s/%s, which should not exist, answered 200", l.Bucket, key)})
		case isNoSuchBucket(err):
			missing[l.Bucket] = true
			report(Finding{Area: "s3", Name: l.what + " bucket", Status: Fail, Detail: fmt.Sprintf("bucket %s does not exist", l.Bucket),
				Fix: "create it, or correct " + l.Field})
		case isNotFound(err):
			report(Finding{Area: "s3", Name: name, Status: OK, Detail: fmt.Sprintf("a missing key under s3://%s/%s answers 404", l.Bucket, l.Prefix)})
		case isDenied(err):
			if _, seen := denied[l.Bucket]; !seen {
				order = append(order, l.Bucket)
			}
			denied[l.Bucket] = append(denied[l.Bucket], fmt.Sprintf("%s (%s)", orPlaceholder(l.Prefix, "/"), l.what))
			st, _ := json.Marshal(iam.ListStatement(c.Plan.Region, l.store, l.Bucket, l.Prefix))
			grants[l.Bucket] = append(grants[l.Bucket], string(st))
		default:
			report(Finding{Area: "s3", Name: name, Status: Fail, Detail: fmt.Sprintf("GetObject s3://%s/%s: %s", l.Bucket, key, brief(err)),
				Fix: "check the S3 endpoint and credentials"})
		}
	}
	for _, b := range order {
		report(Finding{Area: "s3", Name: "bucket " + b + " missing keys", Status: Fail,
			Detail: fmt.Sprintf("a missing key answers 403 AccessDenied, not 404, under %s: s3:ListBucket is not granted on the bucket, so the worker takes a missing record or report for a refusal",
				strings.Join(denied[b], ", ")),
			Fix: fmt.Sprintf("grant %s, as `reportmailer iam` declares (and s3:GetObject on those prefixes, if it is missing too)", strings.Join(grants[b], " and "))})
	}
}

func isNoSuchBucket(err error) bool {
	var nb *types.NoSuchBucket
	return errors.As(err, &nb) || errorCode(err) == "NoSuchBucket"
}

func isNotFound(err error) bool {
	var nk *types.NoSuchKey
	var nf *types.NotFound
	return errors.As(err, &nk) || errors.As(err, &nf) || errorCode(err) == "NoSuchKey" || httpStatus(err) == http.StatusNotFound
}

func isPreconditionFailed(err error) bool {
	return err != nil && (errorCode(err) == "PreconditionFailed" || httpStatus(err) == http.StatusPreconditionFailed)
}
