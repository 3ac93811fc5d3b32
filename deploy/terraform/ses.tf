# The configuration set every email is sent with (config:
# sender.configuration_set): TLS required, reputation metrics on,
# bounces and complaints suppressed account-wide, and the sending events
# published for whoever watches deliverability.
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
      values   = ["arn:${local.partition}:ses:${local.region}:${local.account}:configuration-set/${var.name}"]
    }
  }
}

resource "aws_sns_topic_policy" "ses_events" {
  count  = length(aws_sns_topic.ses_events)
  arn    = aws_sns_topic.ses_events[0].arn
  policy = data.aws_iam_policy_document.ses_events_topic[0].json
}

resource "aws_sesv2_configuration_set_event_destination" "events" {
  count                  = var.ses_event_destination == "none" ? 0 : 1
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

# The sender's domain, with Easy DKIM, when create_sender_domain_identity.
resource "aws_sesv2_email_identity" "sender_domain" {
  count                  = var.create_sender_domain_identity ? 1 : 0
  email_identity         = local.sender_domain
  configuration_set_name = aws_sesv2_configuration_set.this.configuration_set_name
  tags                   = var.tags
}
