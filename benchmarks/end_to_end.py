"""Benchmark section ``end-to-end``: tools/predict.py and tools/make_submission.py as a user runs them,
seconds per full-size frame at steady state, this checkout beside a baseline commit in the same run.

Each variant runs twice, as its own process: on one frame, then on that frame and ``FRAMES`` more. The
difference over ``FRAMES`` is the steady-state cost of a frame, every output written, start-up (imports,
model loading, the first call's kernel selection) excluded; the start-up is its own column. The pair is
repeated ``REPEATS`` times, taking turns with the baseline: the commit before issue 32 (``BASELINE_REV``),
checked out in a temporary git worktree.
"""
import logging
import statistics
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from benchmarks.benchmarking import REPO, Measurement, results_table, run_script

logger = logging.getLogger("benchmark")

BASELINE_REV = "3aab0a7"  # the last commit before issue 32's inference path
FRAMES = 8  # timed frames per run, after the first
REPEATS = 3  # runs of each command, interleaved with the baseline's: single runs on a shared CPU move 20-30%
NO_CLASSIFIER = ["MODEL.POST_HOOKS", "[]"]
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}  # a CPU without native bfloat16
# name -> (tool, flags, config overrides, environment)
VARIANTS: Dict[str, Tuple[str, List[str], List[str], Dict[str, str]]] = {
    "predict.py (with the cell classifier: the default)": ("predict", [], [], {}),
    "predict.py, no classifier": ("predict", [], NO_CLASSIFIER, {}),
    # the shipped classifier is configured; make_submission.py runs it only to drop non-myeloma cells
    "make_submission.py --no-tta (the default)": ("make_submission", ["--no-tta"], [], {}),
    "make_submission.py --no-tta, myeloma cells only (the classifier runs)":
        ("make_submission", ["--no-tta"], ["MODEL.CELL_CLASSIFIER.KEEP_NON_MYELOMA", "False"], {}),
    "make_submission.py (8-view TTA: the default)": ("make_submission", [], [], {}),
    "predict.py, AVX2 only (emulated)": ("predict", [], [], AVX2),
}
# On CUDA only (no baseline: the key is new): one image per forward against the default's 4.
CUDA_VARIANTS = {
    "predict.py, one frame per forward (TEST.IMS_PER_BATCH 1)": ("predict", [], ["TEST.IMS_PER_BATCH", "1"], {}),
    "make_submission.py, one frame / view per forward (TEST.IMS_PER_BATCH 1)":
        ("make_submission", [], ["TEST.IMS_PER_BATCH", "1"], {}),
}


def tool_args(tool: str, images: Path, output: Path, flags: Sequence[str], opts: Sequence[str]) -> List[str]:
    """The tool's command line on the ``images`` folder, writing under ``output``."""
    out = ["--output", str(output)] if tool == "predict" else ["--output", str(output / "submission.txt")]
    return ["--input", str(images), *out, *flags, *opts]


def per_frame(tree: Path, tool: str, flags: Sequence[str], opts: Sequence[str], env: Dict[str, str],
              one: Path, many: Path, workdir: Path) -> Tuple[float, float]:
    """(steady-state seconds per frame, start-up seconds) of ``tool`` from the checkout ``tree``."""
    script = str(tree / "tools" / f"{tool}.py")
    times = []
    for images in (one, many):
        output = Path(tempfile.mkdtemp(dir=workdir))
        shutil.rmtree(output)  # the tools want a new folder
        if tool == "make_submission":
            output.mkdir()
        seconds, _ = run_script(script, tool_args(tool, images, output, flags, opts), tree=tree, env=env)
        times.append(seconds)
    frame = (times[1] - times[0]) / FRAMES
    return frame, times[0] - frame


def baseline_tree(workdir: Path) -> Optional[Path]:
    """A worktree of BASELINE_REV under ``workdir``, or None where git cannot make one (e.g. a shallow
    clone), said in the log."""
    tree = workdir / "baseline"
    done = subprocess.run(["git", "worktree", "add", "--detach", str(tree), BASELINE_REV], cwd=REPO,
                          capture_output=True, text=True)
    if done.returncode != 0:
        logger.warning("no baseline: git worktree add %s failed: %s", BASELINE_REV, done.stderr.strip())
        return None
    return tree


def end_to_end_section(workdir: Path, frames: Sequence[str]) -> Tuple[str, Dict[str, List[Measurement]]]:
    """The section's markdown and measurements; ``frames``: at least FRAMES + 1 full-size BMP paths."""
    one, many = workdir / "one", workdir / "many"
    for folder, paths in ((one, frames[:1]), (many, frames[:FRAMES + 1])):
        folder.mkdir()
        for path in paths:
            (folder / Path(path).name).symlink_to(path)
    trees = [("this checkout", REPO)]
    baseline = baseline_tree(workdir)
    if baseline is not None:
        trees.insert(0, (f"baseline {BASELINE_REV}", baseline))
    measurements: List[Measurement] = []
    pairs: List[Tuple[Measurement, Measurement]] = []
    variants = [(name, variant, trees) for name, variant in VARIANTS.items()]
    if torch.cuda.is_available():
        variants += [(name, variant, trees[-1:]) for name, variant in CUDA_VARIANTS.items()]
    try:
        for name, (tool, flags, opts, env), variant_trees in variants:
            runs: Dict[str, List[Tuple[float, float]]] = {label: [] for label, _ in variant_trees}
            for repeat in range(REPEATS):
                for label, tree in variant_trees:
                    logger.info("end-to-end: %s, %s (run %d of %d)", name, label, repeat + 1, REPEATS)
                    runs[label].append(per_frame(tree, tool, flags, opts, env, one, many, workdir))
            rows = [Measurement(f"{name}, {label}", [frame for frame, _ in runs[label]], None,
                                {"start-up (s)": f"{statistics.median(s for _, s in runs[label]):.1f}"})
                    for label, _ in variant_trees]
            measurements += rows
            if len(rows) == 2:
                pairs.append((rows[0], rows[1]))
    finally:
        if baseline is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=REPO, capture_output=True)
    ratios = "\n".join(f"- {new.name}: {new.median / old.median:.2f}x the baseline's time per frame"
                       for old, new in pairs)
    body = (f"Seconds per full-size 2040x1536 BMP frame at steady state, every output written (predict.py: "
            f"overlay, splash, GeoJSON, CSVs, report; make_submission.py: submission.txt), default shipped "
            f"models: (time on {FRAMES + 1} frames - time on 1 frame) / {FRAMES}, each run its own process, "
            f"median of {REPEATS} runs. Start-up: the 1-frame run less one frame (median). "
            + (f"Each row beside the same command at commit {BASELINE_REV} (before issue 32), their runs "
               f"taking turns.\n\n" if baseline is not None else "No baseline: git could not check it out.\n\n")
            + results_table(measurements, "s/frame") + ("\n\n" + ratios if ratios else ""))
    return body, {"end_to_end": measurements}
