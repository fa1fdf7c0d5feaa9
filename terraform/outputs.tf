output "api_endpoint" {
  description = "Base URL of the HTTP API (POST /predict, POST /warmup, GET /health)."
  value       = aws_apigatewayv2_api.http.api_endpoint
}

output "api_authorizer" {
  description = "Who may call the API (none, jwt or iam); the smoke step reads it to send the credentials that mode needs."
  value       = var.api_authorizer
}

output "api_id" {
  description = "Id of the HTTP API; the local data plane reads its routes and stage from it."
  value       = aws_apigatewayv2_api.http.id
}

output "frontend_url" {
  description = "URL of the static web page served by CloudFront."
  value       = "https://${aws_cloudfront_distribution.frontend.domain_name}"
}

output "frontend_bucket" {
  description = "Bucket holding the static web page."
  value       = aws_s3_bucket.frontend.bucket
}

output "artifacts_bucket" {
  description = "Bucket the pipeline uploads release bundles to."
  value       = aws_s3_bucket.artifacts.bucket
}

output "inference_function_name" {
  description = "Name of the inference function."
  value       = aws_lambda_function.inference.function_name
}

output "inference_live_alias_arn" {
  description = "ARN of the inference function's `live` alias, which the API invokes."
  value       = aws_lambda_alias.inference_live.arn
}

output "syncer_function_name" {
  description = "Name of the syncer function the pipeline invokes to publish a release to EFS."
  value       = aws_lambda_function.syncer.function_name
}

output "efs_file_system_id" {
  description = "Id of the EFS file system holding the releases."
  value       = aws_efs_file_system.models.id
}

output "efs_access_points" {
  description = "Access point ids: read-only for inference, read-write for the syncer."
  value = {
    inference = aws_efs_access_point.inference.id
    syncer    = aws_efs_access_point.syncer.id
  }
}

output "efs_mount_path" {
  description = "Where both functions mount EFS."
  value       = var.efs_mount_path
}

output "circleci_deploy_role_arn" {
  description = "ARN of the CircleCI deploy role (set it as AWS_ROLE_ARN in the aws-deploy context); null unless circleci_oidc is set."
  value       = var.circleci_oidc == null ? null : aws_iam_role.circleci_deploy["this"].arn
}
