# reportmailer on AWS: the buckets, queues, CloudFront distribution, SES
# configuration set and the worker's role. The outputs map onto the
# config file (config/example.yaml); see deploy/README.md.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  region    = data.aws_region.current.id
  partition = data.aws_partition.current.partition

  # The state bucket's prefixes whose objects expire, and after how many
  # days. The ledger's rule covers the slot leases and the run history
  # too: the worker keeps both under ledger.prefix (its config refuses a
  # history_prefix outside it). The key records prefix is deliberately
  # absent: a key record says when a public key may leave CloudFront,
  # and losing it would leave a key that still signs live links looking
  # unused.
  expiring_prefixes = {
    ledger = { prefix = var.ledger_prefix, days = var.ledger_retention_days }
  }

  # The expiring prefixes that contain, or lie under, the key records
  # prefix: their lifecycle rule would expire key records.
  overlapping_prefixes = [
    for k, p in local.expiring_prefixes : k
    if startswith(var.key_records_prefix, p.prefix) || startswith(p.prefix, var.key_records_prefix)
  ]

  sender_domain = lower(split("@", var.sender_address)[1])

  # Where the distribution's standard logs go in the log bucket: the
  # config's links.cloudfront.access_logs.prefix, which downloads reads.
  access_logs_prefix = "cloudfront/"

  # Schedules whose queue receives the reports bucket's notifications.
  notified = { for k, s in var.schedules : k => s if s.s3_notification != null }
}
