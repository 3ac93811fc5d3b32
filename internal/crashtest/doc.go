// Package crashtest holds the crash test: the production binary,
// killed with SIGKILL at random moments while it drains a few hundred
// events, and restarted until the queue is empty, with SES's Send
// events published (by internal/awsproxy) to a queue the binary reads
// to settle what a kill left ambiguous. It is a package of
// its own so that `go test ./...` runs it beside cmd/reportmailer's
// tests rather than after them: it spends most of its time waiting.
package crashtest
