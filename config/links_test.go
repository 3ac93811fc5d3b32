package config_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/config"
)

// withLinks is the minimal config with a links section.
func withLinks(links string) string {
	return minimal + "links:\n" + links
}

const twoKeys = `
  cloudfront:
    domain: https://d.cloudfront.net
    keys:
      - {id: KNEW, private_key_file: new.pem, active: true}
      - {id: KOLD, private_key_env: OLD_KEY}
`

func TestLinksDefaults(t *testing.T) {
	c, err := config.Parse([]byte(withLinks(`
  cloudfront: {domain: "https://d.cloudfront.net", key_id: K1, private_key_file: k.pem}
`)), nil)
	if err != nil {
		t.Fatal(err)
	}
	l := c.Links
	if l.TTL != 168*time.Hour || l.MaxTTL != 720*time.Hour || l.TTLByType != nil {
		t.Errorf("ttl defaults: %+v", l)
	}
	cf := l.CloudFront
	if cf.Hash != "sha1" || cf.Policy != "canned" || cf.OneSignaturePerEmail || cf.KeyRecordsPrefix != "reportmailer/keys/" {
		t.Errorf("cloudfront defaults: %+v", cf)
	}
	// The shorthand is one active key.
	keys := cf.SigningKeys()
	want := config.CloudFrontKey{ID: "K1", PrivateKeyFile: "k.pem", Active: true}
	if len(keys) != 1 || keys[0] != want {
		t.Errorf("SigningKeys = %+v, want [%+v]", keys, want)
	}
	if k, ok := cf.ActiveKey(); !ok || k != want {
		t.Errorf("ActiveKey = %+v, %v", k, ok)
	}
}

// TestLinksKMSKey: a KMS key needs no private key and parses with
// hash sha256, as the shorthand and in the list.
func TestLinksKMSKey(t *testing.T) {
	for _, y := range []string{
		withLinks("  cloudfront: {domain: \"https://d.cloudfront.net\", key_id: K1, kms_key_id: \"arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab\", hash: sha256}\n"),
		withLinks("  cloudfront:\n    domain: https://d.cloudfront.net\n    hash: sha256\n    keys:\n      - {id: K1, kms_key_id: alias/reportmailer, active: true}\n      - {id: K0, private_key_file: old.pem}\n"),
	} {
		c, err := config.Parse([]byte(y), nil)
		if err != nil {
			t.Fatalf("%v\n%s", err, y)
		}
		if k, ok := c.Links.CloudFront.ActiveKey(); !ok || k.ID != "K1" || k.KMSKeyID == "" {
			t.Errorf("active key = %+v, %v; want K1 in KMS", k, ok)
		}
	}
}

func TestLinksParse(t *testing.T) {
	c, err := config.Parse([]byte(withLinks(`
  ttl: 24h
  max_ttl: 2000h
  ttl_by_type: {invoice: 720h, "tax return": 1500h}
  cloudfront:
    domain: https://d.cloudfront.net/reports
    hash: sha256
    policy: custom
    one_signature_per_email: true
    keys:
      - {id: KNEW, private_key_file: new.pem, active: true}
      - {id: KOLD, private_key_env: OLD_KEY}
`)), nil)
	if err != nil {
		t.Fatal(err)
	}
	l := c.Links
	if l.TTL != 24*time.Hour || l.MaxTTL != 2000*time.Hour || l.TTLByType["invoice"] != 720*time.Hour || l.TTLByType["tax return"] != 1500*time.Hour {
		t.Errorf("ttls: %+v", l)
	}
	cf := l.CloudFront
	if cf.Hash != "sha256" || cf.Policy != "custom" || !cf.OneSignaturePerEmail || len(cf.SigningKeys()) != 2 {
		t.Errorf("cloudfront: %+v", cf)
	}
	if k, ok := cf.ActiveKey(); !ok || k.ID != "KNEW" {
		t.Errorf("ActiveKey = %+v, %v", k, ok)
	}
}

func TestLinksErrors(t *testing.T) {
	cf := func(extra string) string {
		return withLinks(`
  cloudfront: {domain: "https://d.cloudfront.net", key_id: K1, private_key_file: k.pem` + extra + `}
`)
	}
	keys := func(list string) string {
		return withLinks(`
  cloudfront:
    domain: https://d.cloudfront.net
    keys:
` + list)
	}
	tests := []struct {
		name string
		yaml string
		env  []string
		want string
	}{
		{"ttl too short", withLinks("  ttl: 30s\n"), nil, `links.ttl: 30s is shorter than 1m`},
		{"max ttl too short", withLinks("  max_ttl: 10s\n"), nil, `links.max_ttl: 10s is shorter than 1m`},
		{"ttl over max", cf("") + "  ttl: 800h\n", nil, `links.ttl: 800h0m0s is longer than links.max_ttl (720h0m0s); raise max_ttl or shorten it`},
		{"ttl over a raised max", cf("") + "  ttl: 900h\n  max_ttl: 800h\n", nil, `links.ttl: 900h0m0s is longer than links.max_ttl (800h0m0s)`},
		{"presign ttl", withLinks("  ttl: 200h\n"), nil, `links.ttl: 200h0m0s is longer than the 7-day (168h) maximum of an S3 presigned URL`},
		{"presign ttl by type", withLinks("  ttl_by_type: {invoice: 200h}\n"), nil, `links.ttl_by_type.invoice: 200h0m0s is longer than the 7-day (168h) maximum`},
		{"ttl by type too short", withLinks("  ttl_by_type: {invoice: 1s}\n"), nil, `links.ttl_by_type.invoice: 1s is shorter than 1m`},
		{"ttl by type over max", cf("") + "  ttl_by_type: {invoice: 721h}\n", nil, `links.ttl_by_type.invoice: 721h0m0s is longer than links.max_ttl (720h0m0s)`},
		{"ttl by type empty type", withLinks("  ttl_by_type: {\"\": 1h}\n"), nil, `links.ttl_by_type: "" is not a report type`},
		{"ttl by type not a duration", withLinks("  ttl_by_type: {invoice: soon}\n"), nil, `soon`},
		{"no domain", withLinks("  cloudfront: {key_id: K1, private_key_file: k.pem}\n"), nil, `links.cloudfront.domain: "" is required`},
		{"http cloudfront", withLinks("  cloudfront: {domain: \"http://d.cloudfront.net\", key_id: K, private_key_file: a}\n"), nil, `links.cloudfront.domain: "http://d.cloudfront.net" must use https`},
		{"distribution id with an ARN", withLinks("  cloudfront: {domain: \"https://d.cloudfront.net\", key_id: K, private_key_file: a, distribution_id: \"arn:aws:cloudfront::1:distribution/E2\"}\n"), nil, `links.cloudfront.distribution_id: "arn:aws:cloudfront::1:distribution/E2" is not a CloudFront distribution id`},
		{"no key at all", withLinks("  cloudfront: {domain: \"https://d.cloudfront.net\"}\n"), nil, `links.cloudfront.key_id: "" is required (or list links.cloudfront.keys)`},
		{"shorthand bad id", withLinks("  cloudfront: {domain: \"https://d.cloudfront.net\", key_id: \"K 1\", private_key_file: k.pem}\n"), nil, `links.cloudfront.key_id: "K 1" may hold only letters, digits, '-' and '_'`},
		{"shorthand two key sources", withLinks("  cloudfront: {domain: \"https://d.cloudfront.net\", key_id: K, private_key_file: a, private_key_env: B}\n"), nil, `links.cloudfront.private_key_file: "a" and private_key_env ("B"): set exactly one`},
		{"shorthand no key source", withLinks("  cloudfront: {domain: \"https://d.cloudfront.net\", key_id: K}\n"), nil, `links.cloudfront.private_key_file: "" and private_key_env (""): set exactly one`},
		{"both forms", keys("      - {id: K2, private_key_file: b.pem, active: true}\n    key_id: K1\n"), nil, `links.cloudfront.key_id: "K1" and links.cloudfront.keys: set one form, the key_id shorthand or the keys list, not both`},
		{"key without id", keys("      - {private_key_file: a.pem, active: true}\n"), nil, `links.cloudfront.keys[0].id: "" is required`},
		{"key bad id", keys("      - {id: \"../K\", private_key_file: a.pem, active: true}\n"), nil, `links.cloudfront.keys[0].id: "../K" may hold only letters, digits, '-' and '_'`},
		{"key listed twice", keys("      - {id: K1, private_key_file: a.pem, active: true}\n      - {id: K1, private_key_file: b.pem}\n"), nil, `links.cloudfront.keys[1].id: "K1" is listed twice`},
		{"key two sources", keys("      - {id: K1, private_key_file: a.pem, private_key_env: A, active: true}\n"), nil, `links.cloudfront.keys[0].private_key_file: "a.pem" and private_key_env ("A"): set exactly one`},
		{"key no source", keys("      - {id: K1, active: true}\n"), nil, `links.cloudfront.keys[0].private_key_file: "" and private_key_env (""): set exactly one`},
		{"no active key", keys("      - {id: K1, private_key_file: a.pem}\n      - {id: K2, private_key_file: b.pem}\n"), nil, `links.cloudfront.keys: 2 keys listed and none is active: mark exactly one with active: true`},
		{"two active keys", keys("      - {id: K1, private_key_file: a.pem, active: true}\n      - {id: K2, private_key_file: b.pem, active: true}\n"), nil, `links.cloudfront.keys: "K1, K2" are all active: mark exactly one with active: true`},
		{"kms key with sha1", withLinks("  cloudfront: {domain: \"https://d.cloudfront.net\", key_id: K, kms_key_id: alias/reportmailer}\n"), nil, `links.cloudfront.hash: "sha1" must be sha256 with a KMS key (kms_key_id): KMS signs SHA-256 digests only`},
		{"kms key and a file", keys("      - {id: K1, kms_key_id: alias/rm, private_key_file: a.pem, active: true}\n    hash: sha256\n"), nil, `links.cloudfront.keys[0].kms_key_id: "alias/rm" and private_key_file or private_key_env: set exactly one`},
		{"kms key not an id", withLinks("  cloudfront: {domain: \"https://d.cloudfront.net\", key_id: K, kms_key_id: \"arn:aws:s3:::bucket\", hash: sha256}\n"), nil, `links.cloudfront.kms_key_id: "arn:aws:s3:::bucket" is not a KMS key id, ARN or alias`},
		{"bad hash", cf(", hash: md5"), nil, `links.cloudfront.hash: "md5" is not sha1 or sha256`},
		{"upper-case hash", cf(", hash: SHA256"), nil, `links.cloudfront.hash: "SHA256" is not sha1 or sha256`},
		{"bad policy", cf(", policy: signed"), nil, `links.cloudfront.policy: "signed" is not canned or custom`},
		{"unknown field", cf(", one_signature: true"), nil, `field one_signature not found`},
		{"key records under the ledger", cf(", key_records_prefix: reportmailer/ledger/keys/"), nil,
			`links.cloudfront.key_records_prefix: "reportmailer/ledger/keys/" is under ledger.prefix ("reportmailer/ledger/"), whose S3 lifecycle rule would delete the key records`},
		{"key records under a custom ledger prefix", cf(", key_records_prefix: state/keys/"), []string{"REPORTMAILER_LEDGER_PREFIX=state/"},
			`links.cloudfront.key_records_prefix: "state/keys/" is under ledger.prefix ("state/")`},
		{"env bad hash", cf(""), []string{"REPORTMAILER_LINKS_CLOUDFRONT_HASH=sha512"}, `links.cloudfront.hash: "sha512" is not sha1 or sha256`},
		{"env bad max ttl", minimal, []string{"REPORTMAILER_LINKS_MAX_TTL=forever"}, `environment REPORTMAILER_LINKS_MAX_TTL: "forever" is not a duration`},
		{"env targets the ttl map", minimal, []string{"REPORTMAILER_LINKS_TTL_BY_TYPE=invoice=1h"}, `environment REPORTMAILER_LINKS_TTL_BY_TYPE: "invoice=1h" cannot be set from the environment`},
		{"env names no key", twoKeysConfig(), []string{"REPORTMAILER_LINKS_CLOUDFRONT_KEYS_KNOPE_ACTIVE=true"}, `environment REPORTMAILER_LINKS_CLOUDFRONT_KEYS_KNOPE_ACTIVE: no such setting`},
		{"env makes two active", twoKeysConfig(), []string{"REPORTMAILER_LINKS_CLOUDFRONT_KEYS_KOLD_ACTIVE=true"}, `links.cloudfront.keys: "KNEW, KOLD" are all active`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tt.yaml), tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func twoKeysConfig() string { return withLinks(twoKeys) }

// TestLinksEnv checks the environment overrides of the new settings, and
// that the ttl map and the key list do not trip up ApplyEnv when no
// variable names them.
func TestLinksEnv(t *testing.T) {
	y := withLinks(`
  ttl_by_type: {invoice: 48h}
` + twoKeys)
	c, err := config.Parse([]byte(y), []string{
		"REPORTMAILER_SENDER_FROM=ops@example.com",
		"REPORTMAILER_LINKS_MAX_TTL=200h",
		"REPORTMAILER_LINKS_CLOUDFRONT_HASH=sha256",
		"REPORTMAILER_LINKS_CLOUDFRONT_POLICY=custom",
		"REPORTMAILER_LINKS_CLOUDFRONT_ONE_SIGNATURE_PER_EMAIL=true",
		// Rotation from the environment: make the old key active again.
		"REPORTMAILER_LINKS_CLOUDFRONT_KEYS_KNEW_ACTIVE=false",
		"REPORTMAILER_LINKS_CLOUDFRONT_KEYS_KOLD_ACTIVE=true",
		"REPORTMAILER_LINKS_CLOUDFRONT_KEYS_KOLD_PRIVATE_KEY_ENV=OLD_KEY_2",
	})
	if err != nil {
		t.Fatal(err)
	}
	l := c.Links
	cf := l.CloudFront
	if l.MaxTTL != 200*time.Hour || l.TTLByType["invoice"] != 48*time.Hour || cf.Hash != "sha256" || cf.Policy != "custom" || !cf.OneSignaturePerEmail {
		t.Errorf("overrides not applied: %+v %+v", l, cf)
	}
	k, ok := cf.ActiveKey()
	if !ok || k.ID != "KOLD" || k.PrivateKeyEnv != "OLD_KEY_2" {
		t.Errorf("ActiveKey = %+v, %v", k, ok)
	}
}

func TestActiveKey(t *testing.T) {
	tests := []struct {
		keys   []config.CloudFrontKey
		wantID string
		wantOK bool
	}{
		{[]config.CloudFrontKey{{ID: "A", Active: true}, {ID: "B"}}, "A", true},
		{[]config.CloudFrontKey{{ID: "A"}, {ID: "B", Active: true}}, "B", true},
		{[]config.CloudFrontKey{{ID: "A"}, {ID: "B"}}, "", false},
		{[]config.CloudFrontKey{{ID: "A", Active: true}, {ID: "B", Active: true}}, "", false},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			k, ok := (&config.CloudFront{Keys: tt.keys}).ActiveKey()
			if k.ID != tt.wantID || ok != tt.wantOK {
				t.Errorf("ActiveKey = %+v, %v; want %q, %v", k, ok, tt.wantID, tt.wantOK)
			}
		})
	}
}
