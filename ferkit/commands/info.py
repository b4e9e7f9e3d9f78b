"""``ferkit info``: what is available (methods, datasets, pools, presets, packaged configs)."""
from __future__ import annotations

import argparse

import ferkit
from ferkit.commands.lightning_cli import packaged_configs
from ferkit.data.sources import available_sources
from ferkit.data.transforms import available_presets
from ferkit.layers.pools import available_pools
from ferkit.methods import __all__ as METHODS


def main(argv: list[str] | None = None) -> dict[str, list[str]]:
    argparse.ArgumentParser(prog="ferkit info", description=__doc__).parse_args(argv)
    info = {
        "methods": [m for m in METHODS if m.endswith("Classifier")],
        "datasets": sorted(available_sources()),
        "pools": list(available_pools()),
        "presets": list(available_presets()),
        "configs": sorted(packaged_configs()),
    }
    print(f"ferkit {ferkit.__version__}")
    for key, values in info.items():
        print(f"{key + ':':<10} {', '.join(values)}")
    print("Run a packaged config by name from any folder: ferkit fit --config <name>")
    return info
