"""mechsynth's hypothesis DSL: RASP-shaped programs that claim what a transformer computes.

A program is a DAG of named variables over the input ``tokens``, ``indices`` and
``length``: position-wise functions (``map``, ``seqmap``), attention-like
selection and averaging (``select``, ``aggregate``, ``selector_width``), the
best-scoring selected key (``select_best``, beyond RASP) and
constants, with RASP's semantics (tracr's ``rasp.evaluate``). Text form::

    opp = seqmap(sub, length, indices)
    opp_1 = map(add(-1), opp)
    flip = select(indices, opp_1, EQ)
    reverse = aggregate(flip, tokens)
    frac = numerical(aggregate(select(indices, indices, LEQ), map(eq('a'), tokens), default=0))

One module per stage:

==================  ==========================================================
``registry``        the extension registry (``register``): primitives, function families
``primitives``      the RASP primitives, registered like any extension
``functions``       the function library: arithmetic, comparisons, logic, tables, expressions
``program``         immutable ``Fn`` / ``Node`` / ``Program``
``printer``         programs to canonical text
``parse``           text to programs (stdlib ``ast``; errors with line and column)
``values``          how values (numbers, strings, None, tuples) become float64 codes
``interpret``       the batched torch interpreter and its fast path (``encode``/``run``/``eval_node``)
``value_sets``      the finite set of values each variable takes, for a vocabulary and max length
``fit``             an arbitrary function on a finite domain, recognised as a DSL function
``canonicalize``    sympy folding and simplification of arithmetic maps
``equivalence``     bounded equivalence with z3, exhaustive fallback
``rasp_bridge``     tracr RASP to DSL and back; the tracr library examples (``LIB_EXAMPLES``)
``reference``       the DSL reference text, generated from the registry
``sample``          random well-typed programs (tests, null-model controls)
``benchmark``       interpreter throughput
==================  ==========================================================
"""

from mechsynth.dsl import functions as _functions  # noqa: F401  (registers the function library)
from mechsynth.dsl import primitives as _primitives  # noqa: F401  (registers the RASP primitives)
from mechsynth.dsl.canonicalize import canonicalize
from mechsynth.dsl.equivalence import EquivalenceResult, check_equivalence, equivalent
from mechsynth.dsl.errors import (
    ConversionError,
    DSLError,
    EquivalenceError,
    EvaluationError,
    ParseError,
    RegistryError,
)
from mechsynth.dsl.interpret import Batch, decode, encode, eval_node, evaluate, evaluate_all, run
from mechsynth.dsl.parse import parse
from mechsynth.dsl.program import Direction, Fn, Node, Program
from mechsynth.dsl.rasp_bridge import LIB_EXAMPLES, LibExample, from_rasp, rasp_variable_name, to_rasp
from mechsynth.dsl.reference import reference
from mechsynth.dsl.registry import FunctionFamily, Param, Primitive, register
from mechsynth.dsl.value_sets import infer_value_sets, value_set

__all__ = [
    "Batch", "ConversionError", "DSLError", "Direction", "EquivalenceError", "EquivalenceResult",
    "EvaluationError", "Fn",
    "FunctionFamily", "LIB_EXAMPLES", "LibExample", "Node", "Param", "ParseError", "Primitive", "Program",
    "RegistryError", "canonicalize", "check_equivalence", "decode", "encode", "equivalent", "eval_node",
    "evaluate", "evaluate_all", "from_rasp", "infer_value_sets", "parse", "rasp_variable_name", "reference",
    "register", "run", "to_rasp", "value_set",
]
