import numpy as np
import pytest
import torch

from ferkit.metrics import FERMetrics, format_report, save_confusion_matrix


def _reference(preds, targets, c):
    cm = np.zeros((c, c), int)
    for p, t in zip(preds, targets):
        cm[t, p] += 1
    recall = [cm[k, k] / cm[k].sum() for k in range(c) if cm[k].sum()]
    return cm, np.trace(cm) / cm.sum(), float(np.mean(recall))


def test_matches_reference_and_is_batch_order_independent():
    rng = np.random.default_rng(0)
    c, n = 4, 200
    targets = rng.integers(0, c, n)
    preds = np.where(rng.random(n) < 0.6, targets, rng.integers(0, c, n))
    cm_ref, acc_ref, mca_ref = _reference(preds, targets, c)
    results = []
    for perm_seed in (1, 2):
        m = FERMetrics(c)
        order = np.random.default_rng(perm_seed).permutation(n)
        for chunk in np.array_split(order, 7):
            m.update(torch.as_tensor(preds[chunk]), torch.as_tensor(targets[chunk]), torch.as_tensor(chunk))
        results.append(m.compute())
    for r in results:
        np.testing.assert_array_equal(r["confusion_matrix"].numpy(), cm_ref)
        assert float(r["acc"]) == pytest.approx(acc_ref)
        assert float(r["mean_class_acc"]) == pytest.approx(mca_ref)
    # overall and mean-class differ on an imbalanced case: check they are not the same number by construction
    assert float(results[0]["acc"]) != pytest.approx(float(results[0]["mean_class_acc"]))


def test_duplicate_indices_count_once():
    """DistributedSampler pads with duplicates: keyed by dataset index they must not count twice."""
    m = FERMetrics(3)
    m.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]), torch.tensor([0, 1, 2]))
    m.update(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([0, 1]))  # padding repeats 0 and 1
    r = m.compute()
    assert int(r["num_samples"]) == 3
    assert float(r["acc"]) == pytest.approx(2 / 3)


def test_logits_input_absent_class_and_errors():
    m = FERMetrics(3, ["a", "b", "c"])
    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0]])
    m.update(logits, torch.tensor([0, 0]), torch.tensor([0, 1]))
    r = m.compute()
    assert float(r["acc"]) == 0.5
    assert torch.isnan(r["per_class_recall"][1]) and torch.isnan(r["per_class_recall"][2])
    assert float(r["mean_class_acc"]) == 0.5  # only classes present in the targets count
    text = format_report(r, ["a", "b", "c"], "t")
    assert "overall accuracy     50.00 %" in text and "n/a" in text
    with pytest.raises(ValueError, match="target ids"):
        m.update(torch.tensor([0]), torch.tensor([3]), torch.tensor([5]))
    with pytest.raises(ValueError, match="class names"):
        FERMetrics(3, ["a"])


def test_confusion_matrix_files(tmp_path):
    cm = np.array([[5, 1], [2, 7]])
    save_confusion_matrix(cm, ["happy", "sad"], tmp_path / "cm.csv", tmp_path / "cm.png", title="x")
    rows = (tmp_path / "cm.csv").read_text().strip().splitlines()
    assert rows[0] == "true\\pred,happy,sad" and rows[1] == "happy,5,1" and rows[2] == "sad,2,7"
    from PIL import Image

    img = Image.open(tmp_path / "cm.png")
    assert img.size[0] > 200 and img.size[1] > 200


def test_classification_scores_is_the_one_scorer_and_matches_torchmetrics_when_every_class_is_present():
    from torchmetrics.functional.classification import multiclass_accuracy

    from ferkit.metrics import classification_scores

    preds, targets = torch.tensor([0, 1, 1, 2, 2, 0]), torch.tensor([0, 1, 0, 2, 1, 2])
    r = classification_scores(preds, targets, 3)
    torch.testing.assert_close(r["mean_class_acc"], multiclass_accuracy(preds, targets, 3, average="macro"))
    torch.testing.assert_close(r["acc"], torch.tensor(0.5))
    # a class predicted but absent from the targets does not count (torchmetrics' macro would count it as 0)
    r = classification_scores(torch.tensor([0, 2]), torch.tensor([0, 0]), 3)
    assert float(r["mean_class_acc"]) == 0.5
    assert float(multiclass_accuracy(torch.tensor([0, 2]), torch.tensor([0, 0]), 3, average="macro")) != 0.5
    empty = classification_scores(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), 3)
    assert int(empty["num_samples"]) == 0 and torch.isnan(empty["acc"])


def test_update_input_checks():
    m = FERMetrics(3)
    with pytest.raises(ValueError, match="logits have 4 classes but the metric was built for 3"):
        m.update(torch.randn(2, 4), torch.tensor([0, 1]), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="integer class ids"):
        m.update(torch.tensor([0, 1]), torch.tensor([0.2, 0.8]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="predicted ids must lie in 0..2, got 0..3"):
        m.update(torch.tensor([0, 3]), torch.tensor([0, 1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="2 predictions, 2 targets and 1 indices"):
        m.update(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="C x C matrix for the 2 class names"):
        save_confusion_matrix(np.zeros((3, 3), int), ["a", "b"])
