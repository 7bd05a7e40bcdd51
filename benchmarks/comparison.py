"""The seed-repeated comparison of ``benchmarks/compare.py``: which runs exist, where their results live, and
the mean ± std tables written into docs/RESULTS.md.

Every run is one (dataset, variant, seed) trained with its dataset's fixed schedule, so rows differ only
in the variant's switches and the seed. Each finished run leaves one small JSON record (metrics and the
exact command) in a results folder kept under version control: the tables can be rebuilt, and a grid
that takes hours can be finished over several sittings, without the checkpoints.
"""
import json
import math
import os
import re
import shlex
import statistics
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence

from benchmarks.ablations import VARIANTS
from benchmarks.benchmarking import markdown_table


class Schedule(NamedTuple):
    config_dir: str  # configs/<dataset>/ holding the two config stems of ablations.py
    opts: List[Any]  # identical for every variant and seed


# Short schedules that fit the 2-core CPU (measured with one thread beside a second run: SegPC 17-24 min
# per model, DSB2018 22-37 min).
SCHEDULES: Dict[str, Schedule] = {
    # segpc_mini_train (10 images) -> segpc_mini_val (4 images); x0.1 at 300
    "segpc": Schedule("configs/SegPC", ["SOLVER.MAX_ITER", 400, "SOLVER.STEPS", "(300,)", "SOLVER.WARMUP_ITERS", 50,
                                        "SOLVER.CHECKPOINT_PERIOD", 100, "TEST.EVAL_PERIOD", 0]),
    # dsb2018_train (464 images) -> dsb2018_val (100 images); 2.6 epochs of 4 crops, x0.1 at 240
    "dsb2018": Schedule("configs/DSB2018", ["SOLVER.MAX_ITER", 300, "SOLVER.STEPS", "(240,)", "SOLVER.WARMUP_ITERS", 50,
                                            "SOLVER.CHECKPOINT_PERIOD", 100, "TEST.EVAL_PERIOD", 0]),
}
CLASSIFIER_CONFIG = "configs/Classifier/lite2.yaml"
CLASSIFIER_OPTS: List[Any] = ["SOLVER.EPOCHS", 10]
# The classifier's negatives include detections of this run's detector (see tools/build_crops.py).
CLASSIFIER_DETECTOR = ("segpc", "rmask", 1)

DETECTION_METRICS = OrderedDict([
    ("segm_AP", ("segm", "AP")), ("segm_AP50", ("segm", "AP50")), ("segm_AP75", ("segm", "AP75")),
    ("bbox_AP", ("bbox", "AP")), ("mIoU", ("segpc", "mIoU")),
])
CLASSIFIER_METRICS = ("accuracy", "balanced_accuracy", "roc_auc")


class Run(NamedTuple):
    dataset: str
    variant: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.dataset}-{self.variant}-seed{self.seed}"

    @property
    def config_file(self) -> str:
        return os.path.join(SCHEDULES[self.dataset].config_dir, VARIANTS[self.variant].config + ".yaml")

    def output_dir(self, root: str) -> str:
        return os.path.join(root, self.dataset, self.variant, f"seed{self.seed}")

    def opts(self, root: str) -> List[str]:
        """train_net overrides: the dataset's schedule, the variant's switches, the seed, the folder."""
        pairs = [*SCHEDULES[self.dataset].opts, *VARIANTS[self.variant].overrides,
                 "SEED", self.seed, "OUTPUT_DIR", self.output_dir(root)]
        return [str(v) for v in pairs]

    def record_path(self, results_dir: str) -> str:
        return os.path.join(results_dir, self.key + ".json")

    @property
    def iterations(self) -> int:
        """SOLVER.MAX_ITER of the dataset's schedule."""
        opts = SCHEDULES[self.dataset].opts
        return int(dict(zip(opts[::2], opts[1::2]))["SOLVER.MAX_ITER"])

    def command(self, root: str) -> str:
        return shlex.join(["tools/train_net.py", "--config-file", self.config_file, *self.opts(root)])


def classifier_record_path(results_dir: str, seed: int) -> str:
    return os.path.join(results_dir, f"classifier-lite2-seed{seed}.json")


def grid(datasets: Iterable[str], variants: Iterable[str], seeds: Iterable[int]) -> List[Run]:
    """Runs in the order they should be done: seed-major, so that a grid stopped early holds whole
    seeds of every model rather than every seed of a few."""
    return [Run(d, v, s) for s in seeds for d in datasets for v in variants]


def detection_metrics(results: Mapping[str, Mapping[str, float]]) -> Dict[str, float]:
    """The compared numbers out of Detectron2's ``{"segm": {"AP": ..}, "segpc": {..}}`` results."""
    flat = {}
    for name, (task, metric) in DETECTION_METRICS.items():
        value = results.get(task, {}).get(metric)
        if value is not None and not math.isnan(value):
            flat[name] = float(value)
    return flat


def classifier_metrics(metrics: Mapping[str, Any]) -> Dict[str, float]:
    """Best-epoch (selected by val balanced accuracy, as the tool ships it) and last-epoch (no selection
    on val) accuracy, balanced accuracy and ROC AUC from train_classifier's metrics."""
    last = metrics["history"][-1]
    flat = {name: float(metrics[name]) for name in CLASSIFIER_METRICS if metrics.get(name) is not None}
    flat.update({f"last_{name}": float(last[f"val_{name}"]) for name in CLASSIFIER_METRICS
                 if last.get(f"val_{name}") is not None})
    flat["best_epoch"] = float(metrics["best_epoch"])
    flat["majority_rate"] = float(metrics["majority_rate"])
    return flat


def load_records(results_dir: str) -> List[Dict[str, Any]]:
    """Every record in ``results_dir`` (``*.json``), sorted by file name."""
    if not os.path.isdir(results_dir):
        return []
    records = []
    for name in sorted(os.listdir(results_dir)):
        if name.endswith(".json"):
            path = os.path.join(results_dir, name)
            with open(path) as f:
                try:
                    records.append(json.load(f))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: not a comparison record ({e})") from e
    return records


class Summary(NamedTuple):
    mean: float
    std: Optional[float]  # sample standard deviation (n - 1); None for a single run
    n: int

    def format(self, scale: float = 1.0, digits: int = 1) -> str:
        if self.std is None:  # one run: the seeds column says so
            return f"{self.mean * scale:.{digits}f}"
        return f"{self.mean * scale:.{digits}f} ± {self.std * scale:.{digits}f}"


def summarize(values: Sequence[float]) -> Summary:
    """Mean and sample standard deviation (n - 1; None for one value)."""
    return Summary(statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


def difference(a: Summary, b: Summary) -> str:
    """``a.mean - b.mean`` with its standard error (sqrt(sa^2/na + sb^2/nb)) when both have a spread: a
    difference within about two standard errors is not evidence of one being better."""
    text = f"{a.mean - b.mean:+.1f}"
    if a.std is None or b.std is None:
        return text
    return text + f" ± {math.sqrt(a.std ** 2 / a.n + b.std ** 2 / b.n):.1f}"


def group(records: Iterable[Mapping[str, Any]], kind: str) -> "OrderedDict[tuple, List[Mapping[str, Any]]]":
    """Records of one kind grouped by (dataset, variant), in VARIANTS order."""
    order = {name: i for i, name in enumerate(VARIANTS)}
    groups: "OrderedDict[tuple, List]" = OrderedDict()
    for r in sorted((r for r in records if r["kind"] == kind),
                    key=lambda r: (r["dataset"], order.get(r["variant"], len(order)), r["seed"])):
        groups.setdefault((r["dataset"], r["variant"]), []).append(r)
    return groups


def detection_table(records: Iterable[Mapping[str, Any]], dataset: str) -> str:
    """Markdown: one row per variant of ``dataset``, mean ± std over its seeds of every metric present,
    and the difference of each mean to the baseline's."""
    groups = {v: rs for (d, v), rs in group(records, "detection").items() if d == dataset}
    if not groups:
        return "_no finished runs yet_\n"
    present = [m for m in DETECTION_METRICS if any(m in r["metrics"] for rs in groups.values() for r in rs)]
    summaries = {v: {m: summarize([r["metrics"][m] for r in rs if m in r["metrics"]]) for m in present}
                 for v, rs in groups.items()}
    header = ["model", "seeds", *[m.replace("_", " ") for m in present], "Δ segm AP vs baseline (± s.e.)"]
    rows = []
    base = summaries.get("baseline", {}).get("segm_AP")
    for variant, rs in groups.items():
        cells = []
        for m in present:
            s = summaries[variant][m]
            cells.append(s.format(1.0, 3) if m == "mIoU" else s.format())
        ours = summaries[variant].get("segm_AP")
        delta_text = "" if base is None or ours is None or variant == "baseline" else difference(ours, base)
        seeds = ", ".join(str(r["seed"]) for r in rs)
        rows.append([VARIANTS[variant].name, seeds, *cells, delta_text])
    return markdown_table(header, rows) + "\n"


def classifier_table(records: Iterable[Mapping[str, Any]]) -> str:
    """Markdown: classifier metrics, mean ± std over seeds, best epoch and last epoch side by side."""
    runs = [r for r in records if r["kind"] == "classifier"]
    if not runs:
        return "_no finished runs yet_\n"
    rows = []
    seeds = ", ".join(str(r["seed"]) for r in sorted(runs, key=lambda r: r["seed"]))
    for label, prefix in (("best by val balanced accuracy (shipped)", ""), ("last (no selection on val)", "last_")):
        cells = [summarize([r["metrics"][prefix + m] for r in runs]).format(100.0, 1) for m in CLASSIFIER_METRICS]
        rows.append([label, seeds, *cells])
    majority = summarize([r["metrics"]["majority_rate"] for r in runs]).mean
    table = markdown_table(["epoch reported", "seeds", "accuracy", "balanced accuracy", "ROC AUC"], rows)
    return table + f"\n\nAlways answering the commoner class scores {100 * majority:.1f}% accuracy.\n"


def replace_section(text: str, name: str, content: str) -> str:
    """``text`` with what lies between ``<!-- name:begin -->`` and ``<!-- name:end -->`` replaced."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"no {begin} ... {end} markers to fill")
    return pattern.sub(lambda _: f"{begin}\n{content.rstrip()}\n{end}", text, count=1)


def plot_detection(records: Iterable[Mapping[str, Any]], path: str, metric: str = "segm_AP") -> None:
    """One panel per dataset: each variant's mean ``metric`` with its std as an error bar, and every
    seed's value as a dot (with 3 seeds the dots say more than the bar)."""
    from matplotlib.figure import Figure  # no pyplot: no backend to choose, no global figure state

    groups = group(records, "detection")
    datasets = [d for d in SCHEDULES if any(key[0] == d for key in groups)]
    if not datasets:
        return
    fig = Figure(figsize=(6 * len(datasets), 4.2))
    axes = fig.subplots(1, len(datasets), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        rows = [(v, [r["metrics"][metric] for r in rs if metric in r["metrics"]])
                for (d, v), rs in groups.items() if d == dataset]
        for x, (variant, values) in enumerate(rows):
            s = summarize(values)
            ax.bar(x, s.mean, yerr=s.std or 0.0, capsize=4, color="#9ecae1" if variant != "rmask" else "#fc9272")
            ax.plot([x] * len(values), values, "k.", markersize=6)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([VARIANTS[v].name for v, _ in rows], fontsize=8, rotation=25, ha="right")
        low = min(min(vals) for _, vals in rows)
        ax.set_ylim(max(0.0, low - 10), None)
        ax.set_ylabel(metric.replace("_", " "))
        ax.set_title(f"{dataset}: mean ± std over seeds (dots: single seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
