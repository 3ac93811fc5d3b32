package main

import (
	"fmt"
	"os"

	"github.com/reportmailer/reportmailer/config"
	"github.com/reportmailer/reportmailer/worker/linktoken"
)

// loadTokens reads links.trace's secret from its file or variable and
// returns the tokens it keys, or nil with trace off. Errors name the
// setting and the file or variable, never the secret.
func loadTokens(l config.Links) (*linktoken.Tokens, error) {
	if !l.Trace {
		return nil, nil
	}
	var b []byte
	var from string
	switch {
	case l.TraceSecretFile != "":
		from = fmt.Sprintf("links.trace_secret_file: file %q", l.TraceSecretFile)
		var err error
		if b, err = os.ReadFile(l.TraceSecretFile); err != nil {
			// The *PathError names the file, not its contents.
			return nil, fmt.Errorf("links.trace_secret_file: %w", err)
		}
	case l.TraceSecretEnv != "":
		from = "links.trace_secret_env: environment variable " + l.TraceSecretEnv
		v, ok := os.LookupEnv(l.TraceSecretEnv)
		if !ok {
			return nil, fmt.Errorf("%s: not set", from)
		}
		b = []byte(v)
	default:
		return nil, fmt.Errorf("links.trace: no secret (config validation requires one)")
	}
	t, err := linktoken.New(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	return t, nil
}

// linkToken returns what the worker calls for each delivery's token, or
// nil when links are not traced.
func (a *app) linkToken() func(eventID, recipient string) string {
	if a.tokens == nil {
		return nil
	}
	return a.tokens.Of
}
