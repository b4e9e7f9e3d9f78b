"""The largest useful part of the FER+ suites for one GPU and a few minutes (``bash benchmarks/gpu.sh``; on an H100 the
three main runs took about 10 minutes in all, two calls of the script):
the CE recipe at 112 px, and CE vs ASM at 30 % symmetric noise at 48 px; then, while the budget lasts, ASM's
two-network control and a second seed of the noisy pair (a run the budget stops is continued from its checkpoint by
the same command). ``avg_clean_s1`` and ``arm_clean_s1`` are the second seed of ferplus_clean's ARM vs average-pooling
pair at its own batch size, meant to run side by side (``gpu.sh --parallel --only avg_clean_s1 arm_clean_s1``). The records carry the GPU's name, and the tables' device column shows it. LA-Net is left out: it needs a landmark cache built beforehand."""
from benchmarks.suite import Run, Suite
from benchmarks.suites._common import FER_ROOT, FERPLUS_FILES, RECIPE, SMOKE, epochs, noise
from benchmarks.suites._noise import CE2, SMOKE_ASM
from benchmarks.suites.ferplus_clean import ARM_POOL, GEOMETRY

GPU = ["--trainer.accelerator", "gpu", "--data.num_workers", "12", "--data.batch_size", "128",
       "--data.eval_batch_size", "512"]
#: the CPU suites' batch size (64), on the GPU with loader workers: for runs compared with a CPU run's recipe
GPU_SAME_BATCH = ["--trainer.accelerator", "gpu", "--data.num_workers", "7"]
ASM_GPU = ["--model.init_args.warmup_epochs", "6", "--model.init_args.t_clean", "0.4",
           "--model.init_args.stats", "extra_pass"]

SUITE = Suite(
    name="gpu",
    description="one GPU, about 10 minutes: FER+ CE recipe at 112 px (12 epochs); CE vs ASM at 30 % noise, 48 px (18 epochs); "
                "then the two-network control and seed 1",
    runs=[
        Run("recipe112_s0", "avg_ferplus", 0, RECIPE + GPU + ["--data.img_size", "112"] + epochs(12), method="ce_112px"),
        Run("ce_noise30_s0", "ce_ferplus_noisy", 0, RECIPE + GPU + noise(0.3) + epochs(18), method="ce_noise30"),
        Run("asm_noise30_s0", "asm_ferplus", 0, RECIPE + GPU + noise(0.3) + epochs(18) + ASM_GPU, method="asm_noise30",
            baseline=["ce_noise30", "ce2_noise30"], smoke=SMOKE_ASM),
        # extras, run while the budget lasts: ASM's two-network control, then a second seed of the noisy pair
        Run("ce2_noise30_s0", "asm_ferplus", 0, RECIPE + GPU + noise(0.3) + epochs(18) + CE2, method="ce2_noise30",
            baseline="ce_noise30"),
        Run("ce_noise30_s1", "ce_ferplus_noisy", 1, RECIPE + GPU + noise(0.3) + epochs(18), method="ce_noise30"),
        Run("asm_noise30_s1", "asm_ferplus", 1, RECIPE + GPU + noise(0.3) + epochs(18) + ASM_GPU, method="asm_noise30",
            baseline=["ce_noise30", "ce2_noise30"], smoke=SMOKE_ASM),
        # a second seed of ferplus_clean's ARM vs average pooling, exactly its recipe (6x6 map, batch 64, 30 epochs),
        # run side by side on one GPU (`--only avg_clean_s1` and `--only arm_clean_s1` in two processes); seed 0 of the
        # pair ran on the CPU (benchmarks/results/ferplus_clean/). These two are adopted into ferplus_clean
        # (benchmarks/adopt.py); other CPU runs need no entry here: `gpu.sh --suite <suite> --only <runs>` trains them
        Run("avg_clean_s1", "avg_ferplus", 1, RECIPE + GEOMETRY + GPU_SAME_BATCH, method="avg_clean"),
        Run("arm_clean_s1", "arm_ferplus", 1, RECIPE + GEOMETRY + ARM_POOL + GPU_SAME_BATCH, method="arm_clean",
            baseline="avg_clean"),
    ],
    smoke=SMOKE,
    data_root_override=FER_ROOT,
    data_files=FERPLUS_FILES,
)
