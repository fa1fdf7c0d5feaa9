"""Command line of the emulator: ``python -m local.emulator {serve,up,down,status}``."""

from local.emulator.cli import main

raise SystemExit(main())
