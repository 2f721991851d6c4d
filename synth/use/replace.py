"""Replace: the accepted program as a drop-in for the network.

A hypothesis that explains the network should be able to stand in for it. This stage
measures how well, and at what cost:

* **agreement** of the program's outputs with the network's (the network's, not the
  labels: mistakes included) at the read positions, per position and per whole input, on
  three input sets: fresh inputs from the task (``task``), every allowed length plus the
  task's broader distribution (``broader``, as the checks use), and the network's whole
  input space (``beyond``: every length it has positions for, other token mixtures; see
  ``synth.use.inputs``);
* **cost**: wall-clock seconds of the batched interpreter (``dsl.evaluate``) against the
  network's batched forward pass on the same inputs (one measurement each, on this
  machine; the benchmark is where timings are compared), and sizes: program nodes against
  network parameters;
* **compiled back**: where the program is in tracr's fragment (``dsl.rasp_bridge.to_rasp``
  converts it and tracr compiles it for the task's vocabulary and length), the agreement of
  the compiled transformer with the original network on the task inputs; where it is not,
  the reason (tracr's own error, one line).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mechsynth.synth.use.inputs import search_inputs, widened

if TYPE_CHECKING:
    from mechsynth.dsl.hypothesis import Hypothesis
    from mechsynth.models import Target


@dataclass(frozen=True)
class Agreement:
    positions: float  # fraction of read positions where program and network agree
    inputs: float  # fraction of inputs agreeing at every read position
    n: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Replacement:
    """replace's result (module docstring)."""

    target: str
    program: str
    agreement: Mapping[str, Agreement]
    program_seconds: float
    network_seconds: float
    n_timed: int
    program_nodes: int
    network_parameters: int
    tracr: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "program": self.program,
                "agreement": {k: v.to_json() for k, v in self.agreement.items()},
                "program_seconds": self.program_seconds, "network_seconds": self.network_seconds,
                "n_timed": self.n_timed, "program_nodes": self.program_nodes,
                "network_parameters": self.network_parameters, "tracr": dict(self.tracr)}


def _agreement(target: Target, program: Any, inputs: Sequence[Sequence[Any]]) -> Agreement:
    from mechsynth.synth.check.behaviour import behaviour

    b = behaviour(target, program, inputs)
    return Agreement(b.positions, b.exact, b.n)


def compiled_agreement(target: Target, program: Any, inputs: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """Compile ``program`` with tracr for the task; its agreement with the network (or why not)."""
    from mechsynth.models.target import outputs_equal
    from mechsynth.models.tracr_targets import compile_rasp

    task = target.task
    if task.frame_size or task.sep is not None:
        why = "the task frames its inputs with special tokens tracr does not know"
        return {"compiled": False, "reason": why}
    try:
        from mechsynth.dsl.rasp_bridge import to_rasp

        expr = to_rasp(program)
        compiled = compile_rasp(expr, task.vocab, task.max_len, name=f"compiled:{target.name}")
    except Exception as e:  # noqa: BLE001 - tracr raises assorted errors outside its fragment
        return {"compiled": False, "reason": (str(e).splitlines() or [type(e).__name__])[0][:300]}
    xs = [list(x) for x in inputs]
    ours, theirs = target.predict(xs), compiled.predict(xs)
    agree = total = whole = 0
    for x, a, b in zip(xs, ours, theirs):
        read = target.read_positions(x)
        ok = [outputs_equal(a[i], b[i], task.output_kind) for i in read]
        agree, total, whole = agree + sum(ok), total + len(ok), whole + all(ok)
    cfg = compiled.model.cfg
    return {"compiled": True, "agreement_positions": agree / total if total else float("nan"),
            "agreement_inputs": whole / len(xs) if xs else float("nan"), "n": len(xs),
            "layers": cfg.n_layers, "heads": cfg.n_heads, "d_model": cfg.d_model}


def replace(target: Target, hypothesis: Hypothesis, *, n: int = 1000, seed: int = 0,
            tracr: bool = True) -> Replacement:
    """The program as a drop-in for the network (module docstring)."""
    from mechsynth.dsl import evaluate
    from mechsynth.synth.check.behaviour import broader_inputs

    program = hypothesis.program
    task_inputs = target.task.sample(n, seed)
    sets = {
        "task": (target, task_inputs),
        "broader": (target, broader_inputs(target, max(1, n // 4), seed)),
        "beyond": (widened(target), [list(c.input) for c in search_inputs(target, n, seed + 7)]),
    }
    agreement = {name: _agreement(t, program, xs) for name, (t, xs) in sets.items() if xs}
    start = time.perf_counter()
    evaluate(program, task_inputs)
    program_seconds = time.perf_counter() - start
    start = time.perf_counter()
    target.predict(task_inputs)
    network_seconds = time.perf_counter() - start
    compiled = compiled_agreement(target, program, task_inputs) if tracr else {"compiled": False,
                                                                              "reason": "not asked"}
    return Replacement(
        target=target.name, program=str(program), agreement=agreement, program_seconds=program_seconds,
        network_seconds=network_seconds, n_timed=len(task_inputs), program_nodes=program.size,
        network_parameters=sum(p.numel() for p in target.model.parameters()), tracr=compiled,
    )


def format_replacement(r: Replacement) -> str:
    """The human-readable summary ``mechsynth replace`` prints."""
    lines = [f"target {r.target}: the program as a drop-in for the network"]
    for name, a in r.agreement.items():
        lines.append(f"agreement on {name:<8} {a.positions:.4f} per position, {a.inputs:.4f} per input "
                     f"({a.n} inputs)")
    ratio = r.network_seconds / r.program_seconds if r.program_seconds > 0 else float("nan")
    lines.append(f"cost on {r.n_timed} inputs: program {r.program_seconds * 1e3:.1f} ms, network forward "
                 f"{r.network_seconds * 1e3:.1f} ms (x{ratio:.2f}); {r.program_nodes} program nodes, "
                 f"{r.network_parameters:,} network parameters")
    t = r.tracr
    if t.get("compiled"):
        lines.append(f"compiled back with tracr ({t['layers']} layers, {t['heads']} heads, "
                     f"d_model {t['d_model']}): "
                     f"agreement with the network {t['agreement_positions']:.4f} per position, "
                     f"{t['agreement_inputs']:.4f} per input")
    else:
        lines.append(f"not compiled with tracr: {t.get('reason', '-')}")
    return "\n".join(lines)
