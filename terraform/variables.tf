variable "name" {
  description = "Name prefix for every resource (lowercase letters, digits and hyphens)."
  type        = string
  default     = "mlserve"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}[a-z0-9]$", var.name))
    error_message = "name must be 3-22 characters: lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must look like us-east-1."
  }
}

variable "tags" {
  description = "Extra tags applied to every resource."
  type        = map(string)
  default     = {}
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC; the two private subnets are carved from it."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr)) && tonumber(split("/", var.vpc_cidr)[1]) <= 24
    error_message = "vpc_cidr must be a valid IPv4 CIDR block of /24 or larger."
  }
}

variable "lambda_runtime" {
  description = "Python runtime of both functions: python3.12 or python3.13, which run on Amazon Linux 2023 (glibc 2.34). The pipeline builds lib/ for its Python and that glibc, read from the deployed function. The code needs Python 3.11+, and python3.11 on AWS runs on Amazon Linux 2 (glibc 2.26), where manylinux_2_28 wheels such as torch's cannot load; python3.11 is accepted only with local_emulator = true."
  type        = string
  default     = "python3.12"

  validation {
    condition     = contains(["python3.12", "python3.13"], var.lambda_runtime) || (var.local_emulator && var.lambda_runtime == "python3.11")
    error_message = "lambda_runtime must be python3.12 or python3.13 (Amazon Linux 2023, glibc 2.34): the code needs Python 3.11+, and python3.11 on AWS runs on Amazon Linux 2 (glibc 2.26), where lib/'s manylinux_2_28 wheels cannot load. python3.11 is accepted only with local_emulator = true, which the local stack sets."
  }
}

variable "local_emulator" {
  description = "Set only by the local stack (make against the emulator, the tests), whose data plane runs the functions on this machine's Python, which may be 3.11: it lets lambda_runtime be python3.11. Never set it on AWS; the caller-identity check (versions.tf) refuses it in any account but the emulator's."
  type        = bool
  default     = false
}

variable "lambda_architecture" {
  description = "Instruction set of both functions; lib/ on EFS must be built for the same platform."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.lambda_architecture)
    error_message = "lambda_architecture must be x86_64 or arm64."
  }
}

variable "inference_memory_mb" {
  description = "Memory of the inference function in MB (CPU scales with it: one vCPU per 1769 MB)."
  type        = number
  default     = 2048

  validation {
    condition     = var.inference_memory_mb >= 128 && var.inference_memory_mb <= 10240 && floor(var.inference_memory_mb) == var.inference_memory_mb
    error_message = "inference_memory_mb must be a whole number between 128 and 10240."
  }
}

variable "inference_timeout_s" {
  description = "Timeout of the inference function in seconds (API Gateway gives up after 30 s)."
  type        = number
  default     = 30

  validation {
    condition     = var.inference_timeout_s >= 1 && var.inference_timeout_s <= 30
    error_message = "inference_timeout_s must be between 1 and 30 (the HTTP API integration limit)."
  }
}

variable "inference_reserved_concurrency" {
  description = "Reserved concurrency of the inference function, or null (the default) for none. A reservation is a hard cap on parallel executions, but AWS refuses one that leaves fewer than 100 unreserved executions in the account, and new accounts start with a concurrency quota of about 10, so the first apply would fail; without it the API stage throttle (api_throttle_rate_limit, api_throttle_burst_limit) caps the cost. Set it once the account's quota is raised (Service Quotas, 'Concurrent executions') and a hard cap matters more than sharing the pool with other functions."
  type        = number
  default     = null

  validation {
    condition     = var.inference_reserved_concurrency == null ? true : (var.inference_reserved_concurrency >= 1 && var.inference_reserved_concurrency <= 1000 && floor(var.inference_reserved_concurrency) == var.inference_reserved_concurrency)
    error_message = "inference_reserved_concurrency must be null or a whole number between 1 and 1000."
  }
}

variable "syncer_reserved_concurrency" {
  description = "Reserved concurrency of the syncer, null (the default) or 1. Releases never depend on it: the syncer takes a lock file on EFS before it writes, so a second sync waits for the first and answers busy if it waits too long. 1 makes Lambda refuse a second concurrent sync at once (throttled) instead; it needs an account quota of at least 101 (see inference_reserved_concurrency)."
  type        = number
  default     = null

  validation {
    condition     = var.syncer_reserved_concurrency == null ? true : var.syncer_reserved_concurrency == 1
    error_message = "syncer_reserved_concurrency must be null or 1."
  }
}

variable "syncer_memory_mb" {
  description = "Memory of the syncer function in MB."
  type        = number
  default     = 1024

  validation {
    condition     = var.syncer_memory_mb >= 128 && var.syncer_memory_mb <= 10240 && floor(var.syncer_memory_mb) == var.syncer_memory_mb
    error_message = "syncer_memory_mb must be a whole number between 128 and 10240."
  }
}

variable "syncer_timeout_s" {
  description = "Timeout of the syncer function in seconds; unpacking a multi-GB lib/ onto EFS takes minutes."
  type        = number
  default     = 900

  validation {
    condition     = var.syncer_timeout_s >= 1 && var.syncer_timeout_s <= 900
    error_message = "syncer_timeout_s must be between 1 and 900."
  }
}

variable "syncer_ephemeral_storage_mb" {
  description = "Size of the syncer's /tmp in MB, where a release bundle is staged before it is verified."
  type        = number
  default     = 4096

  validation {
    condition     = var.syncer_ephemeral_storage_mb >= 512 && var.syncer_ephemeral_storage_mb <= 10240
    error_message = "syncer_ephemeral_storage_mb must be between 512 and 10240."
  }
}

variable "inference_package" {
  description = "The inference function's code zip, built by `make package`: absolute path and base64-encoded sha256."
  type = object({
    path   = string
    sha256 = string
  })

  validation {
    condition     = endswith(var.inference_package.path, ".zip") && can(regex("^[A-Za-z0-9+/]{43}=$", var.inference_package.sha256))
    error_message = "inference_package needs a .zip path and a base64-encoded sha256 (44 characters)."
  }
}

variable "syncer_package" {
  description = "The syncer function's code zip, built by `make package`: absolute path and base64-encoded sha256."
  type = object({
    path   = string
    sha256 = string
  })

  validation {
    condition     = endswith(var.syncer_package.path, ".zip") && can(regex("^[A-Za-z0-9+/]{43}=$", var.syncer_package.sha256))
    error_message = "syncer_package needs a .zip path and a base64-encoded sha256 (44 characters)."
  }
}

variable "initial_release_id" {
  description = "Release the inference function names before the pipeline has promoted one; the pipeline owns the value afterwards."
  type        = string
  default     = "none"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,64}$", var.initial_release_id))
    error_message = "initial_release_id may hold only letters, digits, '.', '_' and '-' (at most 64)."
  }
}

variable "efs_mount_path" {
  description = "Where both functions mount EFS (Lambda requires a path under /mnt/)."
  type        = string
  default     = "/mnt/ml"

  validation {
    condition     = can(regex("^/mnt/[A-Za-z0-9._-]+$", var.efs_mount_path))
    error_message = "efs_mount_path must be a single directory under /mnt/, for example /mnt/ml."
  }
}

variable "efs_posix_uid" {
  description = "POSIX user id that owns the release tree on EFS (the syncer writes as this user)."
  type        = number
  default     = 1000

  validation {
    condition     = var.efs_posix_uid >= 1 && var.efs_posix_uid < 65534
    error_message = "efs_posix_uid must be between 1 and 65533 (not root)."
  }
}

variable "efs_reader_uid" {
  description = "POSIX user id the inference function reads as; it differs from efs_posix_uid so the file modes make the tree read-only to it."
  type        = number
  default     = 1001

  validation {
    condition     = var.efs_reader_uid >= 1 && var.efs_reader_uid < 65534
    error_message = "efs_reader_uid must be between 1 and 65533 (not root)."
  }
}

variable "log_retention_days" {
  description = "Retention of every CloudWatch log group, in days."
  type        = number
  default     = 14

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of the values CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, ...)."
  }
}

variable "api_throttle_rate_limit" {
  description = "Steady-state requests per second the API stage admits."
  type        = number
  default     = 10

  validation {
    condition     = var.api_throttle_rate_limit > 0 && var.api_throttle_rate_limit <= 10000
    error_message = "api_throttle_rate_limit must be between 0 (exclusive) and 10000."
  }
}

variable "api_throttle_burst_limit" {
  description = "Burst of requests the API stage admits above the steady rate."
  type        = number
  default     = 20

  validation {
    condition     = var.api_throttle_burst_limit >= 1 && var.api_throttle_burst_limit <= 5000 && floor(var.api_throttle_burst_limit) == var.api_throttle_burst_limit
    error_message = "api_throttle_burst_limit must be a whole number between 1 and 5000."
  }
}

variable "extra_cors_origins" {
  description = "Origins allowed to call the API besides the CloudFront front end, for example http://127.0.0.1:8080 for local development."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for o in var.extra_cors_origins : can(regex("^https?://[^/*]+$", o))])
    error_message = "Each extra CORS origin must be scheme://host[:port] with no path and no wildcard."
  }
}

variable "frontend_dir" {
  description = "Directory holding the static web page (index.html) uploaded to the front-end bucket; empty means the repository's web/."
  type        = string
  default     = ""
}

variable "cloudfront_price_class" {
  description = "CloudFront price class of the front end (PriceClass_100 is the cheapest)."
  type        = string
  default     = "PriceClass_100"

  validation {
    condition     = contains(["PriceClass_100", "PriceClass_200", "PriceClass_All"], var.cloudfront_price_class)
    error_message = "cloudfront_price_class must be PriceClass_100, PriceClass_200 or PriceClass_All."
  }
}

variable "api_authorizer" {
  description = "Who may call the API: none (public; the stage throttle caps the cost, with inference_reserved_concurrency where set), jwt (a bearer token from jwt_issuer for one of jwt_audience) or iam (SigV4-signed requests from principals allowed execute-api:Invoke). It covers every route, /health included, since they all spend the same capped request rate; CORS preflight is answered by API Gateway and never needs it."
  type        = string
  default     = "none"

  validation {
    condition     = contains(["none", "jwt", "iam"], var.api_authorizer)
    error_message = "api_authorizer must be none, jwt or iam."
  }
}

variable "jwt_issuer" {
  description = "Issuer (iss) of the JWTs the API accepts when api_authorizer is jwt, for example https://cognito-idp.us-east-1.amazonaws.com/<user-pool-id>; required then, unused otherwise."
  type        = string
  default     = ""

  validation {
    condition     = var.jwt_issuer == "" || can(regex("^https://[^\\s/]+(/[^\\s]*)?$", var.jwt_issuer))
    error_message = "jwt_issuer must be an https:// URL (API Gateway fetches the issuer's keys from it)."
  }
}

variable "jwt_audience" {
  description = "Audiences (aud, or client_id for Cognito access tokens) the API accepts when api_authorizer is jwt; at least one is required then, unused otherwise."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.jwt_audience : trimspace(a) != ""])
    error_message = "jwt_audience entries must not be empty."
  }
}

variable "circleci_oidc" {
  description = "Opt-in: an IAM OIDC provider for CircleCI (https://oidc.circleci.com/org/<org_id>) and a deploy role that only this project's jobs on `branch` can assume, with the managed policies in policy_arns attached. null (the default) creates neither."
  type = object({
    org_id      = string
    project_id  = string
    branch      = optional(string, "main")
    policy_arns = optional(list(string), [])
  })
  default = null

  validation {
    condition = var.circleci_oidc == null ? true : alltrue([
      can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.circleci_oidc.org_id)),
      can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", var.circleci_oidc.project_id)),
      can(regex("^[A-Za-z0-9._/-]+$", var.circleci_oidc.branch)),
      alltrue([for a in var.circleci_oidc.policy_arns : can(regex("^arn:aws[a-z-]*:iam::(aws|[0-9]{12}):policy/.+$", a))]),
    ])
    error_message = "circleci_oidc needs org_id and project_id as CircleCI UUIDs (Organization/Project Settings), a branch name without wildcards, and policy_arns of IAM managed policies."
  }
}
