"""The project-local Terraform CLI config: the mirror where one exists, the registry otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci import terraform_cli


def test_explicit_mirror_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "registry.terraform.io" / "hashicorp" / "aws").mkdir(parents=True)
    monkeypatch.setenv("TF_PROVIDER_MIRROR", str(tmp_path))
    assert terraform_cli.find_mirror() == tmp_path
    text = terraform_cli.render(tmp_path)
    assert f'path    = "{tmp_path}"' in text
    assert 'exclude = ["registry.terraform.io/hashicorp/aws"]' in text


def test_explicit_mirror_without_the_provider_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TF_PROVIDER_MIRROR", str(tmp_path))
    assert terraform_cli.find_mirror() is None


def test_no_mirror_means_the_registry() -> None:
    text = terraform_cli.render(None)
    assert "provider_installation" not in text
    assert "plugin_cache_dir" in text


def test_env_points_terraform_at_the_project_config() -> None:
    env = terraform_cli.terraform_env({"PATH": "/usr/bin"})
    assert env["TF_CLI_CONFIG_FILE"] == str(terraform_cli.CLI_CONFIG_PATH)
    assert Path(env["TF_CLI_CONFIG_FILE"]).read_text() == terraform_cli.render(
        terraform_cli.find_mirror()
    )
