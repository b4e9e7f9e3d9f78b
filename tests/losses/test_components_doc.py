"""docs/components.md: every ```python block of the page runs as written (in order, in one namespace)."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "components.md"


def test_components_page_examples_run(capsys) -> None:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert blocks, f"no python example in {PAGE}"
    namespace: dict[str, object] = {"__name__": "components_doc"}
    for code in blocks:
        exec(compile(code, str(PAGE), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "SampleSplit(n=8" in printed and "'center'" in printed


def test_the_where_things_live_table_names_importable_objects() -> None:
    """Every object the page's "Where things live" table lists under a package can be imported from it (or from the
    module the same cell names for it, such as ``ferkit.miners.point_attack``)."""
    rows = [line for line in PAGE.read_text().splitlines() if line.startswith("| `ferkit.")]
    assert len(rows) >= 4
    checked = 0
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        package = cells[0].strip("`")
        modules = [importlib.import_module(package)] + [
            importlib.import_module(m) for m in re.findall(r"`(ferkit(?:\.\w+)+)`", cells[2])]
        for name in re.findall(r"`([A-Za-z_]\w*)`", cells[2]):
            assert any(hasattr(m, name) for m in modules), f"{name} (listed under {package}) is not importable from it"
            checked += 1
    assert checked >= 15
