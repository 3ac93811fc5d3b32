// Package crashtest holds the crash test: the production binary,
// killed with SIGKILL at random moments while it drains a few hundred
// events, and restarted until the queue is empty. It is a package of
// its own so that `go test ./...` runs it beside cmd/reportmailer's
// tests rather than after them: it spends most of its time waiting.
package crashtest
