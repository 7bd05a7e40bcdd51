"""The package installs with what it imports: setup.py lists every third-party import, and a wheel built
from the checkout, installed into a fresh virtual environment, predicts with its shipped models from
another folder (configs/ and models/ travel inside it)."""
import ast
import subprocess
import sys
import sysconfig
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOT_LISTED = {"sal-detectron2"}  # detectron2 comes from source or this wheel (README), never from install_requires


def install_requires() -> set:
    tree = ast.parse((REPO / "setup.py").read_text())
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.keyword) and node.arg == "install_requires")
    return {ast.literal_eval(item).split("<")[0].split(">")[0].split("=")[0].lower() for item in call.value.elts}


def test_setup_lists_every_distribution_the_package_imports():
    modules = set()
    for path in (REPO / "detectron2_myeloma").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    distributions = packages_distributions()
    imported = {dist.lower() for module in modules - set(sys.stdlib_module_names) - {"detectron2_myeloma"}
                for dist in distributions[module]}
    assert "tifffile" in imported  # the check sees what it should
    assert imported - NOT_LISTED <= install_requires(), imported - NOT_LISTED - install_requires()


@pytest.mark.timeout(600)
def test_a_wheel_installed_in_a_fresh_venv_predicts_from_another_folder(tmp_path):
    wheels, venv, elsewhere = tmp_path / "wheels", tmp_path / "venv", tmp_path / "elsewhere"
    run = dict(capture_output=True, text=True, timeout=300)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "-w", str(wheels), str(REPO)], **run)
    assert done.returncode == 0, done.stderr[-2000:]
    wheel, = wheels.glob("detectron2_myeloma-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, **run)
    python = str(venv / "bin" / "python")
    fresh = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           check=True, **run).stdout.strip()
    # the dependencies: this environment's site-packages as a plain path (its .pth files, among them the
    # editable install of this checkout, are not read from there)
    Path(fresh, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], **run)
    assert done.returncode == 0, done.stderr[-2000:]
    elsewhere.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "2"}
    where = subprocess.run([python, "-c", "import detectron2_myeloma.model_zoo as z; print(z.__file__); "
                            "print(z.get_weights(z.DEFAULT_DETECTOR))"], cwd=elsewhere, env=env, check=True, **run)
    assert all(line.startswith(fresh) for line in where.stdout.split()), where.stdout  # the installed copy
    image = REPO / "datasets" / "segpc_mini" / "train" / "x" / "2011.jpg"
    done = subprocess.run([python, str(REPO / "tools" / "predict.py"), "--input", str(image), "--output", "out"],
                          cwd=elsewhere, env=env, **run)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "detections in 1 images" in done.stdout
    assert (elsewhere / "out" / "instances_predictions.json").is_file()
