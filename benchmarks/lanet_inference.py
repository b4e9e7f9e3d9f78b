"""Inference cost of the exported LA-Net model vs the plain backbone classifier of the same depth.

LA-Net trains a landmark branch, LDE scorers, contrastive heads and a momentum encoder, but deploys the expression
path only: :func:`ferkit.export.export_inference_model` returns a :class:`ferkit.models.FERNet`. This script
times that export against a freshly built FERNet (same backbone, pool, input) with paired, interleaved measurements
(the two models alternate within every round, so load from other processes affects both alike) and reports the
median of the per-round time ratios, with its interquartile range as the noise estimate. For context it also times
LA-Net's full training forward (``forward_train``) and the parameter counts.

    python benchmarks/lanet_inference.py                  # CPU: 48 px grayscale (batch 1, 64) and 224 px RGB (batch 1, 16)
    python benchmarks/lanet_inference.py --smoke          # one tiny case, 3 rounds (seconds), to a temporary folder
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, result_path, write_results  # noqa: E402


def _time(fn, x, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn(x)
    return (time.perf_counter() - t0) / reps


def compare(case: dict, rounds: int, device: str) -> dict:
    import torch

    from ferkit.export import export_inference_model
    from ferkit.methods.lanet import LANetModel
    from ferkit.models import FERNetConfig

    torch.manual_seed(0)
    net = FERNetConfig(backbone=case["backbone"], small_input=case["small_input"])
    kw = dict(num_classes=8, in_chans=case["channels"], img_size=case["img_size"])
    lanet = LANetModel(net, **kw).to(device).eval()
    exported = export_inference_model(lanet).to(device).eval()
    plain = net.build(**kw).to(device).eval()
    x = torch.randn(case["batch"], case["channels"], case["img_size"], case["img_size"], device=device)
    reps = case.get("reps", 3)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def run(model):
        def f(inp):
            model(inp)
            sync()
        return f

    def run_train(inp):
        lanet.forward_train(inp)
        sync()

    with torch.inference_mode():
        for m in (exported, plain):
            for _ in range(2):
                run(m)(x)
        ratios, t_exp, t_plain = [], [], []
        for r in range(rounds):
            order = [(exported, t_exp), (plain, t_plain)]
            if r % 2:
                order.reverse()
            for m, acc in order:
                acc.append(_time(run(m), x, reps))
            ratios.append(t_exp[-1] / t_plain[-1])
        run_train(x)
        t_train = statistics.median(_time(run_train, x, reps) for _ in range(max(3, rounds // 3)))
    q = statistics.quantiles(ratios, n=4)
    return {
        **case,
        "exported_ms": round(1000 * statistics.median(t_exp), 2), "plain_ms": round(1000 * statistics.median(t_plain), 2),
        "ratio_median": round(statistics.median(ratios), 3), "ratio_iqr": [round(q[0], 3), round(q[2], 3)],
        "lanet_forward_train_ms": round(1000 * t_train, 2),
        "params_exported": sum(p.numel() for p in exported.parameters()),
        "params_plain": sum(p.numel() for p in plain.parameters()),
        "params_lanet_training_network": sum(p.numel() for p in lanet.parameters()),
        "same_architecture": [type(m).__name__ for m in exported.modules()] == [type(m).__name__ for m in plain.modules()],
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--output", default=None,
                   help="result file (default: benchmarks/results/lanet_inference.json; --smoke: a temporary folder)")
    p.add_argument("--smoke", action="store_true", help="one tiny case (32 px gray, batch 2), 3 rounds: checks the script runs")
    args = p.parse_args(argv)
    output = result_path(args.output, "lanet_inference", args.smoke)
    import torch

    if args.smoke:
        args.threads, args.rounds = 1, 3
    torch.set_num_threads(args.threads)
    cases = [{"name": "32px gray, batch 2", "img_size": 32, "channels": 1, "small_input": True, "batch": 2, "reps": 1}] \
        if args.smoke else [
        {"name": "48px gray, batch 1", "img_size": 48, "channels": 1, "small_input": True, "batch": 1, "reps": 10},
        {"name": "48px gray, batch 64", "img_size": 48, "channels": 1, "small_input": True, "batch": 64, "reps": 2},
        {"name": "224px RGB, batch 1", "img_size": 224, "channels": 3, "small_input": False, "batch": 1, "reps": 3},
        {"name": "224px RGB, batch 16", "img_size": 224, "channels": 3, "small_input": False, "batch": 16, "reps": 1},
    ]
    results = []
    for case in cases:
        case["backbone"] = args.backbone
        res = compare(case, args.rounds, args.device)
        results.append(res)
        print(f"{res['name']}: exported {res['exported_ms']} ms, plain {res['plain_ms']} ms, ratio {res['ratio_median']} "
              f"(IQR {res['ratio_iqr']}), LA-Net training forward {res['lanet_forward_train_ms']} ms", flush=True)
    record = {
        "benchmark": "inference time of the exported LA-Net model / plain FERNet of the same depth (paired, interleaved)",
        "command": "python benchmarks/lanet_inference.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "smoke": args.smoke,
        "settings": {"device": args.device, "threads": args.threads, "rounds": args.rounds},
        "environment": environment(),
        "cases": results,
    }
    write_results(output, record)
    return record


if __name__ == "__main__":
    main()
