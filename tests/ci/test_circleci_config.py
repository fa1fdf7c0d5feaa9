"""`.circleci/config.yml`: the schema, the workflow, and no drift from what `make pipeline` runs.

The drift test reads every `run` step of every job (through the config's own
`commands:`, `when`/`unless` and workflow `pre-steps`/`post-steps`), splits each
script into simple shell commands (`&&`, `||`, `;`, `|`, line continuations,
leading `NAME=value` assignments) and accepts only:

* `make TARGET... [VAR=value...]`, every TARGET a `target:` line of the Makefile
  (read now, so a target the config needs and the Makefile lacks fails the test);
* `python -m ci.MODULE ...` or `.venv/bin/python -m ci.MODULE ...`, where
  `ci/MODULE.py` exists and has a `def main(` and an `if __name__ == "__main__":`
  guard;
* an installer step of ALLOWED_INSTALLERS: Terraform from releases.hashicorp.com,
  `mkdir -p`, and `echo`/`printf`/`cat` writing a file under /tmp or
  `export NAME=...` lines to $BASH_ENV (how the OIDC credentials are set up).

Anything else (another command, an orb's step the test cannot see into, a heredoc,
a command substitution) fails it.

CIRCLECI_DRIFT_ALLOW_MISSING=1 turns a missing ci/ module or Makefile target into a
warning instead of a failure, so the config can be checked while the modules and
targets it names are still being written. CI never sets it; do not set it in
.ci/run or the Makefile.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_PATH = REPO_ROOT / ".circleci" / "config.yml"
SCHEMA_PATH = REPO_ROOT / "ci" / "schemas" / "circleciconfig.json"
MAKEFILE_PATH = REPO_ROOT / "Makefile"

ALLOW_MISSING = os.environ.get("CIRCLECI_DRIFT_ALLOW_MISSING") == "1"

MAIN = "main"
AWS_CONTEXT = "aws-deploy"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# Deploy jobs run on main only; those that change AWS also take the OIDC context and
# share one serial group. build only reads AWS (the function's runtime, the files EFS
# holds), so it takes the context but is not serialised.
AWS_JOBS = ("publish", "promote", "smoke", "prune", "terraform-plan", "terraform-apply")
CREDENTIAL_JOBS = ("build", *AWS_JOBS)
DEPLOY_JOBS = ("build", *AWS_JOBS)

BUILTIN_STEPS = {
    "checkout",
    "run",
    "restore_cache",
    "save_cache",
    "persist_to_workspace",
    "attach_workspace",
    "store_artifacts",
    "store_test_results",
    "add_ssh_keys",
    "setup_remote_docker",
    "when",
    "unless",
}
PYTHONS = ("python", "python3", ".venv/bin/python")
SEPARATORS = {"&&", "||", ";", "|", "&", ";;"}
REDIRECTS = {">", ">>", "<", ">|", "&>", ">&"}
_VERSION = r"\d+\.\d+\.\d+"
ALLOWED_INSTALLERS: dict[str, re.Pattern[str]] = {
    "terraform download": re.compile(
        rf"curl -fsSLo /tmp/terraform\.zip https://releases\.hashicorp\.com/terraform/"
        rf"{_VERSION}/terraform_{_VERSION}_linux_amd64\.zip"
    ),
    "terraform unzip": re.compile(r"sudo unzip -o /tmp/terraform\.zip -d /usr/local/bin terraform"),
    "mkdir": re.compile(r"mkdir -p /tmp/[\w./-]+"),
}
FILE_WRITERS = ("echo", "printf", "cat")
# One exported variable per line; the value may hold ${VAR:?message} but no command separators.
BASH_ENV_LINE = re.compile(r"export [A-Z_][A-Z0-9_]*=[^;&|<>`\n]*")


@dataclass
class Drift:
    """What the drift check found: errors always fail; missing ones fail unless allowed."""

    errors: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    modules: set[str] = field(default_factory=set)
    targets: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Command:
    """One simple shell command: its words and where it redirects output."""

    argv: tuple[str, ...]
    writes_to: tuple[str, ...] = ()


def load_config(path: Path = CONFIG_PATH) -> dict[str, Any]:
    config = yaml.safe_load(path.read_text())
    assert isinstance(config, dict)
    return config


def makefile_targets(path: Path = MAKEFILE_PATH) -> set[str]:
    """Every `target:` the Makefile defines (not `VAR := value`, not special targets)."""
    targets: set[str] = set()
    for line in path.read_text().splitlines():
        m = re.match(
            r"^([A-Za-z0-9_][A-Za-z0-9_.%/-]*(?:[ \t]+[A-Za-z0-9_.%/-]+)*)[ \t]*:(?![:=])", line
        )
        if m:
            targets.update(m.group(1).split())
    return targets


def split_commands(script: str) -> tuple[list[Command], list[str]]:
    """Split a run script into simple commands; second item: constructs refused outright."""
    refused: list[str] = []
    # << pipeline.x >> / << parameters.x >> are CircleCI's, expanded before any shell sees them.
    script = re.sub(r"<<\s*[\w.-]+\s*>>", "CIRCLECI_PARAMETER", script)
    script = re.sub(r"\\\r?\n", " ", script)
    commands: list[Command] = []
    for line in script.splitlines():
        if not line.strip():
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError as exc:
            refused.append(f"cannot parse {line!r}: {exc}")
            continue
        words: list[str] = []
        writes: list[str] = []
        pending_redirect: str | None = None
        for token in [*tokens, ";"]:
            if pending_redirect is not None:
                if token in SEPARATORS or token in REDIRECTS:
                    refused.append(f"redirection without a target in {line!r}")
                elif pending_redirect != "<":
                    writes.append(token)
                pending_redirect = None
                continue
            if token in SEPARATORS:
                if words:
                    commands.append(Command(tuple(words), tuple(writes)))
                words, writes = [], []
            elif token in REDIRECTS:
                pending_redirect = token
            elif token in {"(", ")", "<<", "<<<", "{", "}"} or token.startswith(("<<", "((")):
                refused.append(f"{token!r} (subshell, group or heredoc) in {line!r}")
            elif "$(" in token or "`" in token:
                refused.append(f"command substitution in {line!r}")
            else:
                words.append(token)
    # Leading NAME=value assignments only set the environment of the command.
    stripped: list[Command] = []
    for command in commands:
        argv = list(command.argv)
        while argv and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[0]):
            argv.pop(0)
        if argv:
            stripped.append(Command(tuple(argv), command.writes_to))
    return stripped, refused


def _module_problem(path: Path) -> str | None:
    text = path.read_text()
    lacks = []
    if not re.search(r"^def main\(", text, re.MULTILINE):
        lacks.append("a top-level `def main(`")
    if not re.search(r"""^if __name__ == ["']__main__["']\s*:""", text, re.MULTILINE):
        lacks.append('an `if __name__ == "__main__":` guard')
    return f"{path.relative_to(path.parents[1])} lacks " + " and ".join(lacks) if lacks else None


def check_command(
    command: Command, where: str, drift: Drift, targets: set[str], repo_root: Path
) -> None:
    """Record in drift what is wrong with one simple command, if anything."""
    argv = command.argv
    text = shlex.join(argv)
    program = argv[0]
    if program == "make":
        if command.writes_to:
            drift.errors.append(f"{where}: `{text}` redirects its output")
        args = argv[1:]
        options = [a for a in args if a.startswith("-")]
        if options:
            drift.errors.append(f"{where}: `{text}`: make options {options} are not allowed")
        named = [a for a in args if "=" not in a and not a.startswith("-")]
        if not named:
            drift.errors.append(f"{where}: `{text}` names no target")
        for target in named:
            drift.targets.add(target)
            if target not in targets:
                drift.missing.append(f"{where}: `{text}`: no target `{target}` in the Makefile")
        return
    if program in PYTHONS and len(argv) >= 3 and argv[1] == "-m":
        m = re.fullmatch(r"ci\.([a-z_][a-z0-9_]*)", argv[2])
        if m is None:
            drift.errors.append(f"{where}: `{text}` runs {argv[2]}, not a ci/ step")
            return
        drift.modules.add(m.group(1))
        path = repo_root / "ci" / f"{m.group(1)}.py"
        if not path.is_file():
            drift.missing.append(f"{where}: `{text}`: ci/{m.group(1)}.py does not exist")
            return
        problem = _module_problem(path)
        if problem:
            drift.errors.append(f"{where}: `{text}`: {problem}")
        return
    if program in FILE_WRITERS:
        if not command.writes_to:
            drift.errors.append(f"{where}: `{text}` writes to no file")
        for target in command.writes_to:
            if target == "$BASH_ENV":
                content = " ".join(argv[1:])
                if program != "echo" or not BASH_ENV_LINE.fullmatch(content):
                    drift.errors.append(
                        f'{where}: `{text}`: only `echo "export NAME=value"` may go to $BASH_ENV'
                    )
            elif not target.startswith("/tmp/"):
                drift.errors.append(f"{where}: `{text}` writes {target}, not $BASH_ENV or /tmp")
        return
    for pattern in ALLOWED_INSTALLERS.values():
        if pattern.fullmatch(text) and not command.writes_to:
            return
    drift.errors.append(
        f"{where}: `{text}` is neither `make <target>`, `python -m ci.<module>` "
        "nor an allowed installer step"
    )


def iter_run_scripts(config: dict[str, Any]) -> Iterator[tuple[str, str | None]]:
    """(where, script) for every run step; script None for a step the test cannot read."""
    commands: dict[str, Any] = config.get("commands") or {}

    def walk(steps: Any, where: str, seen: tuple[str, ...]) -> Iterator[tuple[str, str | None]]:
        for index, step in enumerate(steps or []):
            here = f"{where}[{index}]"
            if isinstance(step, str):
                name, body = step, None
            elif isinstance(step, dict) and len(step) == 1:
                ((name, body),) = step.items()
            else:
                yield f"{here}: malformed step {step!r}", None
                continue
            if name == "run":
                script = body.get("command") if isinstance(body, dict) else body
                yield here, script if isinstance(script, str) else None
            elif name in ("when", "unless"):
                yield from walk((body or {}).get("steps"), f"{here}.{name}", seen)
            elif name in commands:
                if name in seen:
                    yield f"{here}: command {name} calls itself", None
                    continue
                yield from walk(commands[name].get("steps"), f"{here}<{name}>", (*seen, name))
            elif name not in BUILTIN_STEPS:
                yield f"{here}: step `{name}` (an orb's?) cannot be checked", None

    for job_name, job in (config.get("jobs") or {}).items():
        yield from walk((job or {}).get("steps"), f"jobs.{job_name}", ())
    for wf_name, workflow in (config.get("workflows") or {}).items():
        if not isinstance(workflow, dict):
            continue
        for entry in workflow.get("jobs") or []:
            if not isinstance(entry, dict):
                continue
            ((job_name, spec),) = entry.items()
            for key in ("pre-steps", "post-steps"):
                steps = (spec or {}).get(key)
                if steps:
                    yield from walk(steps, f"workflows.{wf_name}.{job_name}.{key}", ())


def check_drift(
    config: dict[str, Any], repo_root: Path = REPO_ROOT, targets: set[str] | None = None
) -> Drift:
    """Every run step of the config against the Makefile, ci/ and ALLOWED_INSTALLERS."""
    if targets is None:
        targets = makefile_targets(repo_root / "Makefile")
    drift = Drift()
    for where, script in iter_run_scripts(config):
        if script is None:
            drift.errors.append(f"{where}: no command text to check")
            continue
        commands, refused = split_commands(script)
        drift.errors.extend(f"{where}: {r}" for r in refused)
        if not commands and not refused:
            drift.errors.append(f"{where}: empty run step")
        for command in commands:
            check_command(command, where, drift, targets, repo_root)
    return drift


def workflow_entries(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The `main` workflow's job entries by name (a bare name is an entry with no options)."""
    entries: dict[str, dict[str, Any]] = {}
    for entry in config["workflows"]["main"]["jobs"]:
        if isinstance(entry, str):
            entries[entry] = {}
        else:
            ((name, spec),) = entry.items()
            entries[name] = dict(spec or {})
    return entries


def requires(entry: dict[str, Any]) -> list[str]:
    value = entry.get("requires") or []
    return [value] if isinstance(value, str) else list(value)


def job_commands(config: dict[str, Any], job: str) -> list[str]:
    """The simple commands a job runs, in order, each joined back into one string."""
    out: list[str] = []
    for where, script in iter_run_scripts({**config, "workflows": {}}):
        if script is not None and where.startswith(f"jobs.{job}["):
            out.extend(shlex.join(c.argv) for c in split_commands(script)[0])
    return out


def step_names(config: dict[str, Any], job: str) -> list[str]:
    names = []
    for step in config["jobs"][job]["steps"]:
        names.append(step if isinstance(step, str) else next(iter(step)))
    return names


def step_bodies(config: dict[str, Any], job: str, kind: str) -> list[dict[str, Any]]:
    """Bodies of the job's `kind` steps, looking inside the config's own commands too."""
    commands = config.get("commands") or {}
    found: list[dict[str, Any]] = []

    def walk(steps: list[Any]) -> None:
        for step in steps:
            name = step if isinstance(step, str) else next(iter(step))
            if name == kind and isinstance(step, dict):
                found.append(step[kind])
            elif name in commands:
                walk(commands[name]["steps"])

    walk(config["jobs"][job]["steps"])
    return found


# --- the config itself ---------------------------------------------------------------


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return load_config()


def test_config_validates_against_the_circleci_schema(config: dict[str, Any]) -> None:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    errors = sorted(validator_cls(schema).iter_errors(config), key=lambda e: list(e.path))
    report = "\n".join(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors
    )
    assert not errors, f"{len(errors)} schema error(s):\n{report}"


def test_config_is_version_2_1(config: dict[str, Any]) -> None:
    assert config["version"] == 2.1


def test_every_run_step_is_a_make_target_or_a_ci_step(config: dict[str, Any]) -> None:
    drift = check_drift(config)
    assert drift.modules, "the drift check found no ci/ step at all: is it reading the config?"
    problems = list(drift.errors)
    if ALLOW_MISSING:
        for missing in drift.missing:
            warnings.warn(f"CIRCLECI_DRIFT_ALLOW_MISSING: {missing}", stacklevel=1)
    else:
        problems.extend(drift.missing)
    assert not problems, "CircleCI config drifted from the Makefile and ci/:\n" + "\n".join(
        problems
    )


def test_no_long_lived_aws_keys() -> None:
    text = CONFIG_PATH.read_text()
    for forbidden in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AKIA"):
        assert forbidden not in text, f"{forbidden} in .circleci/config.yml"
    assert "CIRCLE_OIDC_TOKEN_V2" in text
    assert "AWS_ROLE_ARN" in text
    assert "AWS_WEB_IDENTITY_TOKEN_FILE" in text


# --- the workflow ----------------------------------------------------------------------


def test_every_entry_is_a_defined_job_or_an_approval(config: dict[str, Any]) -> None:
    for name, entry in workflow_entries(config).items():
        if entry.get("type") == "approval":
            assert name not in config["jobs"], f"approval {name} shadows a job"
        else:
            assert name in config["jobs"], f"workflow runs undefined job {name}"


def test_test_job_runs_on_every_branch(config: dict[str, Any]) -> None:
    entry = workflow_entries(config)["test"]
    assert "filters" not in entry
    assert ".venv/bin/python -m ci.check" in " ".join(job_commands(config, "test"))


def test_deploy_jobs_run_on_main_only(config: dict[str, Any]) -> None:
    entries = workflow_entries(config)
    approvals = [n for n, e in entries.items() if e.get("type") == "approval"]
    for name in (*DEPLOY_JOBS, *approvals):
        branches = (entries[name].get("filters") or {}).get("branches") or {}
        only = branches.get("only")
        assert only in (MAIN, [MAIN]), f"{name} is not filtered to {MAIN} only: {branches}"
        assert "ignore" not in branches
    assert set(entries) == {"test", *DEPLOY_JOBS, *approvals}


def test_release_chain(config: dict[str, Any]) -> None:
    entries = workflow_entries(config)
    assert requires(entries["test"]) == []
    assert requires(entries["build"]) == ["test"]
    assert requires(entries["publish"]) == ["build"]
    assert requires(entries["promote"]) == ["publish"]
    assert requires(entries["smoke"]) == ["promote"]
    assert requires(entries["prune"]) == ["smoke"]
    assert requires(entries["terraform-plan"]) == ["test"]


def test_terraform_apply_waits_for_an_approval_of_the_plan(config: dict[str, Any]) -> None:
    entries = workflow_entries(config)
    gates = [r for r in requires(entries["terraform-apply"]) if r in entries]
    approvals = [g for g in gates if entries[g].get("type") == "approval"]
    assert approvals, "terraform-apply does not require an approval job"
    for approval in approvals:
        assert "terraform-plan" in requires(entries[approval])
    assert "type" not in config["jobs"]["terraform-apply"]


def test_aws_jobs_share_a_serial_group_set_on_their_workflow_entries(
    config: dict[str, Any],
) -> None:
    entries = workflow_entries(config)
    groups = {entries[name].get("serial-group") for name in AWS_JOBS}
    assert len(groups) == 1 and None not in groups, f"serial groups: {groups}"
    for name, job in config["jobs"].items():
        assert "serial-group" not in job, f"serial-group on job definition {name}"


def test_only_aws_jobs_get_the_oidc_context_and_set_it_up_first(config: dict[str, Any]) -> None:
    entries = workflow_entries(config)
    for name, entry in entries.items():
        context = entry.get("context")
        if name in CREDENTIAL_JOBS:
            assert context in (AWS_CONTEXT, [AWS_CONTEXT]), f"{name} context: {context}"
            names = step_names(config, name)
            assert "aws-oidc" in names and "setup" in names
            assert names.index("aws-oidc") < names.index("setup"), name
            assert config["jobs"][name].get("environment", {}).get("TARGET") == "aws"
        else:
            assert context is None, f"{name} has credentials it does not need"
    oidc = " ".join(
        body if isinstance(body, str) else body["command"]
        for body in (
            s["run"] for s in config["commands"]["aws-oidc"]["steps"] if isinstance(s, dict)
        )
    )
    assert "CIRCLE_OIDC_TOKEN_V2" in oidc and "AWS_WEB_IDENTITY_TOKEN_FILE" in oidc
    assert "AWS_ROLE_ARN" in oidc


def test_jobs_run_the_pipeline_steps_in_order(config: dict[str, Any]) -> None:
    def modules(job: str) -> list[str]:
        return [
            c.split()[2]
            for c in job_commands(config, job)
            if c.split()[0] in PYTHONS and c.split()[1:2] == ["-m"]
        ]

    assert modules("test") == ["ci.check"]
    assert modules("build") == [
        "ci.runtime",
        "ci.build_lib",
        "ci.model_dir",
        "ci.release_check",
        "ci.package_release",
    ]
    # The smoke credentials are checked before publish changes anything on AWS.
    assert modules("publish") == ["ci.smoke", "ci.publish"]
    assert ".venv/bin/python -m ci.smoke --check-credentials" in job_commands(config, "publish")
    assert modules("promote") == ["ci.promote"]
    assert modules("smoke") == ["ci.smoke"]
    assert modules("prune") == ["ci.prune"]
    for job in ("build", "publish", "promote", "smoke", "prune"):
        assert "make tf-outputs TARGET=aws" in job_commands(config, job), job
    assert "make tf-plan TARGET=aws" in job_commands(config, "terraform-plan")
    assert "make tf-apply TARGET=aws" in job_commands(config, "terraform-apply")


def terraform_default_python() -> str:
    """The Python of terraform/'s default lambda_runtime: lib/ must be built for it."""
    text = (REPO_ROOT / "terraform" / "variables.tf").read_text()
    match = re.search(r'variable "lambda_runtime".*?default\s+=\s+"python([0-9.]+)"', text, re.S)
    assert match, "lambda_runtime has no default"
    return match.group(1)


def test_build_uses_the_cpu_torch_index_and_the_fixed_arguments(config: dict[str, Any]) -> None:
    from ci.pipeline import DEFAULT_MODEL

    commands = job_commands(config, "build")
    model = "CIRCLECI_PARAMETER"  # << pipeline.parameters.model >>, as the drift check reads it
    assert config["parameters"]["model"]["default"] == DEFAULT_MODEL
    (build_lib,) = [c for c in commands if "ci.build_lib" in c]
    assert build_lib.split()[3:] == [
        "--out",
        "build/lib",
        "--from-function",
        "--model",
        model,
        "--extra-index-url",
        TORCH_CPU_INDEX,
    ]
    assert any(c.endswith(f"ci.model_dir --model {model} --out build/model") for c in commands)
    assert any(c.endswith("ci.release_check --lib build/lib --model build/model") for c in commands)
    # Built on the runtime's own Python, so bytecode, import check and release check run.
    (image,) = config["executors"][config["jobs"]["build"]["executor"]]["docker"]
    assert image["image"] == f"cimg/python:{terraform_default_python()}"
    assert any(
        c.endswith(
            "ci.package_release --lib build/lib --model build/model --out build/release "
            "--require-delta"
        )
        for c in commands
    )
    for job in ("publish", "promote"):
        assert any(
            c.endswith("--release build/release/release.json") for c in job_commands(config, job)
        )
    assert any(c.endswith("ci.prune --keep 3") for c in job_commands(config, "prune"))


def test_build_reads_the_deployed_function_and_efs_with_credentials(
    config: dict[str, Any],
) -> None:
    """lib/ for the function's runtime, and a delta or a failure, never a silent full bundle."""
    entries = workflow_entries(config)
    assert entries["build"].get("context") in (AWS_CONTEXT, [AWS_CONTEXT])
    # It only reads, so it does not wait for (or hold up) the deploy serial group.
    assert "serial-group" not in entries["build"]
    names = step_names(config, "build")
    assert "aws-oidc" in names and "tf-outputs" in names
    assert names.index("aws-oidc") < names.index("setup") < names.index("tf-outputs")
    # build/runtime.txt, which keys the lib/ cache, is written before the cache is restored.
    assert names.index("tf-outputs") < names.index("run") < names.index("restore_cache")
    commands = job_commands(config, "build")
    (runtime,) = [c for c in commands if "-m ci.runtime" in c]
    (build_lib,) = [c for c in commands if "-m ci.build_lib" in c]
    (package,) = [c for c in commands if "-m ci.package_release" in c]
    assert runtime.endswith("--out build/runtime.txt")
    assert "--from-function" in build_lib.split()
    for fixed in ("--python-version", "--runtime", "--architecture", "--allow-unchecked"):
        assert fixed not in build_lib.split(), fixed
    assert "--require-delta" in package.split() and "--full" not in package.split()
    assert commands.index(runtime) < commands.index(build_lib) < commands.index(package)


def test_build_hands_its_outputs_to_the_later_jobs(config: dict[str, Any]) -> None:
    (persist,) = step_bodies(config, "build", "persist_to_workspace")
    assert persist["root"] == "."
    assert {"build/lib.json", "build/release", "build/model"} <= set(persist["paths"])
    for job in ("publish", "promote", "smoke", "prune"):
        attached = step_bodies(config, job, "attach_workspace")
        assert attached and attached[0]["at"] == ".", job
        names = step_names(config, job)
        assert names.index("attach_workspace") < names.index("run"), job


def test_installer_and_lib_caches(config: dict[str, Any]) -> None:
    uv_key = '{{ checksum "requirements/dev.txt" }}-{{ checksum "requirements/checkov.txt" }}'
    for job in config["jobs"]:
        saves = step_bodies(config, job, "save_cache")
        restores = step_bodies(config, job, "restore_cache")
        uv_saves = [s for s in saves if "~/.cache/uv" in s["paths"]]
        assert len(uv_saves) == 1, f"{job}: uv cache saved {len(uv_saves)} times"
        assert uv_key in uv_saves[0]["key"] and "{{ arch }}" in uv_saves[0]["key"]
        assert any(uv_saves[0]["key"] in r["keys"] for r in restores), job
    lib_saves = [s for s in step_bodies(config, "build", "save_cache") if "build/lib" in s["paths"]]
    assert len(lib_saves) == 1
    for requirements in ("lambda.txt", "lambda-onnx.txt"):
        assert f'{{{{ checksum "requirements/{requirements}" }}}}' in lib_saves[0]["key"]
    assert "<< pipeline.parameters.model >>" in lib_saves[0]["key"]
    # The target (runtime, Python, machine, glibc) as the step before restore_cache wrote it.
    assert '{{ checksum "build/runtime.txt" }}' in lib_saves[0]["key"]
    assert "py3." not in lib_saves[0]["key"]
    assert "dev.txt" not in lib_saves[0]["key"]
    assert any(
        lib_saves[0]["key"] in r["keys"] for r in step_bodies(config, "build", "restore_cache")
    )


# --- the drift check itself -----------------------------------------------------------


def test_drift_check_reports_a_missing_module_and_a_missing_target() -> None:
    config = {
        "version": 2.1,
        "jobs": {
            "deploy": {
                "docker": [{"image": "cimg/python:3.11"}],
                "steps": [
                    "checkout",
                    {"run": "python -m ci.nonexistent"},
                    {"run": {"name": "x", "command": "make no-such-target"}},
                ],
            }
        },
        "workflows": {"main": {"jobs": ["deploy"]}},
    }
    drift = check_drift(config)
    assert drift.errors == []
    assert len(drift.missing) == 2, drift.missing
    assert any("ci/nonexistent.py does not exist" in m for m in drift.missing)
    assert any("no target `no-such-target`" in m for m in drift.missing)


@pytest.mark.parametrize(
    "script",
    [
        "curl -fsSL https://example.com/install.sh | sh",
        "pip install something",
        ".venv/bin/python -m pytest",
        "python ci/publish.py",
        "make -C elsewhere setup",
        "echo make setup >> $BASH_ENV",
        "echo hello > ~/.bashrc",
        "echo hi",
        "make $(echo setup)",
        "cat <<EOF > /tmp/x\nEOF",
        "(make setup)",
        "make setup > /tmp/log",
    ],
)
def test_drift_check_refuses_other_commands(script: str) -> None:
    config = {"jobs": {"j": {"steps": [{"run": script}]}}}
    drift = check_drift(config, targets={"setup"})
    assert drift.errors, f"{script!r} was accepted"


def test_drift_check_refuses_steps_it_cannot_see_into() -> None:
    config = {
        "orbs": {"aws-cli": "circleci/aws-cli@5.1"},
        "jobs": {"j": {"steps": [{"aws-cli/setup": {"role_arn": "$AWS_ROLE_ARN"}}]}},
    }
    drift = check_drift(config, targets=set())
    assert any("aws-cli/setup" in e for e in drift.errors)


def test_drift_check_reads_commands_when_and_workflow_steps() -> None:
    config = {
        "commands": {"c": {"steps": [{"run": "make from-command"}]}},
        "jobs": {
            "j": {
                "steps": [
                    "c",
                    {"when": {"condition": True, "steps": [{"run": "make from-when"}]}},
                ]
            }
        },
        "workflows": {
            "w": {"jobs": [{"j": {"pre-steps": [{"run": "make from-pre-steps"}]}}]},
        },
    }
    drift = check_drift(config, targets=set())
    assert drift.targets == {"from-command", "from-when", "from-pre-steps"}
    assert len(drift.missing) == 3


def test_split_commands_handles_operators_continuations_and_assignments() -> None:
    script = (
        "FOO=bar make setup && .venv/bin/python -m ci.check --only ruff; make tf-plan \\\n"
        "  TARGET=aws\n"
        "# a comment\n"
        'echo "export A=1" >> "$BASH_ENV" || make help\n'
        "make tf-outputs TARGET=<< pipeline.parameters.target >>\n"
    )
    commands, refused = split_commands(script)
    assert refused == []
    assert [c.argv for c in commands] == [
        ("make", "setup"),
        (".venv/bin/python", "-m", "ci.check", "--only", "ruff"),
        ("make", "tf-plan", "TARGET=aws"),
        ("echo", "export A=1"),
        ("make", "help"),
        ("make", "tf-outputs", "TARGET=CIRCLECI_PARAMETER"),
    ]
    assert commands[3].writes_to == ("$BASH_ENV",)


def test_allowed_installer_and_credential_steps_pass() -> None:
    script = (
        "curl -fsSLo /tmp/terraform.zip https://releases.hashicorp.com/terraform/1.11.4/"
        "terraform_1.11.4_linux_amd64.zip\n"
        "sudo unzip -o /tmp/terraform.zip -d /usr/local/bin terraform\n"
        "mkdir -p /tmp/aws-oidc\n"
        'echo "$CIRCLE_OIDC_TOKEN_V2" > /tmp/aws-oidc/token\n'
        'echo "export AWS_ROLE_ARN=${AWS_ROLE_ARN:?unset}" >> "$BASH_ENV"\n'
    )
    drift = check_drift({"jobs": {"j": {"steps": [{"run": script}]}}}, targets=set())
    assert drift.errors == [] and drift.missing == []


def test_makefile_targets_are_read_from_target_lines(tmp_path: Path) -> None:
    makefile = tmp_path / "Makefile"
    makefile.write_text(
        "VAR := x\nexport Y := z\nA ?= b\n.PHONY: a\n"
        "a: b ## doc\nb c: ; @true\n$(VENV)/.installed: x\n\techo not-a-target: here\n"
    )
    assert makefile_targets(makefile) == {"a", "b", "c"}
