"""The bridge to tracr: RASP expressions to DSL programs and back.

``from_rasp(expr, vocab, max_seq_len)`` turns a tracr RASP program into a DSL
program with the same structure: one DSL variable per RASP expression, named
after the expression's label (:func:`rasp_variable_name`), so a DSL variable and
the residual-stream dimensions tracr labels with that expression line up. RASP
``Map``/``SequenceMap``/``Select`` hold Python lambdas; the bridge never reads
their source. Each lambda is tabulated on the finite set of values its inputs
take for this vocabulary and maximum length (``dsl.value_sets``) and replaced by
the simplest DSL function that agrees on that domain (``dsl.fit``): a named
family (``add(-1)``, ``eq('a')``, ``sub``, ...), a closed form (``x + y/5``,
``q == k + 1``) or a lookup table. The result therefore agrees with
``rasp.evaluate`` on every input over ``vocab`` up to ``max_seq_len`` — and is
tested to, exhaustively, on every example of ``tracr.compiler.lib``
(:data:`LIB_EXAMPLES`).

``to_rasp(program)`` goes the other way; functions become Python callables
that run the DSL implementation, so ``rasp.evaluate`` agrees with
``dsl.evaluate`` and tracr can compile the result.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from tracr.compiler import lib
from tracr.rasp import rasp

from mechsynth.dsl.errors import ConversionError
from mechsynth.dsl.fit import fit_function
from mechsynth.dsl.interpret import node_dtype
from mechsynth.dsl.program import PRIMITIVE_VARIABLES, Fn, Node, Program, node_literals
from mechsynth.dsl.value_sets import ValueSetContext, apply, node_value_set
from mechsynth.dsl.values import Codebook

# ---------------------------------------------------------------- naming


def rasp_variable_name(expr: rasp.RASPExpr) -> str:
    """The DSL variable name of a RASP expression: its label as a Python identifier.

    Non-identifier characters become "_", a leading digit gets a "v_" prefix;
    ``tokens``, ``indices`` and ``length`` keep their names.
    """
    label = expr.label
    if isinstance(expr, (rasp.TokensType, rasp.IndicesType, rasp.LengthType)):
        return label
    name = re.sub(r"\W", "_", label, flags=re.ASCII)
    if not name or name[0].isdigit():
        name = "v_" + name
    if name in PRIMITIVE_VARIABLES:
        name = name + "_"
    return name


# ---------------------------------------------------------------- RASP -> DSL


def _postorder(expr: rasp.RASPExpr) -> list[rasp.RASPExpr]:
    seen: set[int] = set()
    order: list[rasp.RASPExpr] = []
    stack: list[tuple[rasp.RASPExpr, bool]] = [(expr, False)]
    while stack:
        e, done = stack.pop()
        if done:
            order.append(e)
            continue
        if e.unique_id in seen:
            continue
        seen.add(e.unique_id)
        stack.append((e, True))
        for child in reversed(e.children):
            if child.unique_id not in seen:
                stack.append((child, False))
    # Deduplicate while keeping the first (topological) completion of each node.
    out, done_ids = [], set()
    for e in order:
        if e.unique_id not in done_ids:
            done_ids.add(e.unique_id)
            out.append(e)
    return out


def from_rasp(expr: rasp.SOp, vocab: Iterable[Any] | None = None, max_seq_len: int | None = None) -> Program:
    """The DSL program of a RASP expression, exact on inputs over ``vocab`` up to ``max_seq_len``.

    ``vocab`` and ``max_seq_len`` define the finite domain on which RASP lambdas
    (in Map, SequenceMap and Select) are tabulated; a program without lambdas
    converts without them.
    """
    if vocab is None or max_seq_len is None:
        lambdas = [e.label for e in _postorder(expr) if isinstance(e, (rasp.Map, rasp.SequenceMap))
                   or (isinstance(e, rasp.Select) and not isinstance(e.predicate, rasp.Comparison))]
        if lambdas:
            raise ConversionError(f"from_rasp needs vocab and max_seq_len to tabulate the Python functions "
                                  f"of {', '.join(lambdas)}")
        vocab, max_seq_len = (), 1
    vocab = frozenset(vocab)
    if max_seq_len < 1:
        raise ConversionError("max_seq_len must be at least 1")
    if not isinstance(expr, rasp.SOp):
        raise ConversionError(f"from_rasp needs a RASP SOp (the program output), got {type(expr).__name__}")
    ctx = ValueSetContext(vocab, int(max_seq_len), Codebook.of(vocab))
    names: dict[int, str] = {}
    sets: dict[str, Any] = {"tokens": vocab, "indices": frozenset(range(max_seq_len)),
                            "length": frozenset(range(1, max_seq_len + 1))}
    dtypes: dict[str, str] = {"tokens": "value", "indices": "number", "length": "number"}
    assignments: list[tuple[str, Node]] = []
    for e in _postorder(expr):
        name = rasp_variable_name(e)
        names[e.unique_id] = name
        if isinstance(e, (rasp.TokensType, rasp.IndicesType, rasp.LengthType)):
            continue
        if name in sets:
            raise ConversionError(f"two RASP expressions share the label {e.label!r}")
        node = _convert(e, names, sets, dtypes)
        child_sets = [sets[c] for c in node.inputs]
        child_dtypes = [dtypes[c] for c in node.inputs]
        ctx = ValueSetContext(vocab, int(max_seq_len), ctx.codebook.extended(node_literals(node)))
        sets[name] = node_value_set(node, child_sets, child_dtypes, ctx)
        dtypes[name] = node_dtype(node, child_dtypes)
        assignments.append((name, node))
    if not assignments:
        raise ConversionError("the RASP program is a bare primitive; the DSL needs at least one operation")
    return Program(tuple(assignments))


def _encoding(e: rasp.RASPExpr) -> str | None:
    if isinstance(e, rasp.Selector):
        return None
    return "numerical" if rasp.is_numerical(e) else "categorical"


def _convert(e: rasp.RASPExpr, names: dict, sets: dict, dtypes: dict) -> Node:
    enc = _encoding(e)

    def ref(child: rasp.RASPExpr) -> str:
        return names[child.unique_id]

    if isinstance(e, rasp.Map):
        x = ref(e.inner)
        return Node("map", (fit_function(e.f, [sets[x]], arg_dtypes=[dtypes[x]]), x), enc)
    if isinstance(e, rasp.SequenceMap):  # LinearSequenceMap included: its f is the linear map
        x, y = ref(e.fst), ref(e.snd)
        fn = fit_function(e.f, [sets[x], sets[y]], arg_dtypes=[dtypes[x], dtypes[y]])
        return Node("seqmap", (fn, x, y), enc)
    if isinstance(e, rasp.Full):
        return Node("full", (e.fill,), enc)
    if isinstance(e, rasp.ConstantSOp):
        return Node("constant", (tuple(e.value),), enc)
    if isinstance(e, rasp.Select):
        k, q = ref(e.keys), ref(e.queries)
        if isinstance(e.predicate, rasp.Comparison):
            pred: Any = e.predicate.name
        else:
            pred = fit_function(e.predicate, [sets[k], sets[q]], arg_dtypes=[dtypes[k], dtypes[q]])
            pred = _as_predicate(pred)
        return Node("select", (k, q, pred), None)
    if isinstance(e, rasp.Aggregate):
        return Node("aggregate", (ref(e.selector), ref(e.sop), e.default), enc)
    if isinstance(e, rasp.ConstantSelector):
        return Node("constant_selector", (tuple(tuple(bool(v) for v in row) for row in e.value),), None)
    if isinstance(e, rasp.SelectorWidth):
        return Node("selector_width", (ref(e.selector),), enc)
    if isinstance(e, rasp.SelectorAnd):
        return Node("selector_and", (ref(e.fst), ref(e.snd)), None)
    if isinstance(e, rasp.SelectorOr):
        return Node("selector_or", (ref(e.fst), ref(e.snd)), None)
    if isinstance(e, rasp.SelectorNot):
        return Node("selector_not", (ref(e.inner),), None)
    raise ConversionError(f"RASP expression {type(e).__name__} ({e.label}) has no DSL counterpart")


def _as_predicate(fn: Fn) -> Any:
    """Named comparisons read better than the equivalent 2-argument families."""
    named = {"eq": "EQ", "lt": "LT", "leq": "LEQ", "gt": "GT", "geq": "GEQ", "neq": "NEQ"}
    if fn.name in named and not fn.params:
        return named[fn.name]
    return fn


# ---------------------------------------------------------------- DSL -> RASP


def _python_fn(fn: Fn, arity: int, codebook: Codebook) -> Callable[..., Any]:
    """A Python callable computing ``fn`` with the DSL implementation (memoised per value)."""
    memo: dict = {}

    def call(*args: Any) -> Any:
        key = args
        try:
            return memo[key]
        except (KeyError, TypeError):
            pass
        out = apply(fn, [[a] for a in args], codebook)[0]
        try:
            memo[key] = out
        except TypeError:
            pass
        return out

    if arity == 1:
        return lambda x: call(x)
    return lambda x, y: call(x, y)


def to_rasp(program: Program, *, length_primitive: bool = False) -> rasp.SOp:
    """A RASP expression computing ``program``; each expression is ``.named`` after its DSL variable.

    tracr's compiler has no ``length`` primitive, so by default ``length`` becomes
    ``SelectorWidth(Select(tokens, tokens, TRUE))`` as in ``tracr.compiler.lib``;
    pass ``length_primitive=True`` to use ``rasp.length`` instead.
    """
    codebook = Codebook.of(program.literals())
    exprs: dict[str, Any] = {"tokens": rasp.tokens, "indices": rasp.indices}
    if length_primitive:
        exprs["length"] = rasp.length
    else:
        exprs["length"] = rasp.SelectorWidth(
            rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE).named("length_select")
        ).named("length")
    for name, node in program.assignments:
        a = node.args
        ins = [exprs[i] for i in node.inputs]
        if node.op == "map":
            out: Any = rasp.Map(_python_fn(a[0], 1, codebook), ins[0], simplify=False)
        elif node.op == "seqmap":
            out = rasp.SequenceMap(_python_fn(a[0], 2, codebook), ins[0], ins[1])
        elif node.op == "full":
            out = rasp.Full(a[0])
        elif node.op == "constant":
            out = rasp.ConstantSOp(list(a[0]), check_length=False)
        elif node.op == "select":
            pred = rasp.Comparison[a[2]] if isinstance(a[2], str) else _python_fn(a[2], 2, codebook)
            out = rasp.Select(ins[0], ins[1], pred)
        elif node.op == "aggregate":
            out = rasp.Aggregate(ins[0], ins[1], default=a[2])
        elif node.op == "constant_selector":
            out = rasp.ConstantSelector([list(row) for row in a[0]], check_length=False)
        elif node.op == "selector_width":
            out = rasp.SelectorWidth(ins[0])
        elif node.op == "selector_and":
            out = rasp.SelectorAnd(ins[0], ins[1])
        elif node.op == "selector_or":
            out = rasp.SelectorOr(ins[0], ins[1])
        elif node.op == "selector_not":
            out = rasp.SelectorNot(ins[0])
        elif node.op == "select_best":
            raise ConversionError(
                f"{name} = {node}: select_best is outside tracr's RASP fragment (a RASP selector is a "
                "predicate of one key and one query; 'the best-scoring selected key' compares keys with "
                "each other, which no RASP Select expresses and tracr cannot compile)")
        else:
            raise ConversionError(f"primitive {node.op!r} has no RASP counterpart")
        out = out.named(name)
        if node.encoding == "numerical":
            out = rasp.numerical(out)
        elif node.encoding == "categorical":
            out = rasp.categorical(out)
        exprs[name] = out
    return exprs[program.output]


# ---------------------------------------------------------------- tracr's library examples


class LibExample(NamedTuple):
    """A ``tracr.compiler.lib`` program with the vocabulary and lengths it is used with here."""

    build: Callable[[], rasp.SOp]  # a fresh expression each call (RASP labels carry unique ids)
    vocab: tuple
    max_seq_len: int
    bos: str = "BOS"


def _nary() -> rasp.SOp:
    return lib.make_nary_sequencemap(lambda x, y, z: x + y - z, rasp.tokens, rasp.indices, rasp.length)


LIB_EXAMPLES: dict[str, LibExample] = {
    "length": LibExample(lib.make_length, (1, 2, 3), 5),
    "reverse": LibExample(lambda: lib.make_reverse(rasp.tokens), (1, 2, 3), 5),
    "hist": LibExample(lib.make_hist, (1, 2, 3), 5),
    "sort_unique": LibExample(lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens), (1, 2, 3, 4, 5), 5),
    "sort": LibExample(lambda: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1),
                       (1, 2, 3), 5),
    "sort_freq": LibExample(lambda: lib.make_sort_freq(max_seq_len=5), (1, 2, 3), 5),
    "frac_prevs": LibExample(lambda: lib.make_frac_prevs(rasp.tokens == "a"), ("a", "b", "c"), 5),
    "pair_balance": LibExample(lambda: lib.make_pair_balance(rasp.tokens, "(", ")"), ("(", ")"), 5),
    "shuffle_dyck": LibExample(lambda: lib.make_shuffle_dyck(["()"]), ("(", ")"), 5),
    "shuffle_dyck2": LibExample(lib.make_shuffle_dyck2, ("(", ")", "{", "}"), 5),
    "shift_by": LibExample(lambda: lib.shift_by(1, rasp.tokens), (1, 2, 3), 5),
    "detect_pattern": LibExample(lambda: lib.detect_pattern(rasp.tokens, "abc"), ("a", "b", "c"), 5),
    "count_less_freq": LibExample(lambda: lib.make_count_less_freq(2), ("a", "b", "c"), 5),
    "count": LibExample(lambda: lib.make_count(rasp.tokens, "a"), ("a", "b", "c"), 5),
    "nary_sequencemap": LibExample(_nary, (1, 2, 3), 5),
}
"""``name -> (build, vocab, max_seq_len, bos)`` for the 15 examples, keyed by target name."""
