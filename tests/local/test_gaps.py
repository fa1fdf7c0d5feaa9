"""Each gap fill of the emulator: the behaviour is right with it and wrong without it.

Runs moto in-process (mock_aws), so a fill can be applied and removed per test.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from local.emulator import gaps

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def _in_process_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "MOTO_IAM_LOAD_MANAGED_POLICIES"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    yield


def _client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def efs_delete_file_system_policy() -> None:
    efs = _client("efs")
    fs_id = efs.create_file_system(CreationToken="gap")["FileSystemId"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": "elasticfilesystem:ClientMount",
                "Resource": "*",
            }
        ],
    }
    efs.put_file_system_policy(FileSystemId=fs_id, Policy=json.dumps(policy))
    efs.delete_file_system_policy(FileSystemId=fs_id)
    with pytest.raises(ClientError, match="PolicyNotFound"):
        efs.describe_file_system_policy(FileSystemId=fs_id)


def efs_put_backup_policy() -> None:
    efs = _client("efs")
    fs_id = efs.create_file_system(CreationToken="gap")["FileSystemId"]
    efs.put_backup_policy(FileSystemId=fs_id, BackupPolicy={"Status": "ENABLED"})
    assert efs.describe_backup_policy(FileSystemId=fs_id)["BackupPolicy"]["Status"] == "ENABLED"
    efs.put_backup_policy(FileSystemId=fs_id, BackupPolicy={"Status": "DISABLED"})
    assert efs.describe_backup_policy(FileSystemId=fs_id)["BackupPolicy"]["Status"] == "DISABLED"


def _lambda_role() -> str:
    iam = _client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    return str(
        iam.create_role(RoleName="gap-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"][
            "Arn"
        ]
    )


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", "def handle(event, context):\n    return {}\n")
    return buf.getvalue()


def _create_function(lam: Any, **extra: Any) -> None:
    """The function "gap", with ``extra`` CreateFunction parameters."""
    lam.create_function(
        FunctionName="gap",
        Runtime="python3.11",
        Role=_lambda_role(),
        Handler="handler.handle",
        Code={"ZipFile": _zip()},
        **extra,
    )


def lambda_file_system_configs() -> None:
    lam = _client("lambda")
    configs = [
        {
            "Arn": (
                "arn:aws:elasticfilesystem:us-east-1:123456789012:"
                "access-point/fsap-0123456789abcdef0"
            ),
            "LocalMountPath": "/mnt/ml",
        }
    ]
    _create_function(lam, FileSystemConfigs=configs)
    assert lam.get_function(FunctionName="gap")["Configuration"]["FileSystemConfigs"] == configs
    version = lam.publish_version(FunctionName="gap")["Version"]
    published = lam.get_function(FunctionName="gap", Qualifier=version)["Configuration"]
    assert published["FileSystemConfigs"] == configs


def lambda_create_alias_resent() -> None:
    lam = _client("lambda")
    _create_function(lam, Publish=True)
    alias = {"FunctionName": "gap", "Name": "live", "FunctionVersion": "1", "Description": "d"}
    first = lam.create_alias(**alias)
    assert lam.create_alias(**alias)["AliasArn"] == first["AliasArn"]  # the same request again
    # Anything else that names an existing alias is still the conflict AWS answers.
    with pytest.raises(ClientError, match="ConflictException"):
        lam.create_alias(**{**alias, "Description": "another"})


def iam_managed_policies() -> None:
    iam = _client("iam")
    arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
    assert (
        iam.get_policy(PolicyArn=arn)["Policy"]["PolicyName"] == "AWSLambdaVPCAccessExecutionRole"
    )


def policy_condition_not_met_is_neutral() -> None:
    s3 = _client("s3")
    s3.create_bucket(Bucket="gap-bucket")
    tls_only = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyWithoutTLS",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": ["arn:aws:s3:::gap-bucket", "arn:aws:s3:::gap-bucket/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
    s3.put_bucket_policy(Bucket="gap-bucket", Policy=json.dumps(tls_only))
    s3.put_object(Bucket="gap-bucket", Key="index.html", Body=b"<html></html>")
    assert s3.head_object(Bucket="gap-bucket", Key="index.html")["ContentLength"] == 13


def ec2_rule_descriptions() -> None:
    ec2 = _client("ec2")
    vpc_id = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    efs_sg = ec2.create_security_group(GroupName="efs", Description="efs", VpcId=vpc_id)["GroupId"]
    fn_sg = ec2.create_security_group(GroupName="fn", Description="fn", VpcId=vpc_id)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=efs_sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 2049,
                "ToPort": 2049,
                "UserIdGroupPairs": [{"GroupId": fn_sg, "Description": "NFS from the functions"}],
            }
        ],
    )
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [efs_sg]}])
    ingress = [r for r in rules["SecurityGroupRules"] if not r["IsEgress"]]
    assert [r.get("Description") for r in ingress] == ["NFS from the functions"]
    assert ingress[0]["ReferencedGroupInfo"]["GroupId"] == fn_sg


def _distribution(cloudfront: Any) -> dict[str, Any]:
    origin = {
        "Id": "frontend-bucket",
        "DomainName": "frontend.s3.us-east-1.amazonaws.com",
        "OriginAccessControlId": "E2OACEXAMPLE",
        "S3OriginConfig": {"OriginAccessIdentity": ""},
    }
    config = {
        "CallerReference": "gap",
        "Comment": "gap",
        "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [origin]},
        "DefaultCacheBehavior": {
            "TargetOriginId": "frontend-bucket",
            "ViewerProtocolPolicy": "redirect-to-https",
            "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
            "MinTTL": 0,
        },
        "ViewerCertificate": {"CloudFrontDefaultCertificate": True},
    }
    dist_id = cloudfront.create_distribution(DistributionConfig=config)["Distribution"]["Id"]
    return dict(cloudfront.get_distribution(Id=dist_id)["Distribution"]["DistributionConfig"])


def cloudfront_origin_access_control() -> None:
    config = _distribution(_client("cloudfront"))
    assert config["Origins"]["Items"][0]["OriginAccessControlId"] == "E2OACEXAMPLE"


def cloudfront_default_certificate() -> None:
    config = _distribution(_client("cloudfront"))
    assert config["ViewerCertificate"]["CloudFrontDefaultCertificate"] is True
    assert "SSLSupportMethod" not in config["ViewerCertificate"]


def apigatewayv2_update_stage() -> None:
    api = _client("apigatewayv2")
    api_id = api.create_api(Name="gap", ProtocolType="HTTP")["ApiId"]
    api.create_stage(
        ApiId=api_id,
        StageName="$default",
        DefaultRouteSettings={"ThrottlingRateLimit": 10.0, "ThrottlingBurstLimit": 20},
    )
    api.update_stage(
        ApiId=api_id,
        StageName="$default",
        DefaultRouteSettings={"ThrottlingRateLimit": 5.0, "ThrottlingBurstLimit": 7},
    )
    settings = api.get_stage(ApiId=api_id, StageName="$default")["DefaultRouteSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (5.0, 7)


def s3_delete_marker_dispose() -> None:
    # What `terraform destroy` does to the artifacts bucket after deploys: versioning goes
    # first (suspended), then force_destroy deletes every key, the deploy lock's included,
    # whose versions end in a delete marker.
    s3 = _client("s3")
    s3.create_bucket(Bucket="gap-bucket")
    s3.put_bucket_versioning(Bucket="gap-bucket", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket="gap-bucket", Key="deploy.lock", Body=b"held")
    s3.delete_object(Bucket="gap-bucket", Key="deploy.lock")
    s3.put_bucket_versioning(Bucket="gap-bucket", VersioningConfiguration={"Status": "Suspended"})
    s3.delete_object(Bucket="gap-bucket", Key="deploy.lock")
    assert "Contents" not in s3.list_objects_v2(Bucket="gap-bucket")


EXERCISES: dict[str, Callable[[], None]] = {
    "efs_delete_file_system_policy": efs_delete_file_system_policy,
    "efs_put_backup_policy": efs_put_backup_policy,
    "lambda_file_system_configs": lambda_file_system_configs,
    "lambda_create_alias_resent": lambda_create_alias_resent,
    "iam_managed_policies": iam_managed_policies,
    "policy_condition_not_met_is_neutral": policy_condition_not_met_is_neutral,
    "ec2_rule_descriptions": ec2_rule_descriptions,
    "cloudfront_origin_access_control": cloudfront_origin_access_control,
    "cloudfront_default_certificate": cloudfront_default_certificate,
    "apigatewayv2_update_stage": apigatewayv2_update_stage,
    "s3_delete_marker_dispose": s3_delete_marker_dispose,
}


def test_every_gap_has_an_exercise() -> None:
    assert set(EXERCISES) == {gap.name for gap in gaps.GAPS}


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_gap_filled(name: str) -> None:
    with gaps.filled(name), mock_aws():
        EXERCISES[name]()


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_gap_open_without_the_fill(name: str) -> None:
    # An exception inside moto's backend reaches an in-process caller as itself (the
    # server answers 500 for it).
    expected = (AssertionError, ClientError, NotImplementedError, KeyError, AttributeError)
    with mock_aws(), pytest.raises(expected):
        EXERCISES[name]()


def test_register_all_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown gap"):
        gaps.register_all({"no_such_gap"})


def test_fills_undo_cleanly() -> None:
    from moto.efs.responses import EFSResponse

    assert not hasattr(EFSResponse, "delete_file_system_policy")
    undo = gaps.register_all(set())
    assert hasattr(EFSResponse, "delete_file_system_policy")
    undo()
    assert not hasattr(EFSResponse, "delete_file_system_policy")
