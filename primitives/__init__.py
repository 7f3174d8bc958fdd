"""cotangent's primitives: each with its implementation, shape/dtype rule, JVP rule,
transpose rule and (where it pays) numba kernel, defined together. The user-facing
namespaces are `primitives.numpy` and `primitives.lax`."""
from . import arith, unary, logical, convert, reductions, shape_ops
from . import dot, slicing, trig
