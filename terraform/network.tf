# A private-only VPC: the functions reach EFS through mount targets and S3
# through a gateway endpoint, so no NAT gateway (about 33 USD a month) is needed.

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:The stack takes the first two available zones of whichever region it is deployed to, so no zone names are hard-coded per region; each subnet records its zone in state, so a change to the list shows in plan as a subnet replacement, never silently
  state = "available"
}

locals {
  azs = slice(data.aws_availability_zones.available.names, 0, 2)
}

resource "aws_vpc" "main" {
  #checkov:skip=CKV2_AWS_11:Flow logs need a log group, a role for the service and per-GB ingestion; the VPC has no internet or NAT gateway, and its security groups admit only NFS between the functions and EFS and HTTPS to the S3 gateway endpoint. Turn on when an audit needs network records
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true # EFS mount targets are addressed by DNS name

  tags = { Name = "${var.name}-vpc" }
}

resource "aws_subnet" "private" {
  count = 2

  vpc_id                  = aws_vpc.main.id
  availability_zone       = local.azs[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 4, count.index)
  map_public_ip_on_launch = false

  tags = { Name = "${var.name}-private-${local.azs[count.index]}" }
}

resource "aws_route_table" "private" {
  vpc_id = aws_vpc.main.id

  tags = { Name = "${var.name}-private" }
}

resource "aws_route_table_association" "private" {
  count = 2

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private.id
}

resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.main.id
  service_name      = "com.amazonaws.${data.aws_region.current.name}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.private.id]

  tags = { Name = "${var.name}-s3" }
}

# The default security group admits nothing, so nothing lands in it by accident.
resource "aws_default_security_group" "main" {
  vpc_id = aws_vpc.main.id
}

resource "aws_security_group" "lambda" {
  name        = "${var.name}-lambda"
  description = "Both functions: egress to EFS and to S3 only"
  vpc_id      = aws_vpc.main.id
}

resource "aws_security_group" "efs" {
  name        = "${var.name}-efs"
  description = "EFS mount targets: NFS from the functions only"
  vpc_id      = aws_vpc.main.id
}

resource "aws_vpc_security_group_ingress_rule" "efs_nfs_from_lambda" {
  security_group_id            = aws_security_group.efs.id
  description                  = "NFS from the functions"
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  referenced_security_group_id = aws_security_group.lambda.id
}

resource "aws_vpc_security_group_egress_rule" "lambda_nfs_to_efs" {
  security_group_id            = aws_security_group.lambda.id
  description                  = "NFS to the EFS mount targets"
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  referenced_security_group_id = aws_security_group.efs.id
}

resource "aws_vpc_security_group_egress_rule" "lambda_https_to_s3" {
  security_group_id = aws_security_group.lambda.id
  description       = "HTTPS to S3 through the gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = aws_vpc_endpoint.s3.prefix_list_id
}
