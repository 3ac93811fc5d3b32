package config

import (
	"errors"
	"fmt"
	"math"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/reportmailer/reportmailer/worker/event"
)

// Mail defaults.
const (
	// ListIDPrefixDefault is put before the domain of sender.from to
	// make the default sender.list_id.
	ListIDPrefixDefault = "reportmailer."
	// PacingRateFractionDefault is the default pacing.rate_fraction.
	PacingRateFractionDefault = 0.8
	// PacingRefreshDefault is the default pacing.refresh.
	PacingRefreshDefault = 5 * time.Minute
)

// Pacing limits.
const (
	PacingRefreshMin = 10 * time.Second
	PacingRefreshMax = time.Hour
)

// Pacing is how fast email goes out. The quota it paces by is the SES
// account's, read with GetAccount (SendQuota); see [Pacing.RateFraction].
type Pacing struct {
	// RateFraction is the share of the account's MaxSendRate to send
	// at, counting recipients, not calls. Default 0.8; more than 0 and
	// at most 1. Below 1 it leaves room for other senders on the
	// account and for SES's own accounting.
	RateFraction float64 `yaml:"rate_fraction"`
	// Refresh is how often GetAccount is read again, for a changed
	// rate or quota and the 24-hour count. Default 5m; 10s to 1h.
	Refresh time.Duration `yaml:"refresh"`
	// FallbackRate is the rate, in recipients per second, to send at
	// when GetAccount fails before the first send (for example when
	// the worker's role lacks ses:GetAccount): the worker warns and
	// sends without knowing the 24-hour quota. Default 0: no fallback;
	// the run stops with the error and leaves the messages queued.
	FallbackRate float64 `yaml:"fallback_rate"`
	// Replicas is how many `serve` or `drain` processes send on the
	// same SES account at once. Each takes an equal share: it paces at
	// rate_fraction × MaxSendRate / replicas, keeps any second within
	// MaxSendRate / replicas, and spends at most 1/replicas of the
	// 24-hour quota left at each GetAccount read and, over its own
	// sends of the last 24 hours, at most 1/replicas of Max24HourSend,
	// so that together they stay within the account's quota without
	// coordinating (see docs/design.md). Default 1; 1 to 1000.
	Replicas int `yaml:"replicas"`
}

// PacingReplicasMax bounds pacing.replicas.
const PacingReplicasMax = 1000

// setMailDefaults fills in the defaults of the sender's list headers
// and of pacing.
func (c *Config) setMailDefaults() {
	if c.Sender.ListID == "" {
		if a, err := mail.ParseAddress(c.Sender.From); err == nil {
			if at := strings.LastIndexByte(a.Address, '@'); at >= 0 {
				d := a.Address[at+1:]
				if ascii, err := event.ASCIIDomain(d); err == nil {
					d = ascii // List-Id is ASCII; a bad domain is sender.from's error
				}
				c.Sender.ListID = ListIDPrefixDefault + strings.ToLower(d)
			}
		}
	}
	if c.Pacing.RateFraction == 0 {
		c.Pacing.RateFraction = PacingRateFractionDefault
	}
	if c.Pacing.Refresh == 0 {
		c.Pacing.Refresh = PacingRefreshDefault
	}
	if c.Pacing.Replicas == 0 {
		c.Pacing.Replicas = 1
	}
}

var listIDRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$`)

// validateMail checks the sender's list headers and pacing.
func (c *Config) validateMail() []error {
	var errs []error
	bad := func(field string, value any, reason string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Value: value, Reason: fmt.Sprintf(reason, args...)})
	}
	if id := c.Sender.ListID; id != "" && (len(id) > 200 || !listIDRE.MatchString(id)) {
		bad("sender.list_id", id, "is not a domain name like reports.example.com")
	}
	if u := c.Sender.ListUnsubscribeURL; u != "" {
		if err := checkUnsubscribeURL(u); err != nil {
			bad("sender.list_unsubscribe_url", u, "%v", err)
		}
	}
	if f := c.Pacing.RateFraction; !(f > 0 && f <= 1) {
		bad("pacing.rate_fraction", f, "is not more than 0 and at most 1")
	}
	if r := c.Pacing.Refresh; r < PacingRefreshMin || r > PacingRefreshMax {
		bad("pacing.refresh", r, "is not between 10s and 1h")
	}
	if r := c.Pacing.Replicas; r < 1 || r > PacingReplicasMax {
		bad("pacing.replicas", r, "is not between 1 and %d", PacingReplicasMax)
	}
	if r := c.Pacing.FallbackRate; !(r >= 0) || math.IsInf(r, 0) {
		bad("pacing.fallback_rate", r, "is not a rate of 0 or more recipients per second")
	}
	return errs
}

// unsubscribeSample is what the template is tried on. Its fields are
// those of mail.UnsubscribeData, which the worker fills in percent-
// encoded; a test keeps the two in step.
type unsubscribeSample struct {
	UserID, Email, UserEmail, Schedule string
}

// checkUnsubscribeURL checks a List-Unsubscribe URL template as the
// mailer will use it: a text/template over UserID, Email, UserEmail and
// Schedule that gives an https URL of printable ASCII.
func checkUnsubscribeURL(text string) error {
	t, err := template.New("").Option("missingkey=error").Parse(text)
	if err != nil {
		return fmt.Errorf("is not a template: %s", detail(errors.New(strings.TrimPrefix(err.Error(), "template: ")), text))
	}
	var b strings.Builder
	if err := t.Execute(&b, unsubscribeSample{"u-1", "ana%40example.com", "ana%40example.com", "daily"}); err != nil {
		return fmt.Errorf("does not run (fields are .UserID, .Email, .UserEmail and .Schedule): %s", detail(errors.New(strings.TrimPrefix(err.Error(), "template: ")), text))
	}
	s := b.String()
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > '~' || r == '<' || r == '>' || r == ',' }) {
		return errors.New("must give a URL of printable ASCII without spaces, '<', '>' or ','; percent-encode them")
	}
	if len(s) > 800 { // the sample's values are short; leave real ones room
		return fmt.Errorf("gives a URL of %d bytes; SES takes header values of at most 870", len(s))
	}
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() {
		return errors.New("is not an absolute URL")
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && (u.Hostname() == "127.0.0.1" || u.Hostname() == "localhost")) {
		return errors.New("must use https (RFC 8058 one-click unsubscribe)")
	}
	if u.Host == "" {
		return errors.New("has no host")
	}
	return nil
}
