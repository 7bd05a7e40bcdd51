"""The diameter sweep: each run trains on the fit sets only, at its own target, and the table and
timings are read back from what Detectron2 wrote."""
from benchmarks.diameter_sweep import TEST, TRAIN, seconds_per_image, table, train_args
from detectron2_myeloma import load_config
from testing.markdown import markdown_rows


def test_runs_differ_only_in_the_diameter_and_train_on_no_held_out_frame():
    def cfg(diameter: float, output_dir: str):
        args = train_args(diameter, 300, output_dir)
        assert args[0] == "--config-file"
        return load_config(args[1], args[2:])

    a, b = cfg(80.0, "out/a"), cfg(128.0, "out/b")
    assert a.DATASETS.TRAIN == TRAIN and a.DATASETS.TEST == TEST
    assert all(name.endswith("_fit") or name == "segpc_mini_train" for name in a.DATASETS.TRAIN)  # no held-out frame
    assert (a.INPUT.CELL_DIAMETER.TRAIN, a.INPUT.CELL_DIAMETER.TEST) == ((80.0,), 80.0)
    assert (b.INPUT.CELL_DIAMETER.TRAIN, b.INPUT.CELL_DIAMETER.TEST) == ((128.0,), 128.0)
    a.OUTPUT_DIR = b.OUTPUT_DIR
    a.INPUT.CELL_DIAMETER = b.INPUT.CELL_DIAMETER
    assert a.dump() == b.dump()


def test_inference_times_are_read_per_test_set_from_the_last_evaluation(tmp_path):
    log = tmp_path / "log.txt"
    lines = [f"Total inference time: 0:00:01 ({s} s / iter per device, on 1 devices)\n"
             for s in ("9.0", "9.0", "9.0", "0.5", "0.75", "0.25")]
    log.write_text("".join(lines))
    assert seconds_per_image(str(log)) == dict(zip(TEST, (0.5, 0.75, 0.25)))


def test_table_has_one_row_per_diameter():
    evaluation = {name: {"segpc": {"mIoU": 0.9}, "segm": {"AP": 70.0}} for name in TEST}
    records = [{"diameter": d, "seconds_per_iteration": 2.0, "evaluation": evaluation,
                "inference_seconds_per_image": dict.fromkeys(TEST, 1.0)} for d in (80.0, 128.0)]
    rows = markdown_rows(table(records))
    assert [row[0] for row in rows[1:]] == ["80", "128"] and rows[1][2:5] == ["0.900", "70.0", "1.00"]
