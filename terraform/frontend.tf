# The static page: a private S3 bucket read by CloudFront through an origin
# access control, so the bucket never needs to be public.

locals {
  frontend_dir = var.frontend_dir != "" ? var.frontend_dir : "${path.module}/../web"
  frontend_content_types = {
    html = "text/html; charset=utf-8"
    js   = "text/javascript; charset=utf-8"
    css  = "text/css; charset=utf-8"
    svg  = "image/svg+xml"
    png  = "image/png"
    ico  = "image/x-icon"
    json = "application/json"
  }
  # config.js is written by Terraform below (it names the API), never taken from disk.
  frontend_files = setsubtract(fileset(local.frontend_dir, "**/*.{html,js,css,svg,png,ico,json}"), ["config.js"])
}

resource "aws_s3_bucket" "frontend" {
  #checkov:skip=CKV_AWS_18:Server access logs would need a logging bucket of their own; this bucket is read only by CloudFront (OAC) and written only by terraform apply from web/ in git
  #checkov:skip=CKV_AWS_21:The content is web/ from git, uploaded by Terraform; git is the version history and a re-apply restores any object
  #checkov:skip=CKV2_AWS_61:The objects are exactly web/ (a handful of files) replaced in place by Terraform; nothing accumulates for a lifecycle rule to expire
  #checkov:skip=CKV2_AWS_62:Nothing consumes events from this bucket; deploys are terraform apply
  #checkov:skip=CKV_AWS_144:Cross-region replication needs a second bucket and role and doubles storage, for files terraform apply rebuilds from git
  #checkov:skip=CKV_AWS_145:SSE-S3 (AES256) encrypts at rest; a customer-managed KMS key costs 1 USD a month plus requests and would need a key policy for CloudFront, to protect a public web page
  bucket        = "${var.name}-frontend-${data.aws_caller_identity.current.account_id}-${data.aws_region.current.name}"
  force_destroy = true # its content is the repository's web/ folder
}

resource "aws_s3_bucket_server_side_encryption_configuration" "frontend" {
  bucket = aws_s3_bucket.frontend.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "frontend" {
  bucket = aws_s3_bucket.frontend.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "frontend" {
  bucket = aws_s3_bucket.frontend.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_object" "frontend" {
  for_each = local.frontend_files

  bucket       = aws_s3_bucket.frontend.id
  key          = each.value
  source       = "${local.frontend_dir}/${each.value}"
  etag         = filemd5("${local.frontend_dir}/${each.value}")
  content_type = local.frontend_content_types[reverse(split(".", each.value))[0]]
}

resource "aws_s3_object" "frontend_config" {
  bucket        = aws_s3_bucket.frontend.id
  key           = "config.js"
  content       = "window.API_BASE = ${jsonencode(aws_apigatewayv2_api.http.api_endpoint)};\n"
  content_type  = "text/javascript; charset=utf-8"
  cache_control = "no-cache"
}

resource "aws_cloudfront_origin_access_control" "frontend" {
  name                              = "${var.name}-frontend"
  description                       = "CloudFront reads the private front-end bucket"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

resource "aws_cloudfront_distribution" "frontend" {
  #checkov:skip=CKV_AWS_68:AWS WAF costs at least 5 USD a month per web ACL plus 1 USD per rule, more than the whole idle stack; the distribution serves a few static files (GET/HEAD only) from a private bucket
  #checkov:skip=CKV2_AWS_47:No WAF web ACL (see CKV_AWS_68), so no Log4j rule group to attach; nothing behind this distribution runs Java
  #checkov:skip=CKV_AWS_86:Standard logs need a logging bucket with ACLs enabled; the page holds nothing secret, and calls to the API are logged by the API stage's access log
  #checkov:skip=CKV_AWS_310:Origin failover needs a second bucket in another region kept in sync; for a demo page that terraform apply rebuilds, a regional S3 outage is an accepted loss
  #checkov:skip=CKV_AWS_374:The demo is meant to be reachable from anywhere; there is no legal or licensing reason to block countries
  #checkov:skip=CKV_AWS_174:With the default *.cloudfront.net certificate CloudFront fixes the security policy at TLSv1 whatever minimum_protocol_version says; a TLS 1.2 floor needs a custom domain and ACM certificate (CKV2_AWS_42)
  #checkov:skip=CKV2_AWS_42:A reference stack has no domain name; the default *.cloudfront.net certificate serves HTTPS and HTTP redirects to it. Add aliases and an ACM certificate (us-east-1) when a domain exists
  #checkov:skip=CKV2_AWS_32:The AWS managed SecurityHeadersPolicy is attached by its fixed id (response_headers_policy_id below); checkov only recognises a policy resource or data source, and the emulator implements neither
  enabled             = true
  comment             = "${var.name} front end"
  default_root_object = "index.html"
  price_class         = var.cloudfront_price_class
  http_version        = "http2and3"

  origin {
    origin_id                = "frontend-bucket"
    domain_name              = aws_s3_bucket.frontend.bucket_regional_domain_name
    origin_access_control_id = aws_cloudfront_origin_access_control.frontend.id
  }

  default_cache_behavior {
    target_origin_id       = "frontend-bucket"
    viewer_protocol_policy = "redirect-to-https"
    allowed_methods        = ["GET", "HEAD"]
    cached_methods         = ["GET", "HEAD"]
    compress               = true
    # AWS managed "SecurityHeadersPolicy" (the same id in every account): HSTS,
    # X-Content-Type-Options nosniff, X-Frame-Options SAMEORIGIN, Referrer-Policy.
    response_headers_policy_id = "67f7725c-6f97-4210-82d7-5512b31e9d03"

    forwarded_values {
      query_string = false

      cookies {
        forward = "none"
      }
    }
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = true
  }
}

data "aws_iam_policy_document" "frontend_bucket" {
  statement {
    sid       = "CloudFrontReadsThroughOac"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.frontend.arn}/*"]

    principals {
      type        = "Service"
      identifiers = ["cloudfront.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "AWS:SourceArn"
      values   = [aws_cloudfront_distribution.frontend.arn]
    }
  }

  statement {
    sid       = "DenyWithoutTLS"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.frontend.arn, "${aws_s3_bucket.frontend.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "frontend" {
  bucket = aws_s3_bucket.frontend.id
  policy = data.aws_iam_policy_document.frontend_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.frontend]
}
