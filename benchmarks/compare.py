#!/usr/bin/env python
"""The seed-repeated comparison: plain Mask R-CNN, the R-Mask R-CNN ablations and R-Mask R-CNN trained
with identical schedules (benchmarks/comparison.py) on the SegPC sample and DSB2018, plus the
cell classifier over seeds; the mean ± std tables go into docs/RESULTS.md.

    python -m benchmarks.compare --seeds 1 2 3 --jobs 2                       # everything still missing
    python -m benchmarks.compare --datasets segpc --variants baseline rmask   # a part of the grid
    python -m benchmarks.compare --report-only                                # tables from the records

Each finished run writes one record (metrics, command, commit) to --results; runs with a record are
skipped, an interrupted run resumes from its last checkpoint, and a run whose final weights exist is only
evaluated. --jobs runs that many trainings at once with the cores split between them (on 2 cores, two
one-thread runs finished 1.3x more iterations per second than one two-thread run).
"""
import argparse
import contextlib
import fcntl
import json
import logging
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Dict, Iterator, List, Optional

from benchmarks.ablations import VARIANTS
from benchmarks.comparison import (CLASSIFIER_CONFIG, CLASSIFIER_DETECTOR, CLASSIFIER_OPTS, SCHEDULES, Run,
                                           classifier_metrics, classifier_table, detection_metrics,
                                           classifier_record_path, detection_table, grid, load_costs, load_records,
                                           plot_detection, replace_section, sections,
                                           seconds_per_iteration)
from detectron2_myeloma.utils.atomic import write_atomic, write_json_atomic
from detectron2_myeloma.modeling.precision import cpu_features
from benchmarks.parallel_jobs import Job, run_jobs
from benchmarks.provenance import git_commit
from detectron2_myeloma.engine.trainer import EVALUATION_JSON

logger = logging.getLogger("compare")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def record(kind: str, metrics: Dict[str, float], command: str, seconds: float, **fields) -> Dict:
    return {"kind": kind, **fields, "metrics": metrics, "command": command, "seconds": round(seconds, 1),
            "commit": git_commit(REPO), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or os.cpu_count(),
            "cpu": cpu_features().describe()}  # with the command's AMP setting, says what precision trained


# --- worker mode: one job in this process -------------------------------------------------------------

def run_tool(tool: str, argv: List[str]) -> None:
    """Run ``tools/<tool>.py`` in a child process, as a user would; a failure stops this job."""
    subprocess.run([sys.executable, os.path.join(REPO, "tools", f"{tool}.py"), *argv], check=True)


def run_detection(run: Run, root: str, results_dir: str) -> None:
    """Train ``run`` with tools/train_net.py (resuming; it evaluates once at the end); only evaluate
    when its final weights exist already."""
    start = time.perf_counter()
    output_dir = run.output_dir(root)
    final = os.path.join(output_dir, "model_final.pth")
    trained = not os.path.exists(final)
    argv = ["--config-file", run.config_file, *map(str, run.opts(root))]
    run_tool("train_net", ["--resume", *argv] if trained else ["--eval-only", *argv, "MODEL.WEIGHTS", final])
    with open(os.path.join(output_dir, "inference", EVALUATION_JSON)) as f:
        results = json.load(f)
    write_json_atomic(record(
        "detection", detection_metrics(results, run.test_sets), run.command(root), time.perf_counter() - start,
        dataset=run.dataset, variant=run.variant, seed=run.seed, trained_here=trained,
        iterations=run.iterations, seconds_per_iteration=seconds_per_iteration(os.path.join(output_dir, "metrics.json"))),
        run.record_path(results_dir), indent=1)


def crops_dir(root: str) -> str:
    return os.path.join(root, "classifier", "crops")


def run_crops(root: str) -> None:
    detector = Run(*CLASSIFIER_DETECTOR)
    run_tool("build_crops", ["--dataset", "segpc_mini_train", "--val-dataset", "segpc_mini_val", "--output",
                      crops_dir(root), "--overwrite", "--detector-config", detector.config_file, "--detector-weights",
                      os.path.join(detector.output_dir(root), "model_final.pth")])


def run_classifier(seed: int, root: str, results_dir: str) -> None:
    start = time.perf_counter()
    output_dir = os.path.join(root, "classifier", f"seed{seed}")
    argv = ["--config-file", CLASSIFIER_CONFIG, "--crops", crops_dir(root), "--output", output_dir,
            *map(str, CLASSIFIER_OPTS), "SEED", str(seed)]
    run_tool("train_classifier", argv)
    with open(os.path.join(output_dir, "metrics.json")) as f:
        metrics = json.load(f)
    write_json_atomic(record(
        "classifier", classifier_metrics(metrics), " ".join(["tools/train_classifier.py", *argv]),
        time.perf_counter() - start, dataset="segpc", variant="lite2", seed=seed),
        classifier_record_path(results_dir, seed), indent=1)


# --- scheduler ------------------------------------------------------------------------------------------

WORKER = [sys.executable, "-m", "benchmarks.compare"]


def jobs_for(args: argparse.Namespace) -> List[Job]:
    """The grid's detection runs in grid order; with the classifier, its crops and seeds right after
    the detector they take negatives from (they are short and should not wait for the whole grid)."""
    common = ["--output", args.output, "--results", args.results]

    def detection_job(run: Run) -> Job:
        return Job(run.key, [*WORKER, "--run-detection", *map(str, run), *common], run.record_path(args.results))

    jobs = [detection_job(run) for run in grid(args.datasets, args.variants, args.seeds)]
    if args.classifier:
        detector = Run(*CLASSIFIER_DETECTOR)
        if all(job.key != detector.key for job in jobs):
            jobs.insert(0, detection_job(detector))
        crops = Job("classifier-crops", [*WORKER, "--run-crops", *common],
                    os.path.join(crops_dir(args.output), "crops.json"), detector.key)
        classifier = [crops] + [Job(f"classifier-lite2-seed{s}", [*WORKER, "--run-classifier", str(s), *common],
                                    classifier_record_path(args.results, s), crops.key)
                                for s in args.seeds]
        at = next(i for i, job in enumerate(jobs) if job.key == detector.key) + 1
        jobs[at:at] = classifier
    return jobs


def write_report(results_dir: str, report: str, bench: str) -> None:
    """Fill the comparison sections of ``report`` (with the models' costs from ``bench``, the JSON twin
    of benchmarks/RESULTS.md, where it exists) and draw the figure beside it."""
    records = load_records(results_dir)
    costs = load_costs(bench)
    if costs is None:
        logger.warning("%s: no inference and training costs (run `make bench`); tables without them", bench)
    with open(report) as f:
        text = f.read()
    for section in sections():
        text = replace_section(text, section.name,
                               detection_table(records, section.dataset, section.test_set, costs))
    text = replace_section(text, "comparison-classifier", classifier_table(records))
    write_atomic(report, text)
    plot_detection(records, os.path.join(os.path.dirname(report), "comparison.png"))
    logger.info("wrote %s from %d records", report, len(records))


@contextlib.contextmanager
def exclusive(output: str) -> Iterator[None]:
    """Hold a lock on ``output`` while its runs train: a second runner on the same folder would train the
    same runs into the same checkpoints at once (and, on 2 cores, slow both to a crawl)."""
    os.makedirs(output, exist_ok=True)
    path = os.path.join(output, ".lock")
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"{path}: another benchmarks.compare is already running on {output}; "
                             "wait for it or stop it (pkill -f benchmarks.compare)") from None
        yield


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(SCHEDULES), choices=list(SCHEDULES))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--no-classifier", dest="classifier", action="store_false",
                        help="skip the classifier runs (crops from the seed-1 SegPC R-Mask R-CNN)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (the cores are split between them)")
    parser.add_argument("--output", default="output/compare", help="checkpoints and logs")
    parser.add_argument("--results", default="docs/comparison", help="one JSON record per finished run")
    parser.add_argument("--report", default="docs/RESULTS.md", help="markdown file whose tables are filled")
    parser.add_argument("--bench", default="benchmarks/RESULTS.json",
                        help="`make bench` results whose inference and training costs join the tables")
    parser.add_argument("--report-only", action="store_true")
    worker = parser.add_mutually_exclusive_group()
    worker.add_argument("--run-detection", nargs=3, metavar=("DATASET", "VARIANT", "SEED"), help=argparse.SUPPRESS)
    worker.add_argument("--run-crops", action="store_true", help=argparse.SUPPRESS)
    worker.add_argument("--run-classifier", type=int, metavar="SEED", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    if args.run_detection:
        dataset, variant, seed = args.run_detection
        run_detection(Run(dataset, variant, int(seed)), args.output, args.results)
        return 0
    if args.run_crops:
        run_crops(args.output)
        return 0
    if args.run_classifier is not None:
        run_classifier(args.run_classifier, args.output, args.results)
        return 0
    failed = []
    if not args.report_only:
        with exclusive(args.output):
            failed = run_jobs(jobs_for(args), args.jobs, os.path.join(args.output, "logs"))
    write_report(args.results, args.report, args.bench)
    if failed:
        logger.error("failed: %s", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
