"""The ``ferkit`` command: one entry point, one line of help per command.

* ``ferkit fit|validate|test|predict --config NAME_OR_PATH`` -- LightningCLI (:mod:`ferkit.commands.lightning_cli`);
  ``--config arm_ferplus`` runs a packaged config from any folder.
* ``ferkit demo`` -- a method and its baseline on synthetic faces, one table (:mod:`ferkit.commands.demo`).
* ``ferkit info`` -- methods, datasets, pools, presets and packaged configs.
* ``ferkit asm-report`` -- ASM's split of the training set as CSV plus a contact sheet of suspects.
* ``ferkit landmarks extract|summary|draw`` -- landmark caches.
* ``ferkit export`` -- a checkpoint's inference network as TorchScript or a state-dict bundle.
* ``ferkit data check --config ...`` -- read every file of the dataset once and list the bad ones.
* ``ferkit omni embed|mine|distill`` -- Omni's offline steps on your own pool of faces (each resumable).

This module routes to the commands; the commands never import it.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable

from ferkit.commands import asm_report, data_check, demo, export_model, info, landmarks, omni, pasm
from ferkit.commands.lightning_cli import SUBCOMMANDS, FerkitCLI, build_cli

__all__ = ["main", "build_cli", "FerkitCLI", "COMMANDS"]


def _lightning(name: str) -> Callable[[list[str]], Any]:
    return lambda argv: build_cli(args=[name, *argv])


COMMANDS: dict[str, tuple[str, Callable[[list[str]], Any]]] = {
    "fit": ("train a model from a config (LightningCLI)", _lightning("fit")),
    "validate": ("evaluate on the validation split", _lightning("validate")),
    "test": ("evaluate on the test split; writes confusion matrices and metrics", _lightning("test")),
    "predict": ("write per-image class probabilities to CSV", _lightning("predict")),
    "demo": ("train a method and its baseline on synthetic faces and print both", demo.main),
    "info": ("list methods, datasets, pools, presets and packaged configs", info.main),
    "asm-report": ("write ASM's clean/ambiguous/noisy split and a contact sheet of suspects", asm_report.main),
    "landmarks": ("extract, summarise or draw landmark caches", landmarks.main),
    "export": ("export a checkpoint's inference network (TorchScript or state dict)", export_model.main),
    "pasm": ("train PASM generations: a CE teacher, then students with located-region erasing + distillation", pasm.main),
    "data": ("data check --config ...: read every file once and list all bad ones", data_check.main),
    "omni": ("omni embed | mine | distill: Omni's offline steps on your own pool", omni.main),
}
assert set(SUBCOMMANDS) <= set(COMMANDS)


def usage() -> str:
    lines = ["usage: ferkit <command> [options]   (ferkit <command> --help for a command's options)", "", "commands:"]
    lines += [f"  {name:<11} {text}" for name, (text, _) in COMMANDS.items()]
    lines += ["", "Packaged configs run by name from any folder: ferkit fit --config arm_ferplus (ferkit info lists them)."]
    return "\n".join(lines)


def _current_folder_on_path() -> None:
    """Let ``--model mypackage.MyModule`` (and any other class path) name a module in the folder the command runs in,
    as ``python -m ferkit.cli`` would. The console script's own path starts at its ``bin`` folder instead, so without
    this a user's own class needed ``PYTHONPATH=.``. The folder goes last: an installed package of the same name wins,
    so a stray ``torch.py`` in the working folder cannot shadow the real one."""
    cwd = os.getcwd()
    if not any(os.path.abspath(p or os.curdir) == cwd for p in sys.path):
        sys.path.append(cwd)


def main(argv: list[str] | None = None) -> Any:
    """Run one command; returns what the command returns (e.g. the demo's rows), for use from Python."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return None
    name, rest = argv[0], argv[1:]
    _current_folder_on_path()
    if name not in COMMANDS:
        print(f"ferkit: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    result = COMMANDS[name][1](rest)
    if name in ("data",) and isinstance(result, int) and result:
        raise SystemExit(result)
    return result


def console() -> None:
    """The ``ferkit`` console script: exit status 0 on success (a command's return value is not an exit status)."""
    main()


if __name__ == "__main__":
    console()
