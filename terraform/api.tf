# HTTP API (cheaper than REST: 1.00 vs 3.50 USD per million) with payload
# format 2.0, every route to the `live` alias.

locals {
  api_routes = ["POST /predict", "POST /warmup", "GET /health"]
  cors_origins = concat(
    ["https://${aws_cloudfront_distribution.frontend.domain_name}"],
    var.extra_cors_origins,
  )
  # var.api_authorizer -> the routes' authorization_type, and the request headers
  # a browser must be allowed to send for it (CORS preflight lists them).
  api_authorization_type = {
    none = "NONE"
    jwt  = "JWT"
    iam  = "AWS_IAM"
  }[var.api_authorizer]
  api_auth_headers = {
    none = []
    jwt  = ["authorization"]
    iam  = ["authorization", "x-amz-content-sha256", "x-amz-date", "x-amz-security-token"]
  }[var.api_authorizer]
}

resource "aws_cloudwatch_log_group" "api_access" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts every log group at rest already; a customer-managed KMS key costs 1 USD a month for logs that hold request ids, timings and errors, no secrets or request bodies
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (14 by default) on purpose: the logs are for debugging, and a year of them is storage nobody reads; raise the variable where a policy requires it
  name              = "/aws/apigateway/${var.name}-http"
  retention_in_days = var.log_retention_days
}

resource "aws_apigatewayv2_api" "http" {
  name          = "${var.name}-http"
  description   = "Inference endpoint"
  protocol_type = "HTTP"

  cors_configuration {
    allow_origins = local.cors_origins
    allow_methods = ["GET", "POST", "OPTIONS"]
    allow_headers = concat(["content-type"], local.api_auth_headers)
    max_age       = 3600
  }
}

resource "aws_apigatewayv2_integration" "inference_live" {
  api_id                 = aws_apigatewayv2_api.http.id
  description            = "The inference function's live alias"
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = aws_lambda_alias.inference_live.invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = var.inference_timeout_s * 1000
}

# Only with api_authorizer = "jwt": API Gateway checks the bearer token's
# signature (keys from the issuer), expiry, iss and aud before the function runs.
resource "aws_apigatewayv2_authorizer" "jwt" {
  count = var.api_authorizer == "jwt" ? 1 : 0

  api_id           = aws_apigatewayv2_api.http.id
  name             = "${var.name}-jwt"
  authorizer_type  = "JWT"
  identity_sources = ["$request.header.Authorization"]

  jwt_configuration {
    issuer   = var.jwt_issuer
    audience = var.jwt_audience
  }

  lifecycle {
    precondition {
      condition     = var.jwt_issuer != "" && length(var.jwt_audience) > 0
      error_message = "api_authorizer = \"jwt\" needs jwt_issuer and at least one jwt_audience."
    }
  }
}

resource "aws_apigatewayv2_route" "inference" {
  #checkov:skip=CKV_AWS_309:Authorization is var.api_authorizer (none|jwt|iam). The default "none" is deliberate: the stack is a public demo page calling the API from the browser with no sign-in; the stage throttle (and the reserved concurrency, where var.inference_reserved_concurrency turns it on) bound what an anonymous caller can spend. Set api_authorizer to jwt or iam to close it.
  for_each = toset(local.api_routes)

  api_id             = aws_apigatewayv2_api.http.id
  route_key          = each.value
  target             = "integrations/${aws_apigatewayv2_integration.inference_live.id}"
  authorization_type = local.api_authorization_type
  authorizer_id      = var.api_authorizer == "jwt" ? aws_apigatewayv2_authorizer.jwt[0].id : null
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.http.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit  = var.api_throttle_rate_limit
    throttling_burst_limit = var.api_throttle_burst_limit
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api_access.arn
    format = jsonencode({
      requestId        = "$context.requestId"
      requestTime      = "$context.requestTimeEpoch"
      ip               = "$context.identity.sourceIp"
      routeKey         = "$context.routeKey"
      status           = "$context.status"
      responseLength   = "$context.responseLength"
      latencyMs        = "$context.responseLatency"
      integrationMs    = "$context.integrationLatency"
      integrationError = "$context.integrationErrorMessage"
    })
  }
}

resource "aws_lambda_permission" "api_invokes_inference_live" {
  statement_id  = "AllowHttpApiInvoke"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.inference.function_name
  qualifier     = aws_lambda_alias.inference_live.name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.http.execution_arn}/*/*"
}
