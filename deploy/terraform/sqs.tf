# Per schedule: a queue and its dead-letter queue. The worker moves a
# poison message to the DLQ itself, with its reason; the redrive policy
# catches what keeps failing without a verdict (a crash mid-message).
resource "aws_sqs_queue" "dead_letter" {
  for_each                  = var.schedules
  name                      = "${var.name}-${each.key}-dlq"
  message_retention_seconds = var.dead_letter_retention_seconds
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

resource "aws_sqs_queue" "source" {
  for_each = var.schedules
  name     = "${var.name}-${each.key}"
  # SSE-SQS, not SSE-KMS with the AWS managed key: S3 cannot send
  # notifications to a queue encrypted with aws/sqs.
  sqs_managed_sse_enabled    = true
  visibility_timeout_seconds = each.value.visibility_timeout_seconds
  message_retention_seconds  = each.value.message_retention_seconds
  receive_wait_time_seconds  = 20
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letter[each.key].arn
    maxReceiveCount     = each.value.max_receive_count
  })
  tags = var.tags

  lifecycle {
    precondition {
      # SQS keeps a message's first enqueue time when it moves it to the
      # DLQ, so a DLQ that keeps messages no longer than the source drops
      # them as they arrive.
      condition     = each.value.message_retention_seconds < var.dead_letter_retention_seconds
      error_message = "schedules[\"${each.key}\"].message_retention_seconds (${each.value.message_retention_seconds}) must be less than dead_letter_retention_seconds (${var.dead_letter_retention_seconds})."
    }
  }
}

# Only the schedule's own queue may redrive into its DLQ.
resource "aws_sqs_queue_redrive_allow_policy" "dead_letter" {
  for_each  = var.schedules
  queue_url = aws_sqs_queue.dead_letter[each.key].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.source[each.key].arn]
  })
}

# S3 may send the reports bucket's notifications to the queues that take
# them, and no other bucket or account may.
data "aws_iam_policy_document" "s3_to_queue" {
  for_each = local.notified
  statement {
    sid       = "ReportsBucketNotifications"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.source[each.key].arn]
    principals {
      type        = "Service"
      identifiers = ["s3.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_s3_bucket.reports.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
  }
}

resource "aws_sqs_queue_policy" "s3_to_queue" {
  for_each  = local.notified
  queue_url = aws_sqs_queue.source[each.key].id
  policy    = data.aws_iam_policy_document.s3_to_queue[each.key].json
}

resource "aws_s3_bucket_notification" "reports" {
  count  = length(local.notified) > 0 ? 1 : 0
  bucket = aws_s3_bucket.reports.id

  dynamic "queue" {
    for_each = local.notified
    content {
      id            = queue.key
      queue_arn     = aws_sqs_queue.source[queue.key].arn
      events        = ["s3:ObjectCreated:*"]
      filter_prefix = queue.value.s3_notification.prefix == "" ? null : queue.value.s3_notification.prefix
      filter_suffix = queue.value.s3_notification.suffix == "" ? null : queue.value.s3_notification.suffix
    }
  }

  # S3 sends a test event when the configuration is saved, and refuses it
  # unless the queue policy already lets it send.
  depends_on = [aws_sqs_queue_policy.s3_to_queue]

  lifecycle {
    precondition {
      # An event for a key outside reports_prefix names a report the
      # worker may not read: it would only ever be dead-lettered.
      condition     = alltrue([for s in values(local.notified) : startswith(s.s3_notification.prefix, var.reports_prefix)])
      error_message = "Each schedule's s3_notification.prefix must lie under reports_prefix (\"${var.reports_prefix}\")."
    }
  }
}
