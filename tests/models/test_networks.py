"""The networks rebuilt at serve time are torchvision's, without importing torchvision."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torchvision.models import resnet

from lambda_src.models.networks import IMAGENET_RESNETS, build_network


@pytest.mark.parametrize("name", ["resnet18", "resnet152"])
def test_imagenet_resnets_take_torchvisions_weights_and_compute_the_same(name: str) -> None:
    torch.manual_seed(0)
    reference = getattr(resnet, name)(weights=None, num_classes=1000).eval()
    ours = build_network({"kind": "torchvision", "name": name, "num_classes": 1000})
    state = reference.state_dict()
    assert list(ours.state_dict()) == list(state)
    ours.load_state_dict(state, strict=True)
    ours.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(ours(x), reference(x))


def test_every_listed_architecture_matches_torchvisions_parameter_names() -> None:
    for name in IMAGENET_RESNETS:
        with torch.device("meta"):
            ours = build_network({"kind": "torchvision", "name": name, "num_classes": 10})
            theirs = getattr(resnet, name)(weights=None, num_classes=10)
        assert list(ours.state_dict()) == list(theirs.state_dict()), name


def test_an_unknown_architecture_is_refused() -> None:
    with pytest.raises(ValueError, match="resnet9000"):
        build_network({"kind": "torchvision", "name": "resnet9000", "num_classes": 10})


def test_rebuilding_a_network_does_not_import_torchvision() -> None:
    # torchvision's package import costs about as much as ResNet-152's first forward pass.
    code = (
        "import sys\n"
        "from lambda_src.models.networks import build_network\n"
        "build_network({'kind': 'torchvision', 'name': 'resnet152', 'num_classes': 1000})\n"
        "build_network({'kind': 'compact_resnet', 'in_channels': 1, 'num_classes': 10,"
        " 'widths': [8], 'blocks': [1]})\n"
        "print('torchvision' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert proc.stdout.strip() == "False"
