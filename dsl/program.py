"""Programs: immutable expression DAGs whose nodes are named variables.

A DSL program is RASP-shaped (Weiss et al. 2021). Every *variable* is the result
of one primitive applied to earlier variables: a sequence ("SOp") with an
*encoding* (``categorical``: a finite set of values, held one-hot by a compiled
transformer; ``numerical``: a single scalar direction), or a *selector* (a
boolean query-by-key matrix, the attention pattern of a head). ``tokens``,
``indices`` and ``length`` are the primitive variables every program may read.

Three small immutable types describe a program:

* :class:`Fn` — a position-wise function: a registered family applied to literal
  parameters, e.g. ``add(1)``, ``eq("(")``, ``table({0: 1, 1: 0})``, or a sympy
  expression such as ``2*x + 1`` (family ``expr``);
* :class:`Node` — one primitive applied to arguments that follow the primitive's
  signature (variable names for ``sop``/``selector`` parameters, an :class:`Fn`
  or comparison name for functions/predicates, literals for ``value``s);
* :class:`Program` — named nodes in topological order plus the output name.

Programs are values: equal and hashed by their canonical text (``str(p)``), which
``dsl.parse`` reads back exactly.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import networkx as nx

from mechsynth.dsl import registry
from mechsynth.dsl.errors import DSLError
from mechsynth.dsl.printer import format_fn, format_node, format_program

PRIMITIVE_VARIABLES = ("tokens", "indices", "length")
COMPARISONS = ("EQ", "LT", "LEQ", "GT", "GEQ", "NEQ", "TRUE", "FALSE")
ENCODINGS = ("categorical", "numerical")


class Direction(Enum):
    """Which key a ``select_best`` keeps among those its selector selects: the smallest or largest score."""

    ARGMIN = "ARGMIN"
    ARGMAX = "ARGMAX"

    def __str__(self) -> str:
        return self.name


DIRECTIONS = tuple(d.name for d in Direction)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Fn:
    """A function-library item: family ``name`` of ``arity`` applied to literal ``params``."""

    name: str
    arity: int
    params: tuple = ()

    @property
    def family(self) -> registry.FunctionFamily:
        return registry.function(self.name, self.arity)

    def __str__(self) -> str:
        return format_fn(self)


@dataclass(frozen=True)
class Node:
    """One primitive application. ``args`` follow the primitive's signature."""

    op: str
    args: tuple = ()
    encoding: str | None = "categorical"  # None for selectors

    @property
    def primitive(self) -> registry.Primitive:
        return registry.primitive(self.op)

    @property
    def is_selector(self) -> bool:
        return self.primitive.result == "selector"

    @property
    def inputs(self) -> tuple[str, ...]:
        """Names of the variables this node reads (sop and selector arguments), in order."""
        return tuple(a for a, p in zip(self.args, self.primitive.signature) if p.kind in ("sop", "selector"))

    def with_inputs(self, mapping: Mapping[str, str]) -> Node:
        """The same node reading renamed variables."""
        sig = self.primitive.signature
        args = tuple(
            mapping.get(a, a) if p.kind in ("sop", "selector") else a for a, p in zip(self.args, sig)
        )
        return Node(self.op, args, self.encoding)

    def __str__(self) -> str:
        return format_node(self)


@dataclass(frozen=True, eq=False)
class Program:
    """Named nodes in topological order; the last-listed ``output`` is the result.

    Build one with ``dsl.parse(text)`` or ``Program(assignments, output)`` where
    ``assignments`` is a sequence of ``(name, Node)``; the constructor checks names,
    references, argument kinds and acyclicity.
    """

    assignments: tuple[tuple[str, Node], ...]
    output: str = ""
    _nodes: dict = field(default_factory=dict, init=False, repr=False)
    _text: str = field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        assignments = tuple((str(n), node) for n, node in self.assignments)
        object.__setattr__(self, "assignments", assignments)
        if not assignments:
            raise DSLError("a program needs at least one assignment")
        output = self.output or assignments[-1][0]
        if output != assignments[-1][0]:
            raise DSLError(f"the output {output!r} must be the last assignment (use restricted_to)")
        object.__setattr__(self, "output", output)
        nodes: dict[str, Node] = {p: Node(p, (), "categorical") for p in PRIMITIVE_VARIABLES}
        for name, node in assignments:
            _validate(name, node, nodes)
            nodes[name] = node
        if output not in nodes:
            raise DSLError(f"output {output!r} is not a variable of the program")
        object.__setattr__(self, "_nodes", nodes)
        object.__setattr__(self, "_text", format_program(self))

    # ----- identity
    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Program({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Program) and self._text == other._text

    def __hash__(self) -> int:
        return hash(self._text)

    # ----- structure
    @property
    def variables(self) -> tuple[str, ...]:
        """All variable names in topological order: the primitives read, then assignments."""
        used = {a for _, node in self.assignments for a in node.inputs}
        prims = tuple(p for p in PRIMITIVE_VARIABLES if p in used and p not in self._assigned)
        return prims + tuple(n for n, _ in self.assignments)

    @property
    def _assigned(self) -> frozenset:
        return frozenset(n for n, _ in self.assignments)

    @property
    def size(self) -> int:
        """Number of non-primitive nodes."""
        return len(self.assignments)

    def node(self, name: str) -> Node:
        try:
            return self._nodes[name]
        except KeyError:
            raise DSLError(f"{name!r} is not a variable of the program") from None

    def kind(self, name: str) -> str:
        """"categorical", "numerical" or "selector"."""
        node = self.node(name)
        return "selector" if node.is_selector else (node.encoding or "categorical")

    def inputs(self, name: str) -> tuple[str, ...]:
        return self.node(name).inputs

    def consumers(self, name: str) -> tuple[str, ...]:
        return tuple(n for n, node in self.assignments if name in node.inputs)

    def nearest_ancestors(self, name: str, among: Collection[str]) -> tuple[str, ...]:
        """The variables in ``among`` that ``name`` reads directly or through variables not in it.

        This is how a hypothesis graph skips unlocated variables (selectors, say): a located
        variable's parents are its nearest located ancestors. Returned in program order.
        """
        among = set(among)
        found: set[str] = set()
        seen: set[str] = set()
        stack = list(self.inputs(name))
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            if v in among:
                found.add(v)
            else:
                stack.extend(self.inputs(v))
        return tuple(v for v in self.variables if v in found)

    def graph(self) -> nx.DiGraph:
        """Variables as nodes (attrs ``kind``, ``op``, ``text``); an edge u -> v means v reads u."""
        g = nx.DiGraph()
        for name in self.variables:
            node = self.node(name)
            text = name if name in PRIMITIVE_VARIABLES and name not in self._assigned else str(node)
            g.add_node(name, kind=self.kind(name), op=node.op, text=text)
        for name, node in self.assignments:
            for parent in node.inputs:
                g.add_edge(parent, name)
        return g

    def rename(self, mapping: Mapping[str, str]) -> Program:
        """The same program with variables renamed (primitive variables cannot be renamed)."""
        for old in mapping:
            if old in PRIMITIVE_VARIABLES and old not in self._assigned:
                raise DSLError(f"cannot rename the primitive variable {old!r}")
            if old not in self._nodes:
                raise DSLError(f"cannot rename {old!r}: not a variable of the program")
        assignments = tuple((mapping.get(n, n), node.with_inputs(mapping)) for n, node in self.assignments)
        return Program(assignments, mapping.get(self.output, self.output))

    def literals(self) -> tuple:
        """Every literal value the program mentions (parameters, table entries, constants)."""
        out: list = []
        for _, node in self.assignments:
            out.extend(node_literals(node))
        return tuple(out)

    def restricted_to(self, name: str) -> Program:
        """The sub-program computing ``name`` (only the assignments it depends on)."""
        needed = {name}
        for n, node in reversed(self.assignments):
            if n in needed:
                needed.update(node.inputs)
        return Program(tuple((n, node) for n, node in self.assignments if n in needed), name)


def node_literals(node: Node) -> list:
    """Literal values of one node: ``value`` arguments and function parameters (table keys and values)."""
    out: list = []
    for a, p in zip(node.args, node.primitive.signature):
        if p.kind == "value":
            _add_literal(a, out)
        elif isinstance(a, Fn):
            for param in a.params:
                if a.name == "table":
                    for key, value in param:
                        _add_literal(key, out)
                        _add_literal(value, out)
                else:
                    _add_literal(param, out)
    return out


def _add_literal(value: Any, out: list) -> None:
    if hasattr(value, "free_symbols"):  # a sympy expression: numbers only, nothing to encode
        return
    out.append(value)
    if isinstance(value, tuple):
        for v in value:
            _add_literal(v, out)


def is_identifier(name: str) -> bool:
    return bool(_IDENT.fullmatch(name))


def _validate(name: str, node: Node, known: Mapping[str, Node]) -> None:
    """Check one assignment against the variables defined before it."""
    if not is_identifier(name) or name in registry.RESERVED:
        raise DSLError(f"{name!r} is not a valid variable name")
    if name in known:
        what = "a primitive variable" if name in PRIMITIVE_VARIABLES else "assigned twice"
        raise DSLError(f"variable {name!r} is {what}")
    prim = registry.primitive(node.op)
    sig = prim.signature
    if len(node.args) != len(sig):
        raise DSLError(f"{name} = {node.op}(...): expected {len(sig)} arguments, got {len(node.args)}")
    for a, p in zip(node.args, sig):
        if p.kind in ("sop", "selector"):
            if a not in known:
                raise DSLError(f"{name} = {node.op}(...): unknown variable {a!r}")
            got = "selector" if known[a].is_selector else "sop"
            if got != p.kind:
                raise DSLError(f"{name} = {node.op}(...): argument {p.name!r} must be a {p.kind}, "
                               f"{a!r} is a {got}")
        elif p.kind in ("fn1", "fn2"):
            arity = 1 if p.kind == "fn1" else 2
            if not isinstance(a, Fn) or a.arity != arity:
                raise DSLError(f"{name} = {node.op}(...): argument {p.name!r} must be a "
                               f"{arity}-argument function")
            _check_fn(a)
        elif p.kind == "pred":
            if not (a in COMPARISONS or (isinstance(a, Fn) and a.arity == 2)):
                raise DSLError(f"{name} = {node.op}(...): argument {p.name!r} must be a comparison "
                               f"({', '.join(COMPARISONS)}) or a 2-argument function")
            if isinstance(a, Fn):
                _check_fn(a)
        elif p.kind == "direction" and not isinstance(a, Direction):
            raise DSLError(f"{name} = {node.op}(...): argument {p.name!r} must be a direction "
                           f"({', '.join(DIRECTIONS)})")
    if prim.result == "selector":
        if node.encoding is not None:
            raise DSLError(f"{name}: a selector has no encoding")
    elif node.encoding not in ENCODINGS:
        raise DSLError(f"{name}: encoding must be one of {ENCODINGS}")


def _check_fn(fn: Fn) -> None:
    fam = fn.family
    if len(fn.params) != len(fam.params):
        raise DSLError(f"function {fam.name} takes {len(fam.params)} parameters, got {len(fn.params)}")
    if fam.check_params is not None:
        fam.check_params(fn.params)
