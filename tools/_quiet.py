"""Imported first by every tool: silences third-party warnings that are not the user's business.

Each one is matched by its message and module, so a new warning still shows. Only the tools install
these filters; the library itself leaves the warning filters of a user's program alone.
"""
import logging
import warnings

# fvcore scripts a loss with torch.jit.script at import; the deprecation is fvcore's to act on.
warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)
# Detectron2's anchor generator calls torch.meshgrid without indexing= (it means "ij", the old default).
warnings.filterwarnings("ignore", message=r"torch.meshgrid: in an upcoming release", category=UserWarning)
# numpy's float limits once flush-to-zero is on (utils/device.py turns denormals off for speed).
warnings.filterwarnings("ignore", message=r"The value of the smallest subnormal", category=UserWarning)
# torch.fx logs that is_fx_tracing's meaning changed, on Detectron2's first call of it.
logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)
