package main

import (
	"io"

	"github.com/reportmailer/reportmailer/worker/secret"
)

// redacting writes to w with key material removed (secret.Redact). It
// is for the text a command prints about its own arguments, the last
// error and the flag package's complaints ("bad flag syntax: -----BEGIN
// …"), which would otherwise quote a key pasted on the command line.
// Each Write must hold whole lines, as fmt's and flag's do.
type redacting struct{ w io.Writer }

func (r redacting) Write(p []byte) (int, error) {
	if _, err := io.WriteString(r.w, secret.Redact(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
