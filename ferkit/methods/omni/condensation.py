"""DatasetCondensation: distil a labelled (or mined) image set into a few synthetic images per class.

Omni-supervised FER (Liu et al., arXiv 2005.08551) distils its large mined set into a few informative images per
class, which are then added to the labelled set at negligible training cost. The paper does not fix the
distillation algorithm; ferkit offers the two standard ones:

* ``"gradient_matching"`` (Zhao, Mopuri and Bilen, "Dataset Condensation with Gradient Matching", ICLR 2021): for a
  freshly initialised network, the synthetic images of class ``c`` are moved so that the gradient of the
  classification loss on them matches the gradient on a batch of real images of ``c``, layer by layer, with the
  distance ``sum over output units of (1 - cos(g_syn, g_real))``. Between matchings the network takes a step on the
  synthetic set, so matching is done along a training trajectory.
* ``"distribution_matching"`` (Zhao and Bilen, "Dataset Condensation with Distribution Matching", WACV 2023): for a
  randomly initialised embedding network, the mean embedding of class ``c``'s synthetic images is pulled to the mean
  embedding of a batch of its real images (squared distance). No second-order gradients: cheaper per iteration.

Both use a small ConvNet (three conv - instance norm - ReLU - average-pool blocks), re-initialised every outer
iteration, as is standard. Synthetic images start from random real images of their class (``init="real"``) or
noise (``init="noise"``) and live in the network's input space (the normalised tensors the data pipeline yields).

Pure torch. :meth:`DatasetCondensation.run` is resumable: with ``checkpoint=`` it saves its state every
``save_every`` iterations and continues from it when called again; iteration ``t`` is seeded by ``seed + t``
(network initialisation and real batches), so a resumed run gives exactly the images of an uninterrupted one.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

__all__ = ["DatasetCondensation", "CondensedSet", "ConvNet"]

FORMAT_VERSION = 1


class ConvNet(nn.Module):
    """The condensation network: ``depth`` x (conv3x3 -> instance norm -> ReLU -> avg-pool 2) -> linear."""

    def __init__(self, in_chans: int, num_classes: int, img_size: int, width: int = 64, depth: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c, s = in_chans, img_size
        for _ in range(depth):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.GroupNorm(width, width, affine=True), nn.ReLU(inplace=True)]
            if s >= 2:
                layers.append(nn.AvgPool2d(2))
                s //= 2
            c = width
        self.features = nn.Sequential(*layers)
        self.num_features = width * s * s
        self.head = nn.Linear(self.num_features, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


@dataclass
class CondensedSet:
    """Distilled images with their labels and label space.

    ``images`` float32 ``[C * ipc, channels, H, W]`` (class-major: the ``ipc`` images of class 0 first), ``labels``
    int64, ``class_names`` the label space, ``info`` how they were made (method, ipc, iterations, seconds).
    Saved with :meth:`save` as a small ``.pt`` of plain tensors and lists (readable with ``weights_only=True``).
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ipc(self) -> int:
        return self.images.shape[0] // max(len(self.class_names), 1)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({"format": "ferkit.condensed", "version": FORMAT_VERSION, "images": self.images.detach().cpu(),
                    "labels": self.labels.detach().cpu(), "class_names": list(self.class_names), "info": dict(self.info)}, tmp)
        tmp.replace(path)  # never a half-written file under the final name
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CondensedSet":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: distilled set not found; make one with `ferkit omni distill` or "
                                    "DatasetCondensation(...).run(...).save(path)")
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != "ferkit.condensed":
            raise ValueError(f"{path}: not a ferkit distilled set (expected a .pt written by CondensedSet.save)")
        images, labels = blob["images"].float(), blob["labels"].long()
        names = list(blob["class_names"])
        if images.ndim != 4 or labels.shape != images.shape[:1]:
            raise ValueError(f"{path}: images must be [N, C, H, W] with N labels, got {tuple(images.shape)} and "
                             f"{tuple(labels.shape)}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= len(names)):
            raise ValueError(f"{path}: labels outside 0..{len(names) - 1}")
        if not torch.isfinite(images).all():
            raise ValueError(f"{path}: images contain NaN or inf; distil again")
        return cls(images, labels, names, dict(blob.get("info", {})))


def _match_distance(g_syn: Sequence[torch.Tensor], g_real: Sequence[torch.Tensor]) -> torch.Tensor:
    """Gradient-matching distance: per weight tensor, sum over output units of 1 - cosine (biases and norms skipped)."""
    total = g_syn[0].new_zeros(())
    for gs, gr in zip(g_syn, g_real):
        if gs.ndim < 2:
            continue
        gs, gr = gs.flatten(1), gr.flatten(1)
        total = total + (1 - F.cosine_similarity(gs, gr, dim=1, eps=1e-6)).sum()
    return total


class DatasetCondensation:
    """Distils a labelled set into ``ipc`` synthetic images per class.

    Args:
        method: ``"gradient_matching"`` or ``"distribution_matching"`` (see the module docstring).
        ipc: synthetic images per class (the paper's setting of "a few"; 1 and 10 are the usual choices).
        init: ``"real"`` (random real images of the class) or ``"noise"`` (standard normal).
        iterations: outer iterations (a fresh network each).
        lr_img: SGD learning rate of the synthetic images (momentum 0.5).
        batch_real: real images per class per iteration.
        width / depth: the ConvNet's channels and blocks.
        net_lr / net_steps: gradient matching only: the network's SGD steps on the synthetic set between matchings.
        seed: seeds iteration ``t`` with ``seed + t``.
        save_every: with a checkpoint, save it every this many iterations.
        device: where to run (``"cpu"``, ``"cuda"``).
    """

    def __init__(self, method: Literal["gradient_matching", "distribution_matching"] = "gradient_matching",
                 ipc: int = 10, init: Literal["real", "noise"] = "real", iterations: int = 200, lr_img: float = 0.1,
                 batch_real: int = 64, width: int = 64, depth: int = 3, net_lr: float = 0.01, net_steps: int = 1,
                 seed: int = 0, save_every: int = 20, device: str = "cpu") -> None:
        if method not in ("gradient_matching", "distribution_matching"):
            raise ValueError(f"DatasetCondensation: method must be 'gradient_matching' or 'distribution_matching', got {method!r}")
        if init not in ("real", "noise"):
            raise ValueError(f"DatasetCondensation: init must be 'real' or 'noise', got {init!r}")
        for name, v in (("ipc", ipc), ("batch_real", batch_real), ("width", width), ("depth", depth), ("save_every", save_every)):
            if int(v) < 1:
                raise ValueError(f"DatasetCondensation: {name} must be >= 1, got {v}")
        if iterations < 0 or lr_img <= 0:
            raise ValueError(f"DatasetCondensation: iterations must be >= 0 and lr_img > 0, got {iterations}, {lr_img}")
        self.method, self.ipc, self.init, self.iterations, self.lr_img = method, int(ipc), init, int(iterations), float(lr_img)
        self.batch_real, self.width, self.depth = int(batch_real), int(width), int(depth)
        self.net_lr, self.net_steps, self.seed, self.save_every = float(net_lr), int(net_steps), int(seed), int(save_every)
        self.device = torch.device(device)

    def config(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("method", "ipc", "init", "iterations", "lr_img", "batch_real", "width",
                                              "depth", "net_lr", "net_steps", "seed")}

    # -- data ------------------------------------------------------------------------------------------
    @staticmethod
    def _image(item: Any) -> torch.Tensor:
        x = item["image"] if isinstance(item, dict) else item[0]
        return torch.as_tensor(x).float()

    def _real_batch(self, dataset: Any, members: np.ndarray, n: int, rng: np.random.Generator) -> torch.Tensor:
        pick = rng.choice(members, size=min(n, len(members)), replace=False)
        return torch.stack([self._image(dataset[int(i)]) for i in pick]).to(self.device)

    # -- run -------------------------------------------------------------------------------------------
    def run(self, dataset: Any, labels: Sequence[int] | np.ndarray | torch.Tensor, class_names: Sequence[str],
            checkpoint: str | Path | None = None, progress: Callable[[int], None] | None = None) -> CondensedSet:
        """Distil ``dataset`` (items ``{"image": [ch, H, W] tensor, ...}`` or ``(image, label)``) whose labels are
        ``labels`` into a :class:`CondensedSet`. With ``checkpoint``, resume from it when it exists and save to it.
        ``progress`` is called with 1 after each iteration. The global random state is left as it was."""
        devices = [torch.cuda.current_device()] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return self._run(dataset, labels, class_names, checkpoint, progress)

    def _run(self, dataset: Any, labels: Sequence[int] | np.ndarray | torch.Tensor, class_names: Sequence[str],
             checkpoint: str | Path | None, progress: Callable[[int], None] | None) -> CondensedSet:
        labels = np.asarray(torch.as_tensor(labels).cpu().numpy()).astype(np.int64)
        num_classes = len(class_names)
        if len(labels) != len(dataset):
            raise ValueError(f"DatasetCondensation.run: {len(labels)} labels for {len(dataset)} images")
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"DatasetCondensation.run: labels must be in 0..{num_classes - 1} (class_names has "
                             f"{num_classes} names), got {labels.min()}..{labels.max()}")
        members = [np.flatnonzero(labels == c) for c in range(num_classes)]
        empty = [class_names[c] for c in range(num_classes) if len(members[c]) == 0]
        if empty:
            raise ValueError(f"DatasetCondensation.run: no images of class(es) {empty}; every class needs at least one "
                             "real image to distil (or drop the class from the label space)")
        shape = tuple(self._image(dataset[int(members[0][0])]).shape)
        if len(shape) != 3 or shape[1] != shape[2]:
            raise ValueError(f"DatasetCondensation.run: images must be square [channels, H, W] tensors, got {shape}")
        in_chans, size = shape[0], shape[1]

        state = self._load_checkpoint(checkpoint, num_classes, shape)
        if state is not None:
            syn = state["images"].to(self.device).requires_grad_(True)
            start, elapsed = int(state["iteration"]), float(state["seconds"])
            log.info("resuming condensation from %s at iteration %d/%d", checkpoint, start, self.iterations)
        else:
            g = torch.Generator().manual_seed(self.seed)
            rng = np.random.default_rng(self.seed)
            if self.init == "real":
                init = [self._real_batch(dataset, m, self.ipc, rng) for m in members]
                # a class with fewer real images than ipc repeats them (with a little noise, so they can diverge)
                init = [x.repeat(-(-self.ipc // x.shape[0]), 1, 1, 1)[: self.ipc] for x in init]
                syn = torch.cat(init).cpu()
                syn = syn + 0.01 * torch.randn(syn.shape, generator=g) * (torch.arange(syn.shape[0]) % self.ipc >= 1).float()[:, None, None, None]
            else:
                syn = torch.randn((num_classes * self.ipc, *shape), generator=g)
            syn = syn.to(self.device).requires_grad_(True)
            start, elapsed = 0, 0.0
        syn_labels = torch.arange(num_classes, device=self.device).repeat_interleave(self.ipc)
        opt = torch.optim.SGD([syn], lr=self.lr_img, momentum=0.5)
        if state is not None and state.get("optimizer"):
            opt.load_state_dict(state["optimizer"])

        for it in range(start, self.iterations):
            t0 = time.perf_counter()
            torch.manual_seed(self.seed + 1 + it)
            rng = np.random.default_rng(self.seed + 1 + it)
            net = ConvNet(in_chans, num_classes, size, self.width, self.depth).to(self.device)
            loss = self._step(net, dataset, members, syn, syn_labels, opt, rng)
            if not np.isfinite(loss):
                raise FloatingPointError(f"DatasetCondensation: non-finite matching loss at iteration {it}; lower lr_img "
                                         f"(now {self.lr_img})")
            elapsed += time.perf_counter() - t0
            if progress is not None:
                progress(1)
            done = it + 1
            if checkpoint is not None and (done % self.save_every == 0 or done == self.iterations):
                self._save_checkpoint(checkpoint, syn, opt, done, elapsed)
        info = {**self.config(), "seconds": round(elapsed, 3), "image_shape": list(shape)}
        return CondensedSet(syn.detach().cpu().clone(), syn_labels.cpu(), list(class_names), info)

    def _step(self, net: ConvNet, dataset: Any, members: list[np.ndarray], syn: torch.Tensor,
              syn_labels: torch.Tensor, opt: torch.optim.Optimizer, rng: np.random.Generator) -> float:
        num_classes = len(members)
        total = 0.0
        if self.method == "distribution_matching":
            for p in net.parameters():
                p.requires_grad_(False)
            loss = syn.new_zeros(())
            for c in range(num_classes):
                real = self._real_batch(dataset, members[c], self.batch_real, rng)
                s = syn[c * self.ipc:(c + 1) * self.ipc]
                loss = loss + ((net.embed(real).mean(0) - net.embed(s).mean(0)) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return float(loss.detach())
        params = [p for p in net.parameters()]
        loss = syn.new_zeros(())
        for c in range(num_classes):
            real = self._real_batch(dataset, members[c], self.batch_real, rng)
            y_real = torch.full((real.shape[0],), c, device=self.device)
            g_real = torch.autograd.grad(F.cross_entropy(net(real), y_real), params)
            g_real = [g.detach() for g in g_real]
            s = syn[c * self.ipc:(c + 1) * self.ipc]
            g_syn = torch.autograd.grad(F.cross_entropy(net(s), syn_labels[c * self.ipc:(c + 1) * self.ipc]), params,
                                        create_graph=True)
            loss = loss + _match_distance(g_syn, g_real)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total = float(loss.detach())
        # a few network steps on the synthetic set, so later matchings happen further along training
        net_opt = torch.optim.SGD(net.parameters(), lr=self.net_lr)
        for _ in range(self.net_steps):
            net_opt.zero_grad()
            F.cross_entropy(net(syn.detach()), syn_labels).backward()
            net_opt.step()
        return total

    # -- checkpoints -----------------------------------------------------------------------------------
    def _save_checkpoint(self, path: str | Path, syn: torch.Tensor, opt: torch.optim.Optimizer, iteration: int,
                         seconds: float) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({"config": self.config(), "images": syn.detach().cpu(), "optimizer": opt.state_dict(),
                    "iteration": iteration, "seconds": seconds}, tmp)
        tmp.replace(path)

    def _load_checkpoint(self, path: str | Path | None, num_classes: int, shape: tuple) -> dict | None:
        if path is None or not Path(path).is_file():
            return None
        state = torch.load(path, map_location="cpu", weights_only=True)
        cfg, mine = dict(state["config"]), self.config()
        differs = {k: (cfg.get(k), v) for k, v in mine.items() if k != "iterations" and cfg.get(k) != v}
        if differs or tuple(state["images"].shape) != (num_classes * self.ipc, *shape):
            raise ValueError(f"{path}: condensation checkpoint of another run (differs in {differs or 'image shape'}); "
                             "delete it to start afresh or pass the same settings to resume")
        return state
