# The configuration set every email is sent with (config:
# sender.configuration_set): TLS required, reputation metrics on,
# bounces and complaints suppressed account-wide, and the sending events
# published to the worker's events queue (config: ses_events.queue_url),
# which settles deliveries whose send outcome was unknown.
resource "aws_sesv2_configuration_set" "this" {
  configuration_set_name = var.name

  delivery_options {
    tls_policy = "REQUIRE"
  }
  reputation_options {
    reputation_metrics_enabled = true
  }
  sending_options {
    sending_enabled = true
  }
  suppression_options {
    suppressed_reasons = ["BOUNCE", "COMPLAINT"]
  }

  tags = var.tags
}

locals {
  ses_events = var.ses_event_destination != "none"

  # EventBridge's detail-type for each SES event type.
  ses_detail_types = {
    SEND              = "Email Sent"
    REJECT            = "Email Rejected"
    BOUNCE            = "Email Bounced"
    COMPLAINT         = "Email Complaint Received"
    DELIVERY          = "Email Delivered"
    OPEN              = "Email Opened"
    CLICK             = "Email Clicked"
    RENDERING_FAILURE = "Email Rendering Failed"
    DELIVERY_DELAY    = "Email Delivery Delayed"
    SUBSCRIPTION      = "Email Subscribed"
  }
}

# The events queue and its DLQ: what the worker cannot read (an SNS
# subscription confirmation, say) is left, and the redrive policy moves
# it where an operator can look.
resource "aws_sqs_queue" "ses_events_dead_letter" {
  count                     = local.ses_events ? 1 : 0
  name                      = "${var.name}-ses-events-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

resource "aws_sqs_queue" "ses_events" {
  count                      = local.ses_events ? 1 : 0
  name                       = "${var.name}-ses-events"
  message_retention_seconds  = var.ses_events_retention_seconds
  visibility_timeout_seconds = 120
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.ses_events_dead_letter[0].arn
    maxReceiveCount     = 5
  })
  tags = var.tags
}

resource "aws_sesv2_configuration_set_event_destination" "events" {
  count                  = local.ses_events ? 1 : 0
  configuration_set_name = aws_sesv2_configuration_set.this.configuration_set_name
  event_destination_name = "${var.name}-${var.ses_event_destination}"

  event_destination {
    enabled              = true
    matching_event_types = var.ses_event_types

    dynamic "event_bridge_destination" {
      for_each = var.ses_event_destination == "eventbridge" ? [1] : []
      content {
        event_bus_arn = "arn:${local.partition}:events:${local.region}:${local.account}:event-bus/default"
      }
    }

    dynamic "sns_destination" {
      for_each = aws_sns_topic.ses_events
      content {
        topic_arn = sns_destination.value.arn
      }
    }
  }

  depends_on = [aws_sns_topic_policy.ses_events]
}

# Through EventBridge: a rule on the default bus, the queue its target.
resource "aws_cloudwatch_event_rule" "ses_events" {
  count       = var.ses_event_destination == "eventbridge" ? 1 : 0
  name        = "${var.name}-ses-events"
  description = "reportmailer: SES sending events to the worker's events queue"
  event_pattern = jsonencode({
    source        = ["aws.ses"]
    "detail-type" = [for e in var.ses_event_types : local.ses_detail_types[e]]
  })
  tags = var.tags
}

resource "aws_cloudwatch_event_target" "ses_events" {
  count     = length(aws_cloudwatch_event_rule.ses_events)
  rule      = aws_cloudwatch_event_rule.ses_events[0].name
  target_id = "reportmailer-ses-events"
  arn       = aws_sqs_queue.ses_events[0].arn
}

# Or through SNS: a topic SES publishes to, the queue subscribed with raw
# delivery (the worker reads both forms).
resource "aws_sns_topic" "ses_events" {
  count = var.ses_event_destination == "sns" ? 1 : 0
  name  = "${var.name}-ses-events"
  tags  = var.tags
}

data "aws_iam_policy_document" "ses_events_topic" {
  count = length(aws_sns_topic.ses_events)
  statement {
    sid       = "SESPublishesEvents"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.ses_events[0].arn]
    principals {
      type        = "Service"
      identifiers = ["ses.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [aws_sesv2_configuration_set.this.arn]
    }
  }
}

resource "aws_sns_topic_policy" "ses_events" {
  count  = length(aws_sns_topic.ses_events)
  arn    = aws_sns_topic.ses_events[0].arn
  policy = data.aws_iam_policy_document.ses_events_topic[0].json
}

resource "aws_sns_topic_subscription" "ses_events" {
  count                = length(aws_sns_topic.ses_events)
  topic_arn            = aws_sns_topic.ses_events[0].arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.ses_events[0].arn
  raw_message_delivery = true
}

# Only the rule, or the topic, may send to the events queue.
data "aws_iam_policy_document" "ses_events_queue" {
  count = local.ses_events ? 1 : 0
  statement {
    sid       = "SESEventsIn"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.ses_events[0].arn]
    principals {
      type        = "Service"
      identifiers = [var.ses_event_destination == "sns" ? "sns.amazonaws.com" : "events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = var.ses_event_destination == "sns" ? [aws_sns_topic.ses_events[0].arn] : [aws_cloudwatch_event_rule.ses_events[0].arn]
    }
  }
}

resource "aws_sqs_queue_policy" "ses_events" {
  count     = local.ses_events ? 1 : 0
  queue_url = aws_sqs_queue.ses_events[0].id
  policy    = data.aws_iam_policy_document.ses_events_queue[0].json
}

# The sender's domain, with Easy DKIM, when create_sender_domain_identity.
resource "aws_sesv2_email_identity" "sender_domain" {
  count                  = var.create_sender_domain_identity ? 1 : 0
  email_identity         = local.sender_domain
  configuration_set_name = aws_sesv2_configuration_set.this.configuration_set_name
  tags                   = var.tags
}
