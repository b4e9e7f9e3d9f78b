"""PASM on FER+ (majority labels, 48 px, the recipe's network and budget): generation 0 (CE) against generations 1
and 2, and against generation 1 with random-position erasing (the same distillation and erasing, centres drawn at
random: the control that says whether the located position matters).

Each student's teacher is the previous generation's checkpoint chosen on validation (``{best:...}``); the centre pass
(``ferkit pasm locate``) runs once per generation as a harness step, and its cost is kept in the student's record."""
from benchmarks.suite import Run, Step, Suite
from benchmarks.suites._common import FER_ROOT, FERPLUS_FILES, RECIPE, SMOKE, label_smoothing

CONFIG = "pasm_ferplus"
#: the recipe's network and budget (standard stem, bf16, 30 epochs, full data) and its label smoothing
COMMON = RECIPE + label_smoothing(0.1)


def teacher(run: str, centres: str | None) -> list[str]:
    return ["--model.init_args.teacher_ckpt", f"{{best:{run}}}",
            "--model.init_args.centres_path", "null" if centres is None else f"{{shared}}/{centres}"]


def locate(name: str, run: str) -> Step:
    """The centre pass of a student: the teacher ``run`` locates every training image; the report holds its cost."""
    return Step(name, ["pasm", "locate", "--config", CONFIG, *COMMON, "--teacher", f"{{best:{run}}}",
                       "--out", f"{{shared}}/{name}.pt"], report=f"{{shared}}/{name}.pt.json")


def runs(seed: int) -> list[Run]:
    g0, g1 = f"gen0_s{seed}", f"gen1_s{seed}"
    c1, c2 = f"centres_gen1_s{seed}", f"centres_gen2_s{seed}"
    return [
        Run(g0, CONFIG, seed, COMMON + ["--model.init_args.teacher_ckpt", "null"], method="gen0_ce"),
        Run(g1, CONFIG, seed, COMMON + teacher(g0, f"{c1}.pt"), method="gen1", baseline="gen0_ce",
            steps=[locate(c1, g0)]),
        Run(f"random1_s{seed}", CONFIG, seed, COMMON + teacher(g0, None) + ["--model.init_args.random_centres", "true"],
            method="gen1_random", baseline=["gen0_ce", "gen1"]),
        Run(f"gen2_s{seed}", CONFIG, seed, COMMON + teacher(g1, f"{c2}.pt"), method="gen2", baseline=["gen0_ce", "gen1"],
            steps=[locate(c2, g1)]),
    ]


SUITE = Suite(
    name="ferplus_pasm",
    description="PASM on FER+ (48 px, recipe network, 30 epochs per generation): CE generation 0 vs students 1 and 2 "
                "vs random-position erasing; teachers chosen on validation",
    # seed 1 repeats the comparisons the summary table reports (generation 1 against generation 0 and against the
    # random-position control), whose seed-0 gaps are small; generation 2 stays a seed-0 study
    runs=runs(0) + [r for r in runs(1) if not r.name.startswith("gen2_")],
    smoke=SMOKE,
    data_root_override=FER_ROOT,
    data_files=FERPLUS_FILES,
)
