"""The interpreter: programs run as batched tensor code.

A batch of inputs (raw token sequences, possibly of different lengths) is
*encoded once* into a :class:`Batch`: float64 codes ``[batch, pos]`` (see
``dsl.values`` for how values become codes; padding is NaN), a boolean ``mask``
of real positions, and the lengths. Every SOp variable then evaluates to a
float64 tensor ``[batch, pos]`` and every selector to a bool tensor
``[batch, query, key]`` that is False wherever the query or key is padding.
RASP semantics are kept exactly (tracr's ``rasp.evaluate``): a ``map`` of None is
None; ``select`` compares (key, query); ``aggregate`` is the mean of the selected
values, or the default where nothing is selected (RASP's categorical aggregate is
also a mean; a mean of *different* symbols, where RASP raises, is None here, as is
a None key or query, which RASP rejects, and which here selects nothing).

Fast path (for the enumerator and the checks)::

    batch = encode(inputs, symbols=extra_values)   # once per input set
    values = run(program, batch)                   # {name: tensor} for every variable
    t = eval_node(node, [values[c] for c in node.inputs], batch)   # one node, from cached children
    decode(t, dtype, batch)                        # tensor -> list[list[value]]
    dtype = node_dtype(node, [child dtypes])       # "bool" | "number" | "value" (for decoding)

``eval_node`` costs one small torch expression, so an enumerator that keeps the
tensors of already-built variables pays only for the new node. The batch caches
compiled functions (tables turned into sorted key tensors, sympy forms into torch
closures), keyed by the function; everything else is stateless.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mechsynth.dsl import registry
from mechsynth.dsl.errors import EvaluationError
from mechsynth.dsl.program import COMPARISONS, Fn, Node, Program
from mechsynth.dsl.values import SYMBOL_BASE, Codebook, Value

Tensor = torch.Tensor
DTYPE = torch.float64


@dataclass(frozen=True, eq=False)
class Batch:
    """Encoded inputs: codes, mask and lengths, plus the codebook used to encode them."""

    tokens: Tensor  # float64 [B, T], NaN at padding
    mask: Tensor  # bool [B, T]
    lengths: Tensor  # int64 [B]
    codebook: Codebook
    indices: Tensor = field(init=False)  # float64 [B, T], NaN at padding
    length: Tensor = field(init=False)  # float64 [B, T], NaN at padding
    pair_mask: Tensor = field(init=False)  # bool [B, T, T]: query and key both real
    _fn_cache: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        b, t = self.tokens.shape
        nan = torch.tensor(float("nan"), dtype=DTYPE)
        pos = torch.arange(t, dtype=DTYPE).expand(b, t)
        object.__setattr__(self, "indices", torch.where(self.mask, pos, nan))
        lens = self.lengths.to(DTYPE)[:, None].expand(b, t)
        object.__setattr__(self, "length", torch.where(self.mask, lens, nan))
        object.__setattr__(self, "pair_mask", self.mask[:, :, None] & self.mask[:, None, :])

    @property
    def size(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def width(self) -> int:
        return int(self.tokens.shape[1])

    def compiled(self, fn: Fn) -> Callable[..., Tensor]:
        """The torch implementation of ``fn`` with parameters encoded for this batch (cached)."""
        out = self._fn_cache.get(fn)
        if out is None:
            out = compile_fn(fn, self.codebook)
            self._fn_cache[fn] = out
        return out

    def code(self, value: Value) -> float:
        return self.codebook.encode(value)


def compile_fn(fn: Fn, codebook: Codebook) -> Callable[..., Tensor]:
    """A closure ``f(*code_tensors) -> code_tensor`` for ``fn`` under ``codebook``."""
    fam = fn.family
    if fam.encode_params is not None:
        params = fam.encode_params(fn.params, codebook)
    else:
        params = tuple(codebook.encode(p) for p in fn.params)
    impl = fam.impl
    if fam.symbols or not codebook.symbols:
        call = (lambda *args: impl(*args)) if not params else (lambda *args: impl(*args, *params))
    else:
        # Arithmetic on a symbol (a string, a tuple) is an error in RASP; here it is None.
        call = lambda *args: _no_symbols(impl(*args, *params), args)  # noqa: E731
    call.nan_safe = fam.nan_safe  # type: ignore[attr-defined]
    return call


def _no_symbols(out: Tensor, args: Sequence[Tensor]) -> Tensor:
    bads = [a >= SYMBOL_BASE for a in args]
    if not any(bool(b.any()) for b in bads):  # the common case: checked on the (small) inputs
        return out
    bad = bads[0]
    for b in bads[1:]:
        bad = bad | b
    return out.to(DTYPE).masked_fill(bad, float("nan"))


def encode(inputs: Sequence[Sequence[Value]], symbols: Iterable[Value] = ()) -> Batch:
    """Encode raw input sequences once; ``symbols`` adds non-numeric values programs may mention."""
    inputs = [list(x) for x in inputs]
    if not inputs:
        raise EvaluationError("no inputs to encode")
    codebook = Codebook.of([v for x in inputs for v in x] + list(symbols))
    t = max(len(x) for x in inputs)
    if t == 0:
        raise EvaluationError("inputs must have at least one position")
    codes = torch.full((len(inputs), t), float("nan"), dtype=DTYPE)
    flat = [codebook.encode(v) for x in inputs for v in x]
    lengths = torch.tensor([len(x) for x in inputs], dtype=torch.int64)
    mask = torch.arange(t)[None, :] < lengths[:, None]
    codes[mask] = torch.tensor(flat, dtype=DTYPE)
    return Batch(codes, mask, lengths, codebook)


def eval_node(node: Node, children: Sequence[Tensor], batch: Batch) -> Tensor:
    """Evaluate one node given the tensors of its inputs (``node.inputs`` order)."""
    prim = registry.primitive(node.op)
    it = iter(children)
    args: list[Any] = []
    for a, p in zip(node.args, prim.signature):
        if p.kind in ("sop", "selector"):
            args.append(next(it))
        elif p.kind == "value":
            args.append(a)  # raw literal: primitives encode what they need
        elif isinstance(a, Fn):
            args.append(batch.compiled(a))
        else:  # a comparison name
            args.append(a)
    return prim.impl(batch, *args)


def run(program: Program, batch: Batch, upto: str | None = None) -> dict[str, Tensor]:
    """Tensors of every variable (primitives included) on ``batch``; stop after ``upto`` if given."""
    values: dict[str, Tensor] = {"tokens": batch.tokens, "indices": batch.indices, "length": batch.length}
    for name, node in program.assignments:
        values[name] = eval_node(node, [values[c] for c in node.inputs], batch)
        if name == upto:
            break
    return values


def node_dtype(node: Node, child_dtypes: Sequence[str]) -> str:
    """The decoding dtype of a node's values given its inputs' dtypes."""
    prim = registry.primitive(node.op)
    if prim.result == "selector":
        return "bool"
    dtype = prim.dtype(node.args, tuple(child_dtypes)) if callable(prim.dtype) else prim.dtype
    if node.op == "aggregate" and node.encoding == "numerical" and dtype == "bool":
        return "number"  # a numerical mean of bools is a fraction (0.0 and 1.0 are numbers too)
    return dtype


def dtypes(program: Program) -> dict[str, str]:
    """Decoding dtypes of every variable."""
    out = {"tokens": "value", "indices": "number", "length": "number"}
    for name, node in program.assignments:
        out[name] = node_dtype(node, [out[c] for c in node.inputs])
    return out


def decode(values: Tensor, dtype: str, batch: Batch) -> list:
    """Tensor -> python values per input, trimmed to each input's length.

    SOps give ``list[list[value]]``; selectors (3-d bool tensors) give a
    ``[query][key]`` list of lists of bools per input.
    """
    lengths = batch.lengths.tolist()
    if values.dim() == 3:
        rows = values.tolist()
        return [[r[:n] for r in m[:n]] for m, n in zip(rows, lengths)]
    cb = batch.codebook
    rows = values.tolist()
    return [[cb.decode(v, dtype) for v in r[:n]] for r, n in zip(rows, lengths)]


def _batch_for(program: Program, inputs: Sequence[Sequence[Value]]) -> Batch:
    return encode(inputs, symbols=program.literals())


def evaluate(program: Program, inputs: Sequence[Sequence[Value]]) -> list[list[Value]]:
    """Output values per position for each raw input sequence (None where undefined)."""
    if not inputs:
        return []
    batch = _batch_for(program, inputs)
    values = run(program, batch)
    return decode(values[program.output], dtypes(program)[program.output], batch)


def evaluate_all(program: Program, inputs: Sequence[Sequence[Value]]) -> dict[str, list]:
    """Values of every variable: SOps as ``[input][pos]``, selectors as ``[input][query][key]`` bools."""
    if not inputs:
        return {name: [] for name in program.variables}
    batch = _batch_for(program, inputs)
    values = run(program, batch)
    kinds = dtypes(program)
    return {name: decode(values[name], kinds[name], batch) for name in program.variables}


def comparison(name: str, keys: Tensor, queries: Tensor) -> Tensor:
    """A named RASP comparison, applied as predicate(key, query) with broadcasting."""
    if name == "EQ":
        return keys == queries
    if name == "LT":
        return keys < queries
    if name == "LEQ":
        return keys <= queries
    if name == "GT":
        return keys > queries
    if name == "GEQ":
        return keys >= queries
    if name == "NEQ":
        return keys != queries
    if name == "TRUE":
        return torch.ones(torch.broadcast_shapes(keys.shape, queries.shape), dtype=torch.bool)
    if name == "FALSE":
        return torch.zeros(torch.broadcast_shapes(keys.shape, queries.shape), dtype=torch.bool)
    raise EvaluationError(f"unknown comparison {name!r}; expected one of {', '.join(COMPARISONS)}")
