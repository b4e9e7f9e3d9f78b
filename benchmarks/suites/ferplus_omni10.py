"""Omni on FER+ with 10 % of the training labels kept (class-stratified, seed 0); the other 90 % are the unlabelled
pool, whose hidden labels only measure the mining (precision / recall per class and as a curve over tau_sim).

The primitive model trains on the labelled 10 %; its checkpoint chosen on validation embeds and mines the pool, and
the mined set is distilled into 1 and 10 images per class. Every arm trains from scratch on the recipe's network for
the same number of optimiser steps (the config's ``trainer.max_steps``), so extra data buys no extra training. The
mining thresholds are ferkit's defaults (tau_sim 0.8, tau_conf 0.9, margin 0.1): the pool's labels are never used to
choose them."""
from benchmarks.suite import Run, Step, Suite
from benchmarks.suites._common import FULL_DATA, QUIET, SMOKE, precision, small_input

CONFIG = "omni_ferplus10"
ROOT = "--data.dataset.init_args.labelled.init_args.root"
#: the recipe's network (standard stem, bf16); validation every 4 epochs of the small labelled set (39 steps each)
COMMON = [*FULL_DATA, *small_input(False), *precision("bf16-mixed"), *QUIET, "--trainer.check_val_every_n_epoch", "4"]
PRIMITIVE = "primitive_s0"
MINED = "{shared}/mined.csv"

EMBED = Step("embed", ["omni", "embed", "--config", CONFIG, *COMMON, "--ckpt", f"{{best:{PRIMITIVE}}}",
                       "--out", "{shared}/emb"])
MINE = Step("mine", ["omni", "mine", "--config", CONFIG, *COMMON, "--ckpt", f"{{best:{PRIMITIVE}}}",
                     "--store", "{shared}/emb", "--out", MINED, "--curve", "0.5", "0.6", "0.7", "0.8", "0.9"],
            report=MINED + ".json")


def distill(ipc: int) -> Step:
    # distribution matching: about a third of gradient matching's cost per iteration on this CPU (see the Omni README)
    return Step(f"distill_ipc{ipc}", ["omni", "distill", "--config", CONFIG, *COMMON, "--manifest", MINED,
                                      "--method", "distribution_matching", "--ipc", str(ipc), "--iterations", "200",
                                      "--lr_img", "1.0", "--out", f"{{shared}}/distilled_ipc{ipc}.pt"],
                smoke=["--iterations", "2", "--batch_real", "8"])


def with_mined() -> list[str]:
    return ["--data.dataset.init_args.mined_manifest", MINED]


def with_distilled(ipc: int) -> list[str]:
    return ["--model.init_args.distilled", f"{{shared}}/distilled_ipc{ipc}.pt"]


SUITE = Suite(
    name="ferplus_omni10",
    description="Omni on FER+ with 10 % of the labels: primitive model vs + mined vs + distilled (ipc 1, 10) vs + both, "
                "same optimiser steps",
    runs=[
        Run(PRIMITIVE, CONFIG, 0, COMMON, method="primitive"),
        Run("mined_s0", CONFIG, 0, COMMON + with_mined(), method="mined", baseline="primitive", steps=[EMBED, MINE]),
        Run("distilled1_s0", CONFIG, 0, COMMON + with_distilled(1), method="distilled1", baseline="primitive",
            steps=[EMBED, MINE, distill(1)]),
        Run("distilled10_s0", CONFIG, 0, COMMON + with_distilled(10), method="distilled10", baseline="primitive",
            steps=[EMBED, MINE, distill(10)]),
        Run("both_s0", CONFIG, 0, COMMON + with_mined() + with_distilled(10), method="mined_distilled10",
            baseline=["primitive", "mined", "distilled10"], steps=[EMBED, MINE, distill(10)]),
    ],
    # the smoke setting samples the pool (the real one is 22,000 images), keeps enough labelled images for every class
    # to have a prototype (400: the rarest FER+ classes are about 0.5 %), trains two epochs and shortens the distillation
    smoke=SMOKE + ["--data.train_limit", "400", "--data.dataset.init_args.pool_limit", "64", "--trainer.max_steps", "-1",
                   "--trainer.check_val_every_n_epoch", "1"],
    data_root_override=ROOT,
    data_files=["fer2013new.csv"],
)
