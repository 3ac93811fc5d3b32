package config

import (
	"fmt"
	"net"
	"strings"
	"time"
)

// HTTP defaults.
const (
	// HTTPAddrDefault is the default http.addr: the loopback interface
	// only, so that nothing is exposed until asked for.
	HTTPAddrDefault = "127.0.0.1:9090"
	// HTTPRefreshDefault is the default http.refresh.
	HTTPRefreshDefault = time.Minute
	// HTTPTokenMinLength is the shortest bearer token http.token or
	// http.token_file may hold.
	HTTPTokenMinLength = 16
)

// HTTP is serve's HTTP listener: /metrics, /healthz, /readyz and
// POST /run/{schedule}. drain listens on nothing.
type HTTP struct {
	// Addr is the host:port serve listens on, or "off" for no
	// listener. Default 127.0.0.1:9090; set ":9090" in a container,
	// where the probes and Prometheus come from outside.
	Addr string `yaml:"addr"`
	// Token is the bearer token POST /run/{schedule} requires. Prefer
	// TokenFile (a mounted secret) or REPORTMAILER_HTTP_TOKEN to a
	// token in the file. At least 16 characters. Default none: with
	// neither Token nor TokenFile, /run answers 403 to every request.
	Token string `yaml:"token"`
	// TokenFile is a file holding the bearer token, read at start-up;
	// surrounding white space is ignored. Not with Token.
	TokenFile string `yaml:"token_file"`
	// Refresh is how often the queue depth and key removal gauges are
	// read again (GetQueueAttributes on every queue and dead-letter
	// queue). Default 1m; at least 5s.
	Refresh time.Duration `yaml:"refresh"`
}

// Off reports whether serve should not listen.
func (h HTTP) Off() bool { return h.Addr == "off" }

func (c *Config) setHTTPDefaults() {
	if c.HTTP.Addr == "" {
		c.HTTP.Addr = HTTPAddrDefault
	}
	if c.HTTP.Refresh == 0 {
		c.HTTP.Refresh = HTTPRefreshDefault
	}
}

// validateHTTP checks http. The token is never quoted in an error.
func (c *Config) validateHTTP() []error {
	var errs []error
	bad := func(field string, value any, reason string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Value: value, Reason: fmt.Sprintf(reason, args...)})
	}
	h := c.HTTP
	if !h.Off() {
		if _, port, err := net.SplitHostPort(h.Addr); err != nil || port == "" {
			bad("http.addr", h.Addr, "is not host:port (such as 127.0.0.1:9090 or :9090) or off")
		}
	}
	switch {
	case h.Token != "" && h.TokenFile != "":
		bad("http.token", nil, "and http.token_file are both set; set one")
	case h.Token != "" && len(strings.TrimSpace(h.Token)) < HTTPTokenMinLength:
		bad("http.token", nil, "is shorter than %d characters (not shown)", HTTPTokenMinLength)
	}
	if h.Refresh < 5*time.Second {
		bad("http.refresh", h.Refresh, "is shorter than 5s")
	}
	return errs
}
