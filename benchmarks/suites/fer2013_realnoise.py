"""Real label noise with known ground truth: train on FER2013's original 7-class labels, choose on and test against the
FER+ majority labels (7 classes). FER2013's labels disagree with the FER+ majority on about a third of the training
images, unevenly across classes, so the noise is real and class-dependent, and ASM's noisy subset can be scored
against the disagreement (mining precision / recall per class in the records' ``stats``).
"""
from benchmarks.suite import Run, Suite
from benchmarks.suites._common import FER_ROOT, FERPLUS_FILES, RECIPE, SMOKE
from benchmarks.suites._noise import ASM, LANDMARKS, SMOKE_ASM

# FER2013 images and FER2013's labels for training, the FER+ 7-class majority as ``clean_label`` and as the label of the
# validation and test splits (images without a 7-class FER+ majority are dropped from every split)
SOURCE = ["--data.dataset", '{"class_path": "ferkit.data.FER2013Source", '
          '"init_args": {"root": "../shared/data/fer2013", "clean_labels": "ferplus"}}']

# no synthetic noise on top of the real one (the noisy-label configs default to 30 % symmetric)
CLEAN = ["--data.label_noise", "0.0"]

SUITE = Suite(
    name="fer2013_realnoise",
    description="train on FER2013 labels, test on FER+ majority labels (7 classes): CE vs ASM, LA-Net vs its own CE, 2 seeds",
    runs=[r for s in (0, 1) for r in (
        Run(f"ce_s{s}", "ce_ferplus_noisy", s, RECIPE + SOURCE + CLEAN, method="ce"),
        Run(f"asm_s{s}", "asm_ferplus", s, RECIPE + SOURCE + ASM + CLEAN, method="asm",
            baseline="ce", smoke=SMOKE_ASM),
        # LA-Net against its own CE (the same network, data pipeline, optimiser and schedule, auxiliary weights 0),
        # as in the synthetic-noise suites; the CE above shares ASM's optimiser and is ASM's baseline
        Run(f"ce_lanet_s{s}", "ce_ferplus_noisy_lanet", s, RECIPE + SOURCE + LANDMARKS + CLEAN, method="ce_lanet"),
        Run(f"lanet_s{s}", "lanet_ferplus", s, RECIPE + SOURCE + LANDMARKS + CLEAN, method="lanet",
            baseline=["ce_lanet", "ce"]),
    )],
    smoke=SMOKE,
    data_root_override=FER_ROOT,
    data_files=FERPLUS_FILES,
)
