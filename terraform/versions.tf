terraform {
  # 1.9: a variable's validation may refer to another variable (lambda_runtime).
  required_version = ">= 1.9.0"

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

data "aws_caller_identity" "current" {
  lifecycle {
    # The emulator's (moto's) default account: python3.11 would deploy code that cannot
    # load its lib/ on AWS (var.lambda_runtime), so local_emulator stays on the emulator.
    postcondition {
      condition     = !var.local_emulator || self.account_id == "123456789012"
      error_message = "local_emulator = true is for the local stack only (the emulator's account 123456789012), but these credentials are for account ${self.account_id}: unset local_emulator and deploy lambda_runtime python3.12 or python3.13."
    }
  }
}

data "aws_partition" "current" {}

data "aws_region" "current" {}
