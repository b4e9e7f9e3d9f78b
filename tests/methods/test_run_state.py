"""What a run keeps beyond the weights: the memorisation statistics under known noise, and the model-side random
streams restored on resume."""
from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import torch

from ferkit.methods import FERClassifier
from ferkit.models import FERNetConfig


def _module() -> FERClassifier:
    return FERClassifier(net=FERNetConfig(backbone="resnet18", small_input=True), num_classes=3, in_chans=3, img_size=32)


def test_memorisation_statistics_count_only_flipped_samples():
    m = _module()
    logged = {}
    m.log = lambda name, value, **kw: logged.__setitem__(name, (float(value), kw.get("batch_size")))
    # 5 samples; the given labels of samples 1, 2, 3 are wrong (clean differs), sample 4 has no known truth (-1)
    labels = torch.tensor([0, 1, 2, 0, 1])
    clean = torch.tensor([0, 2, 0, 1, -1])
    pred = torch.tensor([0, 1, 0, 2, 1])  # sample 1 fits its wrong label, sample 2 predicts its true one, 3 neither
    logits = torch.nn.functional.one_hot(pred, 3).float()
    m.log_train_accuracy(logits, {"label": labels, "clean_label": clean})
    assert logged["train/acc"][0] == torch.tensor(3 / 5).item()
    assert logged["memorisation/flipped_fit"] == (torch.tensor(1 / 3).item(), 3)
    assert logged["memorisation/flipped_clean"] == (torch.tensor(1 / 3).item(), 3)
    logged.clear()
    m.log_train_accuracy(logits, {"label": labels})  # no truth known: accuracy only
    assert set(logged) == {"train/acc"}


def test_resume_restores_the_model_side_random_streams():
    m = _module()
    m._trainer = SimpleNamespace(state=SimpleNamespace(fn="fit"))
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    ckpt: dict = {}
    m.on_save_checkpoint(ckpt)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)  # a new process: other streams
    loaded = torch.load(_roundtrip(ckpt), weights_only=True)  # checkpoints load with weights_only
    m.on_load_checkpoint(loaded)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def _roundtrip(obj):
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf
