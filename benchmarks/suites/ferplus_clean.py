"""ARM vs average pooling on clean FER+ labels, at a geometry where ARM is sound, 2 seeds.

ARM turns the last feature map into s^2 features; on the recipe's 2x2 map (48 px, standard stem) it has almost nothing
to work with, and at 3x3 (no stem max-pool) it keeps 9 features where average pooling keeps 512. Both networks here
keep the recipe's 48 px input and standard stem with output stride 8 (timm's dilation of the last two stages,
``net.output_stride``): a 6x6 map, on which ARM with shuffle 16, kernel 32, stride 8 keeps 9x9 = 81 features.
``benchmarks/arm_geometry.py`` measured the ways to a 6x6 map (``benchmarks/results/arm_geometry.json``): this one costs
about 2x the recipe's training step, 48 px with no stem max-pool and output stride 16 about 3x, 96 px with no stem
max-pool about 7x. Both pools share the geometry, so the gap is ARM's alone.
"""
from benchmarks.suite import Run, Suite
from benchmarks.suites._common import FER_ROOT, FERPLUS_FILES, RECIPE, SMOKE, small_input

GEOMETRY = [*small_input(False), "--model.init_args.net.output_stride", "8"]
ARM_POOL = ["--model.init_args.net.pool_kwargs", '{"shuffle": 16, "kernel_size": 32, "stride": 8, "affinity": "ema"}']
SEEDS = (0, 1)

SUITE = Suite(
    name="ferplus_clean",
    description="ARM vs average pooling, clean FER+ (majority labels, 8 classes), 48 px, output stride 8 (6x6 map), "
                "2 seeds",
    runs=[Run(f"avg_s{s}", "avg_ferplus", seed=s, overrides=RECIPE + GEOMETRY, method="avg") for s in SEEDS]
    + [Run(f"arm_s{s}", "arm_ferplus", seed=s, overrides=RECIPE + GEOMETRY + ARM_POOL, method="arm", baseline="avg")
       for s in SEEDS],
    smoke=SMOKE,
    data_root_override=FER_ROOT,
    data_files=FERPLUS_FILES,
)
