variable "name" {
  description = "Prefix of every resource name (queues, role, configuration set, distribution comment), e.g. \"acme-reportmailer\"."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$", var.name))
    error_message = "name must be 3 to 40 characters of lower-case letters, digits and '-', starting and ending with a letter or digit (it prefixes SQS queue and IAM role names)."
  }
}

variable "reports_bucket_name" {
  description = "Name of the private S3 bucket the reports live in, created here. CloudFront serves it through Origin Access Control; nothing else can read it."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.reports_bucket_name))
    error_message = "reports_bucket_name must be a valid S3 bucket name: 3 to 63 characters of lower-case letters, digits, '.' and '-'."
  }
}

variable "reports_prefix" {
  description = "Key prefix the reports live under in the reports bucket, ending in '/'; \"\" for the whole bucket. The worker may read objects under it only."
  type        = string
  default     = ""

  validation {
    condition     = var.reports_prefix == "" || can(regex("^[A-Za-z0-9!_.()-][A-Za-z0-9!_.()/-]*/$", var.reports_prefix))
    error_message = "reports_prefix must be \"\" or end in '/' and hold only letters, digits and !_.()/- (no IAM wildcards)."
  }
}

variable "state_bucket_name" {
  description = "Name of the private S3 bucket, created here, that holds the worker's state: the ledger, serve's slot leases and the run history (all under ledger_prefix) and the CloudFront key records. Config: ledger.bucket."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.state_bucket_name))
    error_message = "state_bucket_name must be a valid S3 bucket name: 3 to 63 characters of lower-case letters, digits, '.' and '-'."
  }
}

variable "ledger_prefix" {
  description = "Prefix of the ledger's delivery records, serve's slot leases (under slots/) and the run history (under history/) in the state bucket. Config: ledger.prefix."
  type        = string
  default     = "reportmailer/ledger/"

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.()-][A-Za-z0-9!_.()/-]*/$", var.ledger_prefix))
    error_message = "ledger_prefix must be non-empty, end in '/' and hold only letters, digits and !_.()/- (an empty prefix would put the whole state bucket under its lifecycle rule)."
  }
}

variable "ledger_retention_days" {
  description = "Days after which everything under ledger_prefix expires: ledger records, serve's slot leases and the run history (ledger.history_prefix, which the worker keeps under ledger.prefix), so `reportmailer history` reaches back this far. A record only matters while its event can still be redelivered, so this must exceed the queues' message retention (14 days at most) with room for a manual redrive. With links.trace, keep it at least links.max_ttl (30 days by default) too: `reportmailer downloads` and `reportmailer revoke` find a delivery's links through its record, so a link whose record has expired is not listed (revoke -to ADDR still works without it). Digest schedules keep their pending events under it too (ledger_prefix/pending/), so it must also exceed the longest digest period: the default, 45, covers a monthly digest (a 31-day month and a slot caught up late); 30 would expire a 31-day month's day-1 events before their slot."
  type        = number
  default     = 45

  validation {
    condition     = var.ledger_retention_days >= 15
    error_message = "ledger_retention_days must be at least 15: an event can sit up to 14 days in a queue, and its record must outlive it or a redelivery is sent twice."
  }
}

variable "key_records_prefix" {
  description = "Prefix of the CloudFront key records in the state bucket: per key, the latest expiry it signed, which says when its public key may leave the key group. Never under a lifecycle rule. Config: links.cloudfront.key_records_prefix."
  type        = string
  default     = "reportmailer/keys/"

  validation {
    condition     = can(regex("^[A-Za-z0-9!_.()-][A-Za-z0-9!_.()/-]*/$", var.key_records_prefix))
    error_message = "key_records_prefix must be non-empty, end in '/' and hold only letters, digits and !_.()/-."
  }
}

variable "schedules" {
  description = <<-EOT
    The schedules, by name as in the config's schedules[].name: each gets a queue and a dead-letter queue.
    visibility_timeout_seconds: the queue's default (the worker sets its own per receive; check -aws compares them);
    message_retention_seconds: how long an event may wait (less than dead_letter_retention_seconds);
    max_receive_count: receives before SQS moves a message to the DLQ;
    s3_notification: when set, the reports bucket sends its ObjectCreated notifications for keys under prefix (and ending in suffix) to this queue.
  EOT
  type = map(object({
    visibility_timeout_seconds = optional(number, 900)
    message_retention_seconds  = optional(number, 345600)
    max_receive_count          = optional(number, 5)
    s3_notification = optional(object({
      prefix = optional(string, "")
      suffix = optional(string, "")
    }))
  }))

  validation {
    condition     = length(var.schedules) > 0
    error_message = "schedules must name at least one schedule."
  }
  validation {
    condition     = alltrue([for k, _ in var.schedules : can(regex("^[A-Za-z0-9_-]{1,70}$", k))])
    error_message = "Each schedule name must be 1 to 70 letters, digits, '_' or '-': it becomes part of an SQS queue name, which allows no '.'."
  }
  validation {
    condition     = alltrue([for s in values(var.schedules) : s.visibility_timeout_seconds >= 0 && s.visibility_timeout_seconds <= 43200])
    error_message = "visibility_timeout_seconds must be 0 to 43200 (12 hours)."
  }
  validation {
    condition     = alltrue([for s in values(var.schedules) : s.message_retention_seconds >= 60 && s.message_retention_seconds < 1209600])
    error_message = "message_retention_seconds must be at least 60 and less than 1209600 (14 days): the dead-letter queue must keep a message longer than its source did."
  }
  validation {
    condition     = alltrue([for s in values(var.schedules) : s.max_receive_count >= 1 && s.max_receive_count <= 1000])
    error_message = "max_receive_count must be 1 to 1000."
  }
}

variable "dead_letter_retention_seconds" {
  description = "Message retention of the dead-letter queues. SQS keeps a message's original enqueue time when it moves it, so this must exceed every schedule's message_retention_seconds. Default 14 days, the maximum."
  type        = number
  default     = 1209600

  validation {
    condition     = var.dead_letter_retention_seconds >= 60 && var.dead_letter_retention_seconds <= 1209600
    error_message = "dead_letter_retention_seconds must be 60 to 1209600 (14 days)."
  }
}

variable "cloudfront_public_keys" {
  description = "The CloudFront public keys (PEM) of the module's key group, by a short name (e.g. \"k2026\"): the group the distribution trusts when the module creates it; config links.cloudfront.keys[].id gets each key's id from the cloudfront_key_ids output. After that, `reportmailer keys rotate` and `keys retire` own which key groups the distribution trusts (Terraform ignores them), and this map only keeps the module's group valid: it must hold at least one key, so after retiring a key put the new key's PEM here (`aws cloudfront get-public-key`) before removing the retired one. See docs/operations.md, \"Rotating a signing key\"."
  type        = map(string)

  validation {
    condition     = length(var.cloudfront_public_keys) >= 1 && length(var.cloudfront_public_keys) <= 5
    error_message = "cloudfront_public_keys must hold 1 to 5 keys (a key group trusts at most 5)."
  }
  validation {
    condition     = alltrue([for pem in values(var.cloudfront_public_keys) : startswith(trimspace(pem), "-----BEGIN PUBLIC KEY-----")])
    error_message = "Each of cloudfront_public_keys must be a PEM public key (\"-----BEGIN PUBLIC KEY-----\"), as `openssl pkey -pubout` writes it; never a private key."
  }
  validation {
    condition     = alltrue([for k, _ in var.cloudfront_public_keys : can(regex("^[A-Za-z0-9_-]{1,40}$", k))])
    error_message = "Each cloudfront_public_keys name must be 1 to 40 letters, digits, '_' or '-'."
  }
}

variable "kms_signing" {
  description = "Whether the worker signs links with KMS keys (a key with kms_key_id in links.cloudfront.keys, or a `keys rotate -kms` rotation): adds the SigningKeys statement to the worker's role, kms:Sign and kms:GetPublicKey on the keys tagged reportmailer=cloudfront-signing, as `reportmailer iam` declares with kms_signing. Set it before the first `-kms` rotation. Default false."
  type        = bool
  default     = false
}

variable "cloudfront_price_class" {
  description = "CloudFront price class of the distribution: PriceClass_100, PriceClass_200 or PriceClass_All."
  type        = string
  default     = "PriceClass_100"

  validation {
    condition     = contains(["PriceClass_100", "PriceClass_200", "PriceClass_All"], var.cloudfront_price_class)
    error_message = "cloudfront_price_class must be PriceClass_100, PriceClass_200 or PriceClass_All."
  }
}

variable "cloudfront_log_bucket_name" {
  description = "When set, a log bucket of this name is created (with ACLs enabled, as CloudFront standard logging needs) and the distribution logs every request to it. \"\" for no logs."
  type        = string
  default     = ""

  validation {
    condition     = var.cloudfront_log_bucket_name == "" || can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.cloudfront_log_bucket_name))
    error_message = "cloudfront_log_bucket_name must be \"\" or an S3 bucket name of 3 to 63 lower-case letters, digits and '-' (no '.': CloudFront logs to the bucket's virtual-hosted name over TLS)."
  }
}

variable "cloudfront_log_retention_days" {
  description = "Days after which CloudFront access logs expire in the log bucket."
  type        = number
  default     = 90

  validation {
    condition     = var.cloudfront_log_retention_days >= 1
    error_message = "cloudfront_log_retention_days must be at least 1."
  }
}

variable "link_revocation" {
  description = "Create the CloudFront KeyValueStore and viewer-request function that make `reportmailer revoke` work, and attach the function to the distribution. Needs links.trace in the config. Config: links.cloudfront.key_value_store_arn from the key_value_store_arn output."
  type        = bool
  default     = false
}

variable "sender_address" {
  description = "The address emails are sent from, e.g. \"reports@example.com\" (config: sender.from, which may add a display name). The worker may send only as this address or its domain, whichever identity SES has verified."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s<>]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}$", var.sender_address))
    error_message = "sender_address must be a plain address such as reports@example.com, without a display name or angle brackets."
  }
}

variable "create_sender_domain_identity" {
  description = "Create the SES identity for the sender address's domain, with Easy DKIM; publish the three CNAME records of the ses_dkim_records output to verify it. false when the identity exists already."
  type        = bool
  default     = false
}

variable "ses_event_destination" {
  description = "How SES's sending events reach the worker's events queue (config: ses_events.queue_url), which settles deliveries whose send outcome was unknown: \"eventbridge\" (a rule on the default event bus), \"sns\" (a topic the queue subscribes to) or \"none\" (no events queue; such deliveries are dead-lettered for an operator, docs/operations.md)."
  type        = string
  default     = "eventbridge"

  validation {
    condition     = contains(["eventbridge", "sns", "none"], var.ses_event_destination)
    error_message = "ses_event_destination must be eventbridge, sns or none."
  }
}

variable "ses_event_types" {
  description = "The SES event types published to the events queue. SEND settles a delivery; REJECT and RENDERING_FAILURE say SES sent nothing. Each other type (DELIVERY, BOUNCE, OPEN...) is one more message per email for the worker to read and throw away."
  type        = list(string)
  default     = ["SEND", "REJECT", "RENDERING_FAILURE"]

  validation {
    condition     = contains(var.ses_event_types, "SEND")
    error_message = "ses_event_types must include SEND: it is the event that settles a delivery."
  }
  validation {
    condition = alltrue([for e in var.ses_event_types : contains(
      ["SEND", "REJECT", "BOUNCE", "COMPLAINT", "DELIVERY", "OPEN", "CLICK", "RENDERING_FAILURE", "DELIVERY_DELAY", "SUBSCRIPTION"], e
    )])
    error_message = "ses_event_types may hold only SEND, REJECT, BOUNCE, COMPLAINT, DELIVERY, OPEN, CLICK, RENDERING_FAILURE, DELIVERY_DELAY and SUBSCRIPTION."
  }
}

variable "ses_events_retention_seconds" {
  description = "Message retention of the SES events queue: longer than a run is ever late, since each run reads the events first. Its dead-letter queue keeps messages 14 days."
  type        = number
  default     = 604800

  validation {
    condition     = var.ses_events_retention_seconds >= 3600 && var.ses_events_retention_seconds < 1209600
    error_message = "ses_events_retention_seconds must be at least 3600 and less than 1209600 (14 days, the dead-letter queue's)."
  }
}

variable "eks_pod_identity_cluster_name" {
  description = "EKS cluster whose pods may take the worker's role through EKS Pod Identity (an association for kubernetes_namespace/kubernetes_service_account is created; leave deploy/kubernetes/components/irsa out, or its annotation wins). \"\" for none."
  type        = string
  default     = ""
}

variable "irsa_oidc_provider_arn" {
  description = "ARN of an EKS cluster's IAM OIDC provider, to let kubernetes_namespace/kubernetes_service_account take the worker's role through IRSA (add deploy/kubernetes/components/irsa to the overlay, with the worker_role_arn output in it). \"\" for none."
  type        = string
  default     = ""

  validation {
    condition     = var.irsa_oidc_provider_arn == "" || can(regex("^arn:[a-z-]+:iam::[0-9]{12}:oidc-provider/.+$", var.irsa_oidc_provider_arn))
    error_message = "irsa_oidc_provider_arn must be \"\" or an IAM OIDC provider ARN (arn:aws:iam::123456789012:oidc-provider/oidc.eks...)."
  }
}

variable "kubernetes_namespace" {
  description = "Namespace of the worker's Kubernetes ServiceAccount, for Pod Identity and IRSA."
  type        = string
  default     = "reportmailer"
}

variable "kubernetes_service_account" {
  description = "Name of the worker's Kubernetes ServiceAccount, for Pod Identity and IRSA."
  type        = string
  default     = "reportmailer"
}

variable "ec2_instance_profile" {
  description = "Create an EC2 instance profile with the worker's role, for `serve` on a VM (deploy/systemd)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}
