"""Edit: change the program, apply the change to the network where the hypothesis locates it.

If a hypothesis is right about *where* the network holds each variable, then changing a
variable's definition in the program and writing the changed values into the network at
that variable's location should make the network compute the changed program. This is the
hypothesis' strongest practical promise (an edit guided by it does what it predicts), and
the measurement here tests it.

The edit syntax (parsed, never evaluated; several edits separated by ``;``)::

    VAR = EXPRESSION    redefine VAR: a DSL expression over variables defined before VAR
                        (``reverse_selector = select(indices, indices, EQ)``: a new predicate
                        or new inputs; ``hist = map(add(1), hist_raw)``: a new function)
    VAR = OTHER         delete the branch that computes VAR: VAR becomes a copy of the earlier
                        variable OTHER (``out = clean_out`` drops what ``out`` added on top)

The program text with VAR's line replaced is read by the DSL parser (``dsl.parse``), so an
edit can only say what the DSL can, and every mistake is a one-line error.

Applying it (activation patching from the edited program's values): the variables whose
values the edit can change are the edited ones and everything downstream. Of those, the
*frontier* is the located ones with no located changed variable between them and the edit
(an edited selector is not located; the aggregate or selector width reading it is). For
each input, at each frontier location and position, the network's activation is replaced by
a *donor's*: the clean activation at the same location on another input, at the same
position when one exists, whose **original** program value there equals the **edited**
program's value on this input. A value no donor holds (the original program never computes
it) is built where the location is a subspace tracr labels one-hot by value (``hist:0``);
elsewhere it is left unpatched, and both are counted. Everything after the frontier is
computed by the network itself, so the downstream claims are tested too.

Numbers (on fresh inputs from the task's distribution):

* ``follows_edited``: fraction of inputs where the edited network's output equals the edited
  program's at every read position the program defines; ``follows_edited_touched``: the same
  on the inputs where the edit changes the program's output (the informative ones), with the
  unedited network's agreement there as the baseline (``baseline_touched``: near 0 when the
  edit matters);
* ``follows_original_untouched``: on the inputs where the edit does not change the
  program's output, the fraction where the edited network still gives the original output.

``synth.use.weights.weight_edit`` makes the change permanent where the frontier is one
variable at an MLP's output: that MLP's parameters are fitted by gradient descent to reproduce
the patched activations at the frontier location (and the patched run's readout), every other
weight frozen, and the result can be saved as a checkpoint loadable as a ``file:`` target.
Heads are not refitted (activation patching still applies to them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import torch

from mechsynth.synth.use.inputs import UseError

if TYPE_CHECKING:
    from mechsynth.dsl.hypothesis import Hypothesis
    from mechsynth.dsl.program import Program
    from mechsynth.models import Target
    from mechsynth.synth.check.patching import Site


class EditKind(StrEnum):
    REDEFINE = "redefine"  # VAR = EXPRESSION
    BYPASS = "bypass"  # VAR = OTHER: the branch computing VAR is deleted


@dataclass(frozen=True)
class ProgramEdit:
    """One edit: ``variable`` gets a new definition ``expression`` (or becomes a copy of it)."""

    variable: str
    expression: str
    kind: EditKind

    def __str__(self) -> str:
        return f"{self.variable} = {self.expression}"


_EDIT = re.compile(r"^\s*([A-Za-z_]\w*)\s*=\s*(\S.*?)\s*$", re.DOTALL)
_NAME = re.compile(r"[A-Za-z_]\w*")
MAX_EDIT_CHARS = 4000


def parse_edits(text: str) -> tuple[ProgramEdit, ...]:
    """Read the edit syntax (module docstring); UseError naming the bad part."""
    if len(text) > MAX_EDIT_CHARS:
        raise UseError(f"edit text of {len(text)} characters is too long (at most {MAX_EDIT_CHARS})")
    parts = [p for p in text.split(";") if p.strip()]
    if not parts:
        raise UseError("no edit given: expected 'VARIABLE = EXPRESSION' (several separated by ';')")
    out = []
    for part in parts:
        m = _EDIT.match(part)
        if m is None or m.group(2).startswith("="):
            raise UseError(f"edit {part.strip()!r}: expected 'VARIABLE = EXPRESSION' or "
                           "'VARIABLE = OTHER_VARIABLE'")
        name, expression = m.group(1), m.group(2)
        kind = EditKind.BYPASS if _NAME.fullmatch(expression) else EditKind.REDEFINE
        out.append(ProgramEdit(name, expression, kind))
    names = [e.variable for e in out]
    if len(set(names)) != len(names):
        raise UseError(f"edit names {max(names, key=names.count)!r} twice; give each variable one edit")
    return tuple(out)


def apply_edits(program: Program, edits: Sequence[ProgramEdit]) -> Program:
    """The edited program (UseError when an edit does not fit the program)."""
    from mechsynth.dsl import parse
    from mechsynth.dsl.errors import DSLError

    names = [n for n, _ in program.assignments]
    lines = str(program).splitlines()
    if len(lines) != len(names):  # the canonical text has one line per assignment
        raise UseError("the program's text is not one line per assignment; cannot edit it")
    for e in edits:
        if e.variable not in names:
            raise UseError(f"edit {e}: {e.variable!r} is not assigned by the program "
                           f"(assigned: {', '.join(names)})")
        expression = e.expression
        if e.kind is EditKind.BYPASS:
            expression = _copy_of(program, e)
        lines[names.index(e.variable)] = f"{e.variable} = {expression}"
    try:
        edited = parse("\n".join(lines))
    except DSLError as err:
        shown = "; ".join(str(e) for e in edits)
        raise UseError(f"edit {shown!r}: {str(err).splitlines()[0]}") from None
    if edited.output != program.output:
        raise UseError(f"the edit changed the program's output variable ({program.output!r})")
    return edited


def _copy_of(program: Program, e: ProgramEdit) -> str:
    """The DSL text of a copy of ``e.expression`` (a variable), for deleting ``e.variable``'s branch."""
    other = e.expression
    if other not in program.variables and other not in ("tokens", "indices", "length"):
        raise UseError(f"edit {e}: {other!r} is not a variable of the program")
    if other == e.variable:
        raise UseError(f"edit {e}: a variable cannot become a copy of itself")
    own, theirs = program.kind(e.variable), program.kind(other)
    if (own == "selector") != (theirs == "selector"):
        raise UseError(f"edit {e}: {e.variable!r} is a {own} and {other!r} a {theirs}; "
                       "a copy needs the same kind")
    if theirs == "selector":
        return f"selector_and({other}, {other})"
    call = f"map(identity, {other})"
    return f"numerical({call})" if program.node(e.variable).encoding == "numerical" else call


def changed_variables(original: Program, edited: Program) -> set[str]:
    """Variables of ``edited`` whose definition differs from ``original``'s, and their descendants."""
    changed: set[str] = set()
    for name, node in edited.assignments:
        before = original.node(name) if name in original.variables else None
        if before is None or str(before) != str(node) or any(c in changed for c in node.inputs):
            changed.add(name)
    return changed


def frontier(original: Program, edited: Program, located: Sequence[str]) -> tuple[str, ...]:
    """The located changed variables with no located changed variable between them and the edit."""
    changed = changed_variables(original, edited)
    among = [v for v in located if v in changed]
    return tuple(v for v in among if not edited.nearest_ancestors(v, among))


@dataclass(frozen=True)
class EditResult:
    """How the network follows an edit applied at the claimed locations (module docstring)."""

    target: str
    edits: str
    program: str  # the edited program
    patched: Mapping[str, str]  # frontier variable -> location
    n: int
    n_touched: int
    follows_edited: float
    follows_edited_touched: float
    baseline_touched: float  # the unedited network's agreement with the edited program, touched inputs
    follows_original_untouched: float
    donor_same_position: float  # fraction of patched values taken from a donor at the same position
    built: float  # fraction of values no donor held, written as the one-hot tracr labels the subspace with
    unpatched: float  # fraction of frontier values no donor held (left as they were)
    weights: Mapping[str, Any] = field(default_factory=dict)  # weight_edit's numbers, when run

    def to_json(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Patched:
    """The edited network's outputs on some inputs, and the patch that produced them."""

    outputs: list[list]
    site_values: Mapping[str, list[torch.Tensor]]  # frontier variable -> patched values per length group
    groups: list[list[tuple]]  # the inputs of each length group, in the order of site_values
    same_position: int
    other_position: int
    built: int
    missing: int


def _key(codes: torch.Tensor) -> list:
    # Values computed in different orders can differ in the last bits; None (NaN) matches None.
    return torch.nan_to_num(torch.round(codes.double() * 1e9), nan=-1e300).tolist()


def _donor_inputs(target: Target, length: int, n: int, seed: int) -> list[tuple]:
    """Donors of one length: every input of that length when there are few, else a sample."""
    task = target.task
    if len(task.vocab) ** length <= n and task.generator is None:
        import itertools

        return [tuple(task.frame(c)) for c in itertools.product(task.vocab, repeat=length)
                if task.domain is None or task.domain(c)]
    try:
        return [tuple(x) for x in task.sample(n, seed, length=length)]
    except Exception:  # noqa: BLE001 - a task generator that cannot draw this length: no extra donors
        return []


def _labelled_dims(target: Target, site: Site) -> dict[str, int]:
    """{value text: index into the site's dims} where tracr labels every dim of the site as one
    variable's one-hot value (``name:value``); empty elsewhere."""
    labels = target.info.get("residual_labels")
    dims = site.dims
    if not labels or dims is None or site.head is not None or max(dims) >= len(labels):
        return {}
    parts = [str(labels[d]).rsplit(":", 1) for d in dims]
    if any(len(p) != 2 for p in parts) or len({p[0] for p in parts}) != 1:
        return {}
    return {p[1]: j for j, p in enumerate(parts)}


def patched_outputs(
    target: Target, hypothesis: Hypothesis, edited: Program, variables: Sequence[str],
    inputs: Sequence[Sequence[Any]], *, n_donors: int = 2000, seed: int = 0,
) -> Patched:
    """The network's outputs with ``variables`` patched to the edited program's values (donors)."""
    from mechsynth.dsl import interpret
    from mechsynth.synth.check.claims import group_by_length
    from mechsynth.synth.check.patching import Edit, probe, resolve, run

    original = hypothesis.program
    info = probe(target.model)
    sites: dict[str, Site] = {v: resolve(target.model, hypothesis.correspondence[v], info) for v in variables}
    off = target.position_offset
    outputs: dict[tuple, list] = {}
    site_values: dict[str, list[torch.Tensor]] = {v: [] for v in variables}
    groups: list[list[tuple]] = []
    same = other = built = missing = 0
    frame_len = target.task.frame_size
    for length, xs in group_by_length(inputs).items():
        donors = _donor_inputs(target, length - frame_len, n_donors, seed + length)
        pool = list(xs) + [d for d in donors if len(d) == length]
        batch = interpret.encode([list(x) for x in pool], symbols=original.literals() + edited.literals())
        before = interpret.run(original, batch)
        after = interpret.run(edited, batch)
        tokens = target.tokens([list(x) for x in pool])
        _, acts = run(target.model, tokens, capture=list(sites.values()))
        n = len(xs)
        edits = []
        for v in variables:
            have = _key(before[v])  # [pool, L]
            want = _key(after[v][:n])
            by_pos: dict[tuple[int, float], int] = {}
            anywhere: dict[float, tuple[int, int]] = {}
            for r, row in enumerate(have):
                for k, c in enumerate(row):
                    by_pos.setdefault((k, c), r)
                    anywhere.setdefault(c, (r, k))
            clean = acts[sites[v]]
            values = clean[:n, off : off + length].clone()
            labelled = _labelled_dims(target, sites[v])
            wanted_values = (interpret.decode(after[v][:n], interpret.dtypes(edited)[v], batch)
                             if labelled else [])
            for b in range(n):
                for k in range(length):
                    c = want[b][k]
                    if (k, c) in by_pos:
                        values[b, k] = clean[by_pos[(k, c)], off + k]
                        same += 1
                    elif c in anywhere:
                        r, j = anywhere[c]
                        values[b, k] = clean[r, off + j]
                        other += 1
                    elif labelled and str(wanted_values[b][k]) in labelled:
                        values[b, k] = 0.0
                        values[b, k, labelled[str(wanted_values[b][k])]] = 1.0
                        built += 1
                    else:
                        missing += 1
            site_values[v].append(values)
            edits.append(Edit(sites[v], values, slice(off, off + length)))
        logits, _ = run(target.model, tokens[:n], edits)
        for x, row in zip(xs, target.decode(logits, [list(x) for x in xs])):
            outputs[x] = row
        groups.append(list(xs))
    return Patched([outputs[tuple(x)] for x in inputs], site_values, groups, same, other, built, missing)


def _follows(target: Target, network: Sequence[Sequence[Any]], program_out: Sequence[Sequence[Any]],
             inputs: Sequence[Sequence[Any]]) -> list[bool | None]:
    """Per input: does the network give the program's output at every read position it defines?"""
    from mechsynth.synth.check.behaviour import compare_outputs

    reads = [target.read_positions(list(x)) for x in inputs]
    c = compare_outputs(network, program_out, reads, target.task.output_kind)
    return [None if n == 0 else a == n for a, n in zip(c.agree, c.compared)]


def _rate(flags: Sequence[bool | None]) -> float:
    known = [f for f in flags if f is not None]
    return sum(known) / len(known) if known else float("nan")


def edit(
    target: Target, hypothesis: Hypothesis, edits: str | Sequence[ProgramEdit], *, n: int = 1000,
    seed: int = 0, n_donors: int = 2000,
) -> EditResult:
    """Apply ``edits`` to the program and, at the claimed locations, to the network (module docstring)."""
    from mechsynth.dsl import evaluate

    parsed = parse_edits(edits) if isinstance(edits, str) else tuple(edits)
    original = hypothesis.program
    edited = apply_edits(original, parsed)
    located = [v for v in hypothesis.correspondence if v not in ("tokens", "indices", "length")]
    variables = frontier(original, edited, located)
    if not variables:
        raise UseError("the hypothesis locates no variable the edit changes (nothing to patch); "
                       "edit a variable that is, or that a located variable reads")
    inputs = [tuple(x) for x in target.task.sample(n, seed)]
    patched = patched_outputs(target, hypothesis, edited, variables, inputs, n_donors=n_donors, seed=seed)
    before_out = evaluate(original, [list(x) for x in inputs])
    after_out = evaluate(edited, [list(x) for x in inputs])
    touched = [f is False for f in _follows(target, before_out, after_out, inputs)]
    follows_edited = _follows(target, patched.outputs, after_out, inputs)
    follows_original = _follows(target, patched.outputs, before_out, inputs)
    clean = target.predict([list(x) for x in inputs])
    baseline = _follows(target, clean, after_out, inputs)
    total = patched.same_position + patched.other_position + patched.built + patched.missing
    return EditResult(
        target=target.name, edits="; ".join(str(e) for e in parsed), program=str(edited),
        patched={v: str(hypothesis.correspondence[v]) for v in variables}, n=len(inputs),
        n_touched=sum(touched), follows_edited=_rate(follows_edited),
        follows_edited_touched=_rate([f for f, t in zip(follows_edited, touched) if t]),
        baseline_touched=_rate([f for f, t in zip(baseline, touched) if t]),
        follows_original_untouched=_rate([f for f, t in zip(follows_original, touched) if not t]),
        donor_same_position=patched.same_position / total if total else float("nan"),
        built=patched.built / total if total else float("nan"),
        unpatched=patched.missing / total if total else float("nan"),
    )


def format_edit(r: EditResult) -> str:
    """The human-readable summary ``mechsynth edit`` prints."""
    where = ", ".join(f"{v} at {loc}" for v, loc in r.patched.items())
    lines = [
        f"target {r.target}: edit {r.edits}",
        "edited program:", *("    " + line for line in r.program.splitlines()),
        f"patched (activation patching from the edited program's values): {where}",
        f"    donor values at the same position {_f(r.donor_same_position)}, built from tracr's labels "
        f"{_f(r.built)}, values no donor held {_f(r.unpatched)}",
        f"follows the edited program        {_f(r.follows_edited)}  ({r.n} fresh inputs)",
        f"  where the edit changes the output {_f(r.follows_edited_touched)}  ({r.n_touched} inputs; "
        f"unedited network {_f(r.baseline_touched)})",
        f"still follows the original where the edit changes nothing {_f(r.follows_original_untouched)} "
        f"({r.n - r.n_touched} inputs)",
    ]
    for k, v in r.weights.items():
        lines.append(f"weight edit {k}: {_f(v) if isinstance(v, float) else v}")
    return "\n".join(lines)


def _f(value: float) -> str:
    return "-" if value != value else f"{value:.3f}"
