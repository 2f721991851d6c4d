"""Devices: where a target's network runs, and how a user names it.

A target's network lives on one torch device; everything the engine does with it (token
batches, patched activations, losses) happens there, and the engine reads the device
from the target (`Target.device`) instead of assuming the CPU. A user names a device
as torch does (``cpu``, ``cuda``, ``cuda:1``, ``mps``) or says ``auto``: the first CUDA
GPU when torch sees one, else the CPU. `resolve_device` turns a name into a
``torch.device`` and refuses, in one line, a device this machine does not have, so that
``--device cuda`` on a CPU-only machine fails before any network is built rather than
deep inside a forward pass.

Random draws (which inputs are resampled, which rows are interchanged) are made on the
CPU with seeded CPU generators and then moved, so the same seed picks the same rows on
every device and scores agree across devices up to floating-point reduction order.
"""

from __future__ import annotations

import os

import torch

from mechsynth.models.target import TargetError

AUTO = "auto"
# What ``auto`` means where this is set (the test suite sets it to ``cpu``): a device name.
DEVICE_ENV = "MECHSYNTH_DEVICE"
# The DSL interpreter's values (programs are symbolic; their float64 codes stay on the CPU) and
# the engine's bookkeeping about them; network tensors live on the target's device.
PROGRAM_DEVICE = torch.device("cpu")
# The device kinds the engine knows how to check for; torch names more, none of them tested here.
KNOWN_KINDS = ("cpu", "cuda", "mps")


class DeviceError(TargetError):
    """A device that cannot be named or is not available on this machine (one-line message)."""


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (one place to ask, so tests can pretend either way)."""
    return bool(torch.cuda.is_available())


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """The torch device for a user's name: ``auto``/None -> cuda when available, else cpu
    (or the device named by the environment variable ``MECHSYNTH_DEVICE``, where it is set).

    DeviceError (one line) for a name torch does not parse, a kind the engine does not know,
    or a device this machine does not have (no CUDA, a GPU index past the last one).
    """
    if name is None or (isinstance(name, str) and name.strip().lower() == AUTO):
        chosen = os.environ.get(DEVICE_ENV, "").strip()
        if chosen and chosen.lower() != AUTO:
            return resolve_device(chosen)
        return torch.device("cuda") if cuda_available() else torch.device("cpu")
    try:
        device = name if isinstance(name, torch.device) else torch.device(str(name).strip())
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type not in KNOWN_KINDS:
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda":
        if not cuda_available():
            why = "torch was built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise DeviceError(f"device {name!r} is not available here ({why}); use --device cpu or auto")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(f"device {name!r} is not available here: {count} CUDA device(s)")
    if device.type == "mps" and not _mps_available():
        raise DeviceError(f"device {name!r} is not available here; use --device cpu or auto")
    return device


def module_device(model: torch.nn.Module) -> torch.device:
    """Where a network's weights live (the CPU for a network without parameters)."""
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


def same_device(a: torch.device, b: torch.device) -> bool:
    """Whether two devices are the same place (``cuda`` and ``cuda:0`` are, with one current GPU)."""
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    current = torch.cuda.current_device() if cuda_available() else 0
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)
