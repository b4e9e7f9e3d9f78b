"""Lightning callbacks shipped with ferkit."""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

log = logging.getLogger(__name__)


class PredictionCSVWriter(BasePredictionWriter):
    """Write per-image class probabilities with label names to a CSV during ``predict``.

    Columns: ``index, id, [label,] pred, prob_<class>...``. ``output`` defaults to ``<log_dir>/predictions.csv``;
    under several processes each rank writes ``predictions.rank<r>.csv`` (the split of images over ranks is Lightning's).
    """

    def __init__(self, output: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output = output
        self._rows: list[list[Any]] = []

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        self._rows = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx) -> None:
        names = getattr(pl_module, "class_names", None) or [str(i) for i in range(prediction["probs"].shape[1])]
        dm = trainer.datamodule
        ds = getattr(dm, "predict_set", None) if dm is not None else None
        probs = prediction["probs"].detach().cpu()
        for k, idx in enumerate(prediction["index"].tolist()):
            row: list[Any] = [idx, ds.ids[idx] if ds is not None else ""]
            if "label" in prediction:
                row.append(names[int(prediction["label"][k])])
            row.append(names[int(probs[k].argmax())])
            row.extend(f"{p:.6f}" for p in probs[k].tolist())
            self._rows.append(row)

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        names = getattr(pl_module, "class_names", None)
        path = Path(self.output) if self.output else Path(trainer.log_dir or ".") / "predictions.csv"
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        has_label = bool(self._rows) and len(self._rows[0]) == 4 + len(names)
        header = ["index", "id"] + (["label"] if has_label else []) + ["pred"] + [f"prob_{n}" for n in names]
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(sorted(self._rows, key=lambda r: r[0]))
        log.info("wrote %d predictions to %s", len(self._rows), path)
        pl_module.print(f"[ferkit] wrote {len(self._rows)} predictions to {path}")
