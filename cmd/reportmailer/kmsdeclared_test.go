package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/reportmailer/reportmailer/worker/iam"
)

// TestKeysRotateKMSNeedsTheWorkerPolicy: a deployment whose keys are
// files gets no KMS statement from `reportmailer iam`, so `keys rotate
// -kms` refuses (exit 2, before any AWS call) until the config declares
// links.cloudfront.kms_signing, which puts the statement in the
// worker's policy: the workers sign with the new key once it activates.
func TestKeysRotateKMSNeedsTheWorkerPolicy(t *testing.T) {
	t.Setenv("REPORTMAILER_CONFIG", "")
	t.Setenv("AWS_REGION", "")
	t.Setenv("REPORTMAILER_LINKS_CLOUDFRONT_HASH", "sha256")
	const example = "../../config/example.yaml"
	policy := func(t *testing.T) iam.Document {
		t.Helper()
		code, out, errOut := run(t, "iam", "-config", example)
		if code != ExitOK {
			t.Fatalf("iam: exit %d: %s", code, errOut)
		}
		var d iam.Document
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	key := "arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	tagged := map[string]string{"aws:ResourceTag/" + iam.KMSTagKey: iam.KMSTagValue}

	if policy(t).Allows("kms:Sign", key, tagged) {
		t.Error("file keys only: the worker's policy grants kms:Sign")
	}
	code, _, errOut := run(t, "keys", "rotate", "-config", example, "-kms")
	if code != ExitUsage || !strings.Contains(errOut, "links.cloudfront.kms_signing: true") || !strings.Contains(errOut, "SigningKeys") {
		t.Errorf("keys rotate -kms without the KMS statement: exit %d, stderr %q; want exit 2 naming the statement and kms_signing", code, errOut)
	}

	t.Setenv("REPORTMAILER_LINKS_CLOUDFRONT_KMS_SIGNING", "true")
	d := policy(t)
	if !d.Allows("kms:Sign", key, tagged) || !d.Allows("kms:GetPublicKey", key, tagged) {
		t.Error("kms_signing: true: the worker's policy does not grant kms:Sign and kms:GetPublicKey on the tagged keys")
	}
	if d.Allows("kms:Sign", key, nil) {
		t.Error("kms_signing: true: kms:Sign is granted on untagged keys")
	}
}
