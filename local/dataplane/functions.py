"""What the emulator says a function is, resolved into something a local process can run.

Reads handler, runtime, memory, timeout, environment, reserved concurrency and the file
system config of a function (or of the version an alias points at) from the emulator;
finds the code zip that was deployed by its CodeSha256; maps each EFS access point to a
folder that stands for the file system.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ci import paths
from ci.aws import client
from local.dataplane.limits import MB_PER_VCPU
from local.dataplane.runner import EFS_ROOTS_VARIABLE

REPO_ROOT = Path(__file__).resolve().parents[2]
CODE_CACHE = REPO_ROOT / ".state" / "code"


class FunctionNotRunnable(RuntimeError):
    """The function cannot be run locally (no matching code zip, unknown access point, ...)."""


@dataclass(frozen=True)
class Mount:
    """An EFS access point as the function sees it and where it lives on this machine."""

    local_mount_path: str  # e.g. /mnt/ml, inside the function
    host_path: Path  # the folder standing for the access point's root directory
    read_only: bool


@dataclass(frozen=True)
class FunctionSpec:
    """Everything needed to run one version of a function locally."""

    name: str
    version: str
    handler: str
    runtime: str
    memory_mb: int
    timeout_s: int
    environment: dict[str, str]
    code_sha256: str
    reserved_concurrency: int | None
    mounts: tuple[Mount, ...] = field(default_factory=tuple)

    def vcpus(self) -> int:
        """Lambda's CPU share for this memory size (1 vCPU per 1769 MB, up to 6), capped here."""
        # Threads: the vCPUs a function sees (its CPU time is MemorySize / 1769 of a core,
        # which limits.py enforces where it can).
        lambda_vcpus = max(1, min(6, -(-self.memory_mb // MB_PER_VCPU)))
        return max(1, min(lambda_vcpus, os.cpu_count() or 1))

    def process_environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of an execution environment's process.

        Values that name a mount path inside the function are rewritten to the host folder,
        which is how the code finds "EFS" without a real mount.
        """
        env = dict(base or {})
        for key, value in self.environment.items():
            env[key] = self._map_path(value)
        threads = str(self.vcpus())
        for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[key] = threads
        env["AWS_LAMBDA_FUNCTION_NAME"] = self.name
        env["AWS_LAMBDA_FUNCTION_VERSION"] = self.version
        env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(self.memory_mb)
        if self.mounts:
            # The runner enforces EFS's hard-link limit in these folders.
            env[EFS_ROOTS_VARIABLE] = os.pathsep.join(str(m.host_path) for m in self.mounts)
        return env

    def _map_path(self, value: str) -> str:
        for mount in self.mounts:
            if value == mount.local_mount_path or value.startswith(mount.local_mount_path + "/"):
                return str(mount.host_path) + value[len(mount.local_mount_path) :]
        return value


def _efs_host_folder(efs_root: Path, access_point: dict[str, Any]) -> Path:
    root_dir = (access_point.get("RootDirectory") or {}).get("Path") or "/"
    return efs_root / str(access_point["FileSystemId"]) / str(root_dir).lstrip("/")


def _read_only(access_point: dict[str, Any]) -> bool:
    """Read-only when the access point's user does not own its root directory.

    On AWS the inference access point's user differs from the tree's owner and the
    mode is 0755, so it cannot write; the same rule decides here.
    """
    posix = access_point.get("PosixUser") or {}
    creation = (access_point.get("RootDirectory") or {}).get("CreationInfo") or {}
    if not posix or not creation:
        return False
    owner_writes = int(str(creation.get("Permissions", "0755")), 8) & 0o200
    return bool(posix.get("Uid") != creation.get("OwnerUid") or not owner_writes)


def resolve(
    function_name: str,
    qualifier: str | None = None,
    efs_root: Path | None = None,
) -> FunctionSpec:
    """Read a function (or alias/version) from the emulator into a FunctionSpec."""
    efs_root = efs_root or paths.efs_root()
    lam = client("lambda")
    kwargs: dict[str, Any] = {"FunctionName": function_name}
    if qualifier:
        kwargs["Qualifier"] = qualifier
    config = lam.get_function_configuration(**kwargs)
    try:
        concurrency = lam.get_function_concurrency(FunctionName=function_name).get(
            "ReservedConcurrentExecutions"
        )
    except Exception:  # the emulator may not know; unlimited then
        concurrency = None
    mounts: list[Mount] = []
    if config.get("FileSystemConfigs"):
        efs = client("efs")
        for fsc in config["FileSystemConfigs"]:
            ap_id = fsc["Arn"].rsplit("/", 1)[-1]
            found = efs.describe_access_points(AccessPointId=ap_id)["AccessPoints"]
            if not found:
                raise FunctionNotRunnable(f"access point {ap_id} of {function_name} does not exist")
            access_point = found[0]
            host = _efs_host_folder(efs_root, access_point)
            host.mkdir(parents=True, exist_ok=True)
            mounts.append(Mount(fsc["LocalMountPath"], host, _read_only(access_point)))
    runtime = str(config["Runtime"])
    here = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if runtime != here:
        raise FunctionNotRunnable(
            f"{function_name} declares {runtime} but the local data plane runs {here}; "
            f"deploy to the emulator with lambda_runtime={here} local_emulator=true (make does)"
        )
    return FunctionSpec(
        name=config["FunctionName"],
        version=str(config.get("Version", "$LATEST")),
        handler=config["Handler"],
        runtime=config["Runtime"],
        memory_mb=int(config.get("MemorySize", 128)),
        timeout_s=int(config.get("Timeout", 3)),
        environment=dict((config.get("Environment") or {}).get("Variables") or {}),
        code_sha256=config["CodeSha256"],
        reserved_concurrency=concurrency,
        mounts=tuple(mounts),
    )


def _b64sha256(path: Path) -> str:
    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


def code_dir(spec: FunctionSpec, zip_dir: Path | None = None) -> Path:
    """The deployed code, unpacked: the zip whose sha256 equals the function's CodeSha256."""
    zip_dir = zip_dir or paths.lambda_zip_dir()
    target = CODE_CACHE / spec.code_sha256.replace("/", "_").replace("+", "-").rstrip("=")
    if target.is_dir():
        return target
    for candidate in sorted(zip_dir.rglob("*.zip")):
        if _b64sha256(candidate) == spec.code_sha256:
            staging = target.with_name(target.name + f".tmp-{os.getpid()}")
            with zipfile.ZipFile(candidate) as zf:
                zf.extractall(staging)
            staging.rename(target)
            return target
    raise FunctionNotRunnable(
        f"no zip in {zip_dir} has the CodeSha256 {spec.code_sha256} of {spec.name}; "
        "run `make package tf-apply` so the deployed code and the local zips agree"
    )
