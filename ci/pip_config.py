"""pip's index settings, handed to uv, so both installers see the same wheels.

uv reads neither pip.conf nor ``PIP_*`` variables. A machine (or a CI image) that points pip
at a mirror, a local wheel directory or a constraints file would otherwise install
different files with uv than with pip, or none. ``pip config list`` already merges every
pip configuration source (files by precedence, then environment), so its answer is taken
as it is rather than re-implementing pip's lookup rules.

Standard library only: ``make setup`` runs it with the machine's Python before any venv
exists.

    python -m ci.pip_config            # uv arguments, one per line
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# pip's option names whose values are lists separated by whitespace.
_LIST_KEYS = ("extra-index-url", "find-links", "constraint")


@dataclass(frozen=True)
class IndexSettings:
    """Where pip looks for distributions on this machine."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()

    def overridden(self, index_url: str | None, extra_index_urls: Sequence[str]) -> IndexSettings:
        """These settings as pip applies explicit options: each given one replaces its key.

        pip lets ``--extra-index-url`` on the command line replace the configured list
        rather than add to it; the same rule is kept for uv so that the two agree.
        """
        return IndexSettings(
            index_url=index_url or self.index_url,
            extra_index_urls=tuple(extra_index_urls) or self.extra_index_urls,
            find_links=self.find_links,
            constraints=self.constraints,
        )

    def uv_args(self) -> list[str]:
        """uv pip's arguments for these settings.

        ``unsafe-best-match`` is pip's own strategy: the best version over every index.
        uv's default stops at the first index that has a package at all, which picks a
        different torch when a local index and PyPI both list it.
        """
        args = ["--index-strategy", "unsafe-best-match"]
        if self.index_url:
            args += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        for link in self.find_links:
            args += ["--find-links", link]
        for constraint in self.constraints:
            args += ["--constraint", constraint]
        return args


def parse_config_list(text: str) -> IndexSettings:
    """IndexSettings from the output of ``pip config list``.

    Lines look like ``global.find-links='/opt/wheels'`` or ``:env:.find-links='…'``;
    later lines win, as in pip, where the environment is listed after the files.
    """
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, raw = line.partition("=")
        if not sep or "." not in key:
            continue
        name = key.rsplit(".", 1)[1].strip()
        try:
            parsed = shlex.split(raw)
        except ValueError:
            continue
        values[name] = " ".join(parsed)
    return from_values(values)


def from_values(values: Mapping[str, str]) -> IndexSettings:
    """IndexSettings from pip option names and their raw values."""

    def many(key: str) -> tuple[str, ...]:
        return tuple(values.get(key, "").split())

    return IndexSettings(
        index_url=values.get("index-url") or None,
        extra_index_urls=many("extra-index-url"),
        find_links=many("find-links"),
        constraints=many("constraint"),
    )


def from_pip(python: str = sys.executable) -> IndexSettings:
    """The index settings that ``python -m pip`` uses here (empty if pip cannot say)."""
    try:
        proc = subprocess.run(
            [python, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return IndexSettings()
    if proc.returncode != 0:
        return IndexSettings()
    return parse_config_list(proc.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    """Print uv's index arguments, one per line, for ``$(shell …)`` in the Makefile.

    Arguments given here are explicit index options (``--index-url URL``,
    ``--extra-index-url URL``) that override pip's configuration the way pip does.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    index_url: str | None = None
    extra: list[str] = []
    while args:
        option = args.pop(0)
        if option in ("--index-url", "--extra-index-url") and args:
            value = args.pop(0)
            if not value:
                continue
            if option == "--index-url":
                index_url = value
            else:
                extra.append(value)
        else:
            print(f"pip_config: unknown argument {option!r}", file=sys.stderr)
            return 2
    settings = from_pip().overridden(index_url, extra)
    print("\n".join(shlex.quote(a) for a in settings.uv_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
