"""Targets for the synth.use tests: tracr networks compiled from programs with a known bug."""

from __future__ import annotations

import pytest
from buggy_targets import buggy_hist as _buggy_hist


@pytest.fixture(scope="session")
def buggy_hist():
    return _buggy_hist()
