"""cotangent's transforms: the interpreters (jvp, linearize, transpose) and the
user API built on them."""
from .ad import (jvp, linearize, vjp, grad, value_and_grad, linear_transpose)
from .jacobians import jacfwd, jacrev, hessian
from .jit import jit
from . import jaxpr_transforms as _jaxpr_transforms   # registers tracer.hooks interpreters
from tracer import make_jaxpr
from .vmap import vmap
from .custom_derivatives import custom_jvp, custom_vjp
from .checkpoint import (checkpoint, remat, checkpoint_policies, print_saved_residuals,
                         saved_residuals)
