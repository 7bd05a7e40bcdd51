"""Training curves from metrics.json: resumed runs, several test sets, the figure and the table, and a
bad file named in one line."""
import json

from cli import tool_main

from detectron2_myeloma.export.curves import evaluation_table, read_metrics

plot_training = tool_main("plot_training")


def write_metrics(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def resumed_run(tmp_path):
    """Two test sets evaluated at 20 and 40; the run was resumed at 20, so 20-30 are logged twice."""
    rows = [{"iteration": i, "total_loss": 2.0 - i / 100} for i in range(0, 31, 10)]
    rows.append({"iteration": 20, "a_val/segpc/mIoU": 0.5, "a_val/segm/AP": 30.0, "b_val/segpc/mIoU": 0.4,
                 "b_val/segm/AP": float("nan")})
    rows += [{"iteration": i, "total_loss": 1.0 - i / 100} for i in range(20, 41, 10)]
    rows.append({"iteration": 40, "a_val/segpc/mIoU": 0.7, "a_val/segm/AP": 50.0, "b_val/segpc/mIoU": 0.6,
                 "b_val/segm/AP": 45.0})
    write_metrics(tmp_path / "metrics.json", rows)
    return tmp_path


def test_read_metrics_keeps_the_last_of_repeated_iterations(tmp_path):
    losses, evaluations = read_metrics(str(resumed_run(tmp_path) / "metrics.json"))
    assert losses == [(0, 2.0), (10, 1.9), (20, 0.8), (30, 0.7), (40, 0.6)]
    assert evaluations["a_val"]["segpc/mIoU"] == [(20, 0.5), (40, 0.7)]
    headers, rows = evaluation_table(evaluations)
    assert headers == ["iteration", "a_val segpc/mIoU", "a_val segm/AP", "b_val segpc/mIoU", "b_val segm/AP"]
    assert rows[1] == [40, 0.7, 50.0, 0.6, 45.0]


def test_one_test_set_is_logged_without_its_name(tmp_path):
    write_metrics(tmp_path / "metrics.json", [{"iteration": 9, "total_loss": 1.0},
                                              {"iteration": 9, "segpc/mIoU": 0.8, "bbox/AP": 10.0}])
    _, evaluations = read_metrics(str(tmp_path / "metrics.json"))
    assert evaluations == {"": {"segpc/mIoU": [(9, 0.8)], "bbox/AP": [(9, 10.0)]}}


def test_the_tool_draws_the_curve_and_prints_the_table(tmp_path, capsys):
    run = resumed_run(tmp_path)
    assert plot_training([str(run)]) == 0
    png = (run / "training_curve.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    out = capsys.readouterr().out
    assert "a_val segpc/mIoU" in out and "0.700" in out
    assert "5 logged steps, 2 evaluations" in out


def test_a_bad_metrics_file_is_one_line(tmp_path, capsys):
    (tmp_path / "metrics.json").write_text('{"iteration": 1, "total_loss": 1}\n{broken\n')
    assert plot_training([str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path}/metrics.json:2: not a JSON line"]
    assert plot_training([str(tmp_path / "missing")]) == 1
    assert "cannot read metrics" in capsys.readouterr().err
    assert not (tmp_path / "training_curve.png").exists()
