"""Targets for mechsynth: networks to explain, with their tasks and (when known) ground truth.

    from mechsynth.models import load_target
    target = load_target("tracr:reverse")          # or "trained:sort", "file:my_target.py"
    inputs = target.task.sample(4, seed=0)
    target.predict(inputs), target.task.label(inputs), target.ground_truth

Stages, one module each: target.py (Task, Target), bridge.py (building TransformerBridges),
tracr_targets.py (tracr compile + conversion), ground_truth.py (where each RASP variable
lives), tasks.py / zoo.py / train.py / checkpoint.py (the trained zoo), byo.py + outside.py (user
targets, outside checkpoints), controls.py (null networks), device.py (where a network runs),
registry.py (specs and the target table).
"""

from mechsynth.models import byo
from mechsynth.models.controls import reinitialized, shuffled
from mechsynth.models.device import DeviceError, resolve_device
from mechsynth.models.registry import TargetRow, list_targets, load_target
from mechsynth.models.target import Target, TargetError, Task
from mechsynth.models.tracr_targets import compile_rasp

__all__ = [
    "DeviceError", "Target", "TargetError", "TargetRow", "Task", "byo", "compile_rasp", "list_targets",
    "load_target", "reinitialized", "resolve_device", "shuffled",
]
