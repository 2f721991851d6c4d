"""Fixtures shared by the whole suite (the folders under tests/ mirror the source tree).

Building a target compiles a tracr program or loads a checkpoint, so each target is built
once per test session and shared: tests treat targets as read-only (copies for the
frivolous-circuit controls are new objects, see ``models.controls``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import pytest

from mechsynth.models.device import DEVICE_ENV

# The suite runs on the CPU on every machine (CI has no GPU; a GPU would change timings and the
# last bits of some scores): ``--device auto`` means cpu here. Tests that need CUDA say so and skip.
os.environ[DEVICE_ENV] = "cpu"

from mechsynth.models import Target, load_target


@functools.cache
def _target(spec: str) -> Target:
    return load_target(spec)


@pytest.fixture(scope="session")
def target_named() -> Callable[[str], Target]:
    """``target_named("tracr:reverse")``: the target, built once for the session."""
    return _target
