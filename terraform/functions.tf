# Code zips are built outside Terraform (`make package`), so that no provider
# beyond hashicorp/aws is needed; their paths and hashes come in as variables.

locals {
  inference_function_name = "${var.name}-inference"
  syncer_function_name    = "${var.name}-syncer"
}

resource "aws_cloudwatch_log_group" "inference" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts every log group at rest already; a customer-managed KMS key costs 1 USD a month for logs that hold request ids, timings and errors, no secrets or request bodies
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (14 by default) on purpose: the logs are for debugging, and a year of them is storage nobody reads; raise the variable where a policy requires it
  name              = "/aws/lambda/${local.inference_function_name}"
  retention_in_days = var.log_retention_days
}

resource "aws_cloudwatch_log_group" "syncer" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts every log group at rest already; a customer-managed KMS key costs 1 USD a month for logs that hold request ids, timings and errors, no secrets or request bodies
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (14 by default) on purpose: the logs are for debugging, and a year of them is storage nobody reads; raise the variable where a policy requires it
  name              = "/aws/lambda/${local.syncer_function_name}"
  retention_in_days = var.log_retention_days
}

resource "aws_lambda_function" "inference" {
  #checkov:skip=CKV_AWS_116:Invoked only synchronously (API Gateway AWS_PROXY): the caller gets the error, and a dead-letter queue receives nothing from synchronous invocations
  #checkov:skip=CKV_AWS_50:Active tracing needs xray:PutTraceSegments and xray:PutTelemetryRecords on "*" (no resource-level form) in the role, and bills per trace past the free tier; the API access log and the REPORT lines in the function log give latency per request
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (mount path, release id, bucket name) and Lambda encrypts it at rest with an AWS-managed key; a customer-managed key would cost 1 USD a month for nothing
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile and signed zips uploaded through S3; here Terraform deploys the zips `make package` builds from the reviewed repository, from CI on main through OIDC
  #checkov:skip=CKV_AWS_115:Reserved concurrency is var.inference_reserved_concurrency, null by default: AWS refuses a reservation that leaves fewer than 100 unreserved executions, and new accounts have a quota of about 10, so a default reservation fails the first apply; the API stage throttle caps the cost instead, and the variable turns the reservation on where the quota allows
  function_name    = local.inference_function_name
  description      = "Serves predictions from the release on EFS named by RELEASE_ID"
  role             = aws_iam_role.inference.arn
  runtime          = var.lambda_runtime
  architectures    = [var.lambda_architecture]
  handler          = "lambda_src.inference.handler.handle"
  filename         = var.inference_package.path
  source_code_hash = var.inference_package.sha256
  memory_size      = var.inference_memory_mb
  timeout          = var.inference_timeout_s
  publish          = true

  # Off by default (null): see the variable. The API stage throttle caps the cost.
  reserved_concurrent_executions = var.inference_reserved_concurrency

  vpc_config {
    subnet_ids         = aws_subnet.private[*].id
    security_group_ids = [aws_security_group.lambda.id]
  }

  file_system_config {
    arn              = aws_efs_access_point.inference.arn
    local_mount_path = var.efs_mount_path
  }

  environment {
    variables = {
      EFS_MOUNT_PATH = var.efs_mount_path
      RELEASE_ID     = var.initial_release_id
    }
  }

  lifecycle {
    # The pipeline promotes releases by changing RELEASE_ID and publishing a
    # version; Terraform must not put the old value back.
    ignore_changes = [environment[0].variables["RELEASE_ID"]]
  }

  # Lambda refuses a file system config until a mount target is available.
  depends_on = [
    aws_efs_mount_target.models,
    aws_iam_role_policy.inference,
    aws_cloudwatch_log_group.inference,
  ]
}

resource "aws_lambda_alias" "inference_live" {
  name             = "live"
  description      = "The version the API serves; moved by the pipeline's promote step"
  function_name    = aws_lambda_function.inference.function_name
  function_version = aws_lambda_function.inference.version

  lifecycle {
    # The pipeline moves the alias and records the version it replaced in the
    # description (for rollback); both are the pipeline's.
    ignore_changes = [function_version, description]
  }
}

resource "aws_lambda_function" "syncer" {
  #checkov:skip=CKV_AWS_116:Invoked only synchronously (RequestResponse) by the pipeline's publish step, which reports failures; a dead-letter queue receives nothing from synchronous invocations
  #checkov:skip=CKV_AWS_50:Active tracing needs xray:PutTraceSegments and xray:PutTelemetryRecords on "*" (no resource-level form) in the role, and bills per trace past the free tier; the API access log and the REPORT lines in the function log give latency per request
  #checkov:skip=CKV_AWS_173:The environment holds no secrets (mount path, release id, bucket name) and Lambda encrypts it at rest with an AWS-managed key; a customer-managed key would cost 1 USD a month for nothing
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile and signed zips uploaded through S3; here Terraform deploys the zips `make package` builds from the reviewed repository, from CI on main through OIDC
  #checkov:skip=CKV_AWS_115:Reserved concurrency is var.syncer_reserved_concurrency, null by default: AWS refuses a reservation that leaves fewer than 100 unreserved executions, and new accounts have a quota of about 10, so a default reservation fails the first apply; the API stage throttle caps the cost instead, and the variable turns the reservation on where the quota allows
  function_name    = local.syncer_function_name
  description      = "Unpacks a release bundle from S3 onto EFS, verified and atomically"
  role             = aws_iam_role.syncer.arn
  runtime          = var.lambda_runtime
  architectures    = [var.lambda_architecture]
  handler          = "lambda_src.syncer.handler.handle"
  filename         = var.syncer_package.path
  source_code_hash = var.syncer_package.sha256
  memory_size      = var.syncer_memory_mb
  timeout          = var.syncer_timeout_s

  # One writer at a time is the EFS lock's job (efs_layout/lock.py), not this setting's.
  reserved_concurrent_executions = var.syncer_reserved_concurrency

  ephemeral_storage {
    size = var.syncer_ephemeral_storage_mb
  }

  vpc_config {
    subnet_ids         = aws_subnet.private[*].id
    security_group_ids = [aws_security_group.lambda.id]
  }

  file_system_config {
    arn              = aws_efs_access_point.syncer.arn
    local_mount_path = var.efs_mount_path
  }

  environment {
    variables = {
      EFS_MOUNT_PATH   = var.efs_mount_path
      ARTIFACTS_BUCKET = aws_s3_bucket.artifacts.bucket
    }
  }

  depends_on = [
    aws_efs_mount_target.models,
    aws_iam_role_policy.syncer,
    aws_cloudwatch_log_group.syncer,
  ]
}
