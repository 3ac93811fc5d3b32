# An operator's policy: what dlq list, dlq delete, redrive, resend,
# history, status, keys rotate and keys retire call, plus downloads when
# the distribution logs (cloudfront_log_bucket_name) and revoke with
# link_revocation (docs/operations.md), for a person's or a runbook's
# role, not the worker's. The statements mirror the declaration in
# worker/iam (iam.For with those commands); deploy/iam_test.go
# (TestTerraformIAMPolicy) fails when the two differ. resend sends
# email, so this role can mail the schedules' recipients; keys rotate
# creates KMS keys and changes the distribution's trusted key groups.

data "aws_iam_policy_document" "operator" {
  # redrive sends dead letters back to their queue; resend receives as
  # drain does; status reads the depths.
  statement {
    sid = "Queues"
    actions = [
      "sqs:ChangeMessageVisibility",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:ReceiveMessage",
      "sqs:SendMessage",
    ]
    resources = [for q in aws_sqs_queue.source : q.arn]
  }

  # dlq list reads the dead letters and makes them visible again;
  # redrive moves them back (by hand or with a message move task);
  # resend deletes the one it sent.
  statement {
    sid = "DeadLetterQueues"
    actions = [
      "sqs:ChangeMessageVisibility",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:ListMessageMoveTasks",
      "sqs:ReceiveMessage",
      "sqs:SendMessage",
      "sqs:StartMessageMoveTask",
    ]
    resources = [for q in aws_sqs_queue.dead_letter : q.arn]
  }

  # resend settles from SES's events first, as a run does.
  dynamic "statement" {
    for_each = aws_sqs_queue.ses_events
    content {
      sid = "SESEvents"
      actions = [
        "sqs:DeleteMessage",
        "sqs:ReceiveMessage",
      ]
      resources = [statement.value.arn]
    }
  }

  statement {
    sid       = "ReadReports"
    actions   = ["s3:GetObject"]
    resources = ["${local.reports_arn}/${var.reports_prefix}*"]
  }

  statement {
    sid       = "ListReports"
    actions   = ["s3:ListBucket"]
    resources = [local.reports_arn]
    dynamic "condition" {
      for_each = var.reports_prefix == "" ? [] : [var.reports_prefix]
      content {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = ["${condition.value}*"]
      }
    }
  }

  # The ledger (resend claims deliveries), the run history under it,
  # and the sent emails downloads and revoke list and keys retire counts.
  statement {
    sid = "Ledger"
    actions = [
      "s3:DeleteObject",
      "s3:GetObject",
      "s3:PutObject",
    ]
    resources = ["${local.state_arn}/${var.ledger_prefix}*"]
  }

  statement {
    sid       = "ListLedger"
    actions   = ["s3:ListBucket"]
    resources = [local.state_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.ledger_prefix}*"]
    }
  }

  # resend records the expiry of the links it signs; status reads them;
  # keys rotate and keys retire write the key ring's state
  # (key_records_prefix/ring/state.json).
  statement {
    sid = "KeyRecords"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
    ]
    resources = ["${local.state_arn}/${var.key_records_prefix}*"]
  }

  statement {
    sid       = "ListKeyRecords"
    actions   = ["s3:ListBucket"]
    resources = [local.state_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.key_records_prefix}*"]
    }
  }

  statement {
    sid       = "SendingIdentity"
    actions   = ["ses:SendEmail"]
    resources = local.sender_identity_arns
  }

  statement {
    sid       = "ConfigurationSet"
    actions   = ["ses:SendEmail"]
    resources = [aws_sesv2_configuration_set.this.arn]
  }

  # status reads the quota; resend paces to it.
  statement {
    sid       = "SendQuota"
    actions   = ["ses:GetAccount"]
    resources = ["*"]
  }

  # keys rotate and keys retire set the trusted key groups of the
  # distribution's behaviours, and wait until it is Deployed.
  statement {
    sid = "Distribution"
    actions = [
      "cloudfront:GetDistribution",
      "cloudfront:GetDistributionConfig",
      "cloudfront:UpdateDistribution",
    ]
    resources = [aws_cloudfront_distribution.reports.arn]
  }

  # keys rotate uploads the new public key, keys retire deletes the old
  # one. CloudFront's public keys and key groups take no resource-level
  # permission.
  statement {
    sid = "PublicKeys"
    actions = [
      "cloudfront:CreatePublicKey",
      "cloudfront:DeletePublicKey",
      "cloudfront:GetPublicKey",
      "cloudfront:ListPublicKeys",
    ]
    resources = ["*"]
  }

  # The key groups rotate makes (reportmailer-...) and retire deletes;
  # the module's own group is only read.
  statement {
    sid = "KeyGroups"
    actions = [
      "cloudfront:CreateKeyGroup",
      "cloudfront:DeleteKeyGroup",
      "cloudfront:GetKeyGroup",
      "cloudfront:ListKeyGroups",
    ]
    resources = ["*"]
  }

  # keys rotate -kms creates the key with its tag (CreateKey with tags
  # needs kms:TagResource too); CreateKey has no resource.
  statement {
    sid = "CreateSigningKeys"
    actions = [
      "kms:CreateKey",
      "kms:TagResource",
    ]
    resources = ["*"]
  }

  # ...and reads its public key: only keys tagged as reportmailer's
  # signing keys (worker/iam KMSTagKey, KMSTagValue). With kms_signing,
  # resend signs its links with them as the worker does.
  statement {
    sid       = "SigningKeys"
    actions   = var.kms_signing ? ["kms:GetPublicKey", "kms:Sign"] : ["kms:GetPublicKey"]
    resources = ["arn:${local.partition}:kms:${local.region}:${local.account}:key/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/reportmailer"
      values   = ["cloudfront-signing"]
    }
  }

  # downloads reads the distribution's standard logs, when it logs.
  dynamic "statement" {
    for_each = aws_s3_bucket.logs
    content {
      sid       = "AccessLogs"
      actions   = ["s3:GetObject"]
      resources = ["${statement.value.arn}/${local.access_logs_prefix}*"]
    }
  }

  dynamic "statement" {
    for_each = aws_s3_bucket.logs
    content {
      sid       = "ListAccessLogs"
      actions   = ["s3:ListBucket"]
      resources = [statement.value.arn]
      condition {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = ["${local.access_logs_prefix}*"]
      }
    }
  }

  # revoke writes the deny list (and -prune lists it), with
  # link_revocation (revoke.tf).
  dynamic "statement" {
    for_each = aws_cloudfront_key_value_store.revoked
    content {
      sid = "DenyList"
      actions = [
        "cloudfront-keyvaluestore:DescribeKeyValueStore",
        "cloudfront-keyvaluestore:ListKeys",
        "cloudfront-keyvaluestore:UpdateKeys",
      ]
      resources = [statement.value.arn]
    }
  }
}
