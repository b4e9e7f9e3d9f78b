"""Tiny synthetic suite (seconds per run): what the tests run, and a check that the harness works on a new machine."""
from benchmarks.suite import Run, Suite
from benchmarks.suites._common import QUIET

# only data-module options that every config shape shares: a few dozen synthetic faces at 32 px, three epochs
TINY = ["--data.train_limit", "64", "--data.val_limit", "32", "--data.test_limit", "32", "--data.img_size", "32",
        "--data.batch_size", "32", "--trainer.max_epochs", "3", "--trainer.log_every_n_steps", "1",
        "--trainer.accelerator", "cpu", *QUIET]

SUITE = Suite(
    name="smoke",
    description="average pooling vs itself on 64 synthetic faces, 3 epochs (tests only; the numbers mean nothing)",
    runs=[
        Run("avg_s0", "avg_synthetic", seed=0, overrides=TINY, method="avg"),
        Run("avg_s1", "avg_synthetic", seed=1, overrides=TINY, method="avg"),
        Run("avg2_s0", "avg_synthetic", seed=0, overrides=TINY + ["--data.hflip", "0.0"], method="avg-noflip",
            baseline="avg"),
    ],
    smoke=[],
)
