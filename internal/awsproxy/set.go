package awsproxy

import (
	"testing"

	"github.com/reportmailer/reportmailer/worker/iam"
)

// Targets are the emulator endpoints a Set stands in front of; an empty
// one gets no proxy.
type Targets struct {
	SQS, S3, SES string
}

// Set is one proxy per service, as a test of the whole worker needs.
type Set struct {
	SQS, S3, SES *Proxy
}

// StartSet starts a proxy in front of each target for a test, all with
// opts (whose Service and Target it sets; SESEvents goes to the SES
// proxy alone), and closes them when the test ends.
func StartSet(t testing.TB, targets Targets, opts Options) Set {
	t.Helper()
	var s Set
	for _, x := range []struct {
		svc    Service
		target string
		p      **Proxy
	}{{SQS, targets.SQS, &s.SQS}, {S3, targets.S3, &s.S3}, {SES, targets.SES, &s.SES}} {
		if x.target == "" {
			continue
		}
		o := opts
		o.Service, o.Target = x.svc, x.target
		if x.svc != SES {
			o.SESEvents = nil
		}
		*x.p = Start(t, o)
	}
	return s
}

// Env returns the AWS_ENDPOINT_URL_<SERVICE> variables that point the
// SDK (in this process or a subprocess) at the set's proxies.
func (s Set) Env() map[string]string {
	env := map[string]string{}
	if s.SQS != nil {
		env["AWS_ENDPOINT_URL_SQS"] = s.SQS.URL
	}
	if s.S3 != nil {
		env["AWS_ENDPOINT_URL_S3"] = s.S3.URL
	}
	if s.SES != nil {
		env["AWS_ENDPOINT_URL_SESV2"] = s.SES.URL
	}
	return env
}

// SetPolicy gives every proxy of the set the policy; nil allows
// everything.
func (s Set) SetPolicy(d *iam.Document) {
	for _, p := range []*Proxy{s.SQS, s.S3, s.SES} {
		if p != nil {
			p.SetPolicy(d)
		}
	}
}
