// Package link makes and checks signed links to report files.
//
// Two signers implement [worker.Signer]: [CloudFront], which signs
// CloudFront URLs, and [S3Presigner], the fallback, which makes S3
// presigned GET URLs. [CloudFront] is also a [worker.BatchSigner] that
// can sign all the links of one email with one custom policy. [Sign]
// signs one URL with any policy, and [Verify] checks a signed
// CloudFront URL offline, for a local CloudFront-style edge and for
// operators.
//
// CloudFront URLs may carry a canned or a custom policy (a wildcard
// Resource, a not-before time, one IPv4 CIDR), be signed by an RSA-2048
// or ECDSA P-256 key, over SHA-1 or SHA-256 (Hash-Algorithm=SHA256).
// With a [KeyRing], the CloudFront signer asks for the key active at the
// moment of each signature ([Ring], or [LoadedRing] for a ring read
// again every minute), and a key may be a [KMSSigner], whose private
// key never leaves AWS KMS.
//
// With an [ExpiryLog], the CloudFront signer durably records the
// latest expiry each key has signed, which is when that key's public
// key can be removed from CloudFront without breaking a link.
//
// Both signers return the true expiry of each link: the TTL for the
// report's type, capped by a maximum, by the end of 32-bit epoch
// seconds in 2038, and for S3 by the 7-day limit and the expiry of the
// credentials in use. A cap is logged once, with its reason.
//
// Object keys are percent-encoded with [EscapeKey] before they are
// signed, and the link carries exactly the string that was signed: a
// key put raw into a URL (a space, "+", "?", "#", "%" or non-ASCII)
// gives a broken link, or worse, a correctly signed link to another
// object.
package link
