"""The extension registry: the single place where the DSL learns words.

The DSL has two kinds of words, and both are registered here, built-ins included:

* **Primitives** (operations on sequences): ``tokens``, ``map``, ``select``,
  ``aggregate``, ... A primitive has a *signature*, an ordered list of typed
  parameters. Parameter kinds:

  ``sop``       a sequence variable (categorical or numerical)
  ``selector``  a selector variable
  ``fn1``       a one-argument function from the function library (for ``map``)
  ``fn2``       a two-argument function (for ``seqmap``)
  ``pred``      a predicate on (key, query) (for ``select``): a comparison name such
                as ``EQ`` or any two-argument function returning bools
  ``value``     a literal value (number, string, bool, None, tuple)
  ``direction`` ``ARGMIN`` or ``ARGMAX`` (``dsl.program.Direction``, for ``select_best``)

  and it returns a ``sop`` or a ``selector``. Its implementation works on tensors:
  it receives an :class:`~dsl.interpret.EvalContext` and one argument per
  signature entry (a tensor for ``sop``/``selector``, a compiled function for
  ``fn1``/``fn2``/``pred``, a float code for ``value``).

* **Function families** (what ``map``/``seqmap``/``select`` apply position-wise):
  ``add(k)``, ``mod(k)``, ``eq(c)``, ``min``, ``table({...})``, ... A family has an
  arity (1 or 2), literal parameters, a vectorised torch implementation on float64
  codes, a cost, an output dtype, and optionally a sympy form (used for
  canonicalisation) and a z3 form (used for equivalence checking).

Registering an item is all it takes for the parser, the printer, the
interpreter, value-set inference, the z3 check and :func:`dsl.reference` to know
it: they all read this registry and nothing else. The registry is the only
module-level mutable state in the package; :func:`scope` gives tests a way to
register something temporarily.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mechsynth.dsl.errors import RegistryError

ARG_KINDS = ("sop", "selector", "fn1", "fn2", "pred", "value", "direction")
RESULT_KINDS = ("sop", "selector")
REQUIRED = object()  # sentinel: a parameter without a default


@dataclass(frozen=True)
class Param:
    """One entry of a primitive's signature."""

    name: str
    kind: str
    default: Any = REQUIRED

    @property
    def optional(self) -> bool:
        return self.default is not REQUIRED


@dataclass(frozen=True)
class Primitive:
    """An operation on sequences (see the module docstring for the calling convention).

    ``dtype(args, child_dtypes)`` gives the decoding dtype of the result ("bool",
    "number" or "value"). ``value_set(args, child_value_sets, ctx)`` gives the set of
    values it can take (``ctx`` is a ``dsl.value_sets.ValueSetContext``: ``vocab``,
    ``max_len``, ``encoding``, and ``image(fn, *sets)``). ``z3(z, args, kids)`` gives its
    z3 encoding for one input length ``z.n`` (``z`` is a ``dsl.equivalence.Z3Encoder``;
    ``kids`` are the encoded inputs: per position ``(value, defined)`` pairs for a
    sop, a ``[query][key]`` list of z3 bools for a selector; return the same shape).
    ``z3`` and ``value_set`` are optional: without ``z3`` equivalence falls back to
    exhaustive enumeration; without ``value_set`` RASP lambdas downstream cannot be
    tabulated.
    """

    name: str
    signature: tuple[Param, ...]
    result: str
    impl: Callable[..., Any]
    cost: float = 1.0
    dtype: str | Callable[..., str] = "value"
    value_set: Callable[..., Any] | None = None
    z3: Callable[..., Any] | None = None
    doc: str = ""
    example: str = ""



@dataclass(frozen=True)
class FunctionFamily:
    """A named, parameterised position-wise function (see the module docstring).

    ``impl(*arg_codes, *param_codes)`` maps float64 code tensors of broadcastable
    shapes to a code tensor (or a bool tensor for boolean results); parameters arrive
    encoded by ``encode_params(params, codebook)`` (default: each parameter through
    ``codebook.encode``). ``output`` is the dtype of the result or a function of the
    raw parameters; "same" means the dtype of the first argument.
    ``sympy(*args, *params)`` builds the closed form from sympy symbols and raw
    parameters; ``z3(args, params, code)`` from z3 reals (``code(value)`` gives the z3
    real of a literal's code) and returns a z3 real, or ``(real, defined)`` where the
    function can be undefined (None). ``propose(xs, ys)`` guesses parameter tuples
    from example inputs/outputs (python values) for ``dsl.fit``; families without
    parameters need no ``propose``.
    """

    name: str
    arity: int
    params: tuple[str, ...]
    impl: Callable[..., Any]
    cost: float = 1.0
    output: str | Callable[[tuple], str] = "number"
    sympy: Callable[..., Any] | None = None
    z3: Callable[..., Any] | None = None
    propose: Callable[..., Any] | None = None
    encode_params: Callable[..., Any] | None = None
    check_params: Callable[[tuple], None] | None = None
    doc: str = ""
    fit: bool = True  # offered when fitting arbitrary functions (dsl.fit)
    symbols: bool = False  # accepts non-numeric values; if False a symbol argument gives None
    nan_safe: bool = False  # impl already gives NaN wherever an argument is NaN (lets map skip a guard)

    def output_dtype(self, params: tuple, first_arg_dtype: str = "value") -> str:
        out = self.output(params) if callable(self.output) else self.output
        return first_arg_dtype if out == "same" else out


@dataclass
class _Registry:
    primitives: dict[str, Primitive] = field(default_factory=dict)
    functions: dict[tuple[str, int], FunctionFamily] = field(default_factory=dict)


_REGISTRY = _Registry()

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Names the text syntax reserves: variables cannot take them (comparison names, encodings, Python
# constants), and registered items cannot take them nor the expression variables x, y, k, q.
RESERVED = frozenset(
    {"EQ", "LT", "LEQ", "GT", "GEQ", "NEQ", "TRUE", "FALSE", "ARGMIN", "ARGMAX", "numerical", "categorical",
     "None", "True", "False"}
)
RESERVED_FOR_REGISTRY = RESERVED | {"x", "y", "k", "q"}


def _check_name(name: str) -> None:
    if not _NAME_RE.fullmatch(name) or name in RESERVED_FOR_REGISTRY:
        raise RegistryError(f"{name!r} cannot be registered: not an identifier, or reserved by the syntax")


class _Registrar:
    """The ``dsl.register`` object: ``@register.primitive(...)`` and ``@register.function(...)``."""

    def primitive(
        self,
        name: str,
        signature: tuple[Param, ...] | list[tuple] | str,
        result: str = "sop",
        *,
        cost: float = 1.0,
        dtype: str | Callable[..., str] = "value",
        value_set: Callable[..., Any] | None = None,
        z3: Callable[..., Any] | None = None,
        doc: str = "",
        example: str = "",
        replace: bool = False,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering ``impl(ctx, *args)`` as the primitive ``name``.

        ``signature`` is a tuple of :class:`Param` or the string form
        ``"x: sop, k: value = 1"`` (defaults are Python literals: numbers, strings,
        None, True, False).
        """
        params = _parse_signature(signature) if isinstance(signature, str) else tuple(
            p if isinstance(p, Param) else Param(*p) for p in signature
        )

        def decorate(impl: Callable[..., Any]) -> Callable[..., Any]:
            self.add_primitive(
                Primitive(name, params, result, impl, cost, dtype, value_set, z3,
                          doc or (impl.__doc__ or "").strip(), example),
                replace=replace,
            )
            return impl

        return decorate

    def function(
        self,
        name: str,
        arity: int = 1,
        params: tuple[str, ...] = (),
        *,
        cost: float = 1.0,
        output: str | Callable[[tuple], str] = "number",
        sympy: Callable[..., Any] | None = None,
        z3: Callable[..., Any] | None = None,
        propose: Callable[..., Any] | None = None,
        encode_params: Callable[..., Any] | None = None,
        check_params: Callable[[tuple], None] | None = None,
        doc: str = "",
        fit: bool = True,
        symbols: bool = False,
        nan_safe: bool = False,
        replace: bool = False,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering ``impl(*args, *params)`` as the function family ``name``/``arity``.

        ``symbols=True`` declares that the implementation is meaningful on symbol codes
        (comparisons, tables); otherwise symbol arguments make the result None, as
        arithmetic on strings is an error in RASP. ``nan_safe=True`` promises that the
        implementation returns NaN wherever an argument is NaN (true of arithmetic), so
        ``map`` can skip re-imposing None. Implementations return float64 codes, or bool
        tensors for boolean results.
        """

        def decorate(impl: Callable[..., Any]) -> Callable[..., Any]:
            self.add_function(
                FunctionFamily(name, arity, tuple(params), impl, cost, output, sympy, z3, propose,
                               encode_params, check_params, doc or (impl.__doc__ or "").strip(), fit,
                               symbols, nan_safe),
                replace=replace,
            )
            return impl

        return decorate

    def add_primitive(self, prim: Primitive, replace: bool = False) -> None:
        _check_name(prim.name)
        if prim.result not in RESULT_KINDS:
            raise RegistryError(f"primitive {prim.name}: result must be one of {RESULT_KINDS}")
        for p in prim.signature:
            if p.kind not in ARG_KINDS:
                raise RegistryError(f"primitive {prim.name}: parameter kind {p.kind!r} not in {ARG_KINDS}")
        if not replace and (prim.name in _REGISTRY.primitives):
            raise RegistryError(f"primitive {prim.name!r} is already registered")
        _REGISTRY.primitives[prim.name] = prim

    def add_function(self, fam: FunctionFamily, replace: bool = False) -> None:
        _check_name(fam.name)
        if fam.arity not in (1, 2):
            raise RegistryError(f"function {fam.name}: arity must be 1 or 2")
        key = (fam.name, fam.arity)
        if not replace and key in _REGISTRY.functions:
            raise RegistryError(f"function {fam.name!r} of arity {fam.arity} is already registered")
        _REGISTRY.functions[key] = fam

    def __call__(self, item: Primitive | FunctionFamily, replace: bool = False) -> Primitive | FunctionFamily:
        """Register a ready-made :class:`Primitive` or :class:`FunctionFamily`."""
        if isinstance(item, Primitive):
            self.add_primitive(item, replace)
        elif isinstance(item, FunctionFamily):
            self.add_function(item, replace)
        else:
            raise RegistryError(f"cannot register {item!r}: not a Primitive or FunctionFamily")
        return item


register = _Registrar()


def primitive(name: str) -> Primitive:
    """The registered primitive ``name`` (RegistryError if unknown)."""
    try:
        return _REGISTRY.primitives[name]
    except KeyError:
        raise RegistryError(f"unknown primitive {name!r}") from None


def function(name: str, arity: int) -> FunctionFamily:
    """The registered function family ``name`` of ``arity`` (RegistryError if unknown)."""
    try:
        return _REGISTRY.functions[(name, arity)]
    except KeyError:
        raise RegistryError(f"unknown {arity}-argument function {name!r}") from None


def has_primitive(name: str) -> bool:
    return name in _REGISTRY.primitives


def has_function(name: str, arity: int | None = None) -> bool:
    if arity is None:
        return any(n == name for n, _ in _REGISTRY.functions)
    return (name, arity) in _REGISTRY.functions


def primitives() -> tuple[Primitive, ...]:
    """All registered primitives, in registration order."""
    return tuple(_REGISTRY.primitives.values())


def functions(arity: int | None = None) -> tuple[FunctionFamily, ...]:
    """All registered function families (of one arity, if given), in registration order."""
    return tuple(f for (_, a), f in _REGISTRY.functions.items() if arity is None or a == arity)


@contextlib.contextmanager
def scope() -> Iterator[None]:
    """Registrations made inside the ``with`` block are undone when it exits."""
    saved_p, saved_f = dict(_REGISTRY.primitives), dict(_REGISTRY.functions)
    try:
        yield
    finally:
        _REGISTRY.primitives.clear()
        _REGISTRY.primitives.update(saved_p)
        _REGISTRY.functions.clear()
        _REGISTRY.functions.update(saved_f)


def _parse_signature(text: str) -> tuple[Param, ...]:
    """``"x: sop, k: value = 1"`` -> (Param("x", "sop"), Param("k", "value", 1))."""
    import ast

    out = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        m = re.fullmatch(r"([A-Za-z_]\w*)\s*:\s*([a-z0-9]+)\s*(?:=\s*(.+))?", part)
        if not m:
            raise RegistryError(f"bad signature entry {part!r}; expected 'name: kind [= default]'")
        default = REQUIRED
        if m.group(3) is not None:
            try:  # literal_eval only accepts literals; it never runs code
                default = ast.literal_eval(m.group(3))
            except (ValueError, SyntaxError):
                raise RegistryError(f"default of {m.group(1)!r} must be a literal: {m.group(3)!r}") from None
        out.append(Param(m.group(1), m.group(2), default))
    return tuple(out)
