"""Random well-typed programs: test inputs, and the null model of "a program of this size".

A hypothesis that scores well is only interesting if a *random* program of the
same size would not; the frivolous-circuit controls need such programs, and the
DSL's own property tests need arbitrary programs to check that printing,
parsing, the interpreter and the z3 encoding agree. :func:`random_program` draws
one from a seeded ``random.Random``: each step applies a random primitive to
random earlier variables of the right kind, with functions drawn from a pool of
library families, expressions and small lookup tables over integer values.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import sympy

from mechsynth.dsl.printer import X, Y
from mechsynth.dsl.program import COMPARISONS, Direction, Fn, Node, Program


def _fn1(rng: random.Random, values: Sequence[int]) -> Fn:
    c = rng.choice(values)
    choices = [
        lambda: Fn("identity", 1, ()),
        lambda: Fn("add", 1, (rng.randint(-2, 3),)),
        lambda: Fn("mul", 1, (rng.choice([-1, 2, 3]),)),
        lambda: Fn("mod", 1, (rng.choice([2, 3]),)),
        lambda: Fn("floordiv", 1, (2,)),
        lambda: Fn(rng.choice(["eq", "neq", "lt", "leq", "gt", "geq"]), 1, (c,)),
        lambda: Fn(rng.choice(["min", "max"]), 1, (c,)),
        lambda: Fn("not_", 1, ()),
        lambda: Fn("abs", 1, ()),
        lambda: Fn("expr", 1, (rng.choice([2 * X + 1, X - 1, X * X, sympy.Mod(X + 1, 3)]),)),
        lambda: _table1(rng, values),
    ]
    return rng.choice(choices)()


def _table1(rng: random.Random, values: Sequence[int]) -> Fn:
    keys = sorted(rng.sample(list(values), k=min(3, len(values))))
    return Fn("table", 1, (tuple((k, rng.choice(values)) for k in keys),))


def _fn2(rng: random.Random, values: Sequence[int]) -> Fn:
    names = ["add", "sub", "mul", "min", "max", "eq", "neq", "lt", "leq", "gt", "geq", "and_", "or_"]
    choices = [
        lambda: Fn(rng.choice(names), 2, ()),
        lambda: Fn("expr", 2, (rng.choice([X + 2 * Y, X - Y + 1, sympy.Max(X, Y) - 1]),)),
        lambda: Fn("table", 2, (tuple(((a, b), rng.choice(values))
                                for a in values[:2] for b in values[:2]),)),
    ]
    return rng.choice(choices)()


def _pred(rng: random.Random, values: Sequence[int]) -> object:
    choices = [
        lambda: rng.choice(COMPARISONS),
        lambda: Fn("key_eq", 2, (rng.choice(values),)),
        lambda: Fn("expr", 2, (rng.choice([sympy.Eq(Y, X + 1), sympy.Lt(X, Y + 1), sympy.Ge(X, 1)]),)),
    ]
    return rng.choice(choices)()


_OPS = ["map", "seqmap", "select", "aggregate", "width", "and", "or", "not", "full"]
_WEIGHTS = [3, 2, 2, 2, 1, 0.5, 0.5, 0.5, 0.2]


def random_program(
    rng: random.Random, size: int, values: Sequence[int] = (0, 1, 2, 3), *, select_best: bool = False
) -> Program:
    """A random well-typed program of about ``size`` nodes (at least one), ending in a sequence.

    Functions are drawn with parameters from ``values`` (the integer values the
    program is meant to run on). Deterministic in the state of ``rng``. ``select_best``
    also draws ``select_best`` selectors (off by default, so the programs drawn for a seed,
    the null-program controls' included, stay the ones drawn before it existed).
    """
    sops = ["tokens", "indices", "length"]
    selectors: list[str] = []
    assignments: list[tuple[str, Node]] = []

    def add(node: Node) -> str:
        name = f"v{len(assignments)}"
        assignments.append((name, node))
        (selectors if node.encoding is None else sops).append(name)
        return name

    def encoding() -> str:
        return "numerical" if rng.random() < 0.25 else "categorical"

    def new_select() -> str:
        return add(Node("select", (rng.choice(sops), rng.choice(sops), _pred(rng, values)), None))

    for _ in range(max(1, size)):
        ops, weights = (_OPS + ["best"], _WEIGHTS + [1.5]) if select_best else (_OPS, _WEIGHTS)
        op = rng.choices(ops, weights=weights)[0]
        if op == "map":
            add(Node("map", (_fn1(rng, values), rng.choice(sops)), encoding()))
        elif op == "seqmap":
            add(Node("seqmap", (_fn2(rng, values), rng.choice(sops), rng.choice(sops)), encoding()))
        elif op == "select":
            new_select()
        elif op in ("aggregate", "width") or not selectors:
            sel = rng.choice(selectors) if selectors else new_select()
            if op == "width":
                add(Node("selector_width", (sel,), "categorical"))
            else:
                default = rng.choice([None, 0])
                add(Node("aggregate", (sel, rng.choice(sops), default), encoding()))
        elif op in ("and", "or"):
            add(Node(f"selector_{op}", (rng.choice(selectors), rng.choice(selectors)), None))
        elif op == "not":
            add(Node("selector_not", (rng.choice(selectors),), None))
        elif op == "best":
            direction = rng.choice(list(Direction))
            add(Node("select_best", (rng.choice(selectors), rng.choice(sops), direction), None))
        else:
            add(Node("full", (rng.choice(values),), "categorical"))
    if assignments[-1][1].encoding is None:
        add(Node("selector_width", (assignments[-1][0],), "categorical"))
    return Program(tuple(assignments))
