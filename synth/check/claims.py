"""Claims: a hypothesis resolved against a target, and the batches every check shares.

A hypothesis (dsl.hypothesis) says *what* the network computes (a DSL program) and
*where* (a location per variable). Before any check can run, the "where" must be made
concrete on the target's model, and the "what" must be turned into the graph that the
checks walk:

* Every located variable becomes a `Claim`: its resolved `Site`, and its *claimed
  parents*: the located variables it is computed from. Unlocated variables (selectors
  always; any intermediate the hypothesis does not place) are contracted away: the
  claimed parents of ``v`` are the nearest located ancestors of ``v`` along paths whose
  interior variables are all unlocated. Such interior variables are claimed to be
  computed somewhere on the way from the parents' locations to ``v``'s location
  (tracr's ``selector_width`` for instance is a helper head plus an MLP; its variable
  lives at the MLP and its selector is computed by the head in between).
* The root of the graph is the network's readout (the unembedding). Its claimed parents
  are the output variable if it is located, else the output's nearest located ancestors.
* Primitive variables (``tokens``, ``indices``, ``length``) are the inputs. When located,
  their claim is a leaf: the activation there is taken from the reference input itself.

`resolve_claims` rejects, with a one-line `CheckError`, anything a check could not run
on: hooks that do not exist or have no position axis, heads or dims out of range, a
selector given a location, two variables at overlapping activations, and a variable
claimed to read a parent that the network computes later (layer order).

`prepare_groups` splits inputs by length (tracr networks are bidirectional with no
padding mask, so only same-length inputs share a batch; targets with a PAD token are
grouped the same way, where no padding is needed) and runs, once per group, the
clean forward pass whose logits and claimed activations all checks reuse, and the DSL
program's values (as float64 codes, see dsl.values) for every variable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping, Sequence

import torch

from mechsynth.models.bridge import Stage, can_stage, join_stage
from mechsynth.dsl.program import PRIMITIVE_VARIABLES as PRIMITIVES
from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.location import Location, act_name
from mechsynth.synth.check.patching import (
    CheckError,
    HookInfo,
    PassCounter,
    ReadIndex,
    Site,
    block_starts,
    probe,
    resolve,
    run,
    site_layer,
)

if TYPE_CHECKING:
    from mechsynth.models import Target



@dataclass(frozen=True)
class Claim:
    """A located variable: where it lives and which located variables it is computed from."""

    name: str
    site: Site
    parents: tuple[str, ...]

    @property
    def primitive(self) -> bool:
        return self.name in PRIMITIVES


@dataclass(frozen=True)
class Claims:
    """A hypothesis resolved on a model: claims in topological order and the readout's parents."""

    hypothesis: Hypothesis
    claims: Mapping[str, Claim]
    root_parents: tuple[str, ...]
    info: HookInfo
    embed_sites: tuple[Site, ...]  # whole hook_embed / hook_pos_embed, for mean and zero ablation

    @property
    def program(self) -> Any:
        return self.hypothesis.program


def _overlap(a: Site, b: Site) -> bool:
    if a.hook != b.hook:
        return False
    if a.head is not None and b.head is not None and a.head != b.head:
        return False
    if a.dims is not None and b.dims is not None and not set(a.dims) & set(b.dims):
        return False
    return True


def resolve_claims(target: Target, hypothesis: Hypothesis) -> Claims:
    """Resolve every location and build the contracted hypothesis graph (CheckError if impossible)."""
    program = hypothesis.program
    model = target.model
    info = probe(model)
    corr = dict(hypothesis.correspondence)
    sites: dict[str, Site] = {}
    for name, loc in corr.items():
        if program.kind(name) == "selector":
            raise CheckError(
                f"variable {name!r} is a selector and cannot have a location; "
                "locate the aggregate (or selector_width) that uses it"
            )
        sites[name] = resolve(model, loc, info)
    names = list(sites)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if _overlap(sites[a], sites[b]):
                raise CheckError(
                    f"variables {a!r} and {b!r} claim overlapping activations ({corr[a]} and {corr[b]}); "
                    "give them disjoint heads or dims"
                )

    def located_ancestors(name: str) -> tuple[str, ...]:
        return program.nearest_ancestors(name, sites)

    claims: dict[str, Claim] = {}
    for name in program.variables:
        if name not in sites:
            continue
        parents = located_ancestors(name)
        for p in parents:
            if sites[p].order >= sites[name].order:
                raise CheckError(
                    f"variable {name!r} at {corr[name]} is claimed to read {p!r} at {corr[p]}, "
                    "which the network does not compute before it"
                )
        claims[name] = Claim(name, sites[name], parents)
    out = program.output
    root_parents = (out,) if out in sites else located_ancestors(out)
    embed_sites = tuple(resolve(model, Location(h), info) for h in (act_name("embed"), act_name("pos_embed")))
    return Claims(hypothesis, claims, root_parents, info, embed_sites)


@dataclass(frozen=True, eq=False)
class Group:
    """Same-length inputs with their clean run and the program's values on them."""

    length: int
    inputs: tuple[tuple[Any, ...], ...]
    tokens: torch.Tensor  # [n, T] model tokens (BOS included when the target uses one)
    offset: int  # model position of input position 0
    readout: ReadIndex  # model positions each row's input reads (task.read_positions + offset)
    clean_logits: torch.Tensor  # [n, T, d_vocab_out]
    clean: Mapping[str, torch.Tensor]  # claimed variable -> clean site values [n, T, ...]
    embeds: tuple[torch.Tensor, ...]  # clean hook_embed and hook_pos_embed [n, T, d_model]
    codes: Mapping[str, torch.Tensor]  # program variable -> float64 codes [n, length] (selectors left out)
    batch: Any  # the dsl.interpret.Batch the codes were computed on
    # The clean residual stream entering each block [n, T, d_model] (empty where the model cannot be
    # run from a later block, models.bridge.can_stage): patched rows start at their first patched block.
    resid: tuple[torch.Tensor, ...] = ()
    values: Mapping[str, torch.Tensor] | None = None  # every program variable's value, selectors included
    # Clean values where rows join inside a block (models.bridge.Stage): (layer, stage) -> the whole
    # ``hook_z`` (ATTN_OUT) or ``hook_post`` (MLP_OUT) of that block, for the blocks a claim sits in.
    joins: Mapping[tuple[int, Stage], torch.Tensor] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.inputs)

    @property
    def positions(self) -> slice:
        """Model positions of the input (BOS excluded)."""
        return slice(self.offset, self.offset + self.length)


def program_run(program: Any, inputs: Sequence[Sequence[Any]]) -> tuple[Any, dict[str, torch.Tensor]]:
    """(dsl batch, {variable: value}) for same-length inputs, selectors included; CheckError if the
    program cannot run."""
    from mechsynth.dsl import interpret
    from mechsynth.dsl.errors import DSLError

    try:
        batch = interpret.encode(inputs, symbols=program.literals())
        values = interpret.run(program, batch)
    except DSLError as e:
        raise CheckError(f"the program does not evaluate on the target's inputs: {e}") from None
    return batch, values


def program_values(program: Any, inputs: Sequence[Sequence[Any]]) -> tuple[Any, dict[str, torch.Tensor]]:
    """(dsl batch, {variable: codes}) for same-length inputs; CheckError if the program cannot run."""
    batch, values = program_run(program, inputs)
    return batch, _codes(values)


def _codes(values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The sequence-valued variables' codes (selectors, ``[n, L, L]``, left out)."""
    return {k: v for k, v in values.items() if v.dim() == 2}


def group_by_length(inputs: Sequence[Sequence[Any]]) -> dict[int, list[tuple[Any, ...]]]:
    groups: dict[int, list[tuple[Any, ...]]] = {}
    for x in inputs:
        groups.setdefault(len(x), []).append(tuple(x))
    return dict(sorted(groups.items()))


def _resid_sites(model: Any, info: HookInfo) -> list[Site]:
    """The whole residual stream entering each block (``hook_resid_pre``), block 0 first."""
    layers = range(int(model.cfg.n_layers))
    return [resolve(model, Location(act_name("resid_pre", layer)), info) for layer in layers]


def _join_sites(model: Any, claims: Claims) -> dict[tuple[int, Stage], Site]:
    """The whole ``hook_z`` / ``hook_post`` of each block where a row whose first patch is a claimed
    site can join inside the block (models.bridge.join_stage): what the clean pass must keep."""
    starts = block_starts(model, claims.info)
    out: dict[tuple[int, Stage], Site] = {}
    for claim in claims.claims.values():
        layer = site_layer(claim.site, starts)
        if layer < 0:
            continue
        stage = join_stage(model, layer, claim.site.hook)
        if stage >= Stage.ATTN_OUT:
            out[(layer, Stage.ATTN_OUT)] = resolve(model, Location(act_name("z", layer)), claims.info)
        if stage >= Stage.MLP_OUT:
            out[(layer, Stage.MLP_OUT)] = resolve(model, Location(act_name("post", layer)), claims.info)
    return out


def prepare_groups(
    target: Target, claims: Claims, inputs: Sequence[Sequence[Any]], counter: PassCounter, min_size: int = 2
) -> list[Group]:
    """One clean forward pass per length group (groups smaller than ``min_size`` are dropped)."""
    out = []
    off = target.position_offset
    capture = [c.site for c in claims.claims.values()] + list(claims.embed_sites)
    resid_sites = _resid_sites(target.model, claims.info) if can_stage(target.model) else []
    capture += [s for s in resid_sites if s not in capture]
    join_sites = _join_sites(target.model, claims) if resid_sites else {}
    capture += [s for s in join_sites.values() if s not in capture]
    for length, xs in group_by_length(inputs).items():
        if len(xs) < min_size:
            continue
        tokens = target.tokens([list(x) for x in xs])
        logits, acts = run(target.model, tokens, capture=capture, counter=counter)
        batch, values = program_run(claims.program, xs)
        readout = ReadIndex.of_rows([[p + off for p in target.read_positions(x)] for x in xs], target.device)
        out.append(
            Group(
                length=length, inputs=tuple(xs), tokens=tokens, offset=off, readout=readout,
                clean_logits=logits, clean={n: acts[c.site] for n, c in claims.claims.items()},
                embeds=tuple(acts[s] for s in claims.embed_sites), codes=_codes(values), batch=batch,
                resid=tuple(acts[s] for s in resid_sites), values=values,
                joins={key: acts[s] for key, s in join_sites.items()},
            )
        )
    return out
