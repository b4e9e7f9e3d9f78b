"""``ferkit data check --config ...``: read every file of the configured dataset once and list all bad ones."""
from __future__ import annotations

import argparse
import sys

from ferkit.commands.lightning_cli import build_cli


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if not argv or argv[0] != "check":
        p = argparse.ArgumentParser(prog="ferkit data", description=__doc__)
        p.add_argument("action", choices=["check"], help="check: read every file once and list the bad ones")
        p.parse_args(argv[:1] or ["--help"])
    cli = build_cli(args=argv[1:], run=False)
    dm = cli.datamodule
    if not hasattr(dm, "check"):  # TODO(data): FERDataModule.check() arrives with the typed data module
        print("ferkit data check: this FERDataModule has no check() yet", file=sys.stderr)
        return 2
    bad = dm.check()
    for where, reason in bad:
        print(f"{where}: {reason}")
    print(f"[ferkit] {len(bad)} bad file(s)")
    return 1 if bad else 0
