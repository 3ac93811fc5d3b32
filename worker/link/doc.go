// Package link makes and checks signed links to report files.
//
// Two signers implement [worker.Signer]: [CloudFront], which signs
// CloudFront URLs with a canned policy, and [S3Presigner], the fallback,
// which makes S3 presigned GET URLs. [Verify] checks a signed CloudFront
// URL offline, for a local CloudFront-style edge and for operators.
//
// Object keys are percent-encoded with [EscapeKey] before they are
// signed, and the link carries exactly the string that was signed: a
// key put raw into a URL (a space, "+", "?", "#", "%" or non-ASCII)
// gives a broken link, or worse, a correctly signed link to another
// object.
package link
