// Package kumo holds the tests that run reportmailer's key rotation and
// KMS signing against kumo (github.com/sivchari/kumo), an emulator of
// CloudFront (with an edge that checks RSA signed URLs), KMS (which
// signs for real), S3, SQS and SES v2, run in-process. It is a module
// of its own so that kumo's many dependencies stay out of
// reportmailer's go.mod.
package kumo
