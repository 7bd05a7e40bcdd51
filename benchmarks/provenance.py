"""Where a result came from: the git commit of the code that measured it, kept light so that writing a
record does not pull in the benchmarking or modelling code."""
import subprocess


def git_commit(repo: str) -> str:
    """The checkout's short commit, marked when tracked files differ from it, so that a result can be
    traced to the code that produced it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")
