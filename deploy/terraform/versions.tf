terraform {
  # 1.5: optional object attributes with defaults, preconditions, and
  # validations that read only their own variable.
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.40: aws_sesv2_configuration_set_event_destination with
      # event_bridge_destination, aws_eks_pod_identity_association.
      version = ">= 5.40, < 7.0"
    }
  }
}
