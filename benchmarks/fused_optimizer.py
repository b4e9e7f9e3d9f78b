"""What PyTorch's fused optimiser kernel buys on this CPU, and that it applies the same update.

On the CPU, PyTorch's Adam and AdamW default to a loop over the parameters, a dozen element-wise passes per weight
tensor; the fused kernel makes one pass. :meth:`ferkit.methods.FERModule.build_optimizer` takes it where the config
leaves ``fused`` unset. This script times full training steps (forward, cross-entropy, backward, optimiser step) of
the two FER+ settings the benchmark suites train, each with the loop and with the fused kernel, all in ONE process and
interleaved over the repetitions after a warm-up, so that load from other processes affects them alike; a setting's
speed-up is the median over repetitions of its paired ratio to the loop:

* ``noisy``: the label-noise suites' network and optimiser (timm ResNet-18 through :class:`ferkit.models.FERNet`,
  1 x 48 px, standard stem, 8 classes, contiguous weights; Adam lr 1e-3, weight decay 1e-4);
* ``recipe``: the FER+ recipe's (channels-last; AdamW lr 2e-3, weight decay 5e-4).

Both under bf16 autocast, batch 64, one thread (as each of ``cpu_queue.sh``'s lanes). The record also holds how far
the two kernels' parameters drift apart over 20 steps from the same state on the same random gradients.

    python benchmarks/fused_optimizer.py --output benchmarks/results/fused_optimizer_<cpu>.json

``--smoke`` (batch 2, one repetition) checks the script runs.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (interleaved_step_times, lane_timing_args, recipe_network, timing_record,  # noqa: E402
                    training_step, write_results)


#: name -> (optimiser class, its settings, channels-last)
SETTINGS = {"noisy": (torch.optim.Adam, {"lr": 1e-3, "weight_decay": 1e-4}, False),
            "recipe": (torch.optim.AdamW, {"lr": 2e-3, "weight_decay": 5e-4}, True)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return lane_timing_args(__doc__, argv)


def drift(net: torch.nn.Module, steps: int = 20) -> dict[str, float]:
    """Largest parameter difference between the loop and the fused kernel after ``steps`` updates of the same
    parameters with the same random gradients, per optimiser (next to the parameters' own scale)."""
    out = {}
    for name, (cls, kw, _) in SETTINGS.items():
        params = [p.detach().clone() for p in net.parameters()]
        copies = [[p.clone().requires_grad_() for p in params] for _ in range(2)]
        opts = [cls(copies[0], fused=False, **kw), cls(copies[1], fused=True, **kw)]
        gen = torch.Generator().manual_seed(0)
        for _ in range(steps):
            grads = [torch.randn(p.shape, generator=gen) * 1e-2 for p in params]
            for ps, opt in zip(copies, opts):
                for p, g in zip(ps, grads):
                    p.grad = g.clone()
                opt.step()
        out[f"{name}_max_abs_diff"] = max(float((a - b).detach().abs().max()) for a, b in zip(*copies))
        out[f"{name}_max_abs_change"] = max(float((a.detach() - p).abs().max()) for a, p in zip(copies[0], params))
    out["steps"] = steps
    return out


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    out, net = recipe_network(args, "fused_optimizer")
    cases = [(name, fused) for name in SETTINGS for fused in (False, True)]
    steps = {}
    for name, fused in cases:
        cls, kw, channels_last = SETTINGS[name]
        steps[(name, fused)] = training_step(copy.deepcopy(net), args.batch_size, args.img_size, bf16=True,
                                             channels_last=channels_last,
                                             optimizer=lambda ps, cls=cls, kw=kw, fused=fused: cls(ps, fused=fused, **kw))
    times = interleaved_step_times(steps, args)
    rows = []
    for name, fused in cases:
        per_step = statistics.median(times[(name, fused)])
        ratios = [a / b for a, b in zip(times[(name, False)], times[(name, fused)])]
        rows.append({"setting": name, "optimizer": SETTINGS[name][0].__name__, "fused": fused,
                     "channels_last": SETTINGS[name][2], "median_step_seconds": per_step,
                     "images_per_second": args.batch_size / per_step, "step_seconds": times[(name, fused)],
                     "speedup_vs_loop_paired_median": statistics.median(ratios)})
        print(f"{name:6s} {SETTINGS[name][0].__name__:5s} {'fused' if fused else 'loop ':5s}: {1000 * per_step:7.1f} ms "
              f"/ step, {args.batch_size / per_step:6.1f} images/s, x{statistics.median(ratios):.2f} against the loop")
    agree = drift(net, steps=2 if args.smoke else 20)
    print(f"after {agree['steps']} steps on the same gradients the kernels' parameters differ by at most "
          f"{agree['noisy_max_abs_diff']:.1e} (Adam) and {agree['recipe_max_abs_diff']:.1e} (AdamW); "
          f"the parameters moved by up to {agree['noisy_max_abs_change']:.1e}")
    record = timing_record(
        "fused_optimizer", args, argv,
        benchmark="fused optimiser kernel vs the per-parameter loop: FER+ training steps (CPU)",
        network=f"timm resnet18 via FERNet, standard stem, avg pool, 1 x {args.img_size} px, 8 classes, "
                f"bf16 autocast, batch {args.batch_size}",
        settings={k: {"optimizer": v[0].__name__, **v[1], "channels_last": v[2]} for k, v in SETTINGS.items()},
        agreement=agree, results=rows)
    write_results(out, record)
    return record


if __name__ == "__main__":
    main()
