"""Measuring code of the benchmarks (``python -m benchmarks.benchmark``): timed calls after warm-up, medians and
spreads, peak memory of a measurement run in a fresh process, a description of the machine, markdown.

On a shared machine absolute seconds drift with other people's load, so variants are compared by ratios
of medians measured side by side in one run, each over several repeats, with their spread reported so
that a noisy run shows as one.
"""
import datetime
import itertools
import json
import logging
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

import torch
from detectron2.config import CfgNode
from detectron2.engine import DefaultTrainer
from detectron2.utils.events import EventStorage
from tabulate import tabulate
from tqdm import tqdm

from detectron2_myeloma.utils.atomic import write_atomic, write_json_atomic
from detectron2_myeloma.modeling.precision import cpu_features, resolve_precision
from benchmarks.provenance import git_commit
from detectron2_myeloma.data.images import read_image
from detectron2_myeloma.data.regions import ArrayRegions
from detectron2_myeloma.engine.predictor import OriginalImagePredictor, build_scale_finder

REPO = Path(__file__).resolve().parents[1]

logger = logging.getLogger(__name__)


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int, desc: str = "") -> List[float]:
    """Seconds of each of ``repeats`` calls of ``fn``, after ``warmup`` untimed calls: first calls pay
    for lazy set-up (oneDNN prepares kernels for each new input shape, data-loader workers start)."""
    seconds = []
    for i in tqdm(range(warmup + repeats), desc=desc, unit="call"):
        start = time.perf_counter()
        fn()
        if i >= warmup:
            seconds.append(time.perf_counter() - start)
    return seconds


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB, from ``VmHWM`` in ``/proc/self/status`` (Linux).

    Not ``getrusage``'s ``ru_maxrss``: in a spawned child that includes the parent's resident memory at
    the fork (measured: a child of an 800 MiB parent reported 814 MiB, VmHWM 15 MiB).
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM line")


# Runs a script (argv[1:]) as `python script args` would, then writes its peak RSS to $PEAK_RSS_FILE.
_SCRIPT_WRAPPER = """import os, runpy, sys
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    from benchmarks.benchmarking import peak_rss_mb
    with open(os.environ["PEAK_RSS_FILE"], "w") as f:
        f.write(str(peak_rss_mb()))
"""


def run_script(script: str, args: Sequence[str], tree: Path = REPO,
               env: Optional[Dict[str, str]] = None) -> Tuple[float, float]:
    """Wall seconds and peak RSS (MiB, VmHWM) of ``python script args`` in a process of its own, as a
    user runs it from the checkout ``tree`` (its package imported first; ``env``: variables added);
    RuntimeError with its output's end if it fails."""
    with tempfile.TemporaryDirectory() as folder:
        peak_file = os.path.join(folder, "peak_rss")
        path = os.pathsep.join([str(tree), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _SCRIPT_WRAPPER, script, *args], capture_output=True,
                              text=True, cwd=tree, env={**os.environ, **(env or {}), "PEAK_RSS_FILE": peak_file,
                                                        "PYTHONPATH": path})
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{script} exited with {done.returncode}:\n{done.stderr[-3000:]}")
        with open(peak_file) as f:
            return seconds, float(f.read())


def run_in_fresh_process(fn: Callable[..., Dict[str, Any]], *args: Any,
                         env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """``fn(*args)`` in a new interpreter ("spawn"), so that its peak memory is its own and no earlier
    measurement warmed its caches; returns fn's dict with ``"peak_rss_mb"`` added. ``env``: variables
    set in the new interpreter only (e.g. ``ATEN_CPU_CAPABILITY``, read when torch loads).

    ``fn`` and ``args`` must pickle (a module-level function). The process is not a daemon, so it may
    start workers of its own (Detectron2's data loader); it shows warnings and progress bars only.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_fresh_process_main, args=(fn, args, sender))
    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})
    try:
        process.start()  # the spawned interpreter inherits os.environ as it is now
    finally:
        for key, value in saved.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value
    sender.close()
    try:
        status, payload = receiver.recv()
    except EOFError:  # killed (e.g. out of memory) before it could answer
        status, payload = "died", "no result"
    process.join()
    if status != "ok":
        raise RuntimeError(f"{fn.__name__} failed in its process (exit code {process.exitcode}):\n{payload}")
    return payload


def _fresh_process_main(fn: Callable[..., Dict[str, Any]], args: Tuple, sender) -> None:
    # With INFO enabled but no handler, Detectron2's INFO records go nowhere (warnings still reach
    # stderr), and DefaultTrainer, seeing INFO enabled, does not install its stdout logger.
    logging.getLogger("detectron2").setLevel(logging.INFO)
    try:
        sender.send(("ok", {**fn(*args), "peak_rss_mb": peak_rss_mb()}))
    except Exception:
        sender.send(("error", traceback.format_exc()))


def profile_call(fn: Callable[[], Any], warmup: int, desc: str = "", rows: int = 30) -> Dict[str, Any]:
    """One call of ``fn`` under ``torch.profiler`` (CPU activity), after ``warmup`` untimed calls.

    Returns ``{"seconds": [wall time], "table": profiler table sorted by self CPU time, "top":
    [(op, self seconds, calls), ...]}``. The profiler's own overhead makes "seconds" an upper bound.
    """
    from torch.profiler import ProfilerActivity, profile

    time_calls(fn, 0, warmup, desc)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
    averages = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    return {
        "seconds": [seconds],
        "table": prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows,
                                           max_name_column_width=70),
        "top": [(e.key, e.self_cpu_time_total / 1e6, e.count) for e in averages[:rows]],
    }


def inference_step(cfg: CfgNode, image_paths: Sequence[str]) -> Tuple[Callable[[], None], List[int]]:
    """A call that predicts the next image of ``image_paths`` (cycling) as ``tools/predict.py`` does:
    read the file, its cell scale (known frame sizes), the predictor's forward at the config's test scale (with its post-hooks), masks
    pasted at the image's full resolution, results on the CPU; and the list it appends each image's
    detection count to."""
    predictor = OriginalImagePredictor(cfg)
    scales = build_scale_finder(predictor, cfg, cfg.MODEL.CELL_CLASSIFIER.CELL_CLASS)
    paths = itertools.cycle(image_paths)
    detections: List[int] = []

    def predict() -> None:
        path = next(paths)
        image = read_image(path)
        scale = scales(ArrayRegions(path, image))
        instances = predictor(image, scale.diameter if scale else None)["instances"].to("cpu")
        if instances.pred_masks.shape[1:] != image.shape[:2]:
            raise RuntimeError(f"masks of shape {tuple(instances.pred_masks.shape)} for a {image.shape} image")
        detections.append(len(instances))

    return predict, detections


def training_step(trainer_class: Type[DefaultTrainer], cfg: CfgNode,
                  schedule_lr: bool = False) -> Callable[[], None]:
    """A call of one training iteration of ``trainer_class(cfg)``: its ``run_step`` (data wait, forward,
    backward, optimiser step; AMP as the trainer chose), as ``train()`` runs it but without the hooks (checkpoints, evaluation, metric writers). With ``schedule_lr`` it also advances
    the learning-rate schedule as the trainer's ``LRScheduler`` hook does, for runs whose loss counts.
    Call it inside an ``EventStorage``."""
    trainer = trainer_class(cfg)
    cuda = torch.device(cfg.MODEL.DEVICE).type == "cuda"

    def step() -> None:
        trainer.run_step()
        if schedule_lr:
            trainer.scheduler.step()
        if cuda:  # kernels run asynchronously: the step ends when they do
            torch.cuda.synchronize()

    return step


def time_inference(cfg: CfgNode, image_paths: Sequence[str], repeats: int, warmup: int,
                   desc: str = "") -> Dict[str, Any]:
    """Seconds per image of :func:`inference_step`. Returns ``{"seconds": [...], "detections": [...]}``,
    one entry per timed image."""
    predict, detections = inference_step(cfg, image_paths)
    seconds = time_calls(predict, repeats, warmup, desc)
    return {"seconds": seconds, "detections": detections[warmup:]}


def time_training(trainer_class: Type[DefaultTrainer], cfg: CfgNode, repeats: int, warmup: int,
                  desc: str = "") -> Dict[str, Any]:
    """Seconds per iteration of :func:`training_step`. Returns ``{"seconds": [...], "data_seconds":
    [...]}``, the latter the part of each iteration spent waiting for its batch."""
    step = training_step(trainer_class, cfg)
    with EventStorage(0) as storage:
        seconds = time_calls(step, repeats, warmup, desc)
        data_seconds = [value for value, _ in storage.history("data_time").values()][warmup:]
    return {"seconds": seconds, "data_seconds": data_seconds}


@dataclass
class Measurement:
    """The timed repeats of one variant, its peak memory, and further columns of its table row."""

    name: str
    seconds: List[float]
    peak_rss_mb: Optional[float] = None
    columns: Dict[str, str] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def as_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "median_s": self.median, "seconds": list(self.seconds),
                "peak_rss_mb": self.peak_rss_mb, "columns": dict(self.columns)}


def format_number(value: float) -> str:
    """Three significant digits, without exponents for the values benchmarks see."""
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells are written as given (no number reformatting)."""
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def results_table(measurements: Sequence[Measurement], unit: str,
                  baseline: Optional[Measurement] = None, stepwise: bool = False) -> str:
    """Markdown table: name, median, spread (min-max), ratio of medians to ``baseline`` (when given),
    to the row before (``stepwise``: each row adds one change to the one before it), peak RSS, then
    every measurement's extra ``columns``."""
    extra = list(dict.fromkeys(key for m in measurements for key in m.columns))
    headers = ["", f"median ({unit})", "spread (min–max)"]
    headers += ["ratio to baseline"] if baseline is not None else []
    headers += ["ratio to previous row"] if stepwise else []
    headers += ["peak RSS (MiB)", *extra]
    rows = []
    for i, m in enumerate(measurements):
        row = [m.name, format_number(m.median), f"{format_number(min(m.seconds))}–{format_number(max(m.seconds))}"]
        row += [f"{m.median / baseline.median:.2f}"] if baseline is not None else []
        row += [f"{m.median / measurements[i - 1].median:.2f}" if i else "–"] if stepwise else []
        row += [f"{m.peak_rss_mb:.0f}" if m.peak_rss_mb is not None else "–"]
        rows.append(row + [m.columns.get(key, "") for key in extra])
    return markdown_table(headers, rows)


def machine_info(repo: str) -> List[Tuple[str, str]]:
    """(item, value) rows that tell whether two reports can be compared: CPU, cores, memory, load,
    library versions, threads, date and the code's git commit."""
    import detectron2
    import timm

    def proc_value(path: str, key: str) -> str:
        with open(path) as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(key)), "unknown")

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        ("CPU", proc_value("/proc/cpuinfo", "model name")),
        ("CPU capability (PyTorch)", cpu_features().describe()),
        ("mixed precision 'auto' on this CPU", resolve_precision(None, "cpu").describe()),
        ("cores", f"{os.cpu_count()} ({len(os.sched_getaffinity(0))} usable by this process)"),
        ("memory", f"{int(proc_value('/proc/meminfo', 'MemTotal').split()[0]) / 2 ** 20:.1f} GiB"),
        ("load average at start (1, 5, 15 min)", load),
        ("python", platform.python_version()),
        ("torch", f"{torch.__version__} ({torch.get_num_threads()} threads)"),
        ("detectron2", detectron2.__version__),
        ("timm", timm.__version__),
        ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("git commit", git_commit(repo)),
    ]


FOOTER_START = "Wall time of the run:"


class MarkdownReport:
    """A results file rewritten (atomically) after every section, so that an interrupted run keeps
    what it measured, with a JSON twin (same name, ``.json``) holding every section's measurements for
    other reports to read (the comparison tables of docs/RESULTS.md take the models' costs from it)."""

    def __init__(self, path: str, title: str, preamble: str, metadata: Optional[Dict[str, Any]] = None):
        self.path = path
        self.json_path = os.path.splitext(path)[0] + ".json"
        self.parts = [f"# {title}", preamble]
        self.data: Dict[str, Any] = {**(metadata or {}), "sections": {}}
        self.note = ""  # prefixed to every section added: see updating()
        self.run: Optional[Dict[str, Any]] = None
        self.footer = ""

    @classmethod
    def updating(cls, path: str, note: str, run: Optional[Dict[str, Any]] = None) -> "MarkdownReport":
        """The report at ``path`` and its JSON twin, to re-measure some sections in: a section added
        replaces the one of the same title (or is appended) and starts with ``note``, which says what
        run measured it, and in the JSON twin ``section_runs`` gives it ``run`` (that run's machine
        description); the other sections, the preamble and the footer stay as their run wrote them.
        ValueError when the report or its twin is missing or not one this class wrote."""
        report = cls(path, "", "")
        try:
            with open(path) as f:
                text = f.read().rstrip("\n")
            with open(report.json_path) as f:
                report.data = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: no report to update ({err})") from None
        if not text.startswith("# ") or not isinstance(report.data.get("sections"), dict):
            raise ValueError(f"{path}: not a report of benchmarks/benchmark.py")
        head, *sections = text.split("\n\n## ")
        if sections and FOOTER_START in sections[-1]:
            sections[-1], footer = sections[-1].split(f"\n\n{FOOTER_START}", 1)
            report.footer = FOOTER_START + footer
        report.parts = [head, *(f"## {s}" for s in sections)]
        report.note = note
        report.run = run
        return report

    def add_section(self, title: str, body: str,
                    tables: Optional[Dict[str, Sequence[Measurement]]] = None) -> None:
        """Add ``body`` under ``title`` (replacing a section of that title); ``tables`` (name ->
        measurements) go into the JSON twin."""
        part = f"## {title}\n\n" + (f"{self.note}\n\n" if self.note else "") + body
        same = [i for i, p in enumerate(self.parts) if p.startswith(f"## {title}\n")]
        if same:
            self.parts[same[0]] = part
        else:
            self.parts.append(part)
        self.data["sections"][title] = {name: [m.as_dict() for m in ms] for name, ms in (tables or {}).items()}
        if self.run is not None:
            self.data.setdefault("section_runs", {})[title] = self.run
        self.write()

    def write(self, footer: str = "") -> None:
        """Rewrite both files; ``footer`` (e.g. the run's wall time) replaces the footer kept so far."""
        self.footer = footer or self.footer
        write_json_atomic(self.data, self.json_path, indent=1)
        write_atomic(self.path, "\n\n".join(self.parts + ([self.footer] if self.footer else [])) + "\n")
