package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker/mail"
)

func TestMailDefaults(t *testing.T) {
	c, err := config.Parse([]byte(minimal), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Sender.ListID != "reportmailer.example.com" {
		t.Errorf("sender.list_id = %q, want reportmailer. plus the domain of sender.from", c.Sender.ListID)
	}
	if c.Sender.ListUnsubscribeURL != "" {
		t.Errorf("sender.list_unsubscribe_url = %q, want none by default", c.Sender.ListUnsubscribeURL)
	}
	p := c.Pacing
	if p.RateFraction != config.PacingRateFractionDefault || p.Refresh != config.PacingRefreshDefault || p.FallbackRate != 0 {
		t.Errorf("pacing = %+v, want the documented defaults", p)
	}
	if config.PacingRateFractionDefault != mail.RateFractionDefault || config.PacingRefreshDefault != mail.RefreshDefault {
		t.Error("config and mailer disagree on the pacing defaults")
	}
}

func TestMailSettings(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string // appended to minimal
		env   []string
		err   string // "" means valid
		check func(*testing.T, *config.Config)
	}{
		{name: "all set", yaml: `
pacing: {rate_fraction: 0.5, refresh: 1m, fallback_rate: 2.5}
`, env: []string{
			"REPORTMAILER_SENDER_LIST_ID=lists.example.org",
			"REPORTMAILER_SENDER_LIST_UNSUBSCRIBE_URL=https://app.example.com/u/{{.UserID}}?e={{.Email}}",
		}, check: func(t *testing.T, c *config.Config) {
			if c.Pacing.RateFraction != 0.5 || c.Pacing.Refresh != time.Minute || c.Pacing.FallbackRate != 2.5 ||
				c.Sender.ListID != "lists.example.org" || !strings.Contains(c.Sender.ListUnsubscribeURL, "{{.Email}}") {
				t.Errorf("got %+v %+v", c.Pacing, c.Sender)
			}
		}},
		{name: "env overrides pacing", env: []string{
			"REPORTMAILER_PACING_RATE_FRACTION=0.25",
			"REPORTMAILER_PACING_REFRESH=30s",
			"REPORTMAILER_PACING_FALLBACK_RATE=1",
		}, check: func(t *testing.T, c *config.Config) {
			if c.Pacing.RateFraction != 0.25 || c.Pacing.Refresh != 30*time.Second || c.Pacing.FallbackRate != 1 {
				t.Errorf("pacing = %+v", c.Pacing)
			}
		}},
		{name: "fraction of one", yaml: "pacing: {rate_fraction: 1}"},
		{name: "local http unsubscribe", env: []string{"REPORTMAILER_SENDER_LIST_UNSUBSCRIBE_URL=http://127.0.0.1:8080/u?u={{.UserID}}"}},

		{name: "env fraction not a number", env: []string{"REPORTMAILER_PACING_RATE_FRACTION=most"},
			err: `environment REPORTMAILER_PACING_RATE_FRACTION: "most" is not a number`},
		{name: "fraction above one", yaml: "pacing: {rate_fraction: 1.2}",
			err: `pacing.rate_fraction: 1.2 is not more than 0 and at most 1`},
		{name: "negative fraction", yaml: "pacing: {rate_fraction: -0.5}",
			err: `pacing.rate_fraction: -0.5 is not more than 0 and at most 1`},
		{name: "NaN fraction", env: []string{"REPORTMAILER_PACING_RATE_FRACTION=NaN"},
			err: `pacing.rate_fraction: NaN is not more than 0 and at most 1`},
		{name: "refresh too short", yaml: "pacing: {refresh: 1s}",
			err: `pacing.refresh: 1s is not between 10s and 1h`},
		{name: "refresh too long", yaml: "pacing: {refresh: 2h}",
			err: `pacing.refresh: 2h0m0s is not between 10s and 1h`},
		{name: "negative fallback", yaml: "pacing: {fallback_rate: -1}",
			err: `pacing.fallback_rate: -1 is not a rate of 0 or more recipients per second`},
		{name: "infinite fallback", env: []string{"REPORTMAILER_PACING_FALLBACK_RATE=+Inf"},
			err: `pacing.fallback_rate: +Inf is not a rate`},
		{name: "list id not a domain", env: []string{"REPORTMAILER_SENDER_LIST_ID=reports list"},
			err: `sender.list_id: "reports list" is not a domain name like reports.example.com`},
		{name: "list id with CR/LF", env: []string{"REPORTMAILER_SENDER_LIST_ID=a.example.com\r\nBcc: x"},
			err: `sender.list_id: "a.example.com\r\nBcc: x" is not a domain name`},
		{name: "unsubscribe over http", env: []string{"REPORTMAILER_SENDER_LIST_UNSUBSCRIBE_URL=http://app.example.com/u?u={{.UserID}}"},
			err: `sender.list_unsubscribe_url: "http://app.example.com/u?u={{.UserID}}" must use https (RFC 8058 one-click unsubscribe)`},
		{name: "unsubscribe unknown field", env: []string{"REPORTMAILER_SENDER_LIST_UNSUBSCRIBE_URL=https://app.example.com/u?u={{.User}}"},
			err: `sender.list_unsubscribe_url: "https://app.example.com/u?u={{.User}}" does not run (fields are .UserID, .Email, .UserEmail and .Schedule)`},
		{name: "unsubscribe bad template", env: []string{"REPORTMAILER_SENDER_LIST_UNSUBSCRIBE_URL=https://app.example.com/u?u={{.UserID"},
			err: `sender.list_unsubscribe_url: "https://app.example.com/u?u={{.UserID" is not a template`},
		{name: "unsubscribe with a space", env: []string{"REPORTMAILER_SENDER_LIST_UNSUBSCRIBE_URL=https://app.example.com/un subscribe"},
			err: `must give a URL of printable ASCII without spaces`},
		{name: "unsubscribe relative", env: []string{"REPORTMAILER_SENDER_LIST_UNSUBSCRIBE_URL=/unsubscribe?u={{.UserID}}"},
			err: `sender.list_unsubscribe_url: "/unsubscribe?u={{.UserID}}" is not an absolute URL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse([]byte(minimal+tt.yaml), tt.env)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tt.check != nil {
					tt.check(t, c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("error = %v\nwant it to contain %q", err, tt.err)
			}
		})
	}
}

// The config checks the unsubscribe template on its own, so that config
// stays free of the mailer and the AWS SDK; this keeps the two checks
// in step: what config accepts, the mailer can use, and the other way
// round.
func TestUnsubscribeCheckMatchesTheMailer(t *testing.T) {
	for _, tmpl := range []string{
		"https://app.example.com/unsubscribe?user={{.UserID}}&email={{.Email}}&owner={{.UserEmail}}&list={{.Schedule}}",
		"https://app.example.com/u/{{.UserID}}/{{.Schedule}}",
		"http://localhost:8080/u?e={{.Email}}",
		"http://app.example.com/u",
		"ftp://app.example.com/u",
		"mailto:unsubscribe@example.com",
		"https://app.example.com/u?u={{.Name}}",
		"https://app.example.com/u?u={{.UserID",
		"https://app.example.com/ü",
		"https://app.example.com/a,b",
		"https://app.example.com/<a>",
		"https:///u",
		"unsubscribe",
	} {
		_, cfgErr := config.Parse([]byte(minimal), []string{"REPORTMAILER_SENDER_LIST_UNSUBSCRIBE_URL=" + tmpl})
		_, mailErr := mail.ParseUnsubscribeURL(tmpl)
		if (cfgErr == nil) != (mailErr == nil) {
			t.Errorf("%q: config says %v, the mailer says %v", tmpl, cfgErr, mailErr)
		}
	}
}
