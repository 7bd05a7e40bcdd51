"""The seed-repeated comparison: every variant differs from the baseline only in its R-Mask R-CNN
switches under one schedule per dataset, the tables compute mean ± std over seeds, and the runner
resumes (skips what is done) and does not start a job whose prerequisite failed."""
import json
import os
import sys

import pytest

from detectron2_myeloma import load_config
from benchmarks.ablations import VARIANTS
from benchmarks.comparison import (SCHEDULES, Run, classifier_metrics, classifier_table, detection_metrics,
                                           detection_table, grid, load_costs, load_records, plot_detection, replace_section,
                                           seconds_per_iteration, sections, summarize)
from benchmarks.parallel_jobs import Job, run_jobs
from benchmarks.compare import jobs_for, main
from testing.markdown import markdown_rows

MASK_HEAD_KEYS = ("MODEL.ROI_MASK_HEAD.NAME", "MODEL.ROI_MASK_HEAD.POOLER_TYPE")  # a head and how it pools


def flat_cfg(run: Run) -> dict:
    return flat_cfg_of(run.config_file, run.opts("out"))


def flat_cfg_of(config_file: str, opts=()) -> dict:
    cfg = load_config(config_file, opts)
    flat = {}

    def walk(node, prefix):
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, prefix + k + ".")
            else:
                flat[prefix + k] = v
    walk(cfg, "")
    return flat


@pytest.mark.parametrize("dataset", list(SCHEDULES))
def test_variants_differ_from_baseline_only_in_rmask_switches(dataset):
    base = flat_cfg(Run(dataset, "baseline", 1))
    assert base["SOLVER.MAX_ITER"] == Run(dataset, "baseline", 1).iterations and base["SEED"] == 1
    for variant in VARIANTS:
        if variant == "baseline":
            continue
        other = flat_cfg(Run(dataset, variant, 1))
        changed = {k for k in base if base[k] != other[k]} - {"OUTPUT_DIR"}
        rmask_switch = [k.startswith("MODEL.RMASK.") or k in MASK_HEAD_KEYS for k in changed]
        assert changed and all(rmask_switch), (variant, changed)
    assert base["OUTPUT_DIR"] == os.path.join("out", dataset, "baseline", "seed1")


def test_the_all_frames_schedule_is_the_shipped_models():
    """segpc_all's R-Mask R-CNN is the shipped model's config but for the periodic evaluation, so that
    the shipped run counts as its seed 1 and the baseline differs from it in the R-Mask switches only."""
    ours, shipped = flat_cfg(Run("segpc_all", "rmask", 1)), flat_cfg_of("configs/SegPC/rmask_rcnn_lite2_fpn_d80.yaml")
    changed = {k for k in ours if ours[k] != shipped[k]} - {"OUTPUT_DIR"}
    assert changed == {"TEST.EVAL_PERIOD", "DATASETS.TEST"}, changed
    assert sorted(ours["DATASETS.TEST"]) == sorted(shipped["DATASETS.TEST"])
    assert list(ours["DATASETS.TEST"]) == list(SCHEDULES["segpc_all"].test_sets)


def test_grid_is_seed_major():
    runs = grid(["segpc", "dsb2018"], ["baseline", "rmask"], [1, 2])
    assert [r.seed for r in runs] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert runs[1] == Run("segpc", "rmask", 1) and runs[2] == Run("dsb2018", "baseline", 1)


def test_summarize_uses_sample_std():
    s = summarize([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.n) == (2.0, 1.0, 3)
    assert s.format() == "2.0 ± 1.0"
    assert summarize([4.0]).std is None and summarize([4.0]).format() == "4.0"


def test_detection_metrics_skips_nan_and_missing_tasks():
    results = {"segm": {"AP": 50.0, "AP50": float("nan"), "AP75": 40.0}, "bbox": {"AP": 45.0}}
    assert detection_metrics(results) == {"segm_AP": 50.0, "segm_AP75": 40.0, "bbox_AP": 45.0}


def detection_record(dataset, variant, seed, ap, miou=None):
    metrics = {"segm_AP": ap, "segm_AP50": ap + 10, "segm_AP75": ap + 5, "bbox_AP": ap - 5}
    if miou is not None:
        metrics["mIoU"] = miou
    return {"kind": "detection", "dataset": dataset, "variant": variant, "seed": seed, "metrics": metrics}


def test_detection_table_rows_means_and_deltas():
    records = [detection_record("segpc", "rmask", s, ap, 0.8) for s, ap in ((1, 60.0), (2, 62.0), (3, 64.0))]
    records += [detection_record("segpc", "baseline", s, ap, 0.7) for s, ap in ((2, 51.0), (1, 49.0))]
    records.append(detection_record("dsb2018", "baseline", 1, 30.0))
    table = markdown_rows(detection_table(records, "segpc"))
    assert "mIoU" in table[0] and len(table) == 3
    assert table[1][:3] == ["Mask R-CNN (baseline)", "1, 2", "50.0 ± 1.4"]
    assert table[2][:4] == ["R-Mask R-CNN", "1, 2, 3", "62.0 ± 2.0", "72.0 ± 2.0"]
    assert "0.800 ± 0.000" in table[2] and table[2][-1] == "+12.0 ± 1.5"
    dsb = detection_table(records, "dsb2018")
    assert "mIoU" not in dsb and markdown_rows(dsb)[1][1:6] == ["1", "30.0", "40.0", "35.0", "25.0"]
    assert "no finished runs" in detection_table(records[:0], "segpc")


def classifier_record(seed, best, last):
    metrics = {"accuracy": best, "balanced_accuracy": best, "roc_auc": best, "majority_rate": 0.75,
               "best_epoch": 3, "history": [{"val_accuracy": 0.1, "val_balanced_accuracy": 0.1, "val_roc_auc": 0.1},
                                            {"val_accuracy": last, "val_balanced_accuracy": last,
                                             "val_roc_auc": last}]}
    return {"kind": "classifier", "seed": seed, "metrics": classifier_metrics(metrics)}


def test_classifier_table_reports_best_and_last_epoch():
    records = [classifier_record(1, 0.8, 0.7), classifier_record(2, 0.9, 0.7)]
    assert records[0]["metrics"]["last_accuracy"] == 0.7 and records[0]["metrics"]["accuracy"] == 0.8
    table = markdown_rows(classifier_table(records))
    assert table[1][1:3] == ["1, 2", "85.0 ± 7.1"] and "70.0 ± 0.0" in table[2]
    assert "75.0% accuracy" in classifier_table(records).splitlines()[-1]


def test_replace_section_only_touches_the_markers():
    text = "head\n<!-- t:begin -->\nold\n<!-- t:end -->\ntail\n"
    assert replace_section(text, "t", "new\n") == "head\n<!-- t:begin -->\nnew\n<!-- t:end -->\ntail\n"
    with pytest.raises(ValueError, match="no <!-- u:begin -->"):
        replace_section(text, "u", "x")


def test_load_records_names_a_broken_file(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(detection_record("segpc", "baseline", 1, 1.0)))
    assert len(load_records(str(tmp_path))) == 1
    (tmp_path / "b.json").write_text("{")
    with pytest.raises(ValueError, match="b.json"):
        load_records(str(tmp_path))


def test_classifier_jobs_follow_their_detector(tmp_path):
    args = type("Args", (), {"output": str(tmp_path / "out"), "results": str(tmp_path / "res"),
                             "datasets": ["dsb2018"], "variants": ["baseline"], "seeds": [1, 2],
                             "classifier": True})()
    keys = [job.key for job in jobs_for(args)]
    assert keys == ["segpc-rmask-seed1", "classifier-crops", "classifier-lite2-seed1", "classifier-lite2-seed2",
                    "dsb2018-baseline-seed1", "dsb2018-baseline-seed2"]


def test_run_jobs_skips_done_and_dependents_of_failures(tmp_path):
    done = tmp_path / "done.json"
    done.write_text("{}")
    python = [sys.executable, "-c"]
    write = "import os, sys; print(os.environ['OMP_NUM_THREADS']); open(sys.argv[1], 'w').write('x')"
    jobs = [Job("done", [*python, "raise SystemExit(3)"], str(done)),
            Job("broken", [*python, "raise SystemExit('broken job')"], str(tmp_path / "broken.json")),
            Job("after-broken", [*python, write, str(tmp_path / "x")], str(tmp_path / "after.json"), "broken"),
            Job("works", [*python, write, str(tmp_path / "works.json")], str(tmp_path / "works.json")),
            Job("after-works", [*python, write, str(tmp_path / "w2")], str(tmp_path / "w2"), "works")]
    assert run_jobs(jobs, 2, str(tmp_path / "logs"), poll_seconds=0.05) == ["broken", "after-broken"]
    assert "broken job" in (tmp_path / "logs" / "broken.log").read_text()
    assert not (tmp_path / "logs" / "after-broken.log").exists() and not (tmp_path / "logs" / "done.log").exists()
    threads = str(max(1, (os.cpu_count() or 1) // 2))
    assert (tmp_path / "logs" / "works.log").read_text().strip() == threads and (tmp_path / "w2").exists()
    with pytest.raises(ValueError, match="needs nowhere"):
        run_jobs([Job("a", [*python, "pass"], str(tmp_path / "a"), "nowhere")], 1, str(tmp_path))


def test_a_schedule_with_several_test_sets_gets_a_table_each():
    results = {"segpc_lowres_val": {"segm": {"AP": 70.0}, "segpc": {"mIoU": 0.9}},
               "segpc_mini_val": {"segm": {"AP": 80.0}, "segpc": {"mIoU": 0.93}}, "segpc_nikon_val": {}}
    metrics = detection_metrics(results, SCHEDULES["segpc_all"].test_sets)
    assert metrics == {"segpc_lowres_val": {"segm_AP": 70.0, "mIoU": 0.9},
                       "segpc_mini_val": {"segm_AP": 80.0, "mIoU": 0.93}, "segpc_nikon_val": {}}
    records = [{"kind": "detection", "dataset": "segpc_all", "variant": v, "seed": seed, "seconds_per_iteration": t,
                "trained_here": True, "metrics": {"segpc_lowres_val": {"segm_AP": ap, "mIoU": 0.9}, "segpc_mini_val": {"segm_AP": ap + 10}}}
               for v, seed, ap, t in (("baseline", 1, 70.0, 0.9), ("baseline", 2, 72.0, 1.1), ("rmask", 1, 75.0, 2.0),
                                      ("rmask", 2, 75.0, None))]
    lowres = markdown_rows(detection_table(records, "segpc_all", "segpc_lowres_val"))
    mini = markdown_rows(detection_table(records, "segpc_all", "segpc_mini_val"))
    assert lowres[1][-1] == "0.90 (x1.00)"  # the faster of the two runs
    assert lowres[2] == ["R-Mask R-CNN", "1, 2", "75.0 ± 0.0", "0.900 ± 0.000", "+4.0 ± 1.0", "2.00 (x2.22)"]
    assert mini[1][:3] == ["Mask R-CNN (baseline)", "1, 2", "81.0 ± 1.4"] and len(mini[0]) == 5  # no mIoU there
    assert [s.name for s in sections() if s.dataset == "segpc_all"] == [
        "comparison-segpc_all-segpc_lowres_val", "comparison-segpc_all-segpc_mini_val",
        "comparison-segpc_all-segpc_nikon_val"]


def bench_results(path, models):
    """A benchmarks/RESULTS.json with Inference and Training tables of ``models``: name -> (inference s,
    training s)."""
    def table(i):
        return [{"name": name, "median_s": times[i], "seconds": [times[i]], "peak_rss_mb": 1500.0 + i * 500,
                 "columns": {}} for name, times in models.items()]
    path.write_text(json.dumps({"machine": {"date": "2026-12-03 06:00 UTC", "CPU": "AMD EPYC", "git commit": "abc"},
                                "sections": {"Inference": {"models": table(0)}, "Training": {"models": table(1)},
                                             "Profile": {}}}))
    return str(path)


def test_tables_carry_bench_costs_and_only_the_runs_own_timings(tmp_path):
    """Bench columns come from make bench's JSON (ratios to its baseline row) and only in tables of the
    configs it measures; a run's own s/iteration counts only when this runner trained it."""
    costs = load_costs(bench_results(tmp_path / "RESULTS.json", {
        VARIANTS["baseline"].name: (1.0, 2.0), VARIANTS["rmask"].name: (1.25, 2.6), "unrelated row": (9.0, 9.0)}))
    assert set(costs.by_variant) == {"baseline", "rmask"} and "2026-12-03 06:00 UTC" in costs.source
    records = [{"kind": "detection", "dataset": d, "variant": v, "seed": seed, "seconds_per_iteration": t,
                "trained_here": here, "metrics": {"segm_AP": 50.0}}
               for d in ("segpc", "dsb2018")
               for v, seed, t, here in (("baseline", 1, 0.8, True), ("baseline", 2, 1.3, True), ("rmask", 1, 5.0, False),
                                        ("bottom_up", 1, 1.0, True))]
    rows = markdown_rows(detection_table(records, "segpc", costs=costs))
    assert rows[0][-4:] == ["s / training iteration, these runs (x baseline)", "s / training iteration, bench (x baseline)",
                            "s / full-size frame, bench (x baseline)", "peak RSS MiB, bench (inference / training)"]
    by_model = {row[0]: row[-4:] for row in rows[1:]}
    assert by_model["Mask R-CNN (baseline)"] == ["0.80 (x1.00)", "2.00 (x1.00)", "1.00 (x1.00)", "1500 / 2000"]
    assert by_model["R-Mask R-CNN"] == ["", "2.60 (x1.30)", "1.25 (x1.25)", "1500 / 2000"]
    assert by_model["+ bottom-up path"] == ["1.00 (x1.25)", "", "", ""]
    assert "Bench columns: `make bench` of 2026-12-03" in detection_table(records, "segpc", costs=costs)
    assert "bench" not in detection_table(records, "dsb2018", costs=costs)  # DSB2018 configs are not benchmarked
    assert load_costs(str(tmp_path / "missing.json")) is None
    (tmp_path / "partial.json").write_text(json.dumps({"sections": {"Inference": {"models": []}}}))
    assert load_costs(str(tmp_path / "partial.json")) is None


def test_report_fills_markdown_and_draws_figure(tmp_path):
    results = tmp_path / "records"
    results.mkdir()
    for i, r in enumerate([detection_record("segpc", "baseline", 1, 50.0, 0.8),
                           detection_record("segpc", "rmask", 1, 55.0, 0.82)]):
        (results / f"{i}.json").write_text(json.dumps(r))
    report = tmp_path / "RESULTS.md"
    names = [s.name.removeprefix("comparison-") for s in sections()] + ["classifier"]
    report.write_text("".join(f"<!-- comparison-{n}:begin -->\n<!-- comparison-{n}:end -->\n" for n in names))
    bench = bench_results(tmp_path / "bench.json", {VARIANTS["baseline"].name: (1.0, 2.0)})
    assert main(["--report-only", "--results", str(results), "--report", str(report), "--bench", bench]) == 0
    text = report.read_text()
    assert "Bench columns: `make bench` of 2026-12-03 06:00 UTC (AMD EPYC" in text
    assert ["R-Mask R-CNN", "1", "55.0", "65.0"] in [row[:4] for row in markdown_rows(text)]
    assert text.count("no finished runs") == len(names) - 1
    assert (tmp_path / "comparison.png").stat().st_size > 10_000
    plot_detection([], str(tmp_path / "empty.png"))
    assert not (tmp_path / "empty.png").exists()


def test_second_runner_on_the_same_output_refuses(tmp_path):
    from benchmarks.compare import exclusive

    with exclusive(str(tmp_path)):
        with pytest.raises(SystemExit, match="already running"):
            with exclusive(str(tmp_path)):
                pass
    with exclusive(str(tmp_path)):  # released on exit: a later runner may start
        pass


def test_seconds_per_iteration_is_the_median_of_the_logged_times(tmp_path):
    log = tmp_path / "metrics.json"
    log.write_text("\n".join(json.dumps(row) for row in [
        {"iteration": 0, "total_loss": 2.0}, {"iteration": 1, "time": 3.0}, {"iteration": 19, "time": 1.0},
        {"iteration": 39, "time": 1.2}, {"segm/AP": 50.0, "iteration": 39}]) + "\n")
    assert seconds_per_iteration(str(log)) == 1.2
    assert seconds_per_iteration(str(tmp_path / "missing.json")) is None
