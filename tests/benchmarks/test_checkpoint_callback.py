"""``BenchmarkCheckpoint`` with a real Trainer: the old best survives until the epoch's ``last.ckpt`` is written, and
a best file that a killed attempt left behind is gone when the fit ends."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import lightning.pytorch as pl  # noqa: E402

from benchmarks.checkpoint import BenchmarkCheckpoint  # noqa: E402

VAL = [0.5, 0.7, 0.6, 0.8]  # new bests at epochs 0, 1 and 3


class Scripted(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Linear(2, 1)

    def training_step(self, batch, _):
        return self.w(batch[0]).pow(2).mean()

    def validation_step(self, batch, _):
        self.log("val/acc", VAL[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def loader():
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=2)


def test_the_old_best_is_deleted_only_after_last_ckpt_and_stale_bests_go(tmp_path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "best-epoch=9.ckpt").write_bytes(b"left by a killed attempt")
    seen: dict[int, list[str]] = {}
    cb = BenchmarkCheckpoint(str(ckpt))
    save = cb._save_checkpoint

    def spy(trainer, filepath):  # which best files exist while each epoch's last.ckpt is written
        if filepath.endswith("last.ckpt"):
            seen[trainer.current_epoch] = sorted(p.name for p in ckpt.glob("best-*.ckpt"))
        save(trainer, filepath)

    cb._save_checkpoint = spy
    trainer = pl.Trainer(max_epochs=len(VAL), callbacks=[cb], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0)
    trainer.fit(Scripted(), loader(), loader())
    # epoch 1 improved on epoch 0: while its last.ckpt is written, epoch 0's best (named in the previous last.ckpt)
    # still exists; after it, only the new one
    assert seen[1] == ["best-epoch=0.ckpt", "best-epoch=1.ckpt", "best-epoch=9.ckpt"]
    assert seen[2] == ["best-epoch=1.ckpt", "best-epoch=9.ckpt"]  # no improvement: nothing pending
    assert seen[3] == ["best-epoch=1.ckpt", "best-epoch=3.ckpt", "best-epoch=9.ckpt"]
    assert sorted(p.name for p in ckpt.glob("*.ckpt")) == ["best-epoch=3.ckpt", "last.ckpt", "last.prev.ckpt"]


def test_history_keeps_each_epochs_cpu_seconds(tmp_path) -> None:
    """Every history line carries the CPU seconds of its epoch: a busy-wait of known CPU cost in one epoch shows there
    and not in the others (the record's CPU cost, unmoved by pauses)."""
    import json
    import time

    from benchmarks.records import read_history

    class Busy(Scripted):
        def on_train_epoch_start(self) -> None:
            if self.current_epoch == 2:
                end = time.process_time() + 0.5
                while time.process_time() < end:
                    pass

    ckpt = tmp_path / "ckpt"
    trainer = pl.Trainer(max_epochs=len(VAL), callbacks=[BenchmarkCheckpoint(str(ckpt))], logger=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         num_sanity_val_steps=0)
    trainer.fit(Busy(), loader(), loader())
    lines = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    cpu = [x["cpu_s"] for x in lines]
    assert len(cpu) == len(VAL) and all(c >= 0 for c in cpu)
    assert cpu[2] >= 0.5 and cpu[2] > max(cpu[:2] + cpu[3:]) + 0.3
    assert [h["cpu_s"] for h in read_history(tmp_path / "history.jsonl")] == cpu


def test_an_epoch_without_validation_has_no_validation_metrics_in_the_history(tmp_path) -> None:
    """With ``check_val_every_n_epoch=2`` only epochs 1 and 3 are validated; Lightning keeps the last validation's values
    in ``callback_metrics`` meanwhile, and those must not be written as epoch 2's (or epoch 0's: the sanity check)."""
    import json

    ckpt = tmp_path / "ckpt"
    trainer = pl.Trainer(max_epochs=len(VAL), callbacks=[BenchmarkCheckpoint(str(ckpt))], logger=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         check_val_every_n_epoch=2, num_sanity_val_steps=1)
    trainer.fit(Scripted(), loader(), loader())
    lines = [json.loads(x) for x in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [0, 1, 2, 3]
    val = [x["metrics"].get("val/acc") for x in lines]
    assert [None if v is None else round(v, 6) for v in val] == [None, VAL[1], None, VAL[3]]


def test_the_history_holds_the_epoch_means_of_training_statistics(tmp_path, synthetic_dm, tiny_module,
                                                                  tiny_trainer) -> None:
    """``train/acc`` and ``train/loss`` in a run's history are means over the epoch's samples, not the last batch's
    value, and the ``_step`` / ``_epoch`` copies Lightning makes of them are not kept."""
    import json

    import lightning.pytorch as lp

    from ferkit.methods import FERClassifier

    dm = synthetic_dm(num_train=40)  # batches of 16, 16 and 8: a last batch unlike the mean
    model = tiny_module(FERClassifier, dm)
    steps: dict[int, list[tuple[float, float, int]]] = {}
    original = model.log_train_accuracy

    def spy(logits, batch):
        acc = float((logits.argmax(1) == batch["label"]).float().mean())
        steps.setdefault(model.current_epoch, []).append([acc, None, len(batch["label"])])
        original(logits, batch)

    model.log_train_accuracy = spy

    class Loss(lp.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            steps[trainer.current_epoch][-1][1] = float(outputs["loss"])

    ckpt = tmp_path / "run" / "ckpt"
    trainer = tiny_trainer(max_epochs=2, enable_checkpointing=True, callbacks=[BenchmarkCheckpoint(str(ckpt)), Loss()])
    trainer.fit(model, dm)
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1]
    for h in history:
        rows = steps[h["epoch"]]
        assert [n for *_, n in rows] == [16, 16, 8]
        n = sum(r[2] for r in rows)
        acc = sum(a * k for a, _, k in rows) / n
        loss = sum(x * k for _, x, k in rows) / n
        assert abs(h["metrics"]["train/acc"] - acc) < 1e-6
        assert abs(h["metrics"]["train/loss"] - loss) < 1e-4
        assert not [k for k in h["metrics"] if k.endswith(("_step", "_epoch"))]
