terraform {
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # State stays local by default so that the emulator needs nothing first.
  # For AWS, copy backend.tf.example to backend.tf (S3 with native locking);
  # see README "Deploying to AWS".
}

# No endpoint settings here on purpose: the provider honours AWS_ENDPOINT_URL
# and the usual credential variables, so the emulator and AWS differ only by
# environment.
provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, {
      Project = var.name
    })
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}
