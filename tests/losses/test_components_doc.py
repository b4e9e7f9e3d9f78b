"""docs/components.md: every ```python block of the page runs as written (in order, in one namespace)."""
from __future__ import annotations

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
