"""Jaxpr-level interpreters, registered by transforms/ when it is imported.

Higher-order primitives (control flow, defined in primitives/) carry sub-jaxprs, and
their rules apply an interpreter to those: the JVP of a loop is the loop of the
JVP of its body. primitives/ may not import transforms/, so the interpreters are
looked up here; transforms/ fills the slots in (a rule can only run under a
transform, so by then they are set).

    jvp_jaxpr(closed, nonzeros, instantiate)
        -> (closed_jvp, out_nonzeros)
        closed_jvp takes (*primals, *tangents for the nonzero inputs) and returns
        (*primal_outs, *tangent_outs for out_nonzeros); `instantiate` (bool or one
        bool per output) forces tangent outputs to be materialised.
    partial_eval_jaxpr(closed, unknowns, instantiate)
        -> (closed_known, closed_unknown, out_unknowns, num_res)
        closed_known: known inputs -> known outputs + num_res residuals;
        closed_unknown: residuals + unknown inputs -> unknown outputs.
    transpose_jaxpr(closed, linear)
        -> closed_t taking (*non-linear inputs, *cotangents of every output) and
        returning cotangents of the linear inputs (zeros materialised).
    batch_jaxpr(closed, axis_size, in_dims, out_dims)
        -> (closed_batched, out_dims)
        in_dims: an int or None per input; out_dims: None (any, reported back) or
        one int/None per output to force.
"""


class _Interpreters:
    __slots__ = ('jvp_jaxpr', 'partial_eval_jaxpr', 'transpose_jaxpr', 'batch_jaxpr')

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, None)

    def __getattribute__(self, name):
        fn = object.__getattribute__(self, name)
        if fn is None:
            # transforms/ registers these on import; a higher-order rule only runs
            # under a transform, so this means transforms/ was bypassed.
            import importlib
            importlib.import_module('transforms')
            fn = object.__getattribute__(self, name)
        return fn


interpreters = _Interpreters()


def register_interpreter(name, fn):
    if name not in _Interpreters.__slots__:
        raise ValueError(f"unknown interpreter slot {name!r}")
    setattr(interpreters, name, fn)
