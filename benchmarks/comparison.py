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
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from benchmarks.ablations import VARIANTS
from benchmarks.benchmarking import markdown_table


class Schedule(NamedTuple):
    config_dir: str  # configs/<dataset>/ holding the two config stems of ablations.py
    opts: List[Any]  # identical for every variant and seed
    # DATASETS.TEST of a schedule evaluated on several sets, one table each (its records hold metrics
    # per test set); () for one test set, the config's own (flat metrics)
    test_sets: Tuple[str, ...] = ()


# Short schedules that fit the 2-core CPU (measured with one thread beside a second run: SegPC 17-24 min
# per model, DSB2018 22-37 min).
SCHEDULES: Dict[str, Schedule] = {
    # segpc_mini_train (10 images) -> segpc_mini_val (4 images); x0.1 at 300
    "segpc": Schedule("configs/SegPC", ["SOLVER.MAX_ITER", 400, "SOLVER.STEPS", "(300,)", "SOLVER.WARMUP_ITERS", 50,
                                        "SOLVER.CHECKPOINT_PERIOD", 100, "TEST.EVAL_PERIOD", 0]),
    # dsb2018_train (464 images) -> dsb2018_val (100 images); 2.6 epochs of 4 crops, x0.1 at 240
    "dsb2018": Schedule("configs/DSB2018", ["SOLVER.MAX_ITER", 300, "SOLVER.STEPS", "(240,)", "SOLVER.WARMUP_ITERS", 50,
                                            "SOLVER.CHECKPOINT_PERIOD", 100, "TEST.EVAL_PERIOD", 0]),
    # The same at 3x the iterations (7.8 epochs): whether R-Mask R-CNN's extra, randomly initialised
    # layers only needed longer to catch up with the baseline on DSB2018
    "dsb2018_3x": Schedule("configs/DSB2018", ["SOLVER.MAX_ITER", 900, "SOLVER.STEPS", "(720,)",
                                               "SOLVER.WARMUP_ITERS", 50, "SOLVER.CHECKPOINT_PERIOD", 300,
                                               "TEST.EVAL_PERIOD", 0]),
    # Every real SegPC-2021 frame, held-out frames excluded, cells at 80 px: the shipped model's data and
    # schedule (configs/SegPC/rmask_rcnn_lite2_fpn_d80.yaml, which a test keeps equal), whose val curve
    # still rose at its end (docs/RESULTS.md, "The shipped models"): no shorter schedule is long enough.
    "segpc_all": Schedule("configs/SegPC", [
        "DATASETS.TRAIN", "('segpc_lowres_train_fit', 'segpc_nikon_fit', 'segpc_mini_train')",
        "DATASETS.TEST", "('segpc_lowres_val', 'segpc_mini_val', 'segpc_nikon_val')",
        "INPUT.CELL_DIAMETER.TRAIN", "(72.0, 76.0, 80.0, 84.0, 88.0)", "INPUT.CELL_DIAMETER.TEST", 80.0,
        "SOLVER.MAX_ITER", 2000, "SOLVER.STEPS", "(1500, 1800)", "SOLVER.WARMUP_ITERS", 200,
        "SOLVER.CHECKPOINT_PERIOD", 250, "TEST.EVAL_PERIOD", 0,
    ], ("segpc_lowres_val", "segpc_mini_val", "segpc_nikon_val")),
}
# What a test set's table is called in docs/RESULTS.md.
TEST_SET_TITLES = {"segpc_lowres_val": "139 reduced val frames, 691 cells",
                   "segpc_mini_val": "4 full-size Olympus val frames, 26 cells",
                   "segpc_nikon_val": "4 full-size Nikon val frames, 18 cells"}
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

    @property
    def test_sets(self) -> Tuple[str, ...]:
        return SCHEDULES[self.dataset].test_sets

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


def detection_metrics(results: Mapping[str, Any], test_sets: Sequence[str] = ()) -> Dict[str, Any]:
    """The compared numbers out of Detectron2's ``{"segm": {"AP": ..}, "segpc": {..}}`` results; with
    ``test_sets``, out of its ``{test set: {"segm": ..}}`` results of several sets, per set."""
    if test_sets:
        return {name: detection_metrics(results[name]) for name in test_sets}
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


def seconds_per_iteration(metrics_file: str) -> Optional[float]:
    """Median of the per-iteration times a training logged in Detectron2's ``metrics.json`` (each a
    window median), or None without a training log: what a run cost, beside what it scored."""
    if not os.path.isfile(metrics_file):
        return None
    with open(metrics_file) as f:
        times = [row["time"] for row in map(json.loads, filter(str.strip, f)) if "time" in row]
    return round(statistics.median(times), 3) if times else None


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


class Section(NamedTuple):
    """One detection table of docs/RESULTS.md: a schedule's runs on one of its test sets."""
    dataset: str  # the schedule
    test_set: Optional[str]  # None: the schedule's one test set

    @property
    def name(self) -> str:
        """Its ``<!-- comparison-NAME:begin -->`` marker."""
        return f"comparison-{self.dataset}" + (f"-{self.test_set}" if self.test_set else "")

    @property
    def title(self) -> str:
        return self.dataset + (f" on {self.test_set}" if self.test_set else "")

    def metrics(self, record: Mapping[str, Any]) -> Mapping[str, float]:
        """The record's metrics on this section's test set."""
        return record["metrics"][self.test_set] if self.test_set else record["metrics"]


def sections() -> List[Section]:
    """Every detection table, in SCHEDULES order."""
    return [Section(d, t) for d, schedule in SCHEDULES.items() for t in (schedule.test_sets or [None])]


class Cost(NamedTuple):
    """One model's cost in one ``make bench`` run (benchmarks/RESULTS.json)."""
    inference_s: float  # median seconds per full-size frame
    inference_rss_mb: Optional[float]
    training_s: float  # median seconds per training iteration
    training_rss_mb: Optional[float]


class Costs(NamedTuple):
    by_variant: Dict[str, Cost]
    source: str  # which run: date, CPU, commit


# The configs `make bench` measures (benchmarks/benchmark.py, MODELS): its costs belong to these tables.
BENCHMARKED_CONFIG_DIR = "configs/SegPC"


def load_costs(path: str) -> Optional[Costs]:
    """The models' inference and training costs from the JSON twin of benchmarks/RESULTS.md, by
    variant (benchmark rows are named as VARIANTS); None without that file or those sections."""
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        data = json.load(f)
    tables = data.get("sections", {})
    if "models" not in tables.get("Inference", {}) or "models" not in tables.get("Training", {}):
        return None
    inference = {m["name"]: m for m in tables["Inference"]["models"]}
    training = {m["name"]: m for m in tables["Training"]["models"]}
    by_variant = {key: Cost(inference[v.name]["median_s"], inference[v.name]["peak_rss_mb"],
                            training[v.name]["median_s"], training[v.name]["peak_rss_mb"])
                  for key, v in VARIANTS.items() if v.name in inference and v.name in training}
    runs = {json.dumps(data.get("section_runs", {}).get(title, data.get("machine", {})), sort_keys=True)
            for title in ("Inference", "Training")}  # a section re-measured by `--update` has its own run
    sources = []
    for run in map(json.loads, sorted(runs)):
        sources.append(f"`make bench` of {run.get('date', '?')} ({run.get('CPU', '?')}, "
                       f"{run.get('CPU capability (PyTorch)', '?')}, commit {run.get('git commit', '?')})")
    return Costs(by_variant, " and ".join(sources))


def with_ratio(value: Optional[float], base: Optional[float], digits: int = 2) -> str:
    """``value`` and its ratio to ``base``, e.g. "1.04 (x1.23)"."""
    if value is None:
        return ""
    return f"{value:.{digits}f}" + (f" (x{value / base:.2f})" if base else "")


def run_seconds_per_iteration(runs: Sequence[Mapping[str, Any]]) -> Optional[float]:
    """The fastest of the runs this runner trained, by their logged seconds per iteration: other work
    on the CPU only ever adds time, so the least disturbed run is the model's cost. A record the runner
    only evaluated (trained by hand or as a shipped model) does not say what else shared the CPU then."""
    times = [r["seconds_per_iteration"] for r in runs if r.get("trained_here") and r.get("seconds_per_iteration")]
    return min(times) if times else None


def detection_table(records: Iterable[Mapping[str, Any]], dataset: str, test_set: Optional[str] = None,
                    costs: Optional[Costs] = None) -> str:
    """Markdown: one row per variant of ``dataset`` (on ``test_set`` for a schedule with several), mean ±
    std over its seeds of every metric present, the difference of each mean to the baseline's, the
    runs' own seconds per training iteration, and with ``costs`` the models' ``make bench`` costs."""
    section = Section(dataset, test_set)
    seeds_of = {v: rs for (d, v), rs in group(records, "detection").items() if d == dataset}
    if not seeds_of:
        return "_no finished runs yet_\n"
    groups = {v: [section.metrics(r) for r in rs] for v, rs in seeds_of.items()}
    present = [m for m in DETECTION_METRICS if any(m in r for rs in groups.values() for r in rs)]
    summaries = {v: {m: summarize([r[m] for r in rs if m in r]) for m in present}
                 for v, rs in groups.items()}
    header = ["model", "seeds", *[m.replace("_", " ") for m in present], "Δ segm AP vs baseline (± s.e.)"]
    run_cost = {v: run_seconds_per_iteration(rs) for v, rs in seeds_of.items()}
    if any(run_cost.values()):
        header.append("s / training iteration, these runs (x baseline)")
    bench = costs.by_variant if costs and SCHEDULES[dataset].config_dir == BENCHMARKED_CONFIG_DIR else {}
    bench_base = bench.get("baseline")
    if bench:
        header += ["s / training iteration, bench (x baseline)", "s / full-size frame, bench (x baseline)",
                   "peak RSS MiB, bench (inference / training)"]
    rows = []
    base = summaries.get("baseline", {}).get("segm_AP")
    for variant in groups:
        cells = []
        for m in present:
            s = summaries[variant][m]
            cells.append(s.format(1.0, 3) if m == "mIoU" else s.format())
        ours = summaries[variant].get("segm_AP")
        delta_text = "" if base is None or ours is None or variant == "baseline" else difference(ours, base)
        seeds = ", ".join(str(r["seed"]) for r in seeds_of[variant])
        row = [VARIANTS[variant].name, seeds, *cells, delta_text]
        if any(run_cost.values()):
            row.append(with_ratio(run_cost[variant], run_cost.get("baseline")))
        if bench:
            cost = bench.get(variant)
            row += ["", "", ""] if cost is None else [
                with_ratio(cost.training_s, bench_base and bench_base.training_s),
                with_ratio(cost.inference_s, bench_base and bench_base.inference_s),
                " / ".join("–" if mb is None else f"{mb:.0f}" for mb in (cost.inference_rss_mb, cost.training_rss_mb))]
        rows.append(row)
    table = markdown_table(header, rows) + "\n"
    return table + (f"\nBench columns: {costs.source}.\n" if bench else "")


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
    panels = [s for s in sections() if any(key[0] == s.dataset for key in groups)]
    if not panels:
        return
    columns = min(3, len(panels))
    rows_of_panels = math.ceil(len(panels) / columns)
    fig = Figure(figsize=(6 * columns, 4.4 * rows_of_panels))
    axes = fig.subplots(rows_of_panels, columns, squeeze=False).ravel()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax, panel in zip(axes, panels):
        rows = [(v, [panel.metrics(r)[metric] for r in rs if metric in panel.metrics(r)])
                for (d, v), rs in groups.items() if d == panel.dataset]
        for x, (variant, values) in enumerate(rows):
            s = summarize(values)
            ax.bar(x, s.mean, yerr=s.std or 0.0, capsize=4, color="#9ecae1" if variant != "rmask" else "#fc9272")
            ax.plot([x] * len(values), values, "k.", markersize=6)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([VARIANTS[v].name for v, _ in rows], fontsize=8, rotation=25, ha="right")
        low = min(min(vals) for _, vals in rows)
        ax.set_ylim(max(0.0, low - 10), None)
        ax.set_ylabel(metric.replace("_", " "))
        ax.set_title(f"{panel.title}: mean ± std over seeds (dots: seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
