# One role per function, each with only what its code does. Every statement
# names the resources it acts on, except the EC2 Describe calls Lambda makes to
# join the VPC: they have no resource-level form, so they are the one "*".

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

locals {
  # Every network interface in this account and region: Lambda names the ENIs
  # it creates itself, so no narrower ARN exists before they do.
  network_interfaces_arn = "arn:${data.aws_partition.current.partition}:ec2:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:network-interface/*"
}

data "aws_iam_policy_document" "vpc_networking" {
  statement {
    # EC2's Describe calls authorise only on "*" (no resource-level permissions).
    sid       = "DescribeTheVpc"
    actions   = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]
    resources = ["*"]
  }

  statement {
    # CreateNetworkInterface authorises on the subnet, the security group and
    # the new interface: only our subnets and our security group will do.
    sid     = "CreateInterfacesInOurSubnets"
    actions = ["ec2:CreateNetworkInterface"]
    resources = concat(
      aws_subnet.private[*].arn,
      [aws_security_group.lambda.arn, local.network_interfaces_arn],
    )
  }

  statement {
    sid = "ManageTheInterfaces"
    actions = [
      "ec2:DeleteNetworkInterface",
      "ec2:AssignPrivateIpAddresses",
      "ec2:UnassignPrivateIpAddresses",
    ]
    resources = [local.network_interfaces_arn]
  }
}

resource "aws_iam_role" "inference" {
  name               = "${var.name}-inference"
  description        = "Inference function: reads releases from EFS, writes its own logs"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "inference" {
  source_policy_documents = [data.aws_iam_policy_document.vpc_networking.json]

  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.inference.arn}:*"]
  }

  statement {
    sid       = "MountReadOnly"
    actions   = ["elasticfilesystem:ClientMount"]
    resources = [aws_efs_file_system.models.arn]

    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.inference.arn]
    }
  }
}

resource "aws_iam_role_policy" "inference" {
  name   = "inference"
  role   = aws_iam_role.inference.id
  policy = data.aws_iam_policy_document.inference.json
}

resource "aws_iam_role" "syncer" {
  name               = "${var.name}-syncer"
  description        = "Syncer function: reads release bundles from S3, writes releases to EFS"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "syncer" {
  source_policy_documents = [data.aws_iam_policy_document.vpc_networking.json]

  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.syncer.arn}:*"]
  }

  statement {
    sid       = "ReadBundles"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.artifacts.arn}/*"]
  }

  statement {
    sid       = "ListBundles"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.artifacts.arn]
  }

  statement {
    sid       = "MountReadWrite"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.models.arn]

    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.syncer.arn]
    }
  }
}

resource "aws_iam_role_policy" "syncer" {
  name   = "syncer"
  role   = aws_iam_role.syncer.id
  policy = data.aws_iam_policy_document.syncer.json
}

# Opt-in (var.circleci_oidc): CircleCI jobs get short-lived AWS credentials from
# their OIDC token (.circleci/config.yml, command aws-oidc), so no access keys are
# stored anywhere. The role trusts only this project's jobs on one branch.
locals {
  circleci_oidc   = var.circleci_oidc == null ? {} : { this = var.circleci_oidc }
  circleci_issuer = var.circleci_oidc == null ? "" : "oidc.circleci.com/org/${var.circleci_oidc.org_id}"
}

resource "aws_iam_openid_connect_provider" "circleci" {
  for_each = local.circleci_oidc

  url            = "https://${local.circleci_issuer}"
  client_id_list = [each.value.org_id] # CircleCI's tokens carry the org id as aud
}

data "aws_iam_policy_document" "circleci_assume" {
  for_each = local.circleci_oidc

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.circleci[each.key].arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.circleci_issuer}:aud"
      values   = [each.value.org_id]
    }

    # CIRCLE_OIDC_TOKEN_V2's sub: org/<org>/project/<project>/user/<user>/vcs-origin/<repo>/vcs-ref/<ref>
    condition {
      test     = "StringLike"
      variable = "${local.circleci_issuer}:sub"
      values   = ["org/${each.value.org_id}/project/${each.value.project_id}/user/*/vcs-origin/*/vcs-ref/refs/heads/${each.value.branch}"]
    }
  }
}

resource "aws_iam_role" "circleci_deploy" {
  for_each = local.circleci_oidc

  name                 = "${var.name}-circleci-deploy"
  description          = "CircleCI deploy jobs of one project and branch, through OIDC"
  assume_role_policy   = data.aws_iam_policy_document.circleci_assume[each.key].json
  max_session_duration = 3600
}

# What the jobs may do is the operator's choice (terraform apply of this stack
# creates IAM roles, so it needs broad rights); nothing is attached by default.
resource "aws_iam_role_policy_attachment" "circleci_deploy" {
  for_each = toset(var.circleci_oidc == null ? [] : var.circleci_oidc.policy_arns)

  role       = aws_iam_role.circleci_deploy["this"].name
  policy_arn = each.value
}

# With api_authorizer = "iam" the pipeline's smoke step signs its calls with the deploy
# role's credentials (ci/smoke.py), so the role may invoke this API and no other.
data "aws_iam_policy_document" "circleci_smoke" {
  for_each = var.api_authorizer == "iam" ? local.circleci_oidc : {}

  statement {
    sid       = "SmokeCallsThisApi"
    actions   = ["execute-api:Invoke"]
    resources = ["${aws_apigatewayv2_api.http.execution_arn}/*"]
  }
}

resource "aws_iam_role_policy" "circleci_smoke" {
  for_each = data.aws_iam_policy_document.circleci_smoke

  name   = "smoke-invokes-the-api"
  role   = aws_iam_role.circleci_deploy[each.key].id
  policy = each.value.json
}
