package kumo

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/reportmailer/reportmailer/worker/event"
	"github.com/reportmailer/reportmailer/worker/link"
	"github.com/reportmailer/reportmailer/worker/store"
)

// reportmailer builds the production binary from the main module.
func reportmailer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "reportmailer")
	out, err := exec.Command("go", "build", "-C", "../..", "-o", bin, "./cmd/reportmailer").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/reportmailer: %v\n%s", err, out)
	}
	return bin
}

// TestKeysCommands runs the binary's keys rotate, keys and keys retire
// against kumo, configured the SDK's way (AWS_ENDPOINT_URL): a rotation
// to a KMS key, the listing that shows it beside the file key, and a
// retirement refused while the old key still signs.
func TestKeysCommands(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	bin := reportmailer(t)
	reports, state := unique("reports"), unique("state")
	e.bucket(t, reports)
	e.bucket(t, state)
	keyA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(keyA)
	if err != nil {
		t.Fatal(err)
	}
	fileA := filepath.Join(t.TempDir(), "a.pem")
	if err := os.WriteFile(fileA, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	idA := e.publicKey(t, keyA.Public())
	dist := e.distribution(t, reports, idA)
	q, err := e.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(unique("ready"))})
	if err != nil {
		t.Fatal(err)
	}
	dlq, err := e.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(unique("ready-dlq"))})
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "reportmailer.yaml")
	yaml := fmt.Sprintf(`sender: {from: "Reports <reports@example.com>"}
links:
  cloudfront:
    domain: %q
    distribution_id: %s
    hash: sha256
    kms_signing: true # the worker's role may sign with the KMS key this test rotates to
    keys:
      - {id: %s, private_key_file: %q, active: true}
reports: {bucket: %s}
ledger: {bucket: %s}
s3: {use_path_style: true}
schedules:
  - {name: it, mode: each, queue_url: %q, dead_letter_queue_url: %q, wait_time: 1s}
`, e.edge(dist), dist, idA, fileA, reports, state, aws.ToString(q.QueueUrl), aws.ToString(dlq.QueueUrl))
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	// A link signed with A, recorded where the worker records it.
	expiries := &store.KeyExpiries{Client: e.s3, Bucket: state, Prefix: "reportmailer/keys/"}
	signer := &link.CloudFront{Domain: e.edge(dist), Ring: link.Ring{{Key: link.Key{ID: idA, Signer: keyA}}}, Hash: link.HashSHA256, TTL: time.Hour, Expiries: expiries}
	if _, err := signer.Sign(ctx, event.Report{Bucket: reports, Key: "kumo/cdn/" + dist + "/r/a.pdf"}, time.Now()); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) (int, string, string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "AWS_ENDPOINT_URL="+e.url, "AWS_REGION=us-east-1",
			"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_SESSION_TOKEN=", "AWS_PROFILE=",
			"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, stdout.String(), stderr.String()
	}

	code, out, logs := run("keys", "rotate", "-config", cfg, "-kms", "-kms-spec", "RSA_2048", "-activate-after", "2m", "-poll", "10ms")
	if code != 0 || !strings.Contains(out, "signs from") {
		t.Fatalf("keys rotate: exit %d\n%s\n%s", code, out, logs)
	}
	for _, step := range []string{"step 1 done", "step 2: public key in CloudFront", "trusts the new key alongside the old", "step 3 done"} {
		if !strings.Contains(logs, step) {
			t.Errorf("keys rotate logged no %q:\n%s", step, logs)
		}
	}
	idB := regexp.MustCompile(`^key (\S+) is trusted`).FindStringSubmatch(out)
	if idB == nil {
		t.Fatalf("keys rotate named no key:\n%s", out)
	}

	code, out, logs = run("keys", "-config", cfg)
	if code != 0 {
		t.Fatalf("keys: exit %d\n%s\n%s", code, out, logs)
	}
	rowA := regexp.MustCompile(`(?m)^` + idA + `\s+RSA-2048\s+SHA256:\S+\s+yes\s+\S+ \(still signing\)$`)
	rowB := regexp.MustCompile(`(?m)^` + idB[1] + `\s+RSA-2048 \(KMS\)\s+SHA256:\S+\s+from \S+\s+never used \(yet\)$`)
	if !rowA.MatchString(out) || !rowB.MatchString(out) {
		t.Errorf("keys lists:\n%s\nwant file key %s active and KMS key %s scheduled", out, idA, idB[1])
	}

	// status shows the KMS key the ring's state scheduled, though the
	// config does not list it, by its public key id alone.
	code, out, logs = run("status", "-config", cfg, "-json")
	var stat struct {
		Keys []struct {
			ID     string `json:"id"`
			State  string `json:"state"`
			Active bool   `json:"active"`
		} `json:"keys"`
		KeyRingError string `json:"key_ring_error"`
	}
	if err := json.Unmarshal([]byte(out), &stat); code != 0 || err != nil {
		t.Fatalf("status -json: exit %d, %v\n%s\n%s", code, err, out, logs)
	}
	got := fmt.Sprint(stat.Keys)
	if want := fmt.Sprintf("[{%s active true} {%s scheduled false}]", idA, idB[1]); got != want || stat.KeyRingError != "" {
		t.Errorf("status keys = %s (ring error %q), want %s", got, stat.KeyRingError, want)
	}
	if strings.Contains(out, "arn:aws:kms") {
		t.Errorf("status names the KMS key:\n%s", out)
	}

	code, _, logs = run("keys", "retire", "-config", cfg, "-key-id", idA)
	if code != 1 || !strings.Contains(logs, "signs the links being made now") {
		t.Errorf("keys retire of the signing key: exit %d, want 1 and a refusal:\n%s", code, logs)
	}

	// check -aws compares a KMS key's public key (kms:GetPublicKey) with
	// CloudFront's for its key id, as it does a file key's.
	st, _, err := (&store.RingStore{Client: e.s3, Bucket: state, Prefix: "reportmailer/keys/"}).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kB, ok := st.Key(idB[1])
	if !ok || kB.KMSKeyID == "" {
		t.Fatalf("the ring's state has no KMS key %s: %+v", idB[1], st)
	}
	fileKey := fmt.Sprintf("      - {id: %s, private_key_file: %q, active: true}", idA, fileA)
	for _, tt := range []struct {
		id, want string
	}{
		{idB[1], `(?m)^ok\s+cloudfront\s+key ` + idB[1] + `: CloudFront's public key matches KMS key `},
		{idA, `(?m)^FAIL\s+cloudfront\s+key ` + idA + `: CloudFront's public key ` + idA + ` is not the public half`},
	} {
		kmsCfg := filepath.Join(t.TempDir(), "kms.yaml")
		if !strings.Contains(yaml, fileKey) {
			t.Fatalf("the config has no line %q", fileKey)
		}
		kmsYAML := strings.Replace(yaml, fileKey, fmt.Sprintf("      - {id: %s, kms_key_id: %q, active: true}", tt.id, kB.KMSKeyID), 1)
		if err := os.WriteFile(kmsCfg, []byte(kmsYAML), 0o644); err != nil {
			t.Fatal(err)
		}
		_, out, logs = run("check", "-aws", "-config", kmsCfg)
		if !regexp.MustCompile(tt.want).MatchString(out) {
			t.Errorf("check -aws with KMS key %s as %s: want %s\n%s\n%s", kB.KMSKeyID, tt.id, tt.want, out, logs)
		}
	}
}
