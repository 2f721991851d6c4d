"""The DSL reference, generated from the registry.

This text is what a language model (or a person) is shown to write programs:
the syntax, every registered primitive with its signature, and every function
family with its parameters. It is generated, never hand-maintained, so a
primitive or family registered with ``dsl.register`` appears here with no other
edit.
"""

from __future__ import annotations

from mechsynth.dsl import registry
from mechsynth.dsl.program import COMPARISONS

_SYNTAX = """\
A program is one assignment per line, `name = primitive(arguments)`; the last
assignment is the output. Calls may nest. Primitive variables: tokens, indices
(0..n-1), length (n). Values are numbers, bools, strings, None or tuples;
None means undefined. Wrap a call in numerical(...) to mark a numerically
encoded sequence (a single scalar direction); the default is categorical.

Functions (first argument of map/seqmap, last of select) are a family below,
written `name` or `name(params)`, a lookup table `table({key: value, ...})`
(keys of 2-argument tables are (x, y) tuples), or an arithmetic/boolean
expression in x (map), x and y (seqmap), or k and q (select: key and query),
e.g. `2*x + 1`, `x + y/5`, `q == k + 1`. Expressions support + - * / // % **,
comparisons, and/or/not (& | ~), min, max, abs, floor, ceiling, Mod.
Select predicates may also be the comparisons {comparisons} (key OP query).
The direction of select_best is ARGMIN or ARGMAX (written bare, like a comparison).

Example (not one of the benchmark targets: at each position, the token two
places back plus the number of tokens equal to the current one):
    back2 = select(indices, indices, q == k + 2)
    prev2 = aggregate(back2, tokens)
    same = select(tokens, tokens, EQ)
    count = selector_width(same)
    out = seqmap(add, prev2, count)
"""


def _signature(prim: registry.Primitive) -> str:
    parts = []
    for p in prim.signature:
        text = f"{p.name}: {p.kind}"
        if p.optional:
            text += f" = {p.default!r}"
        parts.append(text)
    if not parts:  # written bare, like tokens
        return f"{prim.name} -> {prim.result}"
    return f"{prim.name}({', '.join(parts)}) -> {prim.result}"


def reference() -> str:
    """The DSL reference text (syntax, primitives, function families), from the registry."""
    syntax = _SYNTAX.replace("{comparisons}", " ".join(COMPARISONS))
    lines = ["# DSL reference", "", syntax, "## Primitives", ""]
    for prim in registry.primitives():
        lines.append(f"- {_signature(prim)}  [cost {prim.cost:g}]")
        if prim.doc:
            lines.append(f"    {prim.doc}")
        if prim.example:
            lines.append(f"    e.g. {prim.example}")
    for arity, title in ((1, "## Functions of one argument (map)"),
                         (2, "## Functions of two arguments (seqmap, select predicates)")):
        lines += ["", title, ""]
        for fam in registry.functions(arity):
            if fam.name == "expr":
                continue  # expressions are described in the syntax section
            head = f"{fam.name}({', '.join(fam.params)})" if fam.params else fam.name
            lines.append(f"- {head}: {fam.doc}  [cost {fam.cost:g}]")
    return "\n".join(lines) + "\n"
