"""The end-to-end section's arithmetic and command lines: steady state from a 1-frame and a
(1 + FRAMES)-frame run of the same command, the tools' own arguments."""
from pathlib import Path

import pytest

from benchmarks import end_to_end


def test_steady_state_per_frame_and_start_up_from_two_runs(tmp_path, monkeypatch):
    calls = []

    def fake_run(script, args, tree, env):
        calls.append((script, args, env))
        frames = 1 if args[1].endswith("one") else 1 + end_to_end.FRAMES
        return 4.0 + 0.5 * frames, 100.0  # 4 s of start-up, 0.5 s per frame

    monkeypatch.setattr(end_to_end, "run_script", fake_run)
    frame, start_up = end_to_end.per_frame(Path("/tree"), "make_submission", ["--no-tta"], ["A", "B"], {"X": "1"},
                                           tmp_path / "one", tmp_path / "many", tmp_path)
    assert frame == pytest.approx(0.5) and start_up == pytest.approx(4.0)
    assert [c[0] for c in calls] == ["/tree/tools/make_submission.py"] * 2
    args = calls[0][1]
    assert args[:2] == ["--input", str(tmp_path / "one")] and args[2] == "--output"
    assert args[3].endswith("submission.txt") and Path(args[3]).parent.is_dir()  # its folder exists
    assert args[4:] == ["--no-tta", "A", "B"] and calls[0][2] == {"X": "1"}


def test_predict_gets_a_new_output_folder():
    args = end_to_end.tool_args("predict", Path("in"), Path("out"), [], ["K", "V"])
    assert args == ["--input", "in", "--output", "out", "K", "V"]
