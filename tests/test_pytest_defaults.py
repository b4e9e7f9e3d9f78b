"""The suite's own default of two pytest-xdist workers (``tests/conftest.py``, ``pytest_cmdline_main``).

It replaced ``-n 2`` in ``addopts``, which made plain ``pytest`` fail wherever xdist was not installed. The hook only
edits parsed options, so it is checked on stand-in option objects: what it sets, and every case it must leave alone.
"""
from __future__ import annotations

from types import SimpleNamespace

from conftest import DEFAULT_WORKERS, pytest_cmdline_main


def config(**option):
    defaults = dict(numprocesses=None, dist="no", distload=False, usepdb=False, trace=False, collectonly=False)
    return SimpleNamespace(option=SimpleNamespace(**{**defaults, **option}))


def test_no_n_given_means_two_workers_one_file_each() -> None:
    c = config()
    pytest_cmdline_main(c)
    assert c.option.numprocesses == DEFAULT_WORKERS == 2 and c.option.dist == "loadfile"


def test_an_explicit_n_or_dist_mode_wins() -> None:
    for given in (0, 1, 4, "auto"):
        c = config(numprocesses=given)
        pytest_cmdline_main(c)
        assert c.option.numprocesses == given and c.option.dist == "no"
    c = config(dist="load")  # --dist load without -n: two workers, the mode asked for
    pytest_cmdline_main(c)
    assert c.option.numprocesses == 2 and c.option.dist == "load"
    c = config(distload=True)  # the old -d/--distload spelling, which xdist turns into "load" itself
    pytest_cmdline_main(c)
    assert c.option.numprocesses == 2 and c.option.dist == "no"


def test_one_process_without_xdist_under_a_debugger_or_when_only_collecting() -> None:
    bare = SimpleNamespace(option=SimpleNamespace(usepdb=False, collectonly=False))  # xdist absent: no -n option
    pytest_cmdline_main(bare)
    assert not hasattr(bare.option, "numprocesses")
    for kind in ("usepdb", "trace", "collectonly"):
        c = config(**{kind: True})
        pytest_cmdline_main(c)
        assert c.option.numprocesses is None and c.option.dist == "no"


def test_a_worker_process_is_left_as_its_controller_set_it() -> None:
    c = config()
    c.workerinput = {"workerid": "gw0"}
    pytest_cmdline_main(c)
    assert c.option.numprocesses is None


def test_the_hook_runs_before_xdist_turns_the_count_into_workers(request) -> None:
    """Set after xdist's own ``pytest_cmdline_main`` (which makes one worker per ``-n``), the count would come too late
    and the suite would quietly run in one process. pluggy calls a hook's implementations from the end of this list."""
    import pytest

    plugins = request.config.pluginmanager
    if not plugins.has_plugin("xdist"):
        pytest.skip("pytest-xdist is not installed (or disabled with -p no:xdist): nothing to run before")
    order = [impl.function for impl in plugins.hook.pytest_cmdline_main.get_hookimpls()]
    xdist_hook = plugins.get_plugin("xdist").pytest_cmdline_main
    assert order.index(pytest_cmdline_main) > order.index(xdist_hook)
