"""Overrides shared by several suites. Config-shaped options live here and in the suite files only."""
from __future__ import annotations

#: the option that sets the FER2013 / FER+ data folder (today's config shape: ``data.root``)
FER_ROOT = "--data.root"
#: the files the FER+ suites need inside that folder
FERPLUS_FILES = ["fer2013new.csv"]

#: what ``--smoke`` adds to a real-data suite: a few hundred images at 48 px, two short epochs, no progress bar
SMOKE = ["--trainer.max_epochs", "2", "--data.train_limit", "96", "--data.val_limit", "48", "--data.test_limit", "48",
         "--data.batch_size", "32", "--data.eval_batch_size", "48", "--trainer.log_every_n_steps", "1",
         "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu", "--data.num_workers", "0"]

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def noise(rate: float, seed: int = 0) -> list[str]:
    """Symmetric label noise on the training split (labels shifted by U{1..C-1}, fixed by ``noise_seed``)."""
    return ["--data.label_noise", str(rate), "--data.noise_mode", "symmetric", "--data.noise_seed", str(seed)]
