"""What computing the convolutions of tiny maps as one matrix product (:class:`ferkit.backbones.SmallMapConv2d`) buys
on this CPU: the FER+ recipe's training step with that path forced on and off, in fp32 and under bf16 autocast.

The recipe's network (timm ResNet-18 through :class:`ferkit.models.FERNet`, 1 channel, 48 px, 8 classes, standard
stem, channels-last; layer 4 ends on a 2 x 2 map) takes full training steps (forward, cross-entropy, backward, AdamW)
on random tensors. All settings are timed in ONE process, interleaved over the repetitions after a warm-up, so that
load from other processes affects them alike; each setting's speed-up is the median over repetitions of its paired
ratio to the same precision without the matrix-product path. One more setting, ``on_unfold_order`` (bf16), multiplies
the channels-last weights in ``unfold``'s ``(C, kh, kw)`` order instead of their memory order, as the layer first
did: what reading them in place buys. Two more choose which maps take the path in a training step: ``on_2x2_only``
(layer 4 alone, as before layer 3's 3 x 3 map was added) and ``on_6x6`` (layer 2's map too). The validation pass
(forward without gradients, batch 256) is timed the same way: off, on (layer 4 alone) and ``on_3x3`` (layer 3 too).
The record also says what ``auto`` (ferkit's default) chooses here, and how far the two paths' outputs and gradients
differ on the same weights and batch.
``--memory-format contiguous`` times the label-noise suites' layout instead of the recipe's channels-last, with
``on_unfold`` (patches gathered by ``F.unfold``, as the layer first did, instead of strided slices) in place of
``on_unfold_order``. ``on_autograd_patches`` lets autograd differentiate the patch gathering (slices and their
stack) instead of the layer's one-buffer backward.
On a machine whose speed drifts, ``--steps 1 --repeats 20`` pairs the settings more closely.

    python benchmarks/small_map_gemm.py --output benchmarks/results/small_map_gemm_<cpu>.json

``--smoke`` (batch 2, one repetition) checks the script runs.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (interleaved_step_times, recipe_network, smoke_timing, timing_options, timing_record,  # noqa: E402
                    training_step, write_results)

from ferkit.backbones import SmallMapConv2d, convert_small_map_convs, set_small_map_gemm  # noqa: E402
from ferkit.backbones import small_map_conv as smc  # noqa: E402
from ferkit.backbones.small_map_conv import cpu_has_amx_bf16  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # 1 thread: as each of cpu_queue.sh's lanes
    timing_options(p, steps=4, repeats=5, warmup=2, threads=1, batch_size=64, img_size=48)
    p.add_argument("--eval-batch-size", type=int, default=256, help="the suites' validation batch")
    p.add_argument("--memory-format", choices=("channels_last", "contiguous"), default="channels_last",
                   help="the recipe's layout (default) or the label-noise suites'")
    args = smoke_timing(p.parse_args(argv))
    if args.smoke:
        args.eval_batch_size = 2
    return args


def gemm_layers(net: torch.nn.Module, img: int, grad: bool) -> list[str]:
    """The convolutions that take the matrix-product path when it is on, in a pass with gradients (``grad``: maps of
    at most :data:`~ferkit.backbones.small_map_conv.MAX_PIXELS_WITH_GRAD` positions) or without (``MAX_PIXELS``)."""
    names: list[str] = []
    net = copy.deepcopy(net).eval()  # eval: the batch-norm statistics of the caller's network are left alone
    hooks = [m.register_forward_pre_hook(lambda m, args, n=n: names.append(n) if m.uses_gemm(args[0]) else None)
             for n, m in net.named_modules() if isinstance(m, SmallMapConv2d)]
    try:
        with set_small_map_gemm("on"), torch.set_grad_enabled(grad):
            net(torch.zeros(1, 1, img, img))
    finally:
        for h in hooks:
            h.remove()
    return names


def auto_choices() -> dict[str, bool]:
    """What the default policy (``auto``) does here with a tiny map, asked of the layer itself: in fp32 and in bf16."""
    conv = torch.nn.Conv2d(8, 8, 3, padding=1)
    convert_small_map_convs(conv)
    x = torch.zeros(1, 8, 2, 2)
    with set_small_map_gemm("auto"):
        fp32 = conv.uses_gemm(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = conv.uses_gemm(x)
    return {"takes_the_gemm_path_in_bf16": bf16, "takes_the_gemm_path_in_fp32": fp32}


def agreement(net: torch.nn.Module, batch: int, img: int) -> dict[str, float]:
    """Largest absolute difference between the two paths, same weights and batch: fp32 logits and weight gradients,
    and bf16-autocast logits (next to the logits' own scale)."""
    torch.manual_seed(1)
    x, y = torch.randn(max(batch, 2), 1, img, img), torch.randint(0, 8, (max(batch, 2),))
    out: dict[str, dict[str, torch.Tensor]] = {}
    for policy in ("off", "on"):
        m = copy.deepcopy(net).train()
        with set_small_map_gemm(policy):
            logits = m(x)
            torch.nn.functional.cross_entropy(logits, y).backward()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                bf16 = m(x).float()
        grads = torch.cat([p.grad.reshape(-1) for p in m.parameters() if p.grad is not None])
        out[policy] = {"logits": logits.detach(), "grads": grads, "bf16": bf16.detach()}
    a, b = out["off"], out["on"]
    return {"fp32_logits_max_abs_diff": float((a["logits"] - b["logits"]).abs().max()),
            "fp32_logits_max_abs": float(a["logits"].abs().max()),
            "fp32_grads_max_abs_diff": float((a["grads"] - b["grads"]).abs().max()),
            "fp32_grads_max_abs": float(a["grads"].abs().max()),
            "bf16_logits_max_abs_diff": float((a["bf16"] - b["bf16"]).abs().max())}


def paired_speedup(reference: list[float], times: list[float]) -> float:
    """Median over repetitions of ``reference / times``: above 1 where the setting timed in ``times`` is faster."""
    return statistics.median(a / b for a, b in zip(reference, times))


#: the largest maps (positions) on the path in each setting: (without gradients, with gradients); other settings
#: use the layer's own limits
MAPS = {"on_2x2_only": (4, 4), "on_6x6": (4, 36), "on_3x3": (9, 9)}


@contextlib.contextmanager
def setting(name: str):
    """The path's policy, weight order and map limits of a setting named ``off``, ``on`` or ``on_<variant>``."""
    limits, order, unfold, one = ((smc.MAX_PIXELS, smc.MAX_PIXELS_WITH_GRAD), smc._MEMORY_ORDER, smc._UNFOLD,
                                  smc._ONE_BUFFER_BACKWARD)
    smc.MAX_PIXELS, smc.MAX_PIXELS_WITH_GRAD = MAPS.get(name, limits)
    smc._MEMORY_ORDER = name != "on_unfold_order"
    smc._UNFOLD = name == "on_unfold"
    smc._ONE_BUFFER_BACKWARD = name != "on_autograd_patches"
    try:
        with set_small_map_gemm("on" if name.startswith("on") else name):
            yield
    finally:
        (smc.MAX_PIXELS, smc.MAX_PIXELS_WITH_GRAD), smc._MEMORY_ORDER, smc._UNFOLD = limits, order, unfold
        smc._ONE_BUFFER_BACKWARD = one


def evaluation_times(net: torch.nn.Module, args) -> list[dict]:
    """The validation pass's cost: forward passes without gradients under bf16 autocast (eval mode, batch
    ``args.eval_batch_size``), the path off, on (layer 4 alone) and on for layer 3 too, interleaved like the
    training steps.
    Without gradients autocast's bf16 copy of a weight needs none either: the case a batched ``weight @ patches``
    product once paid for with a copy of the weight per sample."""
    fmt = getattr(torch, args.memory_format if args.memory_format == "channels_last" else "contiguous_format")
    x = torch.randn(args.eval_batch_size, 1, args.img_size, args.img_size).to(memory_format=fmt)
    m = copy.deepcopy(net).to(memory_format=fmt).eval()

    def run(policy: str) -> None:
        with setting(policy), torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            m(x)

    policies = ("off", "on", "on_3x3") + (("on_unfold",) if args.memory_format == "contiguous" else ())
    times = interleaved_step_times(dict.fromkeys(policies), args, run)
    rows = []
    for policy in policies:
        per_batch = statistics.median(times[policy])
        ratio = paired_speedup(times["off"], times[policy])
        rows.append({"precision": "bf16-mixed", "small_map_gemm": policy, "batch_size": args.eval_batch_size,
                     "median_batch_seconds": per_batch, "batch_seconds": times[policy],
                     "speedup_vs_off_paired_median": ratio,
                     "speedup_vs_on_paired_median": paired_speedup(times["on"], times[policy])})
        print(f"evaluation forward, batch {args.eval_batch_size}, small-map GEMM {policy:6s}: "
              f"{1000 * per_batch:7.1f} ms / batch, x{ratio:.2f} against off, "
              f"x{rows[-1]['speedup_vs_on_paired_median']:.2f} against on")
    return rows


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    out, net = recipe_network(args, "small_map_gemm")
    small = gemm_layers(net, args.img_size, grad=True)
    small_eval = gemm_layers(net, args.img_size, grad=False)
    # "on_unfold_order": the path with channels-last weights multiplied in unfold's (C, kh, kw) order, as before the
    # layer read them in their memory order (a copy of each weight, and of its gradient back, per step)
    settings = list(itertools.product(["32-true", "bf16-mixed"], ["off", "on"])) + [
        ("bf16-mixed", name) for name in ("on_unfold_order", "on_2x2_only", "on_6x6", "on_autograd_patches")]
    if args.memory_format == "contiguous":  # contiguous weights are multiplied in unfold's order anyway; their
        # patches are gathered from strided slices, against F.unfold as the layer first did
        settings[settings.index(("bf16-mixed", "on_unfold_order"))] = ("bf16-mixed", "on_unfold")
    steps = {s: training_step(copy.deepcopy(net), args.batch_size, args.img_size, bf16=s[0] == "bf16-mixed",
                              channels_last=args.memory_format == "channels_last") for s in settings}

    def run(s: tuple[str, str]) -> None:
        with setting(s[1]):
            steps[s]()

    times = interleaved_step_times(steps, args, run)
    rows = []
    for precision, policy in settings:
        per_step = statistics.median(times[(precision, policy)])
        vs_off = paired_speedup(times[(precision, "off")], times[(precision, policy)])
        vs_on = paired_speedup(times[(precision, "on")], times[(precision, policy)])
        rows.append({"precision": precision, "small_map_gemm": policy, "median_step_seconds": per_step,
                     "images_per_second": args.batch_size / per_step, "step_seconds": times[(precision, policy)],
                     "speedup_vs_off_paired_median": vs_off, "speedup_vs_on_paired_median": vs_on})
        print(f"{precision:10s} small-map GEMM {policy:15s}: {1000 * per_step:7.1f} ms / step, "
              f"{args.batch_size / per_step:6.1f} images/s, x{vs_off:.2f} against off, x{vs_on:.2f} against on")
    evaluation = evaluation_times(net, args)
    auto = {"amx_bf16": cpu_has_amx_bf16(), **auto_choices()}
    diff = agreement(net, args.batch_size, args.img_size)
    print(f"auto on this CPU: {'on' if auto['takes_the_gemm_path_in_bf16'] else 'off'} in bf16, "
          f"{'on' if auto['takes_the_gemm_path_in_fp32'] else 'off'} in fp32 (AMX bf16: {auto['amx_bf16']}); "
          f"fp32 logits differ by at most {diff['fp32_logits_max_abs_diff']:.2e} "
          f"(scale {diff['fp32_logits_max_abs']:.2f}), gradients by {diff['fp32_grads_max_abs_diff']:.2e}")
    record = timing_record(
        "small_map_gemm", args, argv,
        benchmark="tiny-map convolutions as one matrix product: FER+ recipe training step, on vs off (CPU)",
        network=f"timm resnet18 via FERNet, standard stem, avg pool, 1 x {args.img_size} px, 8 classes, "
                f"{args.memory_format.replace('_', '-')}, batch {args.batch_size}",
        memory_format=args.memory_format, max_pixels=smc.MAX_PIXELS, max_pixels_with_grad=smc.MAX_PIXELS_WITH_GRAD,
        convolutions_on_the_gemm_path=small, convolutions_on_the_gemm_path_without_gradients=small_eval, auto=auto,
        agreement=diff, results=rows, evaluation=evaluation)
    write_results(out, record)
    return record


if __name__ == "__main__":
    main()
