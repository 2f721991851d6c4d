"""Value-set inference: every value a variable can take, given the vocabulary and max length.

A compiled transformer holds a categorical variable one-hot over its *value set*,
and a RASP ``Map`` holds an arbitrary Python function that the DSL can only
represent once it is tabulated on the finite set of values its input takes.
Both need the same static analysis, done here bottom-up with each primitive's
``value_set`` rule (``dsl.primitives``): ``tokens`` takes the vocabulary,
``indices`` 0..max_len-1, a ``map`` the image of its input's set under the
function (computed with the function's own vectorised implementation, so the
analysis and the interpreter cannot disagree), and so on.

The sets exclude None (which any variable may take where it is undefined). A
categorical ``aggregate`` is assumed to select one value or equal values (as
tracr assumes when compiling); a numerical one takes every mean of up to
``max_len`` values. Selectors have no value set.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from mechsynth.dsl import registry
from mechsynth.dsl.interpret import DTYPE, compile_fn, node_dtype
from mechsynth.dsl.program import Fn, Node, Program
from mechsynth.dsl.values import Codebook


@dataclass(frozen=True)
class ValueSetContext:
    """What a primitive's ``value_set`` rule may use."""

    vocab: frozenset
    max_len: int
    codebook: Codebook
    encoding: str | None = None  # the encoding of the node being analysed
    child_dtypes: tuple = ()

    def image(self, fn: Fn, *sets: Iterable[Any]) -> frozenset:
        """``{fn(*args) for args in product(*sets)}`` without None, via the vectorised implementation."""
        cols = [list(s) for s in sets]
        if any(not c for c in cols):
            return frozenset()
        args = list(zip(*itertools.product(*cols)))
        return frozenset(v for v in apply(fn, args, self.codebook, self.child_dtypes) if v is not None)


def apply(fn: Fn, columns: Sequence[Sequence[Any]], codebook: Codebook,
          child_dtypes: Sequence[str] = ()) -> list:
    """Apply ``fn`` position-wise to python values (one column per argument); None where undefined."""
    codebook = codebook.extended(v for col in columns for v in col)
    tensors = [torch.tensor([codebook.encode(v) for v in col], dtype=DTYPE) for col in columns]
    out = compile_fn(fn, codebook)(*tensors)
    bad = torch.zeros_like(out, dtype=torch.bool)
    for t in tensors:
        bad |= torch.isnan(t)
    out = out.to(DTYPE).masked_fill(bad, float("nan"))
    dtype = fn.family.output_dtype(fn.params, child_dtypes[0] if child_dtypes else "value")
    return [codebook.decode(v, dtype) for v in out.tolist()]


def node_value_set(node: Node, child_sets: Sequence[frozenset], child_dtypes: Sequence[str],
                   ctx: ValueSetContext) -> frozenset | None:
    """The value set of one node given its inputs' sets (None for selectors)."""
    prim = registry.primitive(node.op)
    if prim.result == "selector":
        return None
    if prim.value_set is None:
        raise registry.RegistryError(f"primitive {prim.name!r} has no value_set rule")
    local = replace(ctx, encoding=node.encoding, child_dtypes=tuple(child_dtypes))
    return frozenset(prim.value_set(node.args, tuple(child_sets), local))


def infer_value_sets(program: Program, vocab: Iterable[Any], max_len: int) -> dict[str, frozenset | None]:
    """Value set of every variable (selectors map to None)."""
    vocab = frozenset(vocab)
    ctx = ValueSetContext(vocab, int(max_len), Codebook.of([*vocab, *program.literals()]))
    sets: dict[str, Any] = {
        "tokens": vocab, "indices": frozenset(range(max_len)), "length": frozenset(range(1, max_len + 1)),
    }
    kinds = {"tokens": "value", "indices": "number", "length": "number"}
    for name, node in program.assignments:
        child_sets = [sets[c] for c in node.inputs]
        child_dtypes = [kinds[c] for c in node.inputs]
        sets[name] = node_value_set(node, child_sets, child_dtypes, ctx)
        kinds[name] = node_dtype(node, child_dtypes)
    return sets


def value_set(program: Program, name: str, vocab: Iterable[Any], max_len: int) -> frozenset | None:
    """Every value variable ``name`` can take on inputs over ``vocab`` of length <= ``max_len``."""
    return infer_value_sets(program, vocab, max_len)[name]
