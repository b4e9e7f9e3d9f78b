"""``ferkit data check --config ...``: read every file of the configured dataset once and list all bad ones."""
from __future__ import annotations

import argparse

from ferkit.commands.lightning_cli import build_cli
from ferkit.data import check_data


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if not argv or argv[0] != "check":
        p = argparse.ArgumentParser(prog="ferkit data", description=__doc__)
        p.add_argument("action", choices=["check"], help="check: read every file once and list the bad ones")
        p.parse_args(argv[:1] or ["--help"])
    cli = build_cli(args=argv[1:], run=False)
    return check_data(cli.datamodule)
