"""The benchmark harness: warm-up calls are not timed, a fresh process reports its own peak memory and
its errors, tables show medians, spreads and ratios, and the report survives an interrupted run."""
import json

import numpy as np
import pytest

from benchmarks.benchmarking import (
    FOOTER_START,
    MarkdownReport,
    Measurement,
    results_table,
    run_in_fresh_process,
    time_calls,
)
from testing.markdown import markdown_rows


def allocate(megabytes: int) -> dict:
    """Touch ``megabytes`` MiB so that they are resident."""
    block = np.ones(megabytes * 2 ** 20, np.uint8)
    return {"seconds": [0.5], "sum": int(block.sum())}


def fail() -> dict:
    raise ValueError("broken measurement")


def test_time_calls_skips_warmup():
    calls = []
    seconds = time_calls(lambda: calls.append(len(calls)), repeats=3, warmup=2)
    assert len(calls) == 5 and len(seconds) == 3 and all(s >= 0 for s in seconds)


def test_fresh_process_peak_is_its_own():
    """A child touching 100 MiB more reports ~100 MiB more, and 300 MiB held by the parent do not show
    in the child's peak (getrusage's ru_maxrss would count them)."""
    small = run_in_fresh_process(allocate, 1)
    parent_block = np.ones(300 * 2 ** 20, np.uint8)
    large = run_in_fresh_process(allocate, 101)
    assert large["sum"] == 101 * 2 ** 20 and parent_block[-1] == 1
    assert 90 < large["peak_rss_mb"] - small["peak_rss_mb"] < 130


def test_fresh_process_errors_are_raised():
    with pytest.raises(RuntimeError, match="broken measurement"):
        run_in_fresh_process(fail)


def test_results_table():
    baseline = Measurement("base", [2.0, 1.0, 3.0], 100.0, {"detections": "100"})
    other = Measurement("other", [3.0, 4.0], None)
    rows = markdown_rows(results_table([baseline, other], "s/image", baseline))
    assert rows[0] == ["", "median (s/image)", "spread (min–max)", "ratio to baseline", "peak RSS (MiB)",
                       "detections"]
    assert rows[1] == ["base", "2", "1–3", "1.00", "100", "100"]
    assert rows[2] == ["other", "3.5", "3–4", "1.75", "–", ""] and len(rows) == 3
    assert "ratio" not in results_table([other], "s")


def test_report_is_written_after_each_section(tmp_path):
    path = tmp_path / "out" / "RESULTS.md"
    report = MarkdownReport(str(path), "Benchmarks", "Command: `x`", {"command": "x"})
    report.add_section("A", "first", {"models": [Measurement("base", [2.0, 1.0, 3.0], 100.0, {"dtype": "bfloat16"})]})
    assert path.read_text() == "# Benchmarks\n\nCommand: `x`\n\n## A\n\nfirst\n"
    data = json.loads((tmp_path / "out" / "RESULTS.json").read_text())
    assert data["command"] == "x"
    assert data["sections"]["A"]["models"] == [{"name": "base", "median_s": 2.0, "seconds": [2.0, 1.0, 3.0],
                                                "peak_rss_mb": 100.0, "columns": {"dtype": "bfloat16"}}]
    report.add_section("B", "second")
    assert json.loads((tmp_path / "out" / "RESULTS.json").read_text())["sections"]["B"] == {}
    report.write(footer="done")
    assert path.read_text().endswith("second\n\ndone\n")


def test_an_update_replaces_only_the_sections_measured_again(tmp_path):
    path = tmp_path / "RESULTS.md"
    report = MarkdownReport(str(path), "Benchmarks", "Machine: a", {"command": "x"})
    report.add_section("A", "first", {"models": [Measurement("base", [2.0], None, {})]})
    report.add_section("B", "second")
    report.write(footer=f"{FOOTER_START} 3.0 min.")
    again = MarkdownReport.updating(str(path), "_later run_", {"date": "later"})
    again.add_section("A", "first again", {"models": [Measurement("base", [1.0], None, {})]})
    again.add_section("C", "third")
    assert path.read_text() == ("# Benchmarks\n\nMachine: a\n\n## A\n\n_later run_\n\nfirst again\n\n## B\n\nsecond"
                                f"\n\n## C\n\n_later run_\n\nthird\n\n{FOOTER_START} 3.0 min.\n")
    data = json.loads((tmp_path / "RESULTS.json").read_text())
    assert data["command"] == "x" and list(data["sections"]) == ["A", "B", "C"]
    assert data["sections"]["A"]["models"][0]["median_s"] == 1.0
    assert data["section_runs"] == {"A": {"date": "later"}, "C": {"date": "later"}}
    with pytest.raises(ValueError, match="no report to update"):
        MarkdownReport.updating(str(tmp_path / "missing.md"), "")


def test_stepwise_table_gives_each_row_over_the_one_before():
    rows = [Measurement("a", [4.0]), Measurement("b", [2.0]), Measurement("c", [3.0])]
    table = markdown_rows(results_table(rows, "s", rows[0], stepwise=True))
    assert table[0][:5] == ["", "median (s)", "spread (min–max)", "ratio to baseline", "ratio to previous row"]
    assert [row[3:5] for row in table[1:]] == [["1.00", "–"], ["0.50", "0.50"], ["0.75", "1.50"]]


def test_speedup_steps_go_from_detectron2_settings_to_the_shipped_config():
    """Each row restores shipped settings only (no row sets a value the shipped config lacks, except
    the one-scale side step), and the last row is the shipped config itself."""
    from benchmarks.benchmark import RMASK, coco_settings, speedup_steps, training_cfg

    steps = speedup_steps()
    shipped = training_cfg(RMASK, [], "")
    configs = [training_cfg(RMASK, opts, "") for _, opts in steps]
    assert configs[-1] == shipped and steps[-1][1] == []
    first = configs[0]
    assert first.MODEL.FPN.OUT_CHANNELS == 256 and not first.SOLVER.AMP.ENABLED and not first.INPUT.CROP.ENABLED
    assert len(steps[0][1]) == len(coco_settings()) + 2
    keys = [set(opts[::2]) for _, opts in steps]
    assert keys[1] == keys[0] | {"INPUT.MIN_SIZE_TRAIN"}
    for (name, _), now, before in zip(steps[2:], keys[2:], keys[1:]):
        assert now < before, name  # restores some settings, sets nothing new


def read_environment(*keys: str) -> dict:
    import os
    return {"seconds": [0.0], "values": [os.environ.get(key) for key in keys]}


def test_fresh_process_env_reaches_the_child_only(monkeypatch):
    import os
    monkeypatch.setenv("BENCH_TEST_KEEP", "parent")
    monkeypatch.delenv("BENCH_TEST_NEW", raising=False)
    env = {"BENCH_TEST_KEEP": "child", "BENCH_TEST_NEW": "child"}
    result = run_in_fresh_process(read_environment, "BENCH_TEST_KEEP", "BENCH_TEST_NEW", env=env)
    assert result["values"] == ["child", "child"]
    assert os.environ["BENCH_TEST_KEEP"] == "parent" and "BENCH_TEST_NEW" not in os.environ


def test_avx2_restriction_makes_the_policy_pick_float32():
    """The benchmark's AVX2 stand-in for a CPU without native bfloat16: PyTorch's queries see AVX2."""
    from benchmarks.benchmark import AVX2_ONLY

    result = run_in_fresh_process(auto_precision_on_cpu, env=AVX2_ONLY)
    assert result["capability"] == "AVX2" and result["dtype"] == "float32"


def auto_precision_on_cpu() -> dict:
    from detectron2_myeloma.modeling.precision import cpu_features, resolve_precision
    return {"seconds": [0.0], "capability": cpu_features().capability,
            "dtype": resolve_precision(None, "cpu").dtype_name}
