# The worker's role: what drain, serve, keys and check -aws call, and
# nothing else. The statements mirror the declaration in worker/iam
# (iam.For with those four commands), statement by statement;
# deploy/iam_test.go (TestTerraformIAMPolicy) fails when the two differ.

locals {
  state_arn   = aws_s3_bucket.state.arn
  reports_arn = aws_s3_bucket.reports.arn
  # SES authorises a send as the address's identity or its domain's,
  # whichever is verified. Domains are case-insensitive (lower case
  # here); the local part is kept as written.
  sender_identity_arns = [
    "arn:${local.partition}:ses:${local.region}:${local.account}:identity/${split("@", var.sender_address)[0]}@${local.sender_domain}",
    "arn:${local.partition}:ses:${local.region}:${local.account}:identity/${local.sender_domain}",
  ]
}

data "aws_iam_policy_document" "worker" {
  # Receive, settle and hold the schedules' messages; a run first reads
  # its queues' attributes (they exist), check -aws too (redrive policy,
  # timeouts).
  statement {
    sid = "Queues"
    actions = [
      "sqs:ChangeMessageVisibility",
      "sqs:DeleteMessage",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
      "sqs:ReceiveMessage",
    ]
    resources = [for q in aws_sqs_queue.source : q.arn]
  }

  # Poison messages go to the DLQ with their reason.
  statement {
    sid = "DeadLetterQueues"
    actions = [
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
      "sqs:SendMessage",
    ]
    resources = [for q in aws_sqs_queue.dead_letter : q.arn]
  }

  # SES's sending events, read at the start of each run.
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

  # HeadObject on every report (authorised as s3:GetObject).
  statement {
    sid       = "ReadReports"
    actions   = ["s3:GetObject"]
    resources = ["${local.reports_arn}/${var.reports_prefix}*"]
  }

  # Without ListBucket, S3 answers a missing key with 403, not 404, and
  # the worker cannot tell a deleted report from a denied one.
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

  # Delivery records and serve's slot leases (ledger_prefix/slots/).
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

  # The latest expiry each CloudFront key signed, for `reportmailer keys`.
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

  # Send as the sender; check -aws reads its verification and DKIM.
  statement {
    sid = "SendingIdentity"
    actions = [
      "ses:GetEmailIdentity",
      "ses:SendEmail",
    ]
    resources = local.sender_identity_arns
  }

  # A send with a configuration set is authorised on the set too;
  # check -aws reads the set.
  statement {
    sid = "ConfigurationSet"
    actions = [
      "ses:GetConfigurationSet",
      "ses:SendEmail",
    ]
    resources = [aws_sesv2_configuration_set.this.arn]
  }

  # Pacing reads the account's quota; GetAccount has no resource.
  statement {
    sid       = "SendQuota"
    actions   = ["ses:GetAccount"]
    resources = ["*"]
  }

  # check -aws: the distribution's origin is the reports bucket.
  statement {
    sid       = "Distribution"
    actions   = ["cloudfront:GetDistributionConfig"]
    resources = [aws_cloudfront_distribution.reports.arn]
  }

  # check -aws: each key id's public key matches its private key.
  # GetPublicKey supports no resource-level permission.
  statement {
    sid       = "PublicKeys"
    actions   = ["cloudfront:GetPublicKey"]
    resources = ["*"]
  }

  # With kms_signing: sign links with, and read the public keys of, the
  # KMS keys tagged as reportmailer's signing keys (worker/iam
  # KMSTagKey, KMSTagValue), so a key a later `keys rotate -kms` makes
  # needs no new policy.
  dynamic "statement" {
    for_each = var.kms_signing ? [1] : []
    content {
      sid = "SigningKeys"
      actions = [
        "kms:GetPublicKey",
        "kms:Sign",
      ]
      resources = ["arn:${local.partition}:kms:${local.region}:${local.account}:key/*"]
      condition {
        test     = "StringEquals"
        variable = "aws:ResourceTag/reportmailer"
        values   = ["cloudfront-signing"]
      }
    }
  }
}

data "aws_iam_policy_document" "worker_trust" {
  dynamic "statement" {
    for_each = var.eks_pod_identity_cluster_name == "" ? [] : [1]
    content {
      sid     = "EKSPodIdentity"
      actions = ["sts:AssumeRole", "sts:TagSession"]
      principals {
        type        = "Service"
        identifiers = ["pods.eks.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.irsa_oidc_provider_arn == "" ? [] : [local.oidc_issuer]
    content {
      sid     = "IRSA"
      actions = ["sts:AssumeRoleWithWebIdentity"]
      principals {
        type        = "Federated"
        identifiers = [var.irsa_oidc_provider_arn]
      }
      condition {
        test     = "StringEquals"
        variable = "${statement.value}:sub"
        values   = ["system:serviceaccount:${var.kubernetes_namespace}:${var.kubernetes_service_account}"]
      }
      condition {
        test     = "StringEquals"
        variable = "${statement.value}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.ec2_instance_profile ? [1] : []
    content {
      sid     = "EC2"
      actions = ["sts:AssumeRole"]
      principals {
        type        = "Service"
        identifiers = ["ec2.amazonaws.com"]
      }
    }
  }
}

locals {
  # oidc.eks.REGION.amazonaws.com/id/XXXX, the issuer the IRSA
  # conditions are keyed on.
  oidc_issuer = replace(var.irsa_oidc_provider_arn, "/^arn:[^:]+:iam::[0-9]+:oidc-provider\\//", "")
}

resource "aws_iam_role" "worker" {
  name               = "${var.name}-worker"
  description        = "reportmailer worker: drain, serve, keys and check -aws"
  assume_role_policy = data.aws_iam_policy_document.worker_trust.json
  tags               = var.tags

  lifecycle {
    precondition {
      condition     = var.eks_pod_identity_cluster_name != "" || var.irsa_oidc_provider_arn != "" || var.ec2_instance_profile
      error_message = "Nothing may take the worker's role: set eks_pod_identity_cluster_name, irsa_oidc_provider_arn or ec2_instance_profile."
    }
  }
}

resource "aws_iam_role_policy" "worker" {
  name   = "reportmailer"
  role   = aws_iam_role.worker.id
  policy = data.aws_iam_policy_document.worker.json
}

resource "aws_eks_pod_identity_association" "worker" {
  count           = var.eks_pod_identity_cluster_name == "" ? 0 : 1
  cluster_name    = var.eks_pod_identity_cluster_name
  namespace       = var.kubernetes_namespace
  service_account = var.kubernetes_service_account
  role_arn        = aws_iam_role.worker.arn
  tags            = var.tags
}

resource "aws_iam_instance_profile" "worker" {
  count = var.ec2_instance_profile ? 1 : 0
  name  = "${var.name}-worker"
  role  = aws_iam_role.worker.name
  tags  = var.tags
}

# KEDA's aws-sqs-queue scaler reads the queues' depth with its own role
# (TriggerAuthentication podIdentity.provider aws, identityOwner keda):
# attach this policy to the KEDA operator's role.
data "aws_iam_policy_document" "keda_scaler" {
  statement {
    sid       = "QueueDepth"
    actions   = ["sqs:GetQueueAttributes"]
    resources = [for q in aws_sqs_queue.source : q.arn]
  }
}
