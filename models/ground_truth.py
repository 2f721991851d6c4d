"""Ground truth of tracr targets: which component writes each RASP variable, and where.

tracr gives every RASP variable (SOp) its own subspace of the residual stream: a
categorical variable `x` with values {a, b} owns the dimensions labelled `x:a`, `x:b`;
a numerical variable owns one dimension labelled `x`. The compiled graph records each
variable's output basis, and `residual_labels` names every residual dimension, so the
dimensions of a variable are known exactly.

The *component* that writes a variable is read off the weights, not guessed from the
program: it is the attention head whose output matrix W_O (or the MLP whose W_out) has
non-zero entries into the variable's dimensions. tracr writes each variable exactly
once, so exactly one component qualifies; anything else is an error. This makes the
ground truth a property of the network we actually run, and works for any program
(`Aggregate` -> a head; `Map`/`SequenceMap` -> an MLP; `SelectorWidth` -> the MLP
that follows its helper head).

Location conventions (dsl.hypothesis):
- `tokens` -> `Location(act_name("embed"), dims=<dims of tokens:*>)`
- `indices` -> `Location(act_name("pos_embed"), dims=<dims of indices:*>)`
- written by head h of layer L -> `Location("blocks.L.attn.hook_z", head=h)`
- written by the MLP of layer L -> `Location("blocks.L.hook_mlp_out", dims=<the variable's dims>)`
- selectors get no location (their head is the location of the aggregate using them).

Variables are named by `dsl.rasp_variable_name(expr)`, the same name `dsl.from_rasp`
gives the DSL variable, so the correspondence lines up with the ground-truth program.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping

import numpy as np

from mechsynth.models.target import TargetError
from mechsynth.dsl.location import Location, act_name

if TYPE_CHECKING:
    from mechsynth.dsl.hypothesis import Hypothesis

    from mechsynth.models.tracr_targets import CompiledRasp


def variable_name(expr: Any) -> str:
    """The DSL name of a RASP expression (`dsl.rasp_variable_name`, or the same rule locally)."""
    try:
        from mechsynth.dsl import rasp_variable_name
    except ImportError:
        rasp_variable_name = None
    if rasp_variable_name is not None:
        return rasp_variable_name(expr)
    name = re.sub(r"\W", "_", str(expr.label))
    return "v_" + name if name[:1].isdigit() else name


def variable_dims(compiled: CompiledRasp) -> dict[str, tuple[int, ...]]:
    """Residual dimensions of every SOp of the compiled program, by RASP label."""
    from tracr.compiler import nodes
    from tracr.rasp import rasp

    index = {label: i for i, label in enumerate(compiled.assembled.residual_labels)}
    dims: dict[str, tuple[int, ...]] = {}
    for label, node in compiled.graph.nodes.items():
        if isinstance(node[nodes.EXPR], rasp.Selector) or nodes.OUTPUT_BASIS not in node:
            continue
        found = tuple(index[str(d)] for d in node[nodes.OUTPUT_BASIS] if str(d) in index)
        if found:
            dims[label] = found
    return dims


def writers(
    sd: Mapping[str, np.ndarray], n_layers: int, dims: tuple[int, ...]
) -> list[tuple[str, int, int | None]]:
    """Components whose output weights reach `dims`: ("attn", layer, head) or ("mlp", layer, None)."""
    found: list[tuple[str, int, int | None]] = []
    cols = list(dims)
    for layer in range(n_layers):
        w_o = np.asarray(sd[f"blocks.{layer}.attn.W_O"])  # [heads, d_head, d_model]
        for head in range(w_o.shape[0]):
            if np.any(w_o[head][:, cols] != 0):
                found.append(("attn", layer, head))
        w_out = np.asarray(sd[f"blocks.{layer}.mlp.W_out"])  # [d_mlp, d_model]
        if np.any(w_out[:, cols] != 0):
            found.append(("mlp", layer, None))
    return found


def variable_locations(compiled: CompiledRasp, sd: Mapping[str, np.ndarray]) -> dict[str, Location]:
    """{DSL variable name: Location of the component that writes it} for every SOp."""
    from tracr.rasp import rasp

    n_layers = compiled.assembled.model_config.num_layers
    locations: dict[str, Location] = {}
    for label, dims in variable_dims(compiled).items():
        expr = compiled.graph.nodes[label]["EXPR"]
        name = variable_name(expr)
        if label == rasp.tokens.label:
            locations[name] = Location(act_name("embed"), dims=dims)
            continue
        if label == rasp.indices.label:
            locations[name] = Location(act_name("pos_embed"), dims=dims)
            continue
        found = writers(sd, n_layers, dims)
        if len(found) != 1:
            what = ", ".join(f"{k} {layer}" + ("" if h is None else f" head {h}") for k, layer, h in found)
            raise TargetError(
                f"variable {label} is written by {len(found)} components ({what or 'none'}), not one"
            )
        kind, layer, head = found[0]
        if kind == "attn":
            locations[name] = Location(act_name("z", layer), head=head)
        else:
            locations[name] = Location(act_name("mlp_out", layer), dims=dims)
    return locations


def ground_truth_hypothesis(compiled: CompiledRasp, locations: Mapping[str, Location]) -> Hypothesis | None:
    """The DSL program tracr compiled plus the locations of its variables (None without the DSL bridge)."""
    try:
        from mechsynth.dsl import DSLError, from_rasp
    except ImportError:
        return None
    from mechsynth.dsl.hypothesis import Hypothesis

    try:
        program = from_rasp(compiled.program, compiled.vocab, compiled.max_seq_len)
    except DSLError as e:
        raise TargetError(f"no ground-truth program for {compiled.program.label}: {e}") from None
    known = set(program.variables)
    names = stable_names(program)
    return Hypothesis(
        program.rename(names), {names.get(k, k): v for k, v in locations.items() if k in known}
    )


def stable_names(program: Any) -> dict[str, str]:
    """Renaming that drops tracr's process-wide label counters (``opp_idx_4`` -> ``opp_idx``).

    tracr numbers every RASP expression it creates in a process, so the same target gets
    different variable names depending on what was built before it. Ground truth must not
    depend on that: strip the trailing counter, then number clashes in program order.
    """
    from mechsynth.dsl.program import PRIMITIVE_VARIABLES
    from mechsynth.dsl.registry import primitives

    # Never reuse an operation's name (``select = select(...)`` parses, but reads badly).
    taken = set(PRIMITIVE_VARIABLES) | {p.name for p in primitives()}
    mapping: dict[str, str] = {}
    for name, _ in program.assignments:
        base = re.sub(r"_\d+$", "", name) or name
        candidate, i = base, 2
        while candidate in taken:
            candidate, i = f"{base}_{i}", i + 1
        taken.add(candidate)
        mapping[name] = candidate
    return mapping
