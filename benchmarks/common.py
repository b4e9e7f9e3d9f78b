"""Shared helpers of the stand-alone benchmark scripts: the environment record, result files and ``--smoke`` paths.

The scripts here measure speed, landmarks and mining analyses that are not (config, seed) training runs; the
accuracy benchmarks go through the harness (``python -m benchmarks run <suite>``).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: the committed result files; a ``--smoke`` run never writes here
RESULTS = REPO / "benchmarks" / "results"


def shared_data_root() -> Path:
    """Where the real datasets live: ``$FERKIT_SHARED_DATA``, else ``<repo>/../shared/data``."""
    env = os.environ.get("FERKIT_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """Versions, CPU / GPU, thread count, git commit and date: what a timing depends on."""
    import lightning
    import numpy
    import timm
    import torch

    cpu = cpu_name()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = ""
    return {
        "python": sys.version.split()[0], "torch": torch.__version__, "lightning": lightning.__version__,
        "timm": timm.__version__, "numpy": numpy.__version__, "platform": platform.platform(), "cpu": cpu,
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "loadavg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git_commit": commit, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def smoke_dir() -> Path:
    """The folder of ``--smoke`` outputs when no ``--output`` is given (outside the repository)."""
    return Path(tempfile.gettempdir()) / "ferkit_benchmark_smoke"


def result_path(output: str | os.PathLike | None, name: str, smoke: bool) -> Path:
    """Where a script writes its result: ``--output`` if given, else ``benchmarks/results/<name>.json``, or, for a
    ``--smoke`` run, a temporary folder. A smoke run refuses to write over a committed result."""
    if output is None:
        return smoke_dir() / f"{name}.json" if smoke else RESULTS / f"{name}.json"
    path = Path(output).expanduser().resolve()
    if smoke and path.is_relative_to(RESULTS.resolve()):
        raise SystemExit(f"--smoke writes tiny, meaningless numbers: --output {output} is inside {RESULTS}, whose files "
                         "are the committed measurements; pass a path outside it (or leave --output out)")
    return path


def write_results(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` as indented JSON (creating the folder) and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def timing_options(p, steps: int, repeats: int, warmup: int, threads: int, batch_size: int | None = None,
                   img_size: int | None = None) -> None:
    """The options of the interleaved step-timing scripts (``recipe_speed``, ``arm_geometry``, ``small_map_gemm``,
    ``fused_optimizer``): timed steps per setting and repetition, repetitions, untimed warm-up steps, torch threads,
    ``--output``, ``--smoke``, and ``--batch-size`` / ``--img-size`` where a default is given. :func:`smoke_timing`
    shrinks them for a smoke run."""
    if batch_size is not None:
        p.add_argument("--batch-size", type=int, default=batch_size)
    if img_size is not None:
        p.add_argument("--img-size", type=int, default=img_size)
    p.add_argument("--steps", type=int, default=steps, help="timed steps per setting and repetition")
    p.add_argument("--repeats", type=int, default=repeats, help="interleaved repetitions")
    p.add_argument("--warmup", type=int, default=warmup, help="untimed steps per setting before timing")
    p.add_argument("--threads", type=int, default=threads)
    p.add_argument("--output", default=None)
    p.add_argument("--smoke", action="store_true")


def lane_timing_args(doc: str, argv: list[str] | None):
    """The parsed options of a step-timing script measured as one of ``cpu_queue.sh``'s lanes: one thread, a 48-px
    batch of 64, 4 timed steps x 5 repetitions after 2 warm-up steps (``doc``: the script's docstring, whose first
    paragraph describes it)."""
    import argparse

    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    timing_options(p, steps=4, repeats=5, warmup=2, threads=1, batch_size=64, img_size=48)
    return smoke_timing(p.parse_args(argv))


def interleaved_step_times(steps: dict, args, run=None) -> dict:
    """Seconds per step of each setting, ``{key: [one mean per repetition]}``: ``args.warmup`` untimed steps of each,
    then ``args.repeats`` repetitions of ``args.steps`` timed steps per setting, the settings' order reversed every
    other repetition so that drift and other processes' load affect them alike. ``run(key)`` takes one step of a
    setting (default: ``steps[key]()``)."""
    run = run or (lambda key: steps[key]())
    keys = list(steps)
    for key in keys:
        for _ in range(args.warmup):
            run(key)
    times: dict = {k: [] for k in keys}
    for rep in range(args.repeats):
        for key in keys if rep % 2 == 0 else keys[::-1]:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                run(key)
            times[key].append((time.perf_counter() - t0) / args.steps)
    return times


def smoke_timing(args):
    """With ``--smoke``: one timed step, one repetition, no warm-up, and a batch of 2 where the script has
    ``--batch-size``."""
    if args.smoke:
        args.steps, args.repeats, args.warmup = 1, 1, 0
        if hasattr(args, "batch_size"):
            args.batch_size = 2
    return args


def recipe_network(args, name: str):
    """``(result path, network)`` for a step-timing script on the FER+ recipe's network: torch set to
    ``args.threads``, the result path checked before anything is measured, and timm ResNet-18 through
    :class:`ferkit.models.FERNet` (standard stem, 1 x ``args.img_size`` px, 8 classes) from seed 0."""
    import torch

    from ferkit.models import FERNetConfig

    torch.set_num_threads(args.threads)
    out = result_path(args.output, name, args.smoke)  # refused before the measurement, not after
    torch.manual_seed(0)
    return out, FERNetConfig(backbone="resnet18").build(num_classes=8, in_chans=1, img_size=args.img_size)


def timing_record(name: str, args, argv: list[str] | None, **fields) -> dict:
    """A step-timing script's result record: its command line, the timing options, ``fields`` (what it measured)
    and the environment."""
    return {"benchmark": fields.pop("benchmark"),
            "command": f"python benchmarks/{name}.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "smoke": args.smoke, **fields, "threads": args.threads, "steps": args.steps, "repeats": args.repeats,
            "warmup": args.warmup, "environment": environment()}


def training_step(net, batch: int, img: int, num_classes: int = 8, bf16: bool = True, channels_last: bool = False,
                  optimizer=None):
    """A closure taking one full training step of ``net`` (forward, cross-entropy, backward, optimiser step) on a
    fixed random grayscale batch ``batch x 1 x img x img``: the model's cost alone, for the speed scripts. ``bf16``
    runs the forward under CPU bf16 autocast; ``channels_last`` puts weights and batch in that memory format;
    ``optimizer`` builds the optimiser from the parameters (default: AdamW lr 1e-3 with PyTorch's default kernel,
    the per-parameter loop on the CPU)."""
    import torch
    import torch.nn.functional as F

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt).train()
    opt = (optimizer or (lambda params: torch.optim.AdamW(params, lr=1e-3)))(net.parameters())
    x = torch.randn(batch, 1, img, img).to(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def datamodule_from_checkpoint(ckpt: dict, root: str | None, where: str):
    """The :class:`ferkit.data.FERDataModule` a checkpoint was trained with, from its stored data-module settings;
    ``root`` relocates the dataset. ``where`` names the checkpoint in the error when it stores no settings."""
    from ferkit.data import FERDataModule

    hp = dict(ckpt.get("datamodule_hyper_parameters") or {})
    if not hp:
        raise SystemExit(f"{where} does not record its data-module settings, so its training set cannot be rebuilt: "
                         "pass the training config where the script takes one")
    if root:
        hp["dataset"] = {**hp["dataset"], "init_args": {**dict(hp["dataset"].get("init_args") or {}), "root": root}}
    return FERDataModule.from_hparams(hp)


def training_set_with_clean_labels(dm):
    """``dm``'s training set (set up for fitting), refused unless it knows which of its labels are wrong."""
    dm.setup("fit")
    ds = dm.train_set
    if getattr(ds, "clean_labels", None) is None:
        raise SystemExit("the training set has no known clean labels: the study needs synthetic label noise "
                         "(data.label_noise > 0) or a dataset with clean labels (FER2013Source(clean_labels='ferplus'))")
    return ds
