"""mechsynth's hypothesis DSL: RASP-shaped programs, their text form, a batched interpreter,
sympy canonicalisation, z3 equivalence and a bridge to tracr (see dsl/program.py for concepts)."""

from dsl import functions as _functions  # noqa: F401  (registers the function library)
from dsl import primitives as _primitives  # noqa: F401  (registers the RASP primitives)
from dsl.canonicalize import canonicalize
from dsl.equivalence import EquivalenceResult, check_equivalence, equivalent
from dsl.errors import ConversionError, DSLError, EquivalenceError, EvaluationError, ParseError, RegistryError
from dsl.interpret import Batch, decode, encode, eval_node, evaluate, evaluate_all, run
from dsl.parse import parse
from dsl.program import Fn, Node, Program
from dsl.rasp_bridge import LIB_EXAMPLES, from_rasp, rasp_variable_name, to_rasp
from dsl.reference import reference
from dsl.registry import FunctionFamily, Param, Primitive, register

__all__ = [
    "Batch", "ConversionError", "DSLError", "EquivalenceError", "EvaluationError", "Fn", "FunctionFamily",
    "Node", "Param", "ParseError", "Primitive", "Program", "RegistryError", "canonicalize", "decode",
    "encode",
    "eval_node", "evaluate", "evaluate_all", "parse", "register", "run", "LIB_EXAMPLES", "from_rasp",
    "rasp_variable_name", "to_rasp", "EquivalenceResult", "check_equivalence", "equivalent", "reference",
]
