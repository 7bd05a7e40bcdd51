"""Run command-line jobs a few at a time, each in its own process with its share of the CPU cores.

Long experiment grids (benchmarks/compare.py) are many independent trainings. On a small CPU, two processes
with one OpenMP thread each get more done than one process with two threads, while two processes with
two threads each spin against each other and run 10-20x slower; so every job is started with
``OMP_NUM_THREADS`` = cores / jobs at once.
"""
import logging
import os
import subprocess
import time
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

logger = logging.getLogger(__name__)


class Job(NamedTuple):
    key: str
    argv: List[str]  # the whole command line
    done: str  # the file whose existence means the job is done (then it is not run again)
    needs: Optional[str] = None  # key of a job that must finish first


def run_jobs(jobs: Sequence[Job], parallel: int, log_dir: str, poll_seconds: float = 5.0) -> List[str]:
    """Run the jobs that are not done, in order, ``parallel`` at a time; each one's output goes to
    ``log_dir/<key>.log``. A job whose prerequisite failed is not started. Returns the keys of the jobs
    that failed or were not started."""
    keys = {job.key for job in jobs}
    for job in jobs:
        if job.needs is not None and job.needs not in keys:
            raise ValueError(f"job {job.key} needs {job.needs}, which is not in the list")
    os.makedirs(log_dir, exist_ok=True)
    done = {job.key for job in jobs if os.path.exists(job.done)}
    pending = [job for job in jobs if job.key not in done]
    logger.info("%d of %d jobs to run, %d at a time", len(pending), len(jobs), parallel)
    threads = str(max(1, (os.cpu_count() or 1) // parallel))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    running: Dict[str, Tuple[subprocess.Popen, "object", float]] = {}
    failed: List[str] = []
    total, started = len(pending), 0
    while pending or running:
        for job in list(pending):
            if len(running) >= parallel:
                break
            if job.needs in failed:
                pending.remove(job)
                failed.append(job.key)
                logger.error("%s not started: %s failed", job.key, job.needs)
                continue
            if job.needs is not None and job.needs not in done:
                continue
            pending.remove(job)
            log = open(os.path.join(log_dir, job.key + ".log"), "w")
            process = subprocess.Popen(job.argv, env=env, stdout=log, stderr=subprocess.STDOUT)
            running[job.key] = (process, log, time.time())
            started += 1
            logger.info("[%d/%d] started %s (log: %s)", started, total, job.key, log.name)
        if running:
            time.sleep(poll_seconds)
        for key, (process, log, start) in list(running.items()):
            if process.poll() is None:
                continue
            log.close()
            del running[key]
            minutes = (time.time() - start) / 60
            if process.returncode == 0:
                done.add(key)
                logger.info("finished %s in %.1f min", key, minutes)
            else:
                failed.append(key)
                logger.error("%s failed (exit %d) after %.1f min, see %s", key, process.returncode, minutes,
                             log.name)
    return failed
