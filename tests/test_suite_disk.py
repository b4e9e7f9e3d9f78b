"""The test suite deletes the checkpoints of passing tests as soon as they end (tests/conftest.py), keeping a failing
test's for inspection: together the suite's fits write several GiB, which once filled the CI machine's disk."""

from __future__ import annotations

from pathlib import Path

pytest_plugins = ["pytester"]


def test_checkpoints_of_passing_tests_are_deleted_and_failing_ones_kept(pytester):
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(
        """
        SEEN = []
        def test_passes(tmp_path):
            (tmp_path / "sub").mkdir()
            (tmp_path / "sub" / "last.ckpt").write_bytes(b"x")
            (tmp_path / "metrics.csv").write_text("kept")
            SEEN.append(tmp_path)
        def test_after_pass():
            assert not (SEEN[0] / "sub" / "last.ckpt").exists()
            assert (SEEN[0] / "metrics.csv").exists()
        def test_fails(tmp_path):
            (tmp_path / "best.ckpt").write_bytes(b"x")
            SEEN.append(tmp_path)
            assert False
        def test_after_fail():
            assert (SEEN[1] / "best.ckpt").exists()
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)
