"""The tools' ``main`` functions for in-process tests. ``tools/`` is a folder of standalone scripts, not
a package, so each script is loaded from its file."""
import importlib.util
import sys
from pathlib import Path
from typing import Callable

TOOLS = Path(__file__).resolve().parents[1] / "tools"
if str(TOOLS) not in sys.path:  # the tools' sibling imports (tools/_quiet.py), as `python tools/x.py` has
    sys.path.append(str(TOOLS))


def tool_main(name: str) -> Callable:
    """``main`` of ``tools/<name>.py``, loaded once per call as module ``tool_<name>``."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main
