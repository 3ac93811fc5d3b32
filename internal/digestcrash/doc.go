// Package digestcrash holds the digest crash tests: two replicas of the
// production binary's serve share a digest slot, the one that holds it
// is killed with SIGKILL mid-digest, and the other takes the slot over
// and finishes it; once with one email per user, once with reports
// shared across a user's events and digests split into parts. It is a
// package of its own so that `go test ./...` runs it beside the other
// packages' tests: it spends most of its time waiting for heartbeats.
package digestcrash
