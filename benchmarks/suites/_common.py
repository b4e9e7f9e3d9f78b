"""Overrides shared by the FER+ suites. Config-shaped options live here and in the suite files only, so when the
shape of ferkit's configs changes, these few lines are what to update (each is marked with the option it sets)."""
from __future__ import annotations

#: the option that sets the FER2013 / FER+ data folder (the data module's typed source: data.dataset.init_args)
FER_ROOT = "--data.dataset.init_args.root"
#: the files the FER+ suites need inside that folder
FERPLUS_FILES = ["fer2013new.csv"]

#: what ``--smoke`` adds to a real-data suite: a few hundred images, two short epochs, no progress bar, CPU
SMOKE = ["--trainer.max_epochs", "2", "--data.train_limit", "96", "--data.val_limit", "48", "--data.test_limit", "48",
         "--data.batch_size", "32", "--data.eval_batch_size", "48", "--trainer.log_every_n_steps", "1",
         "--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--data.num_workers", "0"]

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]

#: the whole FER+ training set and validation split (some configs default to stratified subsets for short CPU runs)
FULL_DATA = ["--data.train_limit", "null", "--data.val_limit", "null", "--data.test_limit", "null"]


def epochs(n: int) -> list[str]:
    return ["--trainer.max_epochs", str(n)]


def noise(rate: float, seed: int = 0) -> list[str]:
    """Symmetric label noise on the training split (labels shifted by U{1..C-1}, fixed by ``noise_seed``)."""
    return ["--data.label_noise", str(rate), "--data.noise_mode", "symmetric", "--data.noise_seed", str(seed)]


# -- the model options the suites change (the network's architecture sits in model.init_args.net) ------------------
def small_input(on: bool) -> list[str]:
    return ["--model.init_args.net.small_input", "true" if on else "false"]


def label_smoothing(x: float) -> list[str]:
    return ["--model.init_args.label_smoothing", str(x)]


def soft_votes() -> list[str]:
    """Train on the FER+ vote distribution (the items carry ``soft_label``); tests stay on majority labels."""
    return ["--data.dataset.init_args.label_mode", "soft"]


def channels_last() -> list[str]:
    """Weights and batches in the channels-last memory format: the same function; about 10 % faster per step on this
    CPU in fp32, 0-15 % (within the noise) under bf16 autocast (``benchmarks/recipe_speed.py``)."""
    return ["--model.init_args.channels_last", "true"]


def eval_flip() -> list[str]:
    """Horizontal-flip test-time augmentation for validation and test (the epoch is chosen with it too)."""
    return ["--model.init_args.eval_flip", "true"]


def train_preset(name: str) -> list[str]:
    """The training augmentation preset (``ferkit.data.transforms``: shift, default, weak, strong, arm)."""
    return ["--data.train_preset", name]


def precision(p: str) -> list[str]:
    return ["--trainer.precision", p]


#: what every FER+ comparison shares with the recipe (README, "FER+ recipe"): the full training set at 48 px grayscale,
#: ResNet-18 from scratch with the standard stem, bf16-mixed autocast on the CPU, 30 epochs. The optimiser, schedule,
#: loss and augmentation come from each run's config (the recipe's own config adds AdamW, one-cycle, smoothing 0.1)
RECIPE = [*FULL_DATA, *small_input(False), *precision("bf16-mixed"), *epochs(30), *QUIET]
