# An operator's policy: what dlq list, dlq delete, redrive, resend,
# history and status call (docs/operations.md), for a person's or a
# runbook's role, not the worker's. The statements mirror the
# declaration in worker/iam (iam.For with those six commands); deploy/iam_test.go
# (TestTerraformIAMPolicy) fails when the two differ. resend sends
# email, so this role can mail the schedules' recipients.

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

  # The ledger (resend claims deliveries) and the run history under it.
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

  # resend records the expiry of the links it signs; status reads them.
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
}
