"""Point Terraform at a local provider mirror when the machine has one.

Writes a project-local CLI config and returns the environment that uses it;
where no mirror exists the config is empty and `terraform init` uses the
registry as usual.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CLI_CONFIG_PATH = REPO_ROOT / ".state" / "terraform.rc"
PLUGIN_CACHE_DIR = REPO_ROOT / ".state" / "terraform-plugin-cache"
_PROVIDER = "registry.terraform.io/hashicorp/aws"


def find_mirror() -> Path | None:
    """The directory that holds registry.terraform.io/hashicorp/aws, if any.

    TF_PROVIDER_MIRROR wins; otherwise look up to three levels below / (the
    usual places for an offline mirror), as `find / -maxdepth 3` would.
    """
    explicit = os.environ.get("TF_PROVIDER_MIRROR")
    if explicit:
        return Path(explicit) if (Path(explicit) / _PROVIDER).is_dir() else None
    for pattern in (
        "registry.terraform.io",
        "*/registry.terraform.io",
        "*/*/registry.terraform.io",
    ):
        for hit in sorted(Path("/").glob(pattern)):
            if (hit / "hashicorp" / "aws").is_dir():
                return hit.parent
    home_plugins = Path.home() / ".terraform.d" / "plugins"
    if (home_plugins / _PROVIDER).is_dir():
        return home_plugins
    return None


def render(mirror: Path | None) -> str:
    """The CLI config text for the given mirror (or none)."""
    lines = [f'plugin_cache_dir = "{PLUGIN_CACHE_DIR}"']
    if mirror is not None:
        lines += [
            "provider_installation {",
            "  filesystem_mirror {",
            f'    path    = "{mirror}"',
            f'    include = ["{_PROVIDER}"]',
            "  }",
            "  direct {",
            f'    exclude = ["{_PROVIDER}"]',
            "  }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def write_config() -> Path:
    """Write the CLI config (idempotent) and return its path."""
    CLI_CONFIG_PATH.parent.mkdir(parents=True, exist_ok=True)
    PLUGIN_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    text = render(find_mirror())
    if not CLI_CONFIG_PATH.exists() or CLI_CONFIG_PATH.read_text() != text:
        CLI_CONFIG_PATH.write_text(text)
    return CLI_CONFIG_PATH


def terraform_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for running terraform with the project's CLI config."""
    env = dict(os.environ if base is None else base)
    env["TF_CLI_CONFIG_FILE"] = str(write_config())
    env.setdefault("TF_IN_AUTOMATION", "1")
    return env


def main(argv: list[str] | None = None) -> int:
    """Write the CLI config and print its path (for the Makefile)."""
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    path = write_config()
    mirror = find_mirror()
    print(f"{path} ({'mirror ' + str(mirror) if mirror else 'registry'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
