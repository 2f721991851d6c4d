"""Parsing: DSL text to a :class:`~dsl.program.Program`.

The text is a restricted Python subset read with the standard library ``ast``
module (never ``eval``/``exec``): one assignment per line, ``name = call(...)``,
the last assignment being the output. Calls may nest; a nested call becomes an
anonymous variable named ``<op>_<n>`` (the printed, canonical form names every
variable). Two anonymous nested maps whose functions both have sympy forms are
composed into one map, so ``map(x + 1, map(2*x, tokens))`` reads as
``map(2*x + 1, tokens)``. ``#`` comments and blank lines are ignored.

The text may come from anyone (a file, an LLM, a stored run), so reading it is bounded
(``dsl.limits``): its length, its nesting, the size of every number and exponent, the
degree of every expression, and the wall-clock time of the whole read; each exceeded limit
is a one-line :class:`~dsl.errors.LimitError`.

What is accepted where is decided by the registered signatures
(``dsl.registry``): a ``sop``/``selector`` argument must be a variable of that
kind or a nested call producing one; a function argument is a registered family
(``add(1)``, ``sub``, ``table({0: 1})``) or an expression in ``x``/``y`` (``k``/``q``
for predicates); a ``value`` argument is a literal. Every error is a
:class:`~dsl.errors.ParseError` naming the line, column and what was expected.
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass, field
from typing import Any

import sympy

from mechsynth.dsl import limits, registry
from mechsynth.dsl.errors import DSLError, LimitError, ParseError, RegistryError
from mechsynth.dsl.printer import X, Y
from mechsynth.dsl.program import (
    COMPARISONS,
    DIRECTIONS,
    ENCODINGS,
    PRIMITIVE_VARIABLES,
    Direction,
    Fn,
    Node,
    Program,
    is_identifier,
)


def parse(text: str) -> Program:
    """Parse DSL text into a Program (ParseError with line/column on bad input)."""
    if not isinstance(text, str):
        raise ParseError(f"expected program text (str), got {type(text).__name__}")
    if len(text) > limits.MAX_PROGRAM_CHARS:
        raise LimitError(f"program text of {len(text):,} characters is too long (the DSL's limit is "
                         f"{limits.MAX_PROGRAM_CHARS:,})")
    try:
        with warnings.catch_warnings():  # Python's style warnings ("invalid decimal literal") are noise here
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(text, mode="exec")
    except SyntaxError as e:
        raise ParseError(f"invalid syntax: {e.msg}", e.lineno, (e.offset or 1) - 1) from None
    except (RecursionError, MemoryError, ValueError):  # Python's own parser gives up on deep text
        raise LimitError(f"program text nests too deeply (the DSL's limit is {limits.MAX_SYNTAX_DEPTH} "
                         "levels)") from None
    if not tree.body:
        raise ParseError("empty program: expected at least one line `name = call(...)`")
    for stmt in tree.body:
        if limits.syntax_depth(stmt) > limits.MAX_SYNTAX_DEPTH:
            raise _limit(stmt, f"this line nests more than {limits.MAX_SYNTAX_DEPTH} levels deep (the DSL's "
                               "limit)")
    try:
        with limits.time_limit(limits.READ_SECONDS, "reading the program"):
            return _Parser(tree).program()
    except ParseError as e:
        raise _in_characters(e, text) from None


def _in_characters(e: ParseError, text: str) -> ParseError:
    """``ast`` counts columns in UTF-8 bytes; a reader (and an editor) counts characters."""
    lines = text.splitlines()
    if e.line is None or e.col is None or not 1 <= e.line <= len(lines) or lines[e.line - 1].isascii():
        return e
    col = len(lines[e.line - 1].encode("utf-8")[:e.col].decode("utf-8", errors="ignore"))
    return type(e)(e.detail, e.line, col)


@dataclass
class _Parser:
    tree: ast.Module
    kinds: dict[str, str] = field(default_factory=dict)  # variable -> "sop" | "selector"
    assignments: list[tuple[str, Node]] = field(default_factory=list)
    anonymous: set[str] = field(default_factory=set)
    taken: set[str] = field(default_factory=set)
    counter: int = 0

    def program(self) -> Program:
        for p in PRIMITIVE_VARIABLES:
            self.kinds[p] = "sop"
        self.taken = {t.id for s in self.tree.body if isinstance(s, ast.Assign)
                      for t in s.targets if isinstance(t, ast.Name)} | set(PRIMITIVE_VARIABLES)
        for stmt in self.tree.body:
            self.statement(stmt)
        try:
            return Program(tuple(self.assignments))
        except (DSLError, RegistryError) as e:  # checks the parser does not repeat
            last = self.tree.body[-1]
            raise ParseError(str(e), last.lineno, last.col_offset) from None

    # ----- statements
    def statement(self, stmt: ast.stmt) -> None:
        single = isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
        if not single or not isinstance(stmt.targets[0], ast.Name):
            raise _err(stmt, "expected an assignment `name = call(...)`")
        name = stmt.targets[0].id
        if not is_identifier(name):
            raise _err(stmt.targets[0], f"{name!r} is not a valid variable name (ASCII letters, digits, _)")
        if name in self.kinds:
            what = "a primitive variable" if name in PRIMITIVE_VARIABLES else "already assigned"
            raise _err(stmt.targets[0], f"cannot assign {name!r}: it is {what}")
        if name in registry.RESERVED:
            raise _err(stmt.targets[0], f"cannot assign {name!r}: the name is reserved")
        if not isinstance(stmt.value, ast.Call):
            raise _err(stmt.value, f"expected a primitive call after `{name} =`, e.g. map(add(1), tokens)")
        node = self.call(stmt.value)
        self.define(name, node)

    def define(self, name: str, node: Node) -> None:
        self.assignments.append((name, node))
        self.kinds[name] = "selector" if node.is_selector else "sop"

    def fresh(self, op: str) -> str:
        while True:
            self.counter += 1
            name = f"{op}_{self.counter}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    # ----- calls
    def call(self, call: ast.Call) -> Node:
        if not isinstance(call.func, ast.Name):
            raise _err(call.func, "expected a primitive name such as map, select, aggregate")
        op = call.func.id
        if op in ENCODINGS:
            if len(call.args) != 1 or call.keywords or not isinstance(call.args[0], ast.Call):
                raise _err(call, f"{op}(...) wraps exactly one primitive call, e.g. {op}(aggregate(s, x))")
            node = self.call(call.args[0])
            if node.is_selector:
                raise _err(call, f"{op}(...) applies to sequences, not selectors")
            return Node(node.op, node.args, op)
        if not registry.has_primitive(op):
            if registry.has_function(op):
                raise _err(call.func, f"{op!r} is a function, not a primitive; apply it with "
                                      f"map({op}(...), x) or seqmap({op}, x, y)")
            known = ", ".join(p.name for p in registry.primitives())
            raise _err(call.func, f"unknown primitive {op!r}; expected one of: {known}")
        prim = registry.primitive(op)
        sig = prim.signature
        bound: dict[str, ast.expr] = {}
        required = [p for p in sig if not p.optional]
        if len(call.args) > len(sig):
            raise _err(call, f"{op}() takes {_arity_text(sig)}, got {len(call.args)} positional arguments")
        for p, a in zip(sig, call.args):
            bound[p.name] = a
        for kw in call.keywords:
            if kw.arg is None or kw.arg not in {p.name for p in sig}:
                raise _err(kw, f"{op}() has no parameter {kw.arg!r}; expected {_arity_text(sig)}")
            if kw.arg in bound:
                raise _err(kw, f"{op}() got parameter {kw.arg!r} twice")
            bound[kw.arg] = kw.value
        missing = [p.name for p in required if p.name not in bound]
        if missing:
            raise _err(call, f"{op}() takes {_arity_text(sig)}; missing {', '.join(missing)}")
        args = []
        for p in sig:
            if p.name not in bound:
                args.append(p.default)
                continue
            args.append(self.argument(op, p, bound[p.name]))
        node = Node(op, tuple(args), None if prim.result == "selector" else "categorical")
        return self.fold(node)

    def argument(self, op: str, p: registry.Param, expr: ast.expr) -> Any:
        if p.kind in ("sop", "selector"):
            return self.variable(op, p, expr)
        if p.kind == "value":
            return literal(expr)
        if p.kind == "direction":
            if isinstance(expr, ast.Name) and expr.id in DIRECTIONS:
                return Direction[expr.id]
            raise _err(expr, f"{op}() argument {p.name!r}: expected a direction, one of "
                             f"{', '.join(DIRECTIONS)}")
        if p.kind == "pred" and isinstance(expr, ast.Name) and expr.id in COMPARISONS:
            return expr.id
        arity = 1 if p.kind == "fn1" else 2
        fn = function(expr, arity, predicate=p.kind == "pred")
        try:
            fam = fn.family
            if len(fn.params) != len(fam.params):
                raise DSLError(f"{fam.name}() takes {len(fam.params)} parameter(s) "
                               f"({', '.join(fam.params)}), got {len(fn.params)}")
            if fam.check_params is not None:
                fam.check_params(fn.params)
        except DSLError as e:
            raise _err(expr, str(e)) from None
        return fn

    def variable(self, op: str, p: registry.Param, expr: ast.expr) -> str:
        want = "selector" if p.kind == "selector" else "sequence (sop)"
        if isinstance(expr, ast.Call):
            node = self.call(expr)
            name = self.fresh(node.op)
            self.anonymous.add(name)
            self.define(name, node)
        elif isinstance(expr, ast.Name) and expr.id not in self.kinds and _is_nullary(expr.id):
            # A registered primitive without arguments may be written bare, like tokens.
            node = self.call(ast.Call(func=expr, args=[], keywords=[], lineno=expr.lineno,
                                      col_offset=expr.col_offset))
            name = self.fresh(node.op)
            self.anonymous.add(name)
            self.define(name, node)
        elif isinstance(expr, ast.Name):
            name = expr.id
            if name not in self.kinds:
                later = " (it is assigned later; define variables before use)" if name in self.taken else ""
                raise _err(expr, f"unknown variable {name!r}{later}; expected a {want} defined above "
                                 f"or one of {', '.join(PRIMITIVE_VARIABLES)}")
        else:
            raise _err(expr, f"{op}() argument {p.name!r}: expected a {want} variable or a nested call")
        got = self.kinds[name]
        if got != p.kind:
            got_text = "a selector" if got == "selector" else "a sequence (sop)"
            hint = " (select(...) builds selectors; aggregate(selector, x) reads sequences)"
            raise _err(expr, f"{op}() argument {p.name!r} must be a {want}, but {name!r} is {got_text}{hint}")
        return name

    def fold(self, node: Node) -> Node:
        """Compose map(f, map(g, x)) into one map when the inner map is anonymous and sympy-expressible."""
        if node.op != "map":
            return node
        inner_name = node.args[1]
        if inner_name not in self.anonymous or self.assignments[-1][0] != inner_name:
            return node
        inner = self.assignments[-1][1]
        if inner.op != "map" or inner.encoding != "categorical":
            return node
        from mechsynth.dsl.canonicalize import compose

        composed = compose(node.args[0], inner.args[0])
        if composed is None:
            return node
        self.assignments.pop()
        self.anonymous.discard(inner_name)
        del self.kinds[inner_name]
        return Node("map", (composed, inner.args[1]), node.encoding)


def _is_nullary(name: str) -> bool:
    return registry.has_primitive(name) and not registry.primitive(name).signature


def _arity_text(sig: tuple) -> str:
    parts = [f"{p.name}: {p.kind}" + (f" = {p.default!r}" if p.optional else "") for p in sig]
    return f"({', '.join(parts)})" if parts else "no arguments"


def _err(node: ast.AST, message: str) -> ParseError:
    return ParseError(message, getattr(node, "lineno", None), getattr(node, "col_offset", None))


def _limit(node: ast.AST, message: str) -> LimitError:
    return LimitError(message, getattr(node, "lineno", None), getattr(node, "col_offset", None))


# ---------------------------------------------------------------- literals


def literal(expr: ast.expr) -> Any:
    """A Python literal (number, string, bool, None, tuple, list -> tuple, dict -> tuple of pairs)."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, (int, float, str, bool, type(None))):
        _bounded(expr, expr.value)
        return expr.value
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, (ast.USub, ast.UAdd)):
        v = literal(expr.operand)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return -v if isinstance(expr.op, ast.USub) else v
    if isinstance(expr, (ast.Tuple, ast.List)):
        return tuple(literal(e) for e in expr.elts)
    if isinstance(expr, ast.Dict):
        if any(k is None for k in expr.keys):
            raise _err(expr, "expected a literal dict without ** unpacking")
        return tuple((literal(k), literal(v)) for k, v in zip(expr.keys, expr.values))
    raise _err(expr, "expected a literal value (number, string, True/False, None, or a tuple of them)")


def _bounded(expr: ast.AST, value: Any) -> Any:
    """``value`` (a number or sympy expression read at ``expr``), refused when over a limit."""
    try:
        limits.check_expression(value)
    except LimitError as e:
        raise _limit(expr, e.detail) from None
    return value


def _is_literal(expr: ast.expr) -> bool:
    try:
        literal(expr)
    except LimitError:
        return True  # a literal, only too large: reported as such by the family's reading
    except ParseError:
        return False
    return True


# ---------------------------------------------------------------- functions


def function(expr: ast.expr, arity: int, predicate: bool = False) -> Fn:
    """A function argument: a family name, a family call with literal parameters, or an expression."""
    if isinstance(expr, ast.Name) and registry.has_function(expr.id, arity):
        return Fn(expr.id, arity, ())
    is_call = isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name)
    # min(c) is a family, min(max(20*x, -1), 1) an expression: a family takes literal parameters.
    is_expression_call = (is_call and expr.func.id in _SYMPY_CALLS
                          and not all(_is_literal(a) for a in expr.args))
    if is_call and registry.has_function(expr.func.id, arity) and not is_expression_call:
        if expr.keywords:
            raise _err(expr, f"{expr.func.id}(...) takes positional literal parameters only")
        params = tuple(literal(a) for a in expr.args)
        if expr.func.id == "table":
            params = tuple(tuple(sorted(p, key=_entry_key)) if isinstance(p, tuple) else p for p in params)
        return Fn(expr.func.id, arity, params)
    if isinstance(expr, ast.Name) and registry.has_function(expr.id):
        other = 2 if arity == 1 else 1
        raise _err(expr, f"{expr.id!r} is a {other}-argument function; here a {arity}-argument function is "
                         f"expected")
    if (isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and registry.has_function(expr.func.id)
            and not is_expression_call):
        raise _err(expr, f"{expr.func.id!r} has no {arity}-argument form")
    size = sum(1 for _ in ast.walk(expr))
    if size > limits.MAX_EXPRESSION_NODES:
        raise _limit(expr, f"expression of {size} syntax nodes is too large (the DSL's limit is "
                           f"{limits.MAX_EXPRESSION_NODES})")
    names = {"k": X, "q": Y} if predicate else ({"x": X} if arity == 1 else {"x": X, "y": Y})
    sym = _sympy_op(expr, lambda: _Expr(names).convert(expr))  # sympy refusing a comparison of a bool, ...
    if not isinstance(sym, sympy.Basic):
        sym = sympy.sympify(sym)  # a Python bool or number, never a string
    return Fn("expr", arity, (sym,))


def _entry_key(entry: tuple) -> tuple:
    from mechsynth.dsl.values import _sort_key

    return _sort_key(entry[0])


_SYMPY_CALLS = {
    "Mod": sympy.Mod, "floor": sympy.floor, "ceiling": sympy.ceiling, "Abs": sympy.Abs, "abs": sympy.Abs,
    "Min": sympy.Min, "Max": sympy.Max, "min": sympy.Min, "max": sympy.Max,
    "Eq": sympy.Eq, "Ne": sympy.Ne, "Lt": sympy.Lt, "Le": sympy.Le, "Gt": sympy.Gt, "Ge": sympy.Ge,
}


@dataclass
class _Expr:
    """ast -> sympy for the arithmetic/boolean expression syntax of functions."""

    names: dict[str, sympy.Symbol]

    def convert(self, e: ast.expr) -> Any:
        if isinstance(e, ast.Name):
            if e.id in self.names:
                return self.names[e.id]
            allowed = " and ".join(self.names)
            raise _err(e, f"unknown name {e.id!r} in a function; expected a registered function family or an "
                          f"expression in {allowed}")
        if isinstance(e, ast.Constant):
            if isinstance(e.value, bool):
                return sympy.true if e.value else sympy.false
            if isinstance(e.value, int):
                return sympy.Integer(_bounded(e, e.value))
            if isinstance(e.value, float):
                return sympy.Float(_bounded(e, e.value))
            raise _err(e, "expressions may only use numbers; use eq(c) or table({...}) for other values")
        if isinstance(e, ast.BinOp):
            a, b = self.convert(e.left), self.convert(e.right)
            ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
                   ast.Div: lambda: a / b, ast.FloorDiv: lambda: sympy.floor(a / b),
                   ast.Mod: lambda: sympy.Mod(a, b), ast.Pow: lambda: a ** b,
                   ast.BitAnd: lambda: sympy.And(a, b), ast.BitOr: lambda: sympy.Or(a, b)}
            arithmetic = not isinstance(e.op, (ast.BitAnd, ast.BitOr))
            if arithmetic and (_is_bool(a) or _is_bool(b)):
                raise _err(e, "arithmetic on a comparison (a bool) is not supported; write the function "
                              "as a table({...}) or compute the comparisons in separate maps")
            if isinstance(e.op, ast.Pow):
                try:
                    limits.check_power(a, b)
                except LimitError as err:
                    raise _limit(e, err.detail) from None
            for cls, make in ops.items():
                if isinstance(e.op, cls):
                    return _bounded(e, _sympy_op(e, make))
            raise _err(e, f"unsupported operator {type(e.op).__name__} in an expression")
        if isinstance(e, ast.UnaryOp):
            a = self.convert(e.operand)
            if isinstance(e.op, ast.USub):
                if _is_bool(a):
                    raise _err(e, "arithmetic on a comparison (a bool) is not supported; use not or ~")
                return -a
            if isinstance(e.op, ast.UAdd):
                return a
            if isinstance(e.op, (ast.Not, ast.Invert)):
                return sympy.Not(a) if isinstance(a, sympy.logic.boolalg.Boolean) else sympy.Eq(a, 0)
        if isinstance(e, ast.BoolOp):
            parts = [self.convert(v) for v in e.values]
            return sympy.And(*parts) if isinstance(e.op, ast.And) else sympy.Or(*parts)
        if isinstance(e, ast.Compare):
            rels = {ast.Eq: sympy.Eq, ast.NotEq: sympy.Ne, ast.Lt: sympy.Lt, ast.LtE: sympy.Le,
                    ast.Gt: sympy.Gt, ast.GtE: sympy.Ge}
            left = self.convert(e.left)
            out = []
            for op, right_e in zip(e.ops, e.comparators):
                right = self.convert(right_e)
                if type(op) not in rels:
                    raise _err(e, f"unsupported comparison {type(op).__name__} in an expression")
                out.append(rels[type(op)](left, right))
                left = right
            return out[0] if len(out) == 1 else sympy.And(*out)
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id in _SYMPY_CALLS:
            if e.keywords:
                raise _err(e, f"{e.func.id}() takes positional arguments only")
            parts = [self.convert(a) for a in e.args]
            return _bounded(e, _sympy_op(e, lambda: _SYMPY_CALLS[e.func.id](*parts)))
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Name):
            raise _err(e.func, f"unknown function {e.func.id!r}; expected a registered function family "
                               f"or one of {', '.join(sorted(_SYMPY_CALLS))} inside an expression")
        raise _err(e, "expected a function: a family such as add(1), a table({...}), or an arithmetic "
                      "expression")


def _is_bool(value: Any) -> bool:
    # A comparison, a logical combination or True/False (sympy's Symbol is a Boolean too, so
    # that base class cannot tell).
    boolalg = sympy.logic.boolalg
    return isinstance(value, (sympy.core.relational.Relational, boolalg.BooleanFunction, boolalg.BooleanAtom))


def _sympy_op(e: ast.AST, make: Any) -> Any:
    """Build one sympy node; sympy's own refusals (TypeError, ...) become a ParseError at ``e``."""
    try:
        return make()
    except ParseError:
        raise
    except (TypeError, ValueError, ArithmeticError, RecursionError) as err:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise _err(e, f"cannot read this expression: {text[:120]}") from None
