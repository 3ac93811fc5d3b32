# Each output names the config field it goes into (config/example.yaml).

output "reports_bucket" {
  description = "Config: reports.bucket. The bucket reports live in, the distribution's origin; producers upload here."
  value       = aws_s3_bucket.reports.id
}

output "reports_prefix" {
  description = "Config: reports.prefix. The worker may read and link reports under it only."
  value       = var.reports_prefix
}

output "state_bucket" {
  description = "Config: ledger.bucket. Holds the ledger, slot leases and run history (under ledger_prefix) and the key records."
  value       = aws_s3_bucket.state.id
}

output "ledger_prefix" {
  description = "Config: ledger.prefix."
  value       = var.ledger_prefix
}

output "key_records_prefix" {
  description = "Config: links.cloudfront.key_records_prefix."
  value       = var.key_records_prefix
}

output "queue_urls" {
  description = "Config: schedules[].queue_url, by schedule name."
  value       = { for k, q in aws_sqs_queue.source : k => q.url }
}

output "dead_letter_queue_urls" {
  description = "Config: schedules[].dead_letter_queue_url, by schedule name."
  value       = { for k, q in aws_sqs_queue.dead_letter : k => q.url }
}

output "cloudfront_domain" {
  description = "Config: links.cloudfront.domain."
  value       = "https://${aws_cloudfront_distribution.reports.domain_name}"
}

output "cloudfront_distribution_id" {
  description = "Config: links.cloudfront.distribution_id. The distribution check -aws reads (its origin must be the reports bucket)."
  value       = aws_cloudfront_distribution.reports.id
}

output "cloudfront_key_ids" {
  description = "Config: links.cloudfront.keys[].id, by the names given in cloudfront_public_keys."
  value       = { for k, pk in aws_cloudfront_public_key.signing : k => pk.id }
}

output "ses_configuration_set" {
  description = "Config: sender.configuration_set."
  value       = aws_sesv2_configuration_set.this.configuration_set_name
}

output "ses_dkim_records" {
  description = "The CNAME records (name => value) that verify the sender's domain with Easy DKIM, when create_sender_domain_identity; empty otherwise."
  value = {
    for t in try(aws_sesv2_email_identity.sender_domain[0].dkim_signing_attributes[0].tokens, []) :
    "${t}._domainkey.${local.sender_domain}" => "${t}.dkim.amazonses.com"
  }
}

output "ses_events_queue_url" {
  description = "Config: ses_events.queue_url. The queue SES's sending events arrive on; null when ses_event_destination is none."
  value       = try(aws_sqs_queue.ses_events[0].url, null)
}

output "ses_events_dead_letter_queue_url" {
  description = "Where event messages the worker cannot read end up, for an operator to look at; null when ses_event_destination is none."
  value       = try(aws_sqs_queue.ses_events_dead_letter[0].url, null)
}

output "worker_role_arn" {
  description = "The worker's role: for IRSA, the eks.amazonaws.com/role-arn annotation in deploy/kubernetes/components/irsa."
  value       = aws_iam_role.worker.arn
}

output "worker_instance_profile" {
  description = "The EC2 instance profile for serve on a VM (deploy/systemd), when ec2_instance_profile; null otherwise."
  value       = try(aws_iam_instance_profile.worker[0].name, null)
}

output "keda_scaler_policy_json" {
  description = "A policy for the KEDA operator's role: sqs:GetQueueAttributes on the queues, which the aws-sqs-queue scaler reads."
  value       = data.aws_iam_policy_document.keda_scaler.json
}

output "operator_policy_json" {
  description = "A policy for an operator's role: what dlq list, dlq delete, redrive, resend, history, status, keys rotate and keys retire call, and downloads (with cloudfront_log_bucket_name) and revoke (with link_revocation) (reportmailer iam -command dlq-list,dlq-delete,redrive,resend,history,status,keys-rotate,keys-retire[,downloads][,revoke]). resend sends email; keys rotate creates KMS keys and changes the distribution's trusted key groups."
  value       = data.aws_iam_policy_document.operator.json
}

output "key_value_store_arn" {
  description = "Config: links.cloudfront.key_value_store_arn, with link_revocation; null without."
  value       = one(aws_cloudfront_key_value_store.revoked[*].arn)
}

output "config_yaml" {
  description = "The settings this module decides, as a config file fragment to merge into reportmailer.yaml (terraform output -raw config_yaml)."
  # ses_events only with an events queue: a for expression, since the
  # two branches of a conditional must have one type.
  value = yamlencode(merge({
    sender = {
      from              = var.sender_address
      configuration_set = aws_sesv2_configuration_set.this.configuration_set_name
    }
    reports = {
      bucket = aws_s3_bucket.reports.id
      prefix = var.reports_prefix
    }
    links = {
      cloudfront = merge({
        domain             = "https://${aws_cloudfront_distribution.reports.domain_name}"
        distribution_id    = aws_cloudfront_distribution.reports.id
        key_records_prefix = var.key_records_prefix
        keys               = [for k, pk in aws_cloudfront_public_key.signing : { id = pk.id }]
        }, {
        for b in aws_s3_bucket.logs : "access_logs" => { bucket = b.id, prefix = local.access_logs_prefix }
        }, {
        for s in aws_cloudfront_key_value_store.revoked : "key_value_store_arn" => s.arn
      })
    }
    ledger = {
      bucket = aws_s3_bucket.state.id
      prefix = var.ledger_prefix
    }
    schedules = [for k, q in aws_sqs_queue.source : {
      name                  = k
      queue_url             = q.url
      dead_letter_queue_url = aws_sqs_queue.dead_letter[k].url
    }]
    }, {
    for k, q in aws_sqs_queue.ses_events : "ses_events" => { queue_url = q.url }
  }))
}
