"""Targets for mechsynth: networks to explain, with their tasks and (when known) ground truth.

    from models import load_target
    target = load_target("tracr:reverse")
    target.predict(target.task.sample(4, seed=0))

See models/target.py (Task, Target), models/tracr_targets.py (tracr-compiled targets),
models/ground_truth.py (where each RASP variable lives), models/registry.py (specs).
"""

from models.registry import TargetRow, list_targets, load_target
from models.target import Target, TargetError, Task
from models.tracr_targets import compile_rasp

__all__ = ["Target", "TargetError", "TargetRow", "Task", "compile_rasp", "list_targets", "load_target"]
