"""Environment fingerprint stored with every result."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(dists) -> dict[str, str | None]:
    """``{"torch_pruning": "1.5.2"}`` for ``("torch-pruning",)``: the versions of the distributions a
    method declares (``Method.env_packages``), keyed as env keys are (``-`` and ``.`` as ``_``)."""
    return {dist.replace("-", "_").replace(".", "_"): _version(dist) for dist in dists}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """The commit of the odnbench checkout, when it runs from one."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


#: The keys :func:`fingerprint` writes into a result's ``env``; any other key there besides the run
#: settings is a package version a method declared (``Method.env_packages``), shown by the report.
FINGERPRINT_KEYS = ("python", "torch", "torchvision", "timm", "odnbench", "device", "device_name", "cpu", "threads",
                    "platform", "git_commit")


def fingerprint(device) -> dict:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "timm": _version("timm"),
        "odnbench": _version("odnbench"),
        "device": device.type,
        "device_name": device_name(device),
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
    }
