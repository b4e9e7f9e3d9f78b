"""``ferkit export``: write a trained method's inference network (TorchScript or a state-dict bundle)."""
from __future__ import annotations

import argparse

from ferkit.export import save_inference_model


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(prog="ferkit export", description=__doc__)
    p.add_argument("--ckpt", required=True, help="a checkpoint of any ferkit method")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--format", default="torchscript", choices=["torchscript", "state_dict"])
    a = p.parse_args(argv)
    path = save_inference_model(a.ckpt, a.out, a.format)
    print(f"[ferkit] wrote the inference model ({a.format}) to {path}")
    return str(path)
