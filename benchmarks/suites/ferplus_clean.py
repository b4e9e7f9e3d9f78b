"""ARM vs average pooling on clean FER+ labels, at a geometry where ARM is sound, 2 seeds.

ARM turns the last feature map into s^2 features; at 48 px the map is 3x3 (no stem max-pool) and ARM keeps 9 features
where average pooling keeps 512. Both networks here see 96 px inputs (the 48 px images upsampled) with the stem
max-pool removed, a 6x6 map: ARM with shuffle 16, kernel 32, stride 8 keeps 9x9 = 81 features. The cost of that
choice (4x the pixels of the 48 px recipe) is in the wall-time column. When ferkit's network takes an output stride,
48 px with output_stride 16 gives the same 6x6 map for less.
"""
from benchmarks.suite import Run, Suite
from benchmarks.suites._common import FER_ROOT, FERPLUS_FILES, RECIPE, SMOKE, small_input

GEOMETRY = ["--data.img_size", "96", *small_input(True)]
ARM_POOL = ["--model.init_args.net.pool_kwargs", '{"shuffle": 16, "kernel_size": 32, "stride": 8, "affinity": "ema"}']
SEEDS = (0, 1)

SUITE = Suite(
    name="ferplus_clean",
    description="ARM vs average pooling, clean FER+ (majority labels, 8 classes), 96 px, 6x6 map, 2 seeds",
    runs=[Run(f"avg_s{s}", "avg_ferplus", seed=s, overrides=RECIPE + GEOMETRY, method="avg") for s in SEEDS]
    + [Run(f"arm_s{s}", "arm_ferplus", seed=s, overrides=RECIPE + GEOMETRY + ARM_POOL, method="arm", baseline="avg")
       for s in SEEDS],
    smoke=SMOKE + ["--data.img_size", "96"],
    data_root_override=FER_ROOT,
    data_files=FERPLUS_FILES,
)
