"""Tables from hand-made records: mean, spread and gap arithmetic, and the README markers."""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.tables import gap, load_records, mean_spread, mining_table, replace_markers, suite_table, \
    update_tables  # noqa: E402


def record(method: str, seed: int, acc: float, baseline: str | None = None, suite: str = "s", device: str = "cpu") -> dict:
    return {"suite": suite, "run": f"{method}_s{seed}", "method": method, "baseline": baseline, "seed": seed,
            "selection": {"monitor": "val/acc", "mode": "max", "epoch": 4, "value": acc + 0.01},
            "test": {"acc": acc, "mean_class_acc": acc - 0.1, "per_class_recall": {"a": acc}, "class_names": ["a"]},
            "wall_seconds": {"fit": 120.0, "test": 5.0}, "machine": {"device": device}, "history": [], "stats": []}


def write(results: Path, recs: list[dict]) -> None:
    for r in recs:
        path = results / r["suite"] / f"{r['run']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r))


def test_mean_and_sample_spread() -> None:
    assert mean_spread([0.8]) == (0.8, None)
    m, s = mean_spread([0.80, 0.84, 0.83])
    assert m == pytest.approx(0.82333333) and s == pytest.approx(statistics.stdev([0.80, 0.84, 0.83]))
    assert s == pytest.approx(0.0208167, abs=1e-6)


def test_gap_is_paired_by_seed_when_seeds_match() -> None:
    base = [record("ce", 0, 0.70), record("ce", 1, 0.80)]
    meth = [record("asm", 0, 0.75, "ce"), record("asm", 1, 0.83, "ce")]
    mean, sd, paired = gap(meth, base)
    # per-seed differences 0.05 and 0.03: mean 0.04, sd 0.01414 (unpaired would give a far larger spread)
    assert paired == 2 and mean == pytest.approx(0.04) and sd == pytest.approx(0.0141421, abs=1e-6)


def test_gap_without_shared_seeds_is_the_difference_of_means() -> None:
    base = [record("ce", 0, 0.70), record("ce", 1, 0.80)]
    meth = [record("asm", 5, 0.75, "ce"), record("asm", 6, 0.85, "ce")]
    mean, sd, paired = gap(meth, base)
    assert paired == 0 and mean == pytest.approx(0.05)
    assert sd == pytest.approx((statistics.stdev([0.70, 0.80]) ** 2 + statistics.stdev([0.75, 0.85]) ** 2) ** 0.5)


def test_suite_table_rows() -> None:
    recs = [record("ce", 0, 0.70), record("ce", 1, 0.80), record("asm", 0, 0.75, "ce"), record("asm", 1, 0.83, "ce")]
    table = suite_table(recs)
    lines = table.splitlines()
    assert lines[2].startswith("| ce | 2 (0,1) | 75.00 ± 7.07 | 65.00 ± 7.07 | — | 71.00 (5), 81.00 (5) | 2.0 | — | cpu |")
    assert lines[3].startswith("| asm | 2 (0,1) | 79.00 ± 5.66 | 69.00 ± 5.66 | +4.00 ± 1.41 vs ce |")
    assert "best `val/acc`" in table


def test_minutes_per_epoch_is_the_median_step_of_the_history_times() -> None:
    from benchmarks.tables import epoch_minutes

    rec = record("ce", 0, 0.70)
    assert epoch_minutes(rec) is None  # no times: an older record
    # epochs 1 min apart, except one that waited 30 min beside another job: the median ignores it
    rec["history"] = [{"epoch": e, "time": t} for e, t in enumerate([0, 60, 120, 1920, 1980])]
    assert epoch_minutes(rec) == pytest.approx(1.0)
    assert "| 2.0 | 1.00 | cpu |" in suite_table([rec, {**record("ce", 1, 0.80), "history": rec["history"]}])
    # with the CPU seconds of each epoch (median 54 s = 0.9 min; the waiting epoch used no more CPU than the others)
    cpu_hist = [{**h, "cpu_s": c} for h, c in zip(rec["history"], [50, 54, 54, 55, 60])]
    assert "| 2.0 | 1.00 (CPU 0.90) | cpu |" in suite_table([{**rec, "history": cpu_hist}])


def test_a_method_with_two_baselines_gets_both_gaps() -> None:
    recs = [record("ce", 0, 0.70), record("ce2", 0, 0.72, "ce"), record("asm", 0, 0.75, ["ce", "ce2"]),
            record("lanet", 0, 0.71, "ce_lanet")]
    lines = suite_table(recs).splitlines()
    assert "| +5.00 vs ce; +3.00 vs ce2 |" in lines[4]
    assert "| (ce_lanet: no records) |" in lines[5]


def test_markers_are_replaced_and_unknown_ones_kept(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:s -->\nold numbers\n<!-- /bench:s -->\nmiddle\n"
                      "<!-- bench:other -->\nkept\n<!-- /bench:other -->\nend\n")
    results = tmp_path / "results"
    write(results, [record("ce", 0, 0.70), record("asm", 0, 0.76, "ce")])
    write(results, [record("ce", 0, 0.10, suite="s.smoke")])  # smoke records never reach the tables
    tables = update_tables(results, markdown=[readme])
    text = readme.read_text()
    assert "old numbers" not in text and "| asm | 1 (0) | 76.00 | 66.00 | +6.00 vs ce |" in text
    assert text.startswith("intro\n<!-- bench:s -->\n| method |") and "<!-- /bench:s -->\nmiddle\n" in text
    assert "<!-- bench:other -->\nkept\n<!-- /bench:other -->" in text
    assert list(tables) == ["summary", "s"] and "## s" in (results / "TABLES.md").read_text()
    # running it again changes nothing
    update_tables(results, markdown=[readme])
    assert readme.read_text() == text


def test_replace_markers_reports_names() -> None:
    new, done = replace_markers("a <!-- bench:x -->1<!-- /bench:x --> b", {"x": "T"})
    assert new == "a <!-- bench:x -->\nT\n<!-- /bench:x --> b" and done == ["x"]


def test_a_damaged_record_is_named(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "r.json").write_text("{")
    with pytest.raises(ValueError, match=r"r\.json is not valid JSON"):
        load_records(tmp_path)


def test_steps_and_mining_quality_are_tabled_once() -> None:
    mining = {"pool": 100, "mined": 30, "per_class": {"happy": 20, "sad": 10}, "tau_sim": [0.8, 0.8],
              "quality": {"mined": 30, "precision": 0.9, "recall": 0.27,
                          "per_class": [{"mined": 20, "precision": 0.95, "recall": 0.4},
                                        {"mined": 10, "precision": 0.8, "recall": 0.16}]},
              "curve": [{"tau_sim": 0.5, "mined": 60, "precision": 0.7, "recall": 0.42}]}
    a = record("base", 0, 0.6)
    b = {**record("mined", 0, 0.65, baseline="base"),
         "steps": {"embed": {"seconds": 120.0}, "mine": {"seconds": 6.0, "report": mining}}}
    c = {**record("both", 0, 0.66, baseline="base"), "steps": {"mine": {"seconds": 6.0, "report": mining},
                                                               "centres": {"seconds": 60.0, "report": {
                                                                   "locate_seconds": 59.5, "images": 96,
                                                                   "centres": "/tmp/x.pt"}}}}
    table = suite_table([a, b, c])
    assert table.count("| mine | 0.1 |") == 1 and "| embed | 2.0 | — |" in table
    assert "| centres | 1.0 | locate_seconds 59.5, images 96 |" in table  # paths left out
    assert "30 mined, precision 90.0 %, recall 27.0 %" in table
    assert "| happy | 20 | 95.0 | 40.0 |" in table and "| sad | 10 | 80.0 | 16.0 |" in table
    assert "| 0.5 | 60 | 70.0 | 42.0 |" in table
    assert "| step |" not in suite_table([a])


def test_mining_statistics_at_the_chosen_epoch_are_tabled_per_given_class() -> None:
    asm = record("asm", 0, 0.78, baseline="ce")
    asm["stats"] = [
        {"epoch": 3, "asm/noisy_precision": 0.1, "asm/noisy_recall": 0.1, "asm/clean_purity": 0.1, "asm/flip_rate": 0.3},
        {"epoch": 4, "asm/noisy_precision": 0.75, "asm/noisy_recall": 0.42, "asm/clean_purity": 0.84,
         "asm/flip_rate": 0.29, "asm/flip_rate/happy": 0.1, "asm/noisy_precision/happy": 0.9,
         "asm/noisy_recall/happy": 0.6, "asm/clean_purity/happy": 0.95, "asm/flip_rate/contempt": 0.92,
         "asm/clean_purity/contempt": 0.08, "asm/noisy_recall/contempt": 0.0},
    ]
    table = mining_table([asm, record("ce", 0, 0.74)])
    assert "Mining of `asm_s0` at the chosen epoch (5)" in table and "ce_s0" not in table
    assert "| all | 29.0 | 75.0 | 42.0 | 84.0 |" in table            # the chosen epoch's values, not epoch 3's
    assert "| happy | 10.0 | 90.0 | 60.0 | 95.0 |" in table
    assert "| contempt | 92.0 | — | 0.0 | 8.0 |" in table             # nothing flagged noisy: no precision
    assert table in suite_table([asm, record("ce", 0, 0.74)])
    assert mining_table([record("ce", 0, 0.74)]) == ""


def test_gap_with_some_seeds_in_common_pairs_those_and_says_so() -> None:
    """A baseline with seeds {0, 1} against a method with seed 0 only: the gap is the seed-0 difference, not the
    method against the mean of both baseline seeds, and the table names the seed it rests on."""
    base = [record("ce", 0, 0.70), record("ce", 1, 0.80)]
    meth = [record("asm", 0, 0.75, "ce")]
    mean, sd, pairs = gap(meth, base)
    assert pairs == 1 and mean == pytest.approx(0.05) and sd is None
    assert "+5.00 vs ce (seed 0 only)" in suite_table(base + meth)
    # a seed recorded twice on one side cannot be paired: the means of all records, marked unpaired
    twice = [record("asm", 0, 0.75, "ce"), record("asm", 0, 0.77, "ce")]
    mean, _, pairs = gap(twice, base)
    assert pairs == 0 and mean == pytest.approx(0.76 - 0.75)
    assert "(unpaired)" in suite_table(base + twice)
    # one seed each, not the same one: nothing to pair, and the table says so
    assert "+5.00 vs ce (unpaired)" in suite_table([record("ce", 1, 0.70), record("asm", 0, 0.75, "ce")])


def test_mining_plot_draws_the_overall_scores_per_epoch(tmp_path) -> None:
    """A suite whose records log mining scores per epoch gets a ``<suite>_mining.png``; the per-class scores stay out."""
    pytest.importorskip("matplotlib")
    from benchmarks.plots import mining_keys, plot_suite

    ce, asm = record("ce", 0, 0.70), record("asm", 0, 0.75, "ce")
    for r in (ce, asm):
        r["history"] = [{"epoch": e, "val/acc": 0.6 + 0.01 * e} for e in range(3)]
    asm["stats"] = [{"epoch": e, "asm/noisy_precision": 0.7, "asm/noisy_recall": 0.2 * e, "asm/clean_purity": 0.9,
                     "asm/noisy_recall/angry": 0.5, "asm/n_noisy/angry": 3} for e in range(3)]
    assert mining_keys([ce, asm]) == ["asm/noisy_precision", "asm/noisy_recall", "asm/clean_purity"]
    names = sorted(p.name for p in plot_suite("s", [ce, asm], tmp_path))
    assert names == ["s_mining.png", "s_recall.png", "s_val_acc.png"]
    assert sorted(p.name for p in plot_suite("t", [ce], tmp_path / "t")) == ["t_recall.png", "t_val_acc.png"]


def test_the_label_memory_is_plotted_apart_from_the_networks_memorisation(tmp_path) -> None:
    """``memorisation/*`` (the network on the flipped samples) and LA-Net's ``memory/*`` (its label memory, whose
    ``flipped_ranks_given_first`` also names flipped samples) go to two figures; per-class memory recalls to neither."""
    pytest.importorskip("matplotlib")
    from benchmarks.plots import memorisation_keys, plot_suite

    ce, lanet = record("ce", 0, 0.70), record("lanet", 0, 0.75, "ce")
    for r in (ce, lanet):
        r["history"] = [{"epoch": e, "val/acc": 0.6 + 0.01 * e} for e in range(3)]
        r["stats"] = [{"epoch": e, "memorisation/flipped_fit": 0.1 * e, "memorisation/flipped_clean": 0.5}
                      for e in range(3)]
    for e, s in enumerate(lanet["stats"]):
        s.update({"memory/flipped_ranks_given_first": 1.0, "memory/memory_label_accuracy": 0.6 + 0.1 * e,
                  "memory/recall_angry": 0.4})
    assert memorisation_keys([ce, lanet]) == [("stats", "memorisation/flipped_clean"),
                                              ("stats", "memorisation/flipped_fit")]
    assert memorisation_keys([ce, lanet], "memory/") == [("stats", "memory/flipped_ranks_given_first"),
                                                         ("stats", "memory/memory_label_accuracy")]
    names = sorted(p.name for p in plot_suite("s", [ce, lanet], tmp_path))
    assert names == ["s_label_memory.png", "s_memorisation.png", "s_recall.png", "s_val_acc.png"]


def test_a_curve_says_how_many_seeds_logged_it() -> None:
    """A statistic added after a seed was trained is averaged over fewer seeds than the table holds; the plots'
    legends name that count instead of calling one seed's curve a mean over seeds."""
    from benchmarks.plots import curves, logged_by

    old, new = record("lanet", 0, 0.75, "ce"), record("lanet", 1, 0.76, "ce")
    old["stats"] = [{"epoch": e} for e in range(3)]
    new["stats"] = [{"epoch": e, "memory/flip_auroc": 0.5 + 0.1 * e} for e in range(3)]
    assert logged_by([old, new], "memory/flip_auroc", "stats") == 1
    assert logged_by([old, new], "memory/flip_auroc") == 0  # not in the validation history
    assert curves([old, new], "memory/flip_auroc", "stats")[1] == pytest.approx([0.5, 0.6, 0.7])


def test_times_are_shown_per_device_when_seeds_ran_on_different_machines() -> None:
    slow = record("ce", 0, 0.70)
    fast = record("ce", 1, 0.72, device="NVIDIA H200")
    fast["wall_seconds"]["fit"] = 6.0
    line = suite_table([slow, fast]).splitlines()[2]
    cells = [c.strip() for c in line.split("|")]
    # devices sorted by name: the GPU (0.1 min) first, then the CPU (2.0 min); never their mean of 1.05
    assert cells[7] == "0.1; 2.0" and cells[9] == "NVIDIA H200; cpu"


def test_cpu_times_are_shown_per_cpu_model() -> None:
    """Two 2-core machines of different makes are not one device: their minutes per epoch are never averaged."""
    from benchmarks.tables import short_cpu

    assert short_cpu("Intel(R) Xeon(R) Processor") == "Intel Xeon"
    assert short_cpu("AMD EPYC 7B13 64-Core Processor") == "AMD EPYC 7B13 64-Core"
    assert short_cpu("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz") == "Intel Core i7-8700"
    amd, intel = record("ce", 0, 0.70), record("ce", 1, 0.72)
    amd["machine"]["cpu"], intel["machine"]["cpu"] = "AMD EPYC", "Intel(R) Xeon(R) Processor"
    intel["wall_seconds"]["fit"] = 360.0
    cells = [c.strip() for c in suite_table([amd, intel]).splitlines()[2].split("|")]
    assert cells[7] == "2.0; 6.0" and cells[9] == "cpu, AMD EPYC; cpu, Intel Xeon"
    del amd["machine"]["cpu"]  # a record without the model keeps the plain "cpu"
    assert [c.strip() for c in suite_table([amd]).splitlines()[2].split("|")][9] == "cpu"


def test_summary_table_states_each_goal_and_computes_whether_it_is_met() -> None:
    from benchmarks.comparisons import Comparison
    from benchmarks.tables import summary_table

    suites = {"s": [record("ce", 0, 0.70), record("ce", 1, 0.72), record("asm", 0, 0.76, "ce"),
                    record("asm", 1, 0.78, "ce"), record("arm", 0, 0.70, "ce"), record("arm", 1, 0.71, "ce")]}
    comps = [Comparison("s", "asm", "ce", "ASM vs CE", 0.05, "ASM >= CE + 5"),
             Comparison("s", "arm", "ce", "ARM vs CE", 0.0, "ARM >= CE"),
             Comparison("s", "lanet", "ce", "LA-Net vs CE", 0.05, "LA-Net >= CE + 5"),
             Comparison("t", "asm", "ce", "ASM vs CE elsewhere")]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in summary_table(suites, comps).splitlines()[2:6]]
    assert rows[0] == ["ASM vs CE", "s", "0, 1", "+6.00 ± 0.00", "—", "ASM >= CE + 5", "yes"]
    # -0.5 ± 0.71 points: below the goal, by less than the seeds' spread
    assert rows[1][3] == "-0.50 ± 0.71" and rows[1][6] == "no (within the seed spread)"
    assert rows[2][3] == "no records of lanet yet" and rows[2][6] == "—"
    assert rows[3][3] == "no records of asm and ce yet" and rows[3][5] == "reported"
    one = summary_table({"s": suites["s"][:3]}, comps[:1]).splitlines()[2]
    assert one.endswith("| ASM >= CE + 5 | yes (one seed) |")


def test_summary_table_intervals_per_seed_and_unpaired_seeds() -> None:
    """With each test image's prediction in the records, every shared seed gets its interval from the test images;
    method and baseline seeds with none in common give a gap of means, marked unpaired, not "one seed"."""
    from benchmarks.comparisons import Comparison
    from benchmarks.paired import paired_gap
    from benchmarks.tables import summary_table

    labels = "0101010101" * 10

    def with_preds(rec: dict, wrong: int) -> dict:  # the first `wrong` of 100 images predicted wrong
        pred = "".join(str(1 - int(t)) if i < wrong else t for i, t in enumerate(labels))
        return {**rec, "test_predictions": {"classes": ["a", "b"], "label": labels, "pred": pred}}

    suites = {"s": [with_preds(record("ce", 0, 0.70), 30), with_preds(record("ce", 1, 0.72), 28),
                    with_preds(record("asm", 0, 0.76, "ce"), 24), with_preds(record("asm", 1, 0.78, "ce"), 22),
                    record("arm", 2, 0.80, "ce"), record("arm", 3, 0.84, "ce")]}
    comps = [Comparison("s", "asm", "ce", "ASM vs CE", 0.05, "ASM >= CE + 5"),
             Comparison("s", "arm", "ce", "ARM vs CE", 0.0, "ARM >= CE")]
    asm, arm = ([c.strip() for c in line.split("|")[1:-1]] for line in summary_table(suites, comps).splitlines()[2:4])
    lo0, hi0 = paired_gap(suites["s"][2], suites["s"][0])["ci95"]
    lo1, hi1 = paired_gap(suites["s"][3], suites["s"][1])["ci95"]
    assert asm[4] == f"0: {100 * lo0:+.2f} to {100 * hi0:+.2f}; 1: {100 * lo1:+.2f} to {100 * hi1:+.2f}"
    assert lo0 < 0.06 < hi0 and asm[6] == "yes"
    # arm's seeds 2, 3 against ce's 0, 1: the gap of the means, (0.82 - 0.71) = +11 points, no pairs, no intervals
    assert arm[2] == "unpaired" and arm[3].startswith("+11.00") and arm[4] == "—" and arm[6] == "yes (unpaired)"
    # an older record of seed 0 without predictions: its seed still counts in the gap, and its interval is "not kept"
    older = {"s": [record("ce", 0, 0.70)] + suites["s"][1:2] + [record("asm", 0, 0.76, "ce")] + suites["s"][3:4]}
    row = [c.strip() for c in summary_table(older, comps[:1]).splitlines()[2].split("|")[1:-1]]
    assert row[2] == "0, 1" and row[3] == "+6.00 ± 0.00"
    assert row[4] == f"0: not kept; 1: {100 * lo1:+.2f} to {100 * hi1:+.2f}"

