"""The hostile corpus through ONE real execution environment running the real inference handler.

The runner subprocess is the one the local data plane uses (local/dataplane/runner.py), with
the inference zip `make package` would build and a digits release on a folder standing for
EFS. Every input must get its expected answer, none a 5xx or a function error; the process
must be the same one after every input (nothing killed it), and its peak resident memory
(VmHWM) must stay under the memory size Terraform gives the function.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from local.dataplane.environment import ExecutionEnvironment
from local.dataplane.functions import FunctionSpec
from tests.conftest import inference_environment
from tests.lambda_src import hostile_corpus as corpus
from tests.lambda_src.test_inference_handler import RID, make_release

REPO_ROOT = Path(__file__).resolve().parents[2]


def terraform_default(variable: str) -> int:
    """The default of a numeric variable in terraform/variables.tf."""
    text = (REPO_ROOT / "terraform" / "variables.tf").read_text()
    match = re.search(
        rf'variable "{variable}" \{{.*?^\s*default\s*=\s*(\d+)\s*$', text, re.S | re.M
    )
    assert match, f"no numeric default for {variable} in terraform/variables.tf"
    return int(match.group(1))


@dataclass
class Served:
    """The environment under test, the pid it started with, and what each input cost."""

    environment: ExecutionEnvironment
    spec: FunctionSpec
    pid: int
    peaks: dict[str, float] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, digits_model_dir: Path) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("hostile-environment")
    efs = work / "efs"
    make_release(efs, RID, digits_model_dir)
    with inference_environment(
        work,
        efs,
        RID,
        "hostile-inference",
        memory_mb=terraform_default("inference_memory_mb"),
        timeout_s=terraform_default("inference_timeout_s"),
    ) as (environment, spec):
        state = Served(environment, spec, environment.pid)
        yield state
    if state.peaks:  # shown with -s: the figures docs/hostile-section.md quotes
        first = next(iter(state.peaks))
        worst = max(state.peaks, key=lambda k: state.peaks[k])
        slowest = max(state.durations, key=lambda k: state.durations[k])
        print(
            f"\nhostile corpus: {len(state.peaks)} inputs, one environment (pid {state.pid}); "
            f"peak RSS {state.peaks[first]:.0f} MB after {first}, "
            f"{state.peaks[worst]:.0f} MB after {worst} (memory size {spec.memory_mb} MB); "
            f"slowest {slowest} {state.durations[slowest]:.0f} ms"
        )


@pytest.mark.parametrize("case", corpus.CORPUS, ids=lambda case: case.id)
def test_hostile_input_in_one_environment(served: Served, case: corpus.Case) -> None:
    environment = served.environment
    assert environment.alive() and environment.pid == served.pid, "an earlier input killed it"
    outcome = environment.invoke(case.make())
    served.peaks[case.id] = outcome.max_rss_mb
    served.durations[case.id] = outcome.duration_ms
    assert outcome.error is None, f"function error: {outcome.error}"
    problems = corpus.check_answer(case, outcome.payload)
    assert not problems, f"{case.id}: {problems}"
    assert environment.alive() and environment.pid == served.pid, f"{case.id} killed it"
    # VmHWM is the process's peak so far, so this also bounds every earlier input.
    assert 0 < outcome.max_rss_mb < served.spec.memory_mb, (
        f"{case.id}: peak RSS {outcome.max_rss_mb:.0f} MB of {served.spec.memory_mb} MB"
    )
