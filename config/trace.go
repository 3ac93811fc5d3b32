package config

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/reportmailer/reportmailer/worker/secret"
)

// kvsARNRE is what a CloudFront KeyValueStore ARN looks like.
var kvsARNRE = regexp.MustCompile(`^arn:aws[a-z-]*:cloudfront::[0-9]{12}:key-value-store/[A-Za-z0-9-]{1,64}$`)

// looksLikeTraceSecret reports whether s, given where a file path or a
// variable name belongs, looks like the secret itself: key material, or
// 32 or more characters of hex or base64 with digits and letters
// mixed. Such a value is never quoted in an error.
func looksLikeTraceSecret(s string) bool {
	if secret.IsKeyMaterial(s) {
		return true
	}
	if len(s) < 32 || strings.ContainsAny(s, "./") {
		return false
	}
	var digits, letters int
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9':
			digits++
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
			letters++
		case c == '+' || c == '=' || c == '-' || c == '_':
		default:
			return false
		}
	}
	return digits >= 4 && letters >= 4
}

// validateTrace checks links.trace and its secret settings.
func (c *Config) validateTrace() []error {
	var errs []error
	bad := func(field string, value any, reason string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Value: value, Reason: fmt.Sprintf(reason, args...)})
	}
	l := c.Links
	file, env := l.TraceSecretFile, l.TraceSecretEnv
	fileSecret, envSecret := looksLikeTraceSecret(file), looksLikeTraceSecret(env)
	if fileSecret {
		bad("links.trace_secret_file", nil, "holds a secret, not a file path: put the secret in a file and give its path here, or in an environment variable named in trace_secret_env")
	}
	if envSecret {
		bad("links.trace_secret_env", nil, "holds a secret, not a variable name: put the secret in an environment variable and give its name here")
	}
	if !l.Trace {
		if (file != "" || env != "") && !fileSecret && !envSecret {
			bad("links.trace", false, "is off, but links.trace_secret_file or links.trace_secret_env is set: set trace: true, or remove the secret setting")
		}
		return errs
	}
	if l.CloudFront == nil {
		bad("links.trace", true, "needs links.cloudfront: the token is read from CloudFront's access logs and checked by a CloudFront Function; S3 presigned links cannot carry it")
	} else if l.CloudFront.OneSignaturePerEmail {
		bad("links.cloudfront.one_signature_per_email", true, "cannot be on with links.trace: a wildcard policy covers any query string, so it would not cover the token, and anyone could change it")
	}
	switch {
	case fileSecret || envSecret:
	case (file == "") == (env == ""):
		bad("links.trace_secret_file", file, "and links.trace_secret_env (%s): with links.trace, set exactly one", quote(env))
	case env != "" && !varNameRE.MatchString(env):
		bad("links.trace_secret_env", env, "is not an environment variable name (letters, digits and '_')")
	case env != "" && strings.HasPrefix(env, EnvPrefix):
		bad("links.trace_secret_env", env, "starts with %s, which is reserved for config overrides", EnvPrefix)
	}
	return errs
}

// validateTraceCloudFront checks the CloudFront settings downloads and
// revoke read.
func (c *Config) validateTraceCloudFront() []error {
	var errs []error
	bad := func(field string, value any, reason string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Value: value, Reason: fmt.Sprintf(reason, args...)})
	}
	cf := c.Links.CloudFront
	if b := cf.AccessLogs.Bucket; b != "" && (!bucketRE.MatchString(b) || strings.Contains(b, "..")) {
		bad("links.cloudfront.access_logs.bucket", b, "is not an S3 bucket name (the name, not its domain: 3-63 of a-z, 0-9, '.' and '-')")
	}
	if p := cf.AccessLogs.Prefix; p != "" {
		switch {
		case cf.AccessLogs.Bucket == "":
			bad("links.cloudfront.access_logs.prefix", p, "is set without links.cloudfront.access_logs.bucket")
		case strings.HasPrefix(p, "/"):
			bad("links.cloudfront.access_logs.prefix", p, "starts with \"/\", which S3 keys do not: write %s", quote(strings.TrimLeft(p, "/")))
		}
	}
	if a := cf.KeyValueStoreARN; a != "" && !kvsARNRE.MatchString(a) {
		bad("links.cloudfront.key_value_store_arn", a, "is not a CloudFront KeyValueStore ARN like arn:aws:cloudfront::123456789012:key-value-store/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d")
	}
	return errs
}
