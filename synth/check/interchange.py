"""Interchange interventions (Geiger et al. 2021): does the network respond to a variable
being set the way the program says it should?

For a base input ``b`` and a source input ``s`` of the same length, and a set ``V`` of
located variables, we run the network on ``b`` with the activation at each variable's
location (its head, or its dims; every input position, not BOS) replaced by that
location's activation on ``s``. The program predicts the result: evaluate it on ``b``
with the values of ``V`` replaced by their values on ``s`` and everything downstream
recomputed (`counterfactual_output`, on the DSL's tensor path). The interchange
intervention accuracy (IIA) of ``V`` is the fraction of (base, source) pairs where the
network's decoded output equals the program's counterfactual output at every readout
position where the program's counterfactual output is defined (not None; pairs with no
such position are left out).

Interventions scored: each located variable on its own, and all located non-primitive,
non-output variables at once (when there are at least two). A pair is *informative*
when the counterfactual output differs from the program's output on the base: pairs
where nothing should change cannot tell a right location from a dead one, so the IIA
on informative pairs is reported next to the IIA on all pairs.

Cost: each intervention is one block of rows (synth.check.batching), run in the same
forward pass as the group's other checks; the source activations come from the clean pass
every check shares.

Across lengths (`iia_across_lengths`, ``score(..., lengths="aligned")``): the source may
have any length. The base keeps its own length and frame; at each position ``k`` that both
inputs have, the variable's activation (and, in the program, its value) is the source's,
and at the base's other positions it stays the base's own. Within a length group a
variable of the length alone (tracr's ``length``) is the same in source and base, so no
pair is informative and its claim is untested; across lengths it is tested.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping, Sequence

import torch

from mechsynth.models.device import PROGRAM_DEVICE
from mechsynth.synth.check.batching import Block, Patch
from mechsynth.synth.check.claims import PRIMITIVES, Claims, Group

if TYPE_CHECKING:
    from mechsynth.models import Target


def interventions(claims: Claims) -> list[tuple[str, ...]]:
    """Single-variable interventions for every claim, plus the joint one (see module docstring)."""
    out: list[tuple[str, ...]] = [(name,) for name in claims.claims]
    joint = tuple(n for n in claims.claims if n not in PRIMITIVES and n != claims.program.output)
    if len(joint) >= 2:
        out.append(joint)
    return out


def counterfactual_output(
    program: Any, group: Group | None, variables: Sequence[str], src: torch.Tensor,
    base_values: Mapping[str, torch.Tensor] | None = None,
    *, batch: Any = None, where: torch.Tensor | None = None,
) -> list[list]:
    """Program output on each base row with ``variables`` from row ``src[b]``, downstream recomputed.

    ``batch`` replaces the group's batch; with ``where`` ([B, T] bool) the source's values
    are taken only there (aligned positions) and the base keeps its own elsewhere.
    """
    from mechsynth.dsl import interpret

    batch = group.batch if batch is None else batch
    codes = counterfactual_codes(program, group, variables, src, base_values, batch=batch, where=where)
    return interpret.decode(codes, interpret.dtypes(program)[program.output], batch)


def counterfactual_codes(
    program: Any, group: Group | None, variables: Sequence[str], src: torch.Tensor,
    base_values: Mapping[str, torch.Tensor] | None = None,
    *, batch: Any = None, where: torch.Tensor | None = None,
) -> torch.Tensor:
    """`counterfactual_output` as the output variable's codes ``[B, T]`` (dsl.values), not decoded."""
    from mechsynth.dsl import interpret

    batch = group.batch if batch is None else batch
    values = dict(base_values) if base_values is not None else interpret.run(program, batch)
    changed = set(variables)
    for v in variables:
        values[v] = values[v][src] if where is None else torch.where(where, values[v][src], values[v])
    for name, node in program.assignments:
        if name in changed:
            continue
        if any(c in changed for c in node.inputs):
            values[name] = interpret.eval_node(node, [values[c] for c in node.inputs], batch)
            changed.add(name)
    return values[program.output]


@dataclass(frozen=True)
class GroupIIA:
    """Per pair (base row) results of one intervention on one length group."""

    match: torch.Tensor  # [n] bool: network output == counterfactual at every defined readout position
    informative: torch.Tensor  # [n] bool: the counterfactual differs from the base output
    defined: torch.Tensor  # [n] bool: the counterfactual is defined at some readout position


@dataclass(frozen=True)
class IIAPlan:
    """The interventions of one length group, their sources and the block of each."""

    todo: tuple[tuple[str, ...], ...]
    sources: tuple[torch.Tensor, ...]  # per intervention: [n] source row of each base row
    blocks: tuple[Block, ...]  # one per intervention, in ``todo``'s order


def plan_iia(claims: Claims, group: Group, gen: torch.Generator, prefix: str = "iia/") -> IIAPlan:
    """Every intervention on one length group, each a block of rows with its variables from a source."""
    todo = interventions(claims)
    n = group.size
    sources = [torch.randint(n, (n,), generator=gen) for _ in todo]
    blocks = [
        Block(f"{prefix}{j}", group.tokens, tuple(
            Patch(claims.claims[v].site, group.positions, values=group.clean[v][src][:, group.positions])
            for v in variables
        ))
        for j, (variables, src) in enumerate(zip(todo, sources))
    ]
    return IIAPlan(tuple(todo), tuple(sources), tuple(blocks))


def _pair_results(
    target: Target, inputs: Sequence[list], network: Sequence[list], predicted: Sequence[list],
    base_out: Sequence[list],
) -> GroupIIA:
    from mechsynth.models.target import outputs_equal

    kind = target.task.output_kind
    match, informative, defined = [], [], []
    for x, net, cf, b in zip(inputs, network, predicted, base_out):
        read = [i for i in target.read_positions(x) if cf[i] is not None]
        match.append(all(outputs_equal(net[i], cf[i], kind) for i in read))
        informative.append(any(not outputs_equal(cf[i], b[i], kind) for i in read))
        defined.append(bool(read))
    # Program-side bookkeeping (Python booleans per input): on the CPU, like the interpreter's values.
    cpu = PROGRAM_DEVICE
    return GroupIIA(torch.tensor(match, device=cpu), torch.tensor(informative, device=cpu),
                    torch.tensor(defined, device=cpu))


def iia_results(
    target: Target, claims: Claims, group: Group, plan: IIAPlan, logits: Mapping[str, torch.Tensor]
) -> dict[tuple[str, ...], GroupIIA]:
    """IIA of every intervention on one length group, from its blocks' logits."""
    from mechsynth.dsl import interpret

    if not plan.todo:
        return {}
    program = claims.program
    base_values = group.values if group.values is not None else interpret.run(program, group.batch)
    base_out = _read_codes(group, base_values[program.output])
    results: dict[tuple[str, ...], GroupIIA] = {}
    for variables, src, block in zip(plan.todo, plan.sources, plan.blocks):
        predicted = counterfactual_codes(program, group, variables, src, base_values)
        results[variables] = compare_pairs(
            target, program, group, network_keys(target, logits[block.name], group),
            _read_codes(group, predicted), base_out,
        )
    return results


def _read_codes(group: Group, codes: torch.Tensor) -> torch.Tensor:
    """A program variable's codes ``[n, L]`` at each row's read positions: ``[n, R]`` float64."""
    index = (group.readout.index - group.offset).clamp(0, group.length - 1).to(codes.device)
    return torch.gather(codes, 1, index)


def network_keys(target: Target, logits: torch.Tensor, group: Group) -> torch.Tensor:
    """The network's decoded output at each row's read positions as one float64 key ``[n, R]``:
    the class index (categorical), the bit mask of positive labels (multilabel) or the value
    (numerical), exactly what `Target.decode` reads."""
    read = group.readout.take(logits)
    kind = target.task.output_kind
    if kind == "categorical":
        return read.argmax(-1).double().to(PROGRAM_DEVICE)
    if kind == "multilabel":
        bits = 2.0 ** torch.arange(read.shape[-1], dtype=torch.float64, device=read.device)
        return ((read > 0).double() * bits).sum(-1).to(PROGRAM_DEVICE)
    return read[..., target.numeric_column].double().to(PROGRAM_DEVICE)


_NONE = -(2.0**60)  # stands for NaN (None) in the distinct-value tables: below every code


def _table(a: torch.Tensor, b: torch.Tensor, equal: Any) -> torch.Tensor:
    """``equal(x, y)`` for every entry pair of ``a`` and ``b`` (same shape), called once per
    distinct pair: the Python comparison of decoded values, vectorised without changing it."""
    # Distinct pairs through 1-d uniques (each side's distinct values, then their index pairs):
    # far cheaper than a row-wise unique over stacked pairs, and the same set of pairs.
    left, li = torch.unique(torch.nan_to_num(a, nan=_NONE).reshape(-1), return_inverse=True)
    right, ri = torch.unique(torch.nan_to_num(b, nan=_NONE).reshape(-1), return_inverse=True)
    keys, inverse = torch.unique(li * len(right) + ri, return_inverse=True)
    xs, ys = left[keys // len(right)].tolist(), right[keys % len(right)].tolist()
    value = [bool(equal(x, y)) for x, y in zip(xs, ys)]
    return torch.tensor(value, dtype=torch.bool, device=PROGRAM_DEVICE)[inverse].view(a.shape)


def _distinct_map(a: torch.Tensor, fn: Any) -> torch.Tensor:
    """``fn(x)`` (a float) for every entry of ``a``, called once per distinct entry."""
    flat = torch.nan_to_num(a, nan=_NONE).reshape(-1)
    distinct, inverse = torch.unique(flat, return_inverse=True)
    mapped = torch.tensor([fn(x) for x in distinct.tolist()], dtype=torch.float64, device=PROGRAM_DEVICE)
    return mapped[inverse].view(a.shape)


def _as_float(v: Any) -> float:
    """A decoded program value as `outputs_equal` reads a numerical one (NaN where float() fails)."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _numbers_close(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``math.isclose(a, b, abs_tol=NUMERIC_ATOL)`` entrywise (default rel_tol 1e-9; NaN is never close)."""
    from mechsynth.models.target import NUMERIC_ATOL

    finite = torch.isfinite(a) & torch.isfinite(b)
    tol = (1e-9 * torch.maximum(a.abs(), b.abs())).clamp_min(NUMERIC_ATOL)
    return (a == b) | (finite & ((a - b).abs() <= tol))


def compare_pairs(
    target: Target, program: Any, group: Group, network: torch.Tensor, predicted: torch.Tensor,
    base_out: torch.Tensor,
) -> GroupIIA:
    """`GroupIIA` from keys and codes at the read positions, by the one rule of `outputs_equal`."""
    from mechsynth.dsl import interpret
    from mechsynth.models.target import outputs_equal

    kind = target.task.output_kind
    dtype = interpret.dtypes(program)[program.output]
    codebook = group.batch.codebook
    labels = target.output_values

    def value(code: float) -> Any:
        return None if code == _NONE else codebook.decode(code, dtype)

    def network_value(key: float) -> Any:
        if kind == "categorical":
            return labels[int(key)]
        if kind == "multilabel":
            return tuple(v for j, v in enumerate(labels) if int(key) >> j & 1)
        return key

    valid = group.readout.valid.to(PROGRAM_DEVICE)
    predicted, base_out = predicted.to(PROGRAM_DEVICE), base_out.to(PROGRAM_DEVICE)
    read = valid & _table(predicted, predicted, lambda c, _: value(c) is not None)
    if kind == "numerical":  # network values are all distinct: compare with the program's numbers in bulk
        match_at = _numbers_close(network, _distinct_map(predicted, lambda c: _as_float(value(c))))
    else:
        match_at = _table(network, predicted, lambda k, c: outputs_equal(network_value(k), value(c), kind))
    differs = ~_table(predicted, base_out, lambda c, b: outputs_equal(value(c), value(b), kind))
    cpu = PROGRAM_DEVICE
    return GroupIIA(
        (match_at | ~read).all(1).to(cpu), (differs & read).any(1).to(cpu), read.any(1).to(cpu),
    )


@dataclass(frozen=True)
class AlignedIIAPlan:
    """Interventions with sources of any length: the blocks of each group and the predictions."""

    todo: tuple[tuple[str, ...], ...]
    blocks: tuple[tuple[Block, ...], ...]  # per group, one block per intervention
    predicted: tuple[list, ...]  # per intervention: counterfactual output of every row of every group
    base_out: list
    starts: tuple[int, ...]  # each group's first row among all rows


def plan_iia_across_lengths(
    claims: Claims, groups: Sequence[Group], gen: torch.Generator, prefix: str = "iia/"
) -> AlignedIIAPlan:
    """Every intervention with sources of any length, aligned at the positions both inputs have
    (see the module docstring)."""
    from mechsynth.dsl import interpret

    program = claims.program
    todo = interventions(claims)
    if not todo or not groups:
        return AlignedIIAPlan((), tuple(() for _ in groups), (), [], ())
    every = [list(x) for g in groups for x in g.inputs]
    joint = interpret.encode(every, symbols=program.literals())  # one codebook for every length
    base_values = interpret.run(program, joint)
    out = program.output
    base_out = interpret.decode(base_values[out], interpret.dtypes(program)[out], joint)
    lengths = joint.lengths
    where_row = [(gi, i) for gi, g in enumerate(groups) for i in range(g.size)]
    starts = [sum(g.size for g in groups[:gi]) for gi in range(len(groups))]
    sources = [torch.randint(len(every), (len(every),), generator=gen) for _ in todo]
    positions = torch.arange(joint.mask.shape[1], device=joint.mask.device)
    predicted = []
    for variables, src in zip(todo, sources):
        aligned = (positions[None, :] < lengths[src][:, None]) & joint.mask
        predicted.append(
            counterfactual_output(program, None, variables, src, base_values, batch=joint, where=aligned)
        )

    def source_values(name: str, rows: range, src: torch.Tensor, group: Group) -> torch.Tensor:
        """The base rows' clean site values with the source's at every position both have."""
        values = group.clean[name][:, group.positions].clone()
        for b, r in zip(range(group.size), rows):
            sg, si = where_row[int(src[r])]
            source = groups[sg]
            k = min(group.length, source.length)
            values[b, :k] = source.clean[name][si, source.offset : source.offset + k]
        return values

    blocks = []
    for gi, group in enumerate(groups):
        rows = range(starts[gi], starts[gi] + group.size)
        blocks.append(tuple(
            Block(f"{prefix}{j}", group.tokens, tuple(
                Patch(claims.claims[v].site, group.positions, values=source_values(v, rows, src, group))
                for v in variables
            ))
            for j, (variables, src) in enumerate(zip(todo, sources))
        ))
    return AlignedIIAPlan(tuple(todo), tuple(blocks), tuple(predicted), base_out, tuple(starts))


def aligned_iia_results(
    target: Target, groups: Sequence[Group], plan: AlignedIIAPlan,
    logits: Sequence[Mapping[str, torch.Tensor]],
) -> dict[tuple[str, ...], list[GroupIIA]]:
    """One `GroupIIA` per group and intervention, in the groups' order (``logits``: each group's blocks')."""
    results: dict[tuple[str, ...], list[GroupIIA]] = {v: [] for v in plan.todo}
    if not plan.todo:  # nothing located: no intervention (and no per-group blocks)
        return results
    for gi, group in enumerate(groups):
        rows = range(plan.starts[gi], plan.starts[gi] + group.size)
        inputs = [list(x) for x in group.inputs]
        for j, variables in enumerate(plan.todo):
            network = target.decode(logits[gi][plan.blocks[gi][j].name], inputs)
            predicted = [plan.predicted[j][r] for r in rows]
            base_out = [plan.base_out[r] for r in rows]
            results[variables].append(_pair_results(target, inputs, network, predicted, base_out))
    return results
