# EFS holds the releases (lib/ + model + stamp); S3 holds the release bundles
# the pipeline uploads and the syncer unpacks.

resource "aws_efs_file_system" "models" {
  #checkov:skip=CKV_AWS_184:Encrypted at rest with the AWS-managed key aws/elasticfilesystem; a customer-managed key costs 1 USD a month for data that is open-source wheels and a model the API serves anyway
  creation_token   = "${var.name}-models"
  encrypted        = true
  performance_mode = "generalPurpose"
  throughput_mode  = "elastic" # pay per byte moved; idle costs only storage

  lifecycle_policy {
    transition_to_ia = "AFTER_30_DAYS" # old releases are rarely read
  }

  lifecycle_policy {
    transition_to_primary_storage_class = "AFTER_1_ACCESS"
  }

  tags = { Name = "${var.name}-models" }
}

resource "aws_efs_mount_target" "models" {
  count = 2

  file_system_id  = aws_efs_file_system.models.id
  subnet_id       = aws_subnet.private[count.index].id
  security_groups = [aws_security_group.efs.id]
}

locals {
  # Both access points see the same tree; the syncer owns it, the inference
  # function reads it as another user, so the file modes keep it read-only.
  efs_release_root = "/ml"
}

resource "aws_efs_access_point" "inference" {
  file_system_id = aws_efs_file_system.models.id

  posix_user {
    uid = var.efs_reader_uid
    gid = var.efs_posix_uid
  }

  root_directory {
    path = local.efs_release_root
    creation_info {
      owner_uid   = var.efs_posix_uid
      owner_gid   = var.efs_posix_uid
      permissions = "0755"
    }
  }

  tags = { Name = "${var.name}-inference-ro" }
}

resource "aws_efs_access_point" "syncer" {
  file_system_id = aws_efs_file_system.models.id

  posix_user {
    uid = var.efs_posix_uid
    gid = var.efs_posix_uid
  }

  root_directory {
    path = local.efs_release_root
    creation_info {
      owner_uid   = var.efs_posix_uid
      owner_gid   = var.efs_posix_uid
      permissions = "0755"
    }
  }

  tags = { Name = "${var.name}-syncer-rw" }
}

data "aws_iam_policy_document" "efs_access" {
  statement {
    sid       = "DenyWithoutTLS"
    effect    = "Deny"
    actions   = ["*"]
    resources = [aws_efs_file_system.models.arn]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  # Mounts go through one of the two access points or not at all: the access
  # point, not the client, decides the POSIX user and the root directory. An
  # identity policy elsewhere in the account cannot widen this (a Deny wins).
  # StringNotEquals is true when the key is absent, i.e. a mount without one.
  statement {
    sid       = "DenyMountsThatBypassTheAccessPoints"
    effect    = "Deny"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.models.arn]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "StringNotEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.inference.arn, aws_efs_access_point.syncer.arn]
    }
  }

  # Writes only through the syncer's access point, whoever asks: the inference
  # access point is read-only for every principal, not just for its role.
  statement {
    sid       = "DenyWritesExceptThroughTheSyncerAccessPoint"
    effect    = "Deny"
    actions   = ["elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.models.arn]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "StringNotEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.syncer.arn]
    }
  }

  # Nothing needs root on this file system: both access points pin a non-root user.
  statement {
    sid       = "DenyRootAccess"
    effect    = "Deny"
    actions   = ["elasticfilesystem:ClientRootAccess"]
    resources = [aws_efs_file_system.models.arn]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
  }

  statement {
    sid       = "InferenceReadOnlyThroughItsAccessPoint"
    effect    = "Allow"
    actions   = ["elasticfilesystem:ClientMount"]
    resources = [aws_efs_file_system.models.arn]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.inference.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.inference.arn]
    }
  }

  statement {
    sid       = "SyncerReadWriteThroughItsAccessPoint"
    effect    = "Allow"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.models.arn]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.syncer.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.syncer.arn]
    }
  }
}

resource "aws_efs_file_system_policy" "models" {
  file_system_id = aws_efs_file_system.models.id
  policy         = data.aws_iam_policy_document.efs_access.json
}

resource "aws_s3_bucket" "artifacts" {
  #checkov:skip=CKV_AWS_18:Server access logs would need a logging bucket of their own; the bundles are written by the CI deploy role and read only by the syncer (turn on CloudTrail S3 data events if an audit needs object-level records)
  #checkov:skip=CKV2_AWS_62:The pipeline invokes the syncer explicitly and waits for its answer; nothing consumes bucket events
  #checkov:skip=CKV_AWS_144:Bundles are build outputs the pipeline rebuilds from git (hence force_destroy); replicating GBs of torch to a second region would double the storage bill
  #checkov:skip=CKV_AWS_145:SSE-S3 (AES256) encrypts at rest; a customer-managed KMS key costs 1 USD a month plus a request per GB-sized bundle read, and the only reader (the syncer) is already pinned by IAM
  bucket        = "${var.name}-artifacts-${data.aws_caller_identity.current.account_id}-${data.aws_region.current.name}"
  force_destroy = true # bundles are rebuilt by the pipeline; nothing here is the only copy
}

resource "aws_s3_bucket_versioning" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    id     = "expire-superseded-bundles"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = 30
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}
