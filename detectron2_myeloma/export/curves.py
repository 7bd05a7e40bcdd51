"""Training curves from Detectron2's ``metrics.json``: the losses of every logged step and the periodic
evaluations (``TEST.EVAL_PERIOD``) of each test set, as a figure and as a table."""
import json
import math
from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure

from ..data.report import DatasetError

LOSS = "total_loss"

# {dataset: {metric: [(iteration, value), ...]}}; a single test set is logged without its name: "".
Evaluations = Dict[str, Dict[str, List[Tuple[int, float]]]]


def read_metrics(path: str) -> Tuple[List[Tuple[int, float]], Evaluations]:
    """The (iteration, total loss) of every logged step and the evaluations in ``path``. A run that was
    resumed logs some iterations twice: the later line wins."""
    losses: Dict[int, float] = {}
    evaluations: Evaluations = defaultdict(lambda: defaultdict(dict))
    try:
        with open(path) as f:
            lines = [line for line in f if line.strip()]
    except OSError as err:
        raise DatasetError(path, f"cannot read metrics ({err.strerror})") from None
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise DatasetError(f"{path}:{number}", "not a JSON line") from None
        iteration = row.get("iteration")
        if iteration is None:
            continue
        if LOSS in row:
            losses[iteration] = row[LOSS]
        for key, value in row.items():
            parts = key.split("/")
            if len(parts) >= 2 and parts[-2] in ("segpc", "segm", "bbox") and isinstance(value, (int, float)):
                dataset = "/".join(parts[:-2])
                evaluations[dataset][f"{parts[-2]}/{parts[-1]}"][iteration] = float(value)
    if not losses and not evaluations:
        raise DatasetError(path, "no training metrics in it")
    return (sorted(losses.items()),
            {d: {m: sorted(points.items()) for m, points in metrics.items()} for d, metrics in evaluations.items()})


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Running median over ``window`` logged steps (Detectron2 logs already-smoothed losses; this evens
    out what is left): a float64 array as long as ``values``, the window cut short at both ends."""
    arr = np.asarray(values, dtype=float)
    half = window // 2
    return np.array([np.median(arr[max(0, i - half):i + half + 1]) for i in range(len(arr))])


def plot_curves(losses: List[Tuple[int, float]], evaluations: Evaluations,
                metrics: Sequence[str] = ("segpc/mIoU", "segm/AP")) -> Figure:
    """Loss on the left, one panel per evaluation metric with a line per test set."""
    fig = Figure(figsize=(5 * (1 + len(metrics)), 4), constrained_layout=True)
    axes = fig.subplots(1, 1 + len(metrics), squeeze=False)[0]
    if losses:
        iterations, values = zip(*losses)
        axes[0].plot(iterations, values, color="0.75", linewidth=0.8, label="logged")
        axes[0].plot(iterations, smooth(values, 9), color="C0", label="running median")
        axes[0].set_yscale("log")
        axes[0].legend()
    axes[0].set(title="training loss", xlabel="iteration", ylabel=LOSS)
    for ax, metric in zip(axes[1:], metrics):
        for dataset, results in sorted(evaluations.items()):
            points = [(i, v) for i, v in results.get(metric, []) if not math.isnan(v)]
            if points:
                ax.plot(*zip(*points), marker="o", label=dataset or "test set")
        ax.set(title=metric, xlabel="iteration")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    return fig


def evaluation_table(evaluations: Evaluations, metrics: Sequence[str] = ("segpc/mIoU", "segm/AP")
                     ) -> Tuple[List[str], List[List]]:
    """Headers and rows (one per evaluated iteration) of ``metrics`` on every test set."""
    columns = [(d, m) for d in sorted(evaluations) for m in metrics if m in evaluations[d]]
    iterations = sorted({i for d, m in columns for i, _ in evaluations[d][m]})
    lookup = {(d, m): dict(evaluations[d][m]) for d, m in columns}
    headers = ["iteration"] + [f"{d} {m}".strip() for d, m in columns]
    rows = [[i] + [lookup[c].get(i, float("nan")) for c in columns] for i in iterations]
    return headers, rows
