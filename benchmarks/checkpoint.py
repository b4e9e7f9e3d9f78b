"""The checkpoint callback the harness adds to every run (``--trainer.callbacks+=benchmarks.checkpoint.BenchmarkCheckpoint``).

It depends on Lightning only, never on ferkit, so that it keeps working whatever shape ferkit's configs take.

* ``best-epoch=N.ckpt``: the epoch with the best validation metric (the only checkpoint the test split ever sees);
* ``history.jsonl`` (beside the checkpoint folder): one line per epoch with every metric the run logged, written and
  flushed before that epoch's checkpoints, so no epoch is lost when the process is killed (a CSV logger buffers);
  ``val/*`` only in the epochs that were validated;
* ``last.ckpt``: written every epoch, atomically (to a temporary file, then renamed), and the one before it is kept as
  ``last.prev.ckpt``, so a run killed while saving still has a checkpoint to resume from.
* the previous best checkpoint is deleted only after the epoch's ``last.ckpt`` is written: a run killed between the new
  best and the new ``last.ckpt`` resumes from a ``last.ckpt`` whose best is still on disk, whatever the re-run epoch
  scores. A best file that such a kill left behind and the re-run did not choose is deleted when the fit ends.

A subclass of ``ModelCheckpoint`` has its own state key, so it lives beside the config's own checkpoint callbacks.
"""
from __future__ import annotations

import json
import math
import os
import time

from lightning.pytorch.callbacks import ModelCheckpoint

from benchmarks.run_files import EXIT_AFTER_EPOCH_ENV, HISTORY, LAST, PREVIOUS  # noqa: F401 (re-exported)

VALIDATION_PREFIX = "val/"  # the metrics only a validation pass logs


def append_line(path: str, line: str) -> None:
    """Append ``line`` to the history file, durably. A line cut by a kill has no newline: it is ended first, or the
    new line would join the fragment and both would be unreadable (a resumed run would then lack that epoch)."""
    with open(path, "a+b") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write((line + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


class BenchmarkCheckpoint(ModelCheckpoint):
    """Best-on-validation and last checkpoints in a fixed folder chosen by the harness.

    Args:
        dirpath: the run's checkpoint folder.
        monitor: the validation metric that chooses the epoch (``val/acc`` unless the suite names another).
        mode: ``max`` or ``min``.
    """

    def __init__(self, dirpath: str, monitor: str = "val/acc", mode: str = "max") -> None:
        # saved at the end of the training epoch (after validation), when the epoch's training aggregates exist too
        super().__init__(dirpath=dirpath, monitor=monitor, mode=mode, filename="best-{epoch}", save_top_k=1,
                         save_last=True, enable_version_counter=False, save_on_train_epoch_end=True)
        self._pending_removals: list[str] = []  # best checkpoints replaced this epoch, deleted after last.ckpt

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._cpu_at_start = time.process_time()
        self._validated = False
        super().on_train_epoch_start(trainer, pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._validated = True
        super().on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            metrics = {}
            logged = trainer.callback_metrics
            # Lightning never clears callback_metrics between epochs: in an epoch without validation (e.g.
            # check_val_every_n_epoch > 1) the val/* values are the last validation's, and are not written again
            validated = getattr(self, "_validated", True)
            for k, v in logged.items():
                if _is_fork(k, logged) or (not validated and k.startswith(VALIDATION_PREFIX)):
                    continue
                try:
                    x = float(v)
                except (TypeError, ValueError):
                    continue
                metrics[k] = x if math.isfinite(x) else None
            # the wall-clock time lets a record tell per-epoch cost from the time a run spent waiting or shared;
            # cpu_s, the CPU seconds this process used in the epoch (training and validation, every thread), is its
            # cost in CPU time: unmoved by a pause (SIGSTOP) and far less by a run beside it than the wall time
            entry = {"epoch": trainer.current_epoch, "step": trainer.global_step, "time": round(time.time(), 1)}
            cpu0 = getattr(self, "_cpu_at_start", None)
            if cpu0 is not None:
                entry["cpu_s"] = round(time.process_time() - cpu0, 1)
            line = json.dumps({**entry, "metrics": metrics})
            path = os.path.join(os.path.dirname(os.path.abspath(self.dirpath)), HISTORY)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            append_line(path, line)
        skip = self._should_skip_saving_checkpoint(trainer)
        super().on_train_epoch_end(trainer, pl_module)
        if not skip and self._last_global_step_saved != trainer.global_step:
            # Lightning writes last.ckpt only in epochs that improved the monitored metric; resuming needs every epoch
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        for path in self._pending_removals:  # the new last.ckpt names the new best: the old one may go now
            super()._remove_checkpoint(trainer, path)
        self._pending_removals = []
        stop = os.environ.get(EXIT_AFTER_EPOCH_ENV)
        if stop is not None and trainer.current_epoch >= int(stop):
            os._exit(3)  # no clean-up, like a kill

    def _remove_checkpoint(self, trainer, filepath: str) -> None:
        if os.path.basename(filepath).startswith("best-"):
            self._pending_removals.append(filepath)  # not before this epoch's last.ckpt exists (see the module doc)
        else:
            super()._remove_checkpoint(trainer, filepath)

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        if trainer.is_global_zero and self.dirpath and os.path.isdir(self.dirpath) and self.best_model_path:
            keep = os.path.abspath(self.best_model_path)
            for name in os.listdir(self.dirpath):  # a best file a killed attempt left and its re-run did not choose
                path = os.path.join(self.dirpath, name)
                if name.startswith("best-") and name.endswith(".ckpt") and os.path.abspath(path) != keep:
                    os.remove(path)

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        tmp = filepath + ".tmp"
        is_last = os.path.basename(filepath) == LAST
        if trainer.is_global_zero and is_last and os.path.isfile(filepath):
            os.replace(filepath, os.path.join(os.path.dirname(filepath), PREVIOUS))
        trainer.save_checkpoint(tmp, self.save_weights_only)
        if trainer.is_global_zero:
            os.replace(tmp, filepath)
        trainer.strategy.barrier()
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)


def _is_fork(name: str, logged) -> bool:
    """A statistic logged per step and per epoch appears three times: ``<name>`` (at the epoch's end, the epoch mean),
    ``<name>_epoch`` (the same) and ``<name>_step`` (the last batch's). The history keeps ``<name>`` only."""
    for suffix in ("_step", "_epoch"):
        if name.endswith(suffix) and name[: -len(suffix)] in logged:
            return True
    return False
