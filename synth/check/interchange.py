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

Cost: one batched forward pass per length group for all interventions together (each
intervention in its own block of rows); the source activations come from the clean pass
every check shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping, Sequence

import torch

from synth.check.claims import PRIMITIVES, Claims, Group
from synth.check.patching import Edit, PassCounter, run

if TYPE_CHECKING:
    from models import Target


def interventions(claims: Claims) -> list[tuple[str, ...]]:
    """Single-variable interventions for every claim, plus the joint one (see module docstring)."""
    out: list[tuple[str, ...]] = [(name,) for name in claims.claims]
    joint = tuple(n for n in claims.claims if n not in PRIMITIVES and n != claims.program.output)
    if len(joint) >= 2:
        out.append(joint)
    return out


def counterfactual_output(
    program: Any, group: Group, variables: Sequence[str], src: torch.Tensor,
    base_values: Mapping[str, torch.Tensor] | None = None,
) -> list[list]:
    """Program output on each base row with ``variables`` from row ``src[b]``, downstream recomputed."""
    from dsl import interpret

    batch = group.batch
    values = dict(base_values) if base_values is not None else interpret.run(program, batch)
    changed = set(variables)
    for v in variables:
        values[v] = values[v][src]
    for name, node in program.assignments:
        if name in changed:
            continue
        if any(c in changed for c in node.inputs):
            values[name] = interpret.eval_node(node, [values[c] for c in node.inputs], batch)
            changed.add(name)
    out = program.output
    return interpret.decode(values[out], interpret.dtypes(program)[out], batch)


@dataclass(frozen=True)
class GroupIIA:
    """Per pair (base row) results of one intervention on one length group."""

    match: torch.Tensor  # [n] bool: network output == counterfactual at every defined readout position
    informative: torch.Tensor  # [n] bool: the counterfactual differs from the base output
    defined: torch.Tensor  # [n] bool: the counterfactual is defined at some readout position


def iia_group(
    target: Target, claims: Claims, group: Group, gen: torch.Generator, counter: PassCounter
) -> dict[tuple[str, ...], GroupIIA]:
    """IIA of every intervention on one length group."""
    from models.target import outputs_equal

    kind = target.task.output_kind
    from dsl import interpret

    base_values = interpret.run(claims.program, group.batch)
    out = claims.program.output
    base_out = interpret.decode(base_values[out], interpret.dtypes(claims.program)[out], group.batch)
    inputs = [list(x) for x in group.inputs]
    results: dict[tuple[str, ...], GroupIIA] = {}
    todo = interventions(claims)
    if not todo:
        return results
    # Every intervention in one forward pass, each in its own block of batch rows.
    n = group.size
    sources = [torch.randint(n, (n,), generator=gen) for _ in todo]
    edits = [
        Edit(claims.claims[v].site, group.clean[v][src][:, group.positions], group.positions,
             slice(j * n, (j + 1) * n))
        for j, (variables, src) in enumerate(zip(todo, sources))
        for v in variables
    ]
    logits_all, _ = run(target.model, group.tokens.repeat(len(todo), 1), edits, counter=counter)
    for j, (variables, src) in enumerate(zip(todo, sources)):
        network = target.decode(logits_all[j * n : (j + 1) * n], inputs)
        predicted = counterfactual_output(claims.program, group, variables, src, base_values)
        match, informative, defined = [], [], []
        for x, net, cf, b in zip(inputs, network, predicted, base_out):
            read = [i for i in target.read_positions(x) if cf[i] is not None]
            match.append(all(outputs_equal(net[i], cf[i], kind) for i in read))
            informative.append(any(not outputs_equal(cf[i], b[i], kind) for i in read))
            defined.append(bool(read))
        results[variables] = GroupIIA(torch.tensor(match), torch.tensor(informative), torch.tensor(defined))
    return results
