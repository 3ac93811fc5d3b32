# The distribution that serves reports through signed URLs only.
resource "aws_cloudfront_origin_access_control" "reports" {
  name                              = "${var.name}-reports"
  description                       = "reportmailer: CloudFront reads the private reports bucket"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

resource "aws_cloudfront_public_key" "signing" {
  for_each    = var.cloudfront_public_keys
  name        = "${var.name}-${each.key}"
  comment     = "reportmailer link signing key ${each.key}"
  encoded_key = each.value

  # A new key must be in the key group before the worker signs with it,
  # and an old one stays until its links have expired.
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_cloudfront_key_group" "signing" {
  name    = "${var.name}-signing"
  comment = "reportmailer: keys whose signed URLs the distribution accepts"
  items   = [for k in aws_cloudfront_public_key.signing : k.id]
}

# Caching keyed on the path only: the signature query parameters
# (Expires, Signature, Key-Pair-Id, Policy) stay out of the cache key.
data "aws_cloudfront_cache_policy" "caching_optimized" {
  name = "Managed-CachingOptimized"
}

resource "aws_cloudfront_distribution" "reports" {
  enabled         = true
  comment         = "${var.name}: signed report links"
  price_class     = var.cloudfront_price_class
  http_version    = "http2and3"
  is_ipv6_enabled = true

  origin {
    origin_id                = "reports"
    domain_name              = aws_s3_bucket.reports.bucket_regional_domain_name
    origin_access_control_id = aws_cloudfront_origin_access_control.reports.id
  }

  default_cache_behavior {
    target_origin_id       = "reports"
    viewer_protocol_policy = "https-only"
    allowed_methods        = ["GET", "HEAD"]
    cached_methods         = ["GET", "HEAD"]
    compress               = true
    cache_policy_id        = data.aws_cloudfront_cache_policy.caching_optimized.id
    trusted_key_groups     = [aws_cloudfront_key_group.signing.id]

    dynamic "function_association" {
      for_each = aws_cloudfront_function.deny_revoked
      content {
        event_type   = "viewer-request"
        function_arn = function_association.value.arn
      }
    }
  }

  dynamic "logging_config" {
    for_each = aws_s3_bucket.logs
    content {
      bucket          = logging_config.value.bucket_domain_name
      prefix          = local.access_logs_prefix
      include_cookies = false
    }
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = true
  }

  tags = var.tags

  depends_on = [aws_s3_bucket_ownership_controls.logs]

  lifecycle {
    # Terraform sets the module's key group at creation; after that the
    # trusted key groups are `reportmailer keys rotate`'s and `keys
    # retire`'s: each replaces them (UpdateDistribution) with a key group
    # of its own holding the old keys and the new one. Without this, the
    # next apply would put the module's group back, whose keys do not
    # include the rotated-in one, and every link signed since would stop
    # opening. docs/operations.md, "Rotating a signing key".
    ignore_changes = [default_cache_behavior[0].trusted_key_groups]
  }
}
