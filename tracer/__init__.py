"""cotangent's tracer layer: the IR, primitives and bind, traces and their level
stack, staging into jaxprs, evaluation, pytrees, the printer and the error classes.
It knows no particular primitive."""
from .avals import ShapedArray, float0, tangent_aval, result_dtype, concrete_aval, native
from .ir import Var, DropVar, Literal, JaxprEqn, Jaxpr, ClosedJaxpr
from .core import (Primitive, Trace, Tracer, new_trace, Zero, UndefinedPrimal,
                   is_undefined, instantiate, zeros_value, get_aval, register_array_api)
from .errors import (ConcretizationTypeError, TracerArrayConversionError,
                     TracerBoolConversionError, UnexpectedTracerError)
from .staging import (JaxprTrace, JaxprTracer, make_jaxpr, trace_to_jaxpr, dce,
                      dce_call_eqn, lift_traced_consts,
                      dce_jaxpr)
from .eval import eval_jaxpr
from .memo import Memo
from .pytree import (tree_flatten, tree_unflatten, tree_map, tree_leaves, tree_structure,
                     register_pytree_node, PyTreeDef)
from .printer import pp_jaxpr
from .typecheck import check_jaxpr, JaxprTypeError
