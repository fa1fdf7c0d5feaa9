"""pip's index settings, as uv gets them."""

from __future__ import annotations

import subprocess
import sys

from ci import pip_config


def test_pip_config_list_is_read_with_later_lines_winning() -> None:
    listed = (
        "global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'\n"
        "global.find-links='/opt/wheels'\n"
        "global.constraint='/etc/xdg/pip/constraints.txt'\n"
        "global.cert='/etc/ssl/certs/ca-certificates.crt'\n"
        ":env:.find-links='/srv/wheels /more'\n"
        "site.index-url='https://mirror.example/simple'\n"
    )
    settings = pip_config.parse_config_list(listed)
    assert settings == pip_config.IndexSettings(
        index_url="https://mirror.example/simple",
        extra_index_urls=("file:///opt/pypi/simple", "file:///opt/pypi-more/simple"),
        find_links=("/srv/wheels", "/more"),
        constraints=("/etc/xdg/pip/constraints.txt",),
    )
    assert settings.uv_args() == [
        "--index-strategy",
        "unsafe-best-match",
        "--index-url",
        "https://mirror.example/simple",
        "--extra-index-url",
        "file:///opt/pypi/simple",
        "--extra-index-url",
        "file:///opt/pypi-more/simple",
        "--find-links",
        "/srv/wheels",
        "--find-links",
        "/more",
        "--constraint",
        "/etc/xdg/pip/constraints.txt",
    ]


def test_nothing_configured_gives_pips_strategy_only() -> None:
    assert pip_config.parse_config_list("") == pip_config.IndexSettings()
    assert pip_config.IndexSettings().uv_args() == ["--index-strategy", "unsafe-best-match"]


def test_explicit_options_replace_what_is_configured() -> None:
    configured = pip_config.IndexSettings(
        index_url="https://a", extra_index_urls=("https://b",), find_links=("/w",)
    )
    assert configured.overridden(None, []) == configured
    replaced = configured.overridden("https://c", ["https://d"])
    assert replaced.index_url == "https://c" and replaced.extra_index_urls == ("https://d",)
    assert replaced.find_links == ("/w",)


def test_the_cli_prints_one_argument_per_line_and_refuses_unknown_ones() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ci.pip_config", "--extra-index-url", "https://x/simple"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["--index-strategy", "unsafe-best-match"]
    assert lines[lines.index("--extra-index-url") + 1] == "https://x/simple"
    bad = subprocess.run(
        [sys.executable, "-m", "ci.pip_config", "--nope"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown argument" in bad.stderr
