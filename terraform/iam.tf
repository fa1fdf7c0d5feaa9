# One role per function, each with only what its code does. The ENI actions
# Lambda needs to join the VPC have no resource-level form for Describe, so
# they are the only statements on "*".

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "vpc_networking" {
  statement {
    sid = "JoinTheVpc"
    actions = [
      "ec2:CreateNetworkInterface",
      "ec2:DescribeNetworkInterfaces",
      "ec2:DescribeSubnets",
      "ec2:DeleteNetworkInterface",
      "ec2:AssignPrivateIpAddresses",
      "ec2:UnassignPrivateIpAddresses",
    ]
    resources = ["*"]
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
