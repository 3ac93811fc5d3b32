# The module as a root: `terraform init && terraform apply` here, then
# `terraform output -raw config_yaml` for the config (deploy/README.md).

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7.0"
    }
  }
}

provider "aws" {
  region = "eu-west-2"
}

module "reportmailer" {
  source = "../.."

  name                = "acme-reportmailer"
  reports_bucket_name = "acme-reports"
  reports_prefix      = "reports/"
  state_bucket_name   = "acme-reportmailer-state"
  sender_address      = "reports@example.com"

  cloudfront_public_keys = {
    k2026 = file("${path.module}/cloudfront-2026.pub.pem")
  }

  schedules = {
    on-demand = {
      visibility_timeout_seconds = 600
      s3_notification            = { prefix = "reports/" }
    }
    daily = {
      visibility_timeout_seconds = 1200
    }
  }

  eks_pod_identity_cluster_name = "acme-prod"
  cloudfront_log_bucket_name    = "acme-reportmailer-cf-logs"
}

output "config_yaml" {
  value = module.reportmailer.config_yaml
}

output "worker_role_arn" {
  value = module.reportmailer.worker_role_arn
}
