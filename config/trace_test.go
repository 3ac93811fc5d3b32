package config_test

import (
	"strings"
	"testing"

	"github.com/reportmailer/reportmailer/config"
)

const traceCF = `
  cloudfront:
    domain: https://d.cloudfront.net
    key_id: K1
    private_key_file: k.pem
`

func TestTraceConfig(t *testing.T) {
	hexSecret := strings.Repeat("9f86d081884c7d65", 4)
	for _, tt := range []struct {
		name  string
		links string
		env   []string
		want  string // "" for valid
	}{
		{"file", traceCF + "  trace: true\n  trace_secret_file: /run/secrets/trace\n", nil, ""},
		{"env", traceCF + "  trace: true\n  trace_secret_env: TRACE_SECRET\n", nil, ""},
		{"from the environment", traceCF, []string{"REPORTMAILER_LINKS_TRACE=true", "REPORTMAILER_LINKS_TRACE_SECRET_ENV=TRACE_SECRET"}, ""},
		{"logs and kvs", traceCF + "    access_logs: {bucket: cf-logs, prefix: reports/}\n    key_value_store_arn: arn:aws:cloudfront::123456789012:key-value-store/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d\n", nil, ""},
		{"no secret", traceCF + "  trace: true\n", nil,
			`links.trace_secret_file: "" and links.trace_secret_env (""): with links.trace, set exactly one`},
		{"both secrets", traceCF + "  trace: true\n  trace_secret_file: s\n  trace_secret_env: S\n", nil,
			`links.trace_secret_file: "s" and links.trace_secret_env ("S"): with links.trace, set exactly one`},
		{"without cloudfront", "  trace: true\n  trace_secret_env: S\n", nil,
			"links.trace: true needs links.cloudfront"},
		{"with one signature per email", traceCF + "    one_signature_per_email: true\n  trace: true\n  trace_secret_env: S\n", nil,
			"links.cloudfront.one_signature_per_email: true cannot be on with links.trace"},
		{"secret without trace", traceCF + "  trace_secret_env: S\n", nil,
			"links.trace: false is off, but links.trace_secret_file or links.trace_secret_env is set"},
		{"bad env name", traceCF + "  trace: true\n  trace_secret_env: TRACE-SECRET\n", nil,
			`links.trace_secret_env: "TRACE-SECRET" is not an environment variable name`},
		{"reserved env name", traceCF + "  trace: true\n  trace_secret_env: REPORTMAILER_X\n", nil,
			`links.trace_secret_env: "REPORTMAILER_X" starts with REPORTMAILER_`},
		{"secret pasted as the file", traceCF + "  trace: true\n  trace_secret_file: " + hexSecret + "\n", nil,
			"links.trace_secret_file: holds a secret, not a file path"},
		{"secret pasted as the variable", traceCF + "  trace: true\n  trace_secret_env: " + hexSecret + "\n", nil,
			"links.trace_secret_env: holds a secret, not a variable name"},
		{"secret pasted from the environment", traceCF + "  trace: true\n  trace_secret_env: S\n", []string{"REPORTMAILER_LINKS_TRACE_SECRET_ENV=" + hexSecret},
			"links.trace_secret_env: holds a secret, not a variable name"},
		{"log bucket", traceCF + "    access_logs: {bucket: cf-logs.s3.amazonaws.com/x}\n", nil,
			`links.cloudfront.access_logs.bucket: "cf-logs.s3.amazonaws.com/x" is not an S3 bucket name`},
		{"log prefix without bucket", traceCF + "    access_logs: {prefix: logs/}\n", nil,
			`links.cloudfront.access_logs.prefix: "logs/" is set without links.cloudfront.access_logs.bucket`},
		{"log prefix with slash", traceCF + "    access_logs: {bucket: cf-logs, prefix: /logs/}\n", nil,
			`links.cloudfront.access_logs.prefix: "/logs/" starts with "/"`},
		{"kvs arn", traceCF + "    key_value_store_arn: my-deny-list\n", nil,
			`links.cloudfront.key_value_store_arn: "my-deny-list" is not a CloudFront KeyValueStore ARN`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse([]byte(withLinks(tt.links)), tt.env)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(tt.links+strings.Join(tt.env, ""), "trace") && !c.Links.Trace {
					t.Error("trace is off")
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v\nwant it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), hexSecret) {
				t.Errorf("the error quotes the secret:\n%v", err)
			}
		})
	}
}
