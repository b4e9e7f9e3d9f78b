"""The noisy-label comparison, shared by ferplus_noise30 and ferplus_noise10: CE vs CE with two averaged networks (the
fair control for ASM's two networks) vs ASM, and LA-Net vs its own CE (the same network with auxiliary weights 0),
all on the recipe's data, network, precision and 30 epochs (``RECIPE``) with ASM's optimiser for every run (Adam 1e-3,
ExponentialLR 0.9, no label smoothing, the ``weak`` augmentation of ``ce_ferplus_noisy`` / ``asm_ferplus``), and
checkpoints chosen on the clean validation split."""
from __future__ import annotations

from benchmarks.suite import Run, Suite
from benchmarks.suites._common import FER_ROOT, FERPLUS_FILES, RECIPE, SMOKE, noise

# ASM: 10 warm-up epochs of 30, asm_ferplus's lower clean threshold (0.4), the paper's judging pass
ASM = ["--model.init_args.warmup_epochs", "10", "--model.init_args.t_clean", "0.4", "--model.init_args.stats", "extra_pass"]
# the two-network control: ASM's model whose warm-up never ends (both networks trained with CE, outputs averaged)
CE2 = ["--model.init_args.warmup_epochs", "100000"]
# LA-Net reads facial landmarks from a cache built by `ferkit landmarks extract` (see ferkit/methods/lanet/README.md)
LANDMARKS = ["--data.landmarks_cache", "~/.cache/ferkit/landmarks/"]
SMOKE_ASM = ["--model.init_args.warmup_epochs", "1"]
# ASM with the paper's fixed-threshold rule (its supplement's "fixed threshold" column; here at the suite's base
# thresholds T_n 0.2, T_c 0.4) instead of the class-relative
# ones: at epoch 30 of asm_s0 the class-relative rule scaled the noisy threshold of disgust and contempt (92 % wrong
# labels) down to 0.02-0.025 and found 4-5 % of their wrong labels, where fixed thresholds applied to the same
# probabilities find 99-100 % (benchmarks/results/asm_rule_study_noise30_epoch30.json). Which rule a user should
# take is decided on validation accuracy, like every other choice here.
ASM_FIXED = ASM + ["--model.init_args.threshold_norm", "fixed"]
# LA-Net with ferkit's class-prior alignment of the neighbours' estimate (not in the paper): at epoch 30 of lanet_s0
# the label memory's arg-max kept 1 % of the true "fear" samples, 45 % of "sad" and none of "disgust" or "contempt",
# against 69-77 % for the given noisy labels, while it fixed most of the frequent classes' flipped labels
# (benchmarks/results/lanet_memory/ferplus_noise30__lanet_s0.json). Chosen against lanet_s0 on validation.
LANET_ALIGN = ["--model.init_args.lde_align", "given"]
# LA-Net with a slower label memory (momentum 0.97 instead of the paper's 0.9): after 30 visits the memory keeps
# 0.97^30 = 40 % of its one-hot start instead of 0.9^30 = 4 %. Alignment (above) held the memory's class shares at the
# given labels' but spread the rare classes' mass thinly: at epoch 17 of lanet_align_s0 no training sample had more
# than 0.22 of its memory on disgust or contempt, so their arg-max share was 0.03 % and 0.02 %. Keeping the given
# label longer protects the rare classes' mostly right labels, at the price of keeping more flipped labels in the
# frequent ones. Chosen against lanet_s0 on validation.
LANET_SLOW_MEMORY = ["--model.init_args.lde_momentum", "0.97"]


def noise_suite(name: str, rate: float, seeds=(0, 1)) -> Suite:
    runs = []
    for s in seeds:
        common = RECIPE + noise(rate)
        runs += [
            Run(f"ce_s{s}", "ce_ferplus_noisy", s, common, method="ce"),
            Run(f"ce2_s{s}", "asm_ferplus", s, common + CE2, method="ce2", baseline="ce"),
            Run(f"asm_s{s}", "asm_ferplus", s, common + ASM, method="asm", baseline=["ce", "ce2"], smoke=SMOKE_ASM),
            Run(f"asm_fixed_s{s}", "asm_ferplus", s, common + ASM_FIXED, method="asm_fixed", baseline=["ce", "ce2", "asm"],
                smoke=SMOKE_ASM),
            Run(f"ce_lanet_s{s}", "ce_ferplus_noisy_lanet", s, common + LANDMARKS, method="ce_lanet"),
            Run(f"lanet_s{s}", "lanet_ferplus", s, common + LANDMARKS, method="lanet", baseline="ce_lanet"),
        ]
        if s == seeds[0]:  # a study, one seed until validation says it is worth a second
            runs.append(Run(f"lanet_align_s{s}", "lanet_ferplus", s, common + LANDMARKS + LANET_ALIGN,
                            method="lanet_align", baseline=["ce_lanet", "lanet"]))
            runs.append(Run(f"lanet_m097_s{s}", "lanet_ferplus", s, common + LANDMARKS + LANET_SLOW_MEMORY,
                            method="lanet_m097", baseline=["ce_lanet", "lanet"]))
    return Suite(name=name, runs=runs, smoke=SMOKE, data_root_override=FER_ROOT, data_files=FERPLUS_FILES,
                 description=f"FER+ with {int(100 * rate)} % symmetric label noise: CE, CE x2, ASM (class-relative and fixed thresholds), LA-Net (and with class-prior alignment, and with a slower label memory) and its CE; "
                             f"{len(seeds)} seeds; clean validation and test labels")
