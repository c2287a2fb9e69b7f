"""How a cell's tensors run on its device: precision, TF32, memory format and ``torch.compile``.

The recipe's speed fields (``precision``, ``tf32``, ``memory_format``, ``compile``) are resolved
here once per cell, for its device, into an :class:`Execution`. The trainer trains and evaluates
through it and the metrics time the exported model through it, so validation, test top-1, latency
and throughput use the same precision and memory format as training; ``env()`` is what the
result's ``env`` records about it.

With the defaults on a CPU (fp32, contiguous tensors, no compile; TF32 does not exist there)
every call here is a no-op, so CPU results are exactly those of a plain fp32 loop.

- ``precision=bf16``: forward passes and losses under ``torch.autocast(dtype=bfloat16)`` (weights,
  gradients and optimiser state stay fp32; no loss scaling is needed with bf16). CUDA needs a GPU
  with bf16 (compute capability 8.0+); on CPU autocast works (slowly without bf16 instructions).
- ``tf32=true`` (default): fp32 matrix products and convolutions use TF32 tensor cores on GPUs that
  have them (compute capability 8.0+); cuDNN convolutions already do by default in PyTorch.
- ``memory_format=auto`` (default): channels-last on CUDA (tensor-core convolution kernels are
  NHWC), contiguous (NCHW) on CPU, where oneDNN picks its own layout; ``channels_last`` or
  ``contiguous`` force one. ``benchmarks/gpu_speed_report.py`` measures both on a GPU.
- On CUDA, cuDNN picks its convolution algorithms by timing them once per input shape
  (``torch.backends.cudnn.benchmark``; recorded as ``env.cudnn_benchmark``).
- ``compile=true``: the training step (forward + loss; backward through AOTAutograd) goes through
  ``torch.compile`` with static shapes, for full batches only: the short last batch of an epoch
  runs eagerly rather than costing a second compilation. Evaluation stays eager. Skipped on CPU,
  with a note in the result: inductor's C++ build takes minutes on a small CPU for little gain.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
from dataclasses import dataclass, field

import torch

PRECISIONS = ("fp32", "bf16")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


@dataclass
class Execution:
    device: torch.device
    precision: str = "fp32"  # "fp32" or "bf16" (autocast)
    tf32: bool = False  # in effect: TF32 math for fp32 matmul/conv on this device
    channels_last: bool = False
    compile: bool = False  # in effect
    notes: list[str] = field(default_factory=list)  # settings asked for but not applied, and why
    compile_backend: str = "inductor"  # tests use "aot_eager" (dynamo + autograd tracing, no code generation)

    @classmethod
    def for_recipe(cls, recipe, device) -> Execution:
        """Resolve the recipe's fields for ``device``. Raises OdnbenchError (one line) where the
        device cannot do what the recipe asks (bf16 on a GPU without it)."""
        from odnbench.errors import OdnbenchError

        device = torch.device(device)
        cuda = device.type == "cuda"
        precision = getattr(recipe, "precision", "fp32")
        if precision not in PRECISIONS:
            raise OdnbenchError(f"recipe.precision={precision!r} is not allowed; choose one of: {', '.join(PRECISIONS)}")
        fmt = getattr(recipe, "memory_format", "auto")
        if fmt not in MEMORY_FORMATS:
            raise OdnbenchError(f"recipe.memory_format={fmt!r} is not allowed; choose one of: "
                                f"{', '.join(MEMORY_FORMATS)}")
        notes = []
        capability = torch.cuda.get_device_capability(device) if cuda else (0, 0)
        if precision == "bf16" and cuda and capability < (8, 0):
            raise OdnbenchError(f"recipe.precision=bf16 needs a GPU with bf16 tensor cores (compute capability 8.0+); "
                                f"{torch.cuda.get_device_name(device)} has {capability[0]}.{capability[1]}: "
                                f"use recipe.precision=fp32")
        compile_ = bool(getattr(recipe, "compile", False))
        if compile_ and not cuda:
            notes.append("recipe.compile=true skipped on CPU: trained eagerly (inductor's C++ build takes "
                         "minutes on a small CPU for little gain); the result equals compile=false")
            compile_ = False
        elif compile_ and not _has_triton():
            notes.append("recipe.compile=true skipped: torch.compile needs triton for CUDA, which is not installed")
            compile_ = False
        return cls(device=device, precision=precision,
                   tf32=bool(getattr(recipe, "tf32", True)) and cuda and capability >= (8, 0),
                   channels_last=fmt == "channels_last" or (fmt == "auto" and cuda),
                   compile=compile_, notes=notes)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self):
        """The forward-pass context: bf16 autocast, or nothing at all for fp32."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Move ``model`` to the device (and to channels-last when asked); returns it. Checking first
        is much cheaper than ``Module.to`` on a model that is there already (every epoch)."""
        if self._in_place(model):
            return model
        if self.channels_last:
            return model.to(self.device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        return model.to(self.device)

    def _in_place(self, model: torch.nn.Module) -> bool:
        want = self.device
        if want.type == "cuda" and want.index is None:
            want = torch.device("cuda", torch.cuda.current_device())
        for t in itertools.chain(model.parameters(), model.buffers()):
            if t.device != want or (self.channels_last and t.dim() == 4
                                    and not t.is_contiguous(memory_format=torch.channels_last)):
                return False
        return True

    def input(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the memory format of the model (free when it already is)."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    @contextlib.contextmanager
    def activate(self):
        """Process-wide settings while a cell runs (TF32 and cuDNN switches), restored after."""
        if self.device.type != "cuda":
            yield self
            return
        saved, benchmark = _tf32_state(), torch.backends.cudnn.benchmark
        set_tf32(self.tf32)
        # Shapes repeat (batch_size, the last batch, eval batches): let cuDNN time its algorithms once per shape.
        torch.backends.cudnn.benchmark = True
        try:
            yield self
        finally:
            _restore_tf32(saved)
            torch.backends.cudnn.benchmark = benchmark

    def env(self) -> dict:
        """What the result's ``env`` records: how training, evaluation and timing ran."""
        out = {"precision": self.precision, "tf32": self.tf32,
               "memory_format": "channels_last" if self.channels_last else "contiguous", "compile": self.compile,
               "cudnn_benchmark": self.device.type == "cuda"}
        if self.notes:
            out["execution_notes"] = list(self.notes)
        return out


def _has_triton() -> bool:
    return importlib.util.find_spec("triton") is not None


# TF32 switches: torch >= 2.9 has per-backend fp32_precision ("tf32" / "ieee"); older ones allow_tf32.
def _tf32_state():
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision"):
        return ("new", matmul.fp32_precision, conv.conv.fp32_precision)
    return ("old", matmul.allow_tf32, conv.allow_tf32)


def set_tf32(on: bool) -> None:
    """Allow (or forbid) TF32 for fp32 matmul and cuDNN convolutions, process-wide."""
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        torch.backends.cuda.matmul.fp32_precision = "tf32" if on else "ieee"
        torch.backends.cudnn.conv.fp32_precision = "tf32" if on else "ieee"  # type: ignore[attr-defined]
    else:
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on


def _restore_tf32(saved) -> None:
    kind, matmul, conv = saved
    if kind == "new":
        torch.backends.cuda.matmul.fp32_precision = matmul
        torch.backends.cudnn.conv.fp32_precision = conv  # type: ignore[attr-defined]
    else:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = conv
