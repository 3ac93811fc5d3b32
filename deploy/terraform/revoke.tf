# Link revocation (reportmailer revoke), when link_revocation is set: a
# KeyValueStore holding the deny list of traced links' tokens, and the
# viewer-request function that reads it, attached to the distribution's
# behaviour (cloudfront.tf). Revocation needs links.trace in the config:
# only a traced link carries a token to deny.
resource "aws_cloudfront_key_value_store" "revoked" {
  count   = var.link_revocation ? 1 : 0
  name    = "${var.name}-revoked"
  comment = "${var.name}: tokens of revoked report links (reportmailer revoke)"
}

resource "aws_cloudfront_function" "deny_revoked" {
  count   = var.link_revocation ? 1 : 0
  name    = "${var.name}-deny-revoked"
  comment = "${var.name}: 403 for a report link whose token is revoked"
  runtime = "cloudfront-js-2.0"
  publish = true
  code    = file("${path.module}/../cloudfront-function/deny-revoked.js")
  # The function reads the one store associated with it (cf.kvs()).
  key_value_store_associations = [aws_cloudfront_key_value_store.revoked[0].arn]
}
